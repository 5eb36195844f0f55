"""Router configuration (YAML): tiers, the estimator, the selection knob, bypass and router LLM.

::

    tiers:                      # cheapest first; tier 1 = tiers[0]
      - {name: small, model: Meta-Llama-3.1-8B-Instruct, price_in: 0.18, price_out: 0.18}
      - {name: large, model: o1-mini-2024-09-12, price_in: 3.0, price_out: 12.0}
    estimator: estimators/zeroeval-3tier   # directory written by `route-switch fit` (relative to this file)
    selection: {tau: 0.1}                  # or {lambda: 0.5}, or {rule: anchored, tau: 0.02}
                                           # (fit --max-quality-loss also records max_quality_loss, confidence)
    bypass: {max_tokens: 6}                # shorter queries go to tier 1 without the router LLM
    llm:                                   # optional: the router LLM (see programs/)
      program: programs/default.yaml       # or an optimised artifact directory under optimized/
      lm: {kind: local}
      timeout_s: 2.0
      max_query_tokens: 64                 # the LLM reads the head and tail of longer queries
      fusion: fusion.json                  # written by `fit --program`: estimator + LLM -> quality per tier
      tau: 0.12                            # knob for decisions the LLM takes part in (default: selection's)
    cache_size: 10000
    default_tier: 3                        # used only when nothing else can decide
    conversation:                          # chat messages: route on the last user turn + earlier context
      context_tokens: 256                  # budget for earlier turns, most recent first (0 = last turn only)
      sticky: true                         # with a session key, follow-ups keep the session's last tier ...
      sticky_drop: 0                       # ... or at most this many tiers below it
    route_log:                             # opt-in decision log for the weekly re-optimisation job
      path: logs/routes.jsonl              # relative to this file
      privacy: hash                        # hash (default: sha256 of the query) or full (the query text)
      max_bytes: 10000000                  # rotate beyond this size ...
      backups: 5                           # ... keeping this many old files
    state:                                 # optional: share rate limits across proxy processes
      redis_url_env: ROUTE_SWITCH_REDIS_URL   # env var holding redis://host:port/db (or redis_url: without a password)
      share_cache: false                   # also share routing decisions
      prefix: route-switch                 # key prefix (one per deployment)

The schema is :class:`route_switch.core.schema.router.RouterFile`; ``route-switch config-schema``
prints every key with its type, default and meaning.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from route_switch.core.errors import ConfigError
from route_switch.core.paths import find_shipped, packaged_dir
from route_switch.core.files import read_yaml
from route_switch.core.tiers import Tier, tiers_from_specs


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
    conversation: object = None  # ConversationConfig; None = defaults
    state: dict | None = None
    file: str = ""
    rule: str = "tau"              # "tau" or "anchored" (stay on the best model unless a cheaper one is close)
    risk: dict | None = None       # the guarantee fit certified: max_quality_loss, confidence, ...


def check_number(raw: dict, key: str, file: str, lo: float | None = None, hi: float | None = None, cast=float, *,
                 default=None, required: bool = False, where: str = ""):
    """``raw[key]`` (else ``default``) as a finite number within [lo, hi] (an integer when ``cast`` is
    int); None when absent, unless ``required``. Errors name the file and the field ``where + key``."""
    fld = f"{where}{key}"
    v = raw.get(key, default)
    if v is None:
        if required:
            raise ConfigError("is required", file=file, field=fld)
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise ConfigError(f"must be a finite number, got {v!r}", file=file, field=fld)
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        raise ConfigError(f"must be within [{lo}, {hi}], got {v!r}", file=file, field=fld)
    if cast is int and int(v) != v:
        raise ConfigError(f"must be an integer, got {v!r}", file=file, field=fld)
    return cast(v)


def redis_url(state: dict | None) -> str | None:
    """The Redis URL of a ``state:`` mapping (read from its environment variable if so configured)."""
    import os

    if not state:
        return None
    if state.get("redis_url"):
        return state["redis_url"]
    url = os.environ.get(state["redis_url_env"], "")
    if not url:
        raise ConfigError(f"environment variable {state['redis_url_env']} is not set", field="state.redis_url_env")
    return url


def unknown_key_error(key, known, file: str, where: str = "") -> ConfigError:
    """A ConfigError for an unknown key, suggesting the closest known one ("did you mean 'selection'?")."""
    from route_switch.core.schema import unknown_key_error as unknown

    return unknown(key, known, file, where)


def read_router_yaml(p: Path):
    """The validated :class:`~route_switch.core.schema.router.RouterFile` of the router YAML ``p``."""
    from route_switch.core.schema import validate
    from route_switch.core.schema.router import RouterFile

    if not p.exists():
        raise ConfigError("router config not found", file=str(p))
    raw = read_yaml(p, ConfigError)
    if raw is None:
        raise ConfigError("is empty: a router config needs at least 'tiers' and 'estimator'", file=str(p))
    if not isinstance(raw, dict):
        raise ConfigError("must be a YAML mapping", file=str(p))
    return validate(RouterFile, raw, str(p))


def _llm_section(llm, p: Path) -> dict | None:
    """The ``llm:`` section as the dict the router reads, its paths resolved against the file's folder."""
    if llm is None:
        return None
    out = llm.model_dump(by_alias=True, exclude_none=True)
    for key in ("program", "fusion"):  # relative to this file
        if key in out:
            out[key] = str(p.parent / out[key])
    if not Path(out["program"]).exists():
        shipped = find_shipped(llm.program, "programs")  # programs/default.yaml: the packaged one
        if shipped.is_file() and shipped.resolve().parent == packaged_dir("programs").resolve():
            out["program"] = str(shipped.resolve())
    return out


RISK_KEYS = ("max_quality_loss", "confidence", "anchor", "n_calibration", "certified", "method")


def load_config(path: str | Path) -> RouterConfig:
    """Read a router YAML (``yaml.safe_load``); relative paths inside resolve against its folder."""
    from route_switch.core.conversation import ConversationConfig

    p = Path(path)
    if p.is_dir():
        p = p / "router.yaml"
    m = read_router_yaml(p)
    f = str(p)
    tiers = tiers_from_specs(m.tiers or [])
    sel = m.selection
    tau, lam = (sel.tau, sel.lam) if sel else (None, None)
    risk = {k: getattr(sel, k) for k in RISK_KEYS if sel and getattr(sel, k) is not None} or None
    route_log = None
    if m.route_log is not None:
        route_log = m.route_log.model_dump() | {"path": str(p.parent / m.route_log.path)}
    conversation = None
    if m.conversation is not None:
        conversation = ConversationConfig.from_section(m.conversation)
    return RouterConfig(tiers=tiers, estimator=None if m.estimator is None else str(p.parent / m.estimator),
                        tau=0.1 if tau is None and lam is None else tau, lam=lam,
                        bypass_tokens=m.bypass.max_tokens if m.bypass else 0, llm=_llm_section(m.llm, p),
                        cache_size=m.cache_size, default_tier=m.default_tier, route_log=route_log,
                        conversation=conversation, state=m.state.model_dump(exclude_none=True) if m.state else None,
                        file=f, rule=sel.rule if sel else "tau", risk=risk)


def dump_config(cfg: RouterConfig, path: str | Path) -> None:
    """Write a router YAML (atomically), with paths relative to its folder where possible."""
    import os

    from route_switch.core.files import atomic_write_text

    p = Path(path)
    doc: dict = {"tiers": [{k: v for k, v in t.__dict__.items() if v is not None} for t in cfg.tiers]}
    if cfg.estimator:
        doc["estimator"] = os.path.relpath(cfg.estimator, p.parent)
    doc["selection"] = {"lambda": cfg.lam} if cfg.lam is not None else {"tau": cfg.tau}
    if cfg.rule != "tau" and cfg.lam is None:
        doc["selection"] = {"rule": cfg.rule, **doc["selection"], **(cfg.risk or {})}
    if cfg.bypass_tokens:
        doc["bypass"] = {"max_tokens": cfg.bypass_tokens}
    if cfg.llm:
        def rel(k, v):
            if k not in ("program", "fusion") or not isinstance(v, str):
                return v
            if k == "program" and Path(v).parent.resolve() == packaged_dir("programs").resolve():
                return f"programs/{Path(v).name}"  # a shipped program, by name (as load reads it)
            return os.path.relpath(v, p.parent)

        doc["llm"] = {k: rel(k, v) for k, v in cfg.llm.items()}
    doc["cache_size"] = cfg.cache_size
    if cfg.default_tier:
        doc["default_tier"] = cfg.default_tier
    if cfg.route_log:
        doc["route_log"] = dict(cfg.route_log, path=os.path.relpath(cfg.route_log["path"], p.parent))
    if cfg.conversation is not None:
        doc["conversation"] = {k: list(v) if isinstance(v, tuple) else v for k, v in cfg.conversation.__dict__.items()}
    if cfg.state:
        doc["state"] = cfg.state
    atomic_write_text(p, yaml.safe_dump(doc, sort_keys=False, allow_unicode=True))
