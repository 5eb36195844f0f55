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
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from route_switch.core.errors import ConfigError
from route_switch.core.paths import find_shipped, packaged_dir
from route_switch.core.files import read_yaml
from route_switch.core.tiers import Tier, tiers_from_list


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


def _knob(sel: dict, key: str, file: str) -> float | None:
    from route_switch.core.knobs import check_knob

    try:
        return check_knob(key, sel.get(key))
    except ValueError as e:
        raise ConfigError(str(e), file=file, field=key) from None


STATE_KEYS = {"redis_url", "redis_url_env", "share_cache", "prefix"}


def _state(state, f: str) -> dict | None:
    """The ``state:`` mapping, checked (the URL itself may live in an environment variable)."""
    if state is None:
        return None
    if not isinstance(state, dict) or not STATE_KEYS >= set(state):
        raise ConfigError(f"must be a mapping with keys among {sorted(STATE_KEYS)}", file=f, field="state")
    url, env = state.get("redis_url"), state.get("redis_url_env")
    if (url is None) == (env is None):
        raise ConfigError("give exactly one of redis_url, redis_url_env", file=f, field="state")
    if url is not None:
        from urllib.parse import urlparse

        if not isinstance(url, str) or urlparse(url).scheme not in ("redis", "rediss", "unix"):
            raise ConfigError(f"must be a redis://, rediss:// or unix:// URL, got {url!r}", file=f, field="state.redis_url")
        if urlparse(url).password:
            raise ConfigError("holds a password: put the URL in an environment variable and name it with "
                              "redis_url_env", file=f, field="state.redis_url")
    if env is not None and not (isinstance(env, str) and env):
        raise ConfigError("must be the name of an environment variable", file=f, field="state.redis_url_env")
    if not isinstance(state.get("share_cache", False), bool):
        raise ConfigError("must be true or false", file=f, field="state.share_cache")
    if not (isinstance(state.get("prefix", "route-switch"), str) and state.get("prefix", "route-switch")):
        raise ConfigError("must be a non-empty string", file=f, field="state.prefix")
    return dict(state)


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


ROUTER_KEYS = ("tiers", "estimator", "selection", "bypass", "llm", "cache_size", "default_tier", "route_log",
               "conversation", "state")


def unknown_key_error(key, known, file: str, where: str = "") -> ConfigError:
    """A ConfigError for an unknown key, suggesting the closest known one ("did you mean 'selection'?")."""
    import difflib

    close = difflib.get_close_matches(str(key), list(known), n=1)
    hint = f"did you mean '{close[0]}'?" if close else f"known keys: {', '.join(known)}"
    return ConfigError(f"unknown key: {hint}", file=file, field=f"{where}{key}")


def _check_keys(raw: dict, f: str) -> None:
    for key in raw:
        if key not in ROUTER_KEYS:
            raise unknown_key_error(key, ROUTER_KEYS, f)
    est = raw.get("estimator")
    if est is not None and not (isinstance(est, str) and est.strip()):
        raise ConfigError(f"must be the path of an estimator folder, got {est!r}", file=f, field="estimator")


def load_config(path: str | Path) -> RouterConfig:
    """Read a router YAML (``yaml.safe_load``); relative paths inside resolve against its folder."""
    p = Path(path)
    if p.is_dir():
        p = p / "router.yaml"
    if not p.exists():
        raise ConfigError("router config not found", file=str(p))
    raw = read_yaml(p, ConfigError)
    if raw is None:
        raise ConfigError("is empty: a router config needs at least 'tiers' and 'estimator'", file=str(p))
    if not isinstance(raw, dict):
        raise ConfigError("must be a YAML mapping", file=str(p))
    f = str(p)
    _check_keys(raw, f)
    tiers = tiers_from_list(raw["tiers"], file=f) if "tiers" in raw else []
    sel = raw.get("selection") or {}
    if not isinstance(sel, dict):
        raise ConfigError("must be a mapping like {tau: 0.1}", file=f, field="selection")
    rule = sel.get("rule", "tau")
    if rule not in ("tau", "anchored"):
        raise ConfigError(f"must be 'tau' or 'anchored', got {rule!r}", file=f, field="selection.rule")
    # the anchored rule also takes tau = -1 (always stay on the anchor)
    tau = check_number(sel, "tau", f, -1, 1) if rule == "anchored" else _knob(sel, "tau", f)
    lam = _knob(sel, "lambda", f)
    risk = {k: sel[k] for k in ("max_quality_loss", "confidence", "anchor", "n_calibration", "certified", "method")
            if k in sel} or None
    if tau is None and lam is None:
        tau = 0.1
    bypass = raw.get("bypass") or {}
    if not isinstance(bypass, dict):
        raise ConfigError("must be a mapping like {max_tokens: 6}", file=f, field="bypass")
    est = raw.get("estimator")
    llm = raw.get("llm")
    if llm is not None and not isinstance(llm, dict):
        raise ConfigError("must be a mapping with 'program' and 'lm'", file=f, field="llm")
    if llm:
        llm = dict(llm)
        for key in ("program", "fusion"):  # relative to this file
            if isinstance(llm.get(key), str):
                llm[key] = str(p.parent / llm[key])
        if isinstance(llm.get("program"), str) and not Path(llm["program"]).exists():
            shipped = find_shipped(raw["llm"]["program"], "programs")  # programs/default.yaml: the packaged one
            if shipped.is_file() and shipped.resolve().parent == packaged_dir("programs").resolve():
                llm["program"] = str(shipped.resolve())
        for key, hi in (("tau", 1), ("lambda", None), ("timeout_s", None), ("max_query_tokens", None)):
            check_number(llm, key, f, 0, hi, where="llm.")
    default_tier = check_number(raw, "default_tier", f, 1, max(len(tiers), 1), int)
    route_log = raw.get("route_log")
    if route_log is not None:
        if not isinstance(route_log, dict) or not isinstance(route_log.get("path"), str):
            raise ConfigError("must be a mapping with at least 'path'", file=f, field="route_log")
        route_log = dict(route_log, path=str(p.parent / route_log["path"]))
    from route_switch.core.conversation import ConversationConfig

    conversation = ConversationConfig.from_dict(raw["conversation"], f) if raw.get("conversation") is not None else None
    state = _state(raw.get("state"), f)
    return RouterConfig(tiers=tiers, estimator=None if est is None else str(p.parent / est), tau=tau, lam=lam,
                        bypass_tokens=check_number(bypass, "max_tokens", f, 0, None, int) or 0, llm=llm,
                        cache_size=check_number(raw, "cache_size", f, 0, None, int) if "cache_size" in raw else 10_000, default_tier=default_tier,
                        route_log=route_log, conversation=conversation, state=state, file=f, rule=rule, risk=risk)


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
