"""Router configuration (YAML): tiers, the estimator, the selection knob, bypass and router LLM.

::

    tiers:                      # cheapest first; tier 1 = tiers[0]
      - {name: small, model: Meta-Llama-3.1-8B-Instruct, price_in: 0.18, price_out: 0.18}
      - {name: large, model: o1-mini-2024-09-12, price_in: 3.0, price_out: 12.0}
    estimator: estimators/zeroeval-3tier   # directory written by `route-switch fit` (relative to this file)
    selection: {tau: 0.1}                  # or {lambda: 0.5}
    bypass: {max_tokens: 6}                # shorter queries go to tier 1 without the router LLM
    llm:                                   # optional: the router LLM (see programs/)
      program: programs/default.yaml       # or an optimised artifact directory under optimized/
      lm: {kind: local}
      timeout_s: 2.0
    cache_size: 10000
    default_tier: 3                        # used only when nothing else can decide
    route_log:                             # opt-in decision log for the weekly re-optimisation job
      path: logs/routes.jsonl              # relative to this file
      privacy: hash                        # hash (default: sha256 of the query) or full (the query text)
      max_bytes: 10000000                  # rotate beyond this size ...
      backups: 5                           # ... keeping this many old files
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .errors import ConfigError
from .paths import read_yaml
from .tiers import Tier, tiers_from_list


@dataclass
class RouterConfig:
    tiers: list[Tier] = field(default_factory=list)
    estimator: str | None = None
    tau: float | None = 0.1
    lam: float | None = None
    bypass_tokens: int = 0
    llm: dict | None = None
    cache_size: int = 10_000
    default_tier: int | None = None
    route_log: dict | None = None
    file: str = ""


def _num(raw: dict, key: str, file: str, lo: float | None = None, hi: float | None = None, cast=float):
    v = raw.get(key)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)) or v != v or v in (float("inf"), float("-inf")):
        raise ConfigError(f"must be a finite number, got {v!r}", file=file, field=key)
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        raise ConfigError(f"must be within [{lo}, {hi}], got {v!r}", file=file, field=key)
    return cast(v)


def load_config(path: str | Path) -> RouterConfig:
    """Read a router YAML (``yaml.safe_load``); relative paths inside resolve against its folder."""
    p = Path(path)
    if p.is_dir():
        p = p / "router.yaml"
    if not p.exists():
        raise ConfigError("router config not found", file=str(p))
    raw = read_yaml(p, ConfigError) or {}
    if not isinstance(raw, dict):
        raise ConfigError("must be a YAML mapping", file=str(p))
    f = str(p)
    tiers = tiers_from_list(raw["tiers"], file=f) if "tiers" in raw else []
    sel = raw.get("selection") or {}
    if not isinstance(sel, dict):
        raise ConfigError("must be a mapping like {tau: 0.1}", file=f, field="selection")
    tau, lam = _num(sel, "tau", f, 0, 1), _num(sel, "lambda", f, 0)
    if tau is None and lam is None:
        tau = 0.1
    bypass = raw.get("bypass") or {}
    if not isinstance(bypass, dict):
        raise ConfigError("must be a mapping like {max_tokens: 6}", file=f, field="bypass")
    est = raw.get("estimator")
    llm = raw.get("llm")
    if llm is not None and not isinstance(llm, dict):
        raise ConfigError("must be a mapping with 'program' and 'lm'", file=f, field="llm")
    if llm and llm.get("program"):
        llm = dict(llm, program=str((p.parent / llm["program"]) if not Path(llm["program"]).is_absolute() else llm["program"]))
    default_tier = _num(raw, "default_tier", f, 1, max(len(tiers), 1), int)
    route_log = raw.get("route_log")
    if route_log is not None:
        if not isinstance(route_log, dict) or not isinstance(route_log.get("path"), str):
            raise ConfigError("must be a mapping with at least 'path'", file=f, field="route_log")
        route_log = dict(route_log, path=str(p.parent / route_log["path"]))
    return RouterConfig(tiers=tiers, estimator=None if est is None else str(p.parent / est), tau=tau, lam=lam,
                        bypass_tokens=_num(bypass, "max_tokens", f, 0, None, int) or 0, llm=llm,
                        cache_size=_num(raw, "cache_size", f, 0, None, int) if "cache_size" in raw else 10_000, default_tier=default_tier,
                        route_log=route_log, file=f)


def dump_config(cfg: RouterConfig, path: str | Path) -> None:
    """Write a router YAML (atomically), with paths relative to its folder where possible."""
    import os

    from .paths import atomic_write_text

    p = Path(path)
    doc: dict = {"tiers": [{k: v for k, v in t.__dict__.items() if v is not None} for t in cfg.tiers]}
    if cfg.estimator:
        doc["estimator"] = os.path.relpath(cfg.estimator, p.parent)
    doc["selection"] = {"lambda": cfg.lam} if cfg.lam is not None else {"tau": cfg.tau}
    if cfg.bypass_tokens:
        doc["bypass"] = {"max_tokens": cfg.bypass_tokens}
    if cfg.llm:
        doc["llm"] = cfg.llm
    doc["cache_size"] = cfg.cache_size
    if cfg.default_tier:
        doc["default_tier"] = cfg.default_tier
    if cfg.route_log:
        doc["route_log"] = dict(cfg.route_log, path=os.path.relpath(cfg.route_log["path"], p.parent))
    atomic_write_text(p, yaml.safe_dump(doc, sort_keys=False, allow_unicode=True))
