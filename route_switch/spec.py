"""Evalset specs (``evalsets/*.yaml``): which file, which models as which tiers, which split.

A spec makes a run one short command (``route-switch evaluate --evalset zeroeval-3tier``)::

    name: zeroeval-3tier
    source: zeroeval.parquet          # bare names resolve against $ROUTE_SWITCH_DATA
    tiers:                            # cheapest first; omit to use every model that covers all prompts
      - {name: small, model: Meta-Llama-3.1-8B-Instruct, price_in: 0.18, price_out: 0.18}
      - {name: large, model: o1-mini-2024-09-12, price_in: 3.0, price_out: 12.0}
    split: {test_size: 0.3, seed: 0}  # or {column: split} to use the file's own train/test column
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .errors import ConfigError
from .evalset import Evalset, load_evalset

SPEC_DIR = Path(__file__).resolve().parent.parent / "evalsets"


@dataclass
class Tier:
    """One routing tier: a name, the model behind it, its price (USD per 1M tokens) and endpoint.

    ``api_base`` / ``api_key_env`` / ``upstream_model`` say where the tier's model is served
    (any OpenAI-compatible endpoint; the key is read from the named environment variable);
    they are needed only by the proxy and the labelling job, not by ``route()``.
    """

    name: str
    model: str
    price_in: float | None = None
    price_out: float | None = None
    api_base: str | None = None
    api_key_env: str | None = None
    upstream_model: str | None = None

    def cost(self, in_tokens: int, out_tokens: int) -> float | None:
        """USD for a call with these token counts, or None without prices."""
        if self.price_in is None or self.price_out is None:
            return None
        return (in_tokens * self.price_in + out_tokens * self.price_out) / 1e6


@dataclass
class EvalsetSpec:
    name: str
    source: str
    tiers: list[Tier] = field(default_factory=list)
    test_size: float = 0.3
    seed: int = 0
    split_column: str | None = None
    description: str = ""
    file: str = ""

    @property
    def models(self) -> list[str] | None:
        return [t.model for t in self.tiers] or None

    def load(self) -> Evalset:
        ev = load_evalset(self.source, models=self.models)
        ev.meta["spec"] = self.name
        return ev

    def train_test(self) -> tuple[Evalset, Evalset]:
        """The spec's split: the file's own split column, or a seeded random split."""
        ev = self.load()
        if self.split_column:
            return ev.by_source_split("train"), ev.by_source_split("test")
        return ev.split(self.test_size, self.seed)


def tiers_from_list(items, file: str = "") -> list[Tier]:
    """Parse a YAML list of tiers, naming the offending entry on error."""
    if not isinstance(items, list) or not items:
        raise ConfigError("must be a non-empty list of {name, model, price_in, price_out}", file=file, field="tiers")
    tiers = []
    for i, t in enumerate(items):
        where = f"tiers[{i}]"
        if not isinstance(t, dict) or "model" not in t:
            raise ConfigError("each tier needs at least 'model'", file=file, field=where)
        prices = {}
        for k in ("price_in", "price_out"):
            v = t.get(k)
            if v is not None and (not isinstance(v, (int, float)) or v < 0):
                raise ConfigError(f"must be a non-negative number, got {v!r}", file=file, field=f"{where}.{k}")
            prices[k] = None if v is None else float(v)
        if "api_key" in t:
            raise ConfigError("API keys never go in files: name an environment variable with api_key_env",
                              file=file, field=f"{where}.api_key")
        unknown = set(t) - {"name", "model", "price_in", "price_out", "api_base", "api_key_env", "upstream_model"}
        if unknown:
            raise ConfigError(f"unknown key(s) {sorted(unknown)}", file=file, field=f"{where}.{sorted(unknown)[0]}")
        endpoint = {k: (None if t.get(k) is None else str(t[k])) for k in ("api_base", "api_key_env", "upstream_model")}
        tiers.append(Tier(name=str(t.get("name", f"tier{i + 1}")), model=str(t["model"]), **prices, **endpoint))
    return tiers


def load_spec(name_or_path: str | Path) -> EvalsetSpec:
    """Load ``evalsets/<name>.yaml`` (or a path) with ``yaml.safe_load``."""
    p = Path(name_or_path)
    if not p.exists():
        for cand in (SPEC_DIR / f"{name_or_path}.yaml", Path("evalsets") / f"{name_or_path}.yaml"):
            if cand.exists():
                p = cand
                break
        else:
            known = sorted(x.stem for x in SPEC_DIR.glob("*.yaml"))
            raise ConfigError(f"no evalset spec '{name_or_path}' (known: {known})", file=str(name_or_path))
    try:
        raw = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        line = getattr(getattr(e, "problem_mark", None), "line", None)
        raise ConfigError(f"invalid YAML: {getattr(e, 'problem', e)}", file=str(p),
                          line=None if line is None else line + 1) from None
    if not isinstance(raw, dict):
        raise ConfigError("must be a YAML mapping", file=str(p))
    if "source" not in raw:
        raise ConfigError("missing", file=str(p), field="source")
    split = raw.get("split") or {}
    if not isinstance(split, dict):
        raise ConfigError("must be a mapping like {test_size: 0.3, seed: 0}", file=str(p), field="split")
    tiers = tiers_from_list(raw["tiers"], file=str(p)) if raw.get("tiers") is not None else []
    return EvalsetSpec(name=str(raw.get("name", p.stem)), source=str(raw["source"]), tiers=tiers,
                       test_size=float(split.get("test_size", 0.3)), seed=int(split.get("seed", 0)),
                       split_column=split.get("column"), description=str(raw.get("description", "")),
                       file=str(p))
