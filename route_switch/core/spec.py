"""Evalset specs (``evalsets/<name>.yaml``, the user's or the package's): which file, which models as which tiers, which split.

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

from route_switch.core.errors import ConfigError
from route_switch.core.paths import find_shipped, packaged_dir
from route_switch.core.files import read_yaml
from route_switch.core.tiers import Tier, tiers_from_list


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

    def load(self):
        """The evalset (an :class:`~route_switch.core.evalset.Evalset`) with the spec's models."""
        from route_switch.core.evalset import load_evalset

        ev = load_evalset(self.source, models=self.models)
        ev.meta["spec"] = self.name
        return ev

    def train_test(self):
        """The spec's split: the file's own split column, or a seeded random split."""
        ev = self.load()
        if self.split_column:
            return ev.by_source_split("train"), ev.by_source_split("test")
        return ev.split(self.test_size, self.seed)


def load_spec(name_or_path: str | Path) -> EvalsetSpec:
    """Load a spec with ``yaml.safe_load``: a path, else ``evalsets/<name>.yaml`` under the current
    folder, else the spec of that name shipped with the package."""
    p = find_shipped(name_or_path, "evalsets")
    if not p.exists():
        known = sorted({x.stem for d in (Path("evalsets"), packaged_dir("evalsets")) for x in d.glob("*.yaml")})
        raise ConfigError(f"no evalset spec '{name_or_path}' (known: {known})", file=str(name_or_path))
    raw = read_yaml(p, ConfigError)
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
