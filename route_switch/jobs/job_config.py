"""The weekly job's file: ``load_job`` parses and validates a job YAML into a :class:`Job`.

See ``examples/weekly-job.yaml`` for every key; errors name the file and the field.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from route_switch.routing.config import check_number
from route_switch.core.errors import ConfigError

KEYS = {"name", "root", "artifact_root", "start_program", "estimator_dir", "router_config", "route_log",
        "period_days", "sample_size", "seed", "evalset", "tiers", "judge_lm", "judge_program", "router_lm",
        "lambda", "optimize", "labeling", "fit", "gate", "holdout_share", "drift", "report_dir", "lock_file",
        "cache_dir", "work_dir"}
OPT_KEYS = {"num_candidates", "num_trials", "n_train", "n_val", "n_gate", "n_test"}
LABEL_KEYS = {"concurrency", "timeout_s", "retries", "max_tokens", "assumed_out_tokens", "replay"}
DRIFT_KEYS = {"threshold", "confidence_threshold", "focus_share", "max_groups"}

@dataclass
class Job:
    file: str
    name: str
    artifact_root: Path
    start_program: Path | None
    estimator_dir: Path
    route_log: Path
    evalset: Path
    tiers: list
    judge_lm: dict
    router_lm: dict
    lam: float | None  # None: the break-even λ of the training part (see optimize)
    period_days: float = 7.0
    sample_size: int = 200
    seed: int = 0
    judge_program: Path | None = None
    optimize: dict = field(default_factory=dict)
    labeling: dict = field(default_factory=dict)
    target_quality: float = 0.95
    min_objective_delta: float = 0.0  # the paired gain's lower bound must exceed this
    gate_confidence: float = 0.9
    holdout_share: float = 0.3
    drift_threshold: float = 0.1
    confidence_threshold: float = 0.1
    drift_focus_share: float = 0.3  # share of the next sample drawn from the groups flagged as drifted
    drift_max_groups: int = 3
    replay: Path | None = None  # labelling.replay: stored outcomes instead of endpoints + judge
    report_dir: Path = Path("reports")
    lock_file: Path = Path(".reoptimize.lock")
    cache_dir: Path | None = None
    work_dir: Path = Path("runs/reoptimize")

    @property
    def artifact(self) -> Path:
        return self.artifact_root / self.name


def _err(f, fld, msg):
    raise ConfigError(msg, file=f, field=fld)


def _mapping(raw: dict, key: str, f: str, allowed: set | None = None, required: bool = False) -> dict:
    v = raw.get(key)
    if v is None:
        if required:
            _err(f, key, "is required")
        return {}
    if not isinstance(v, dict):
        _err(f, key, f"must be a mapping, got {type(v).__name__}")
    if allowed is not None and set(v) - allowed:
        bad = sorted(set(v) - allowed)
        _err(f, f"{key}.{bad[0]}", f"unknown key(s) {bad}; allowed: {sorted(allowed)}")
    return dict(v)


def load_job(path) -> Job:
    """Parse and validate a job YAML; errors name the file and the field."""
    import yaml

    from route_switch.core.tiers import tiers_from_list

    p = Path(path)
    f = str(p)
    if not p.is_file():
        raise ConfigError("job file not found", file=f)
    try:
        raw = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        raise ConfigError(f"invalid YAML: {getattr(e, 'problem', None) or e}", file=f,
                          line=None if mark is None else mark.line + 1) from None
    if not isinstance(raw, dict):
        raise ConfigError("must be a YAML mapping of job settings", file=f)
    unknown = sorted(set(raw) - KEYS)
    if unknown:
        _err(f, unknown[0], f"unknown key(s) {unknown}; see examples/weekly-job.yaml")
    root = p.parent / str(raw.get("root", "."))

    def path_of(key, default=None, required=True):
        v = raw.get(key, default)
        if v is None:
            if required:
                _err(f, key, "is required (a path)")
            return None
        if not isinstance(v, str) or not v.strip():
            _err(f, key, f"must be a path string, got {v!r}")
        q = Path(os.path.expanduser(v))
        return q if q.is_absolute() else root / q

    def program_of(key):
        """A program path under root; failing that, a shipped program of that name (programs/default.yaml)."""
        q = path_of(key, required=False)
        if q is None or q.exists():
            return q
        from route_switch.core.paths import find_shipped

        shipped = find_shipped(raw[key], "programs")
        return shipped if shipped.exists() else q

    name = raw.get("name")
    if not isinstance(name, str) or not name.strip() or "/" in name:
        _err(f, "name", "must be the artifact name (a folder name under artifact_root), e.g. default")
    router_cfg = None
    if raw.get("router_config") is not None:
        from route_switch.routing.config import load_config

        router_cfg = load_config(path_of("router_config"))
    if raw.get("tiers") is not None:
        tiers = tiers_from_list(raw["tiers"], file=f)
    elif router_cfg is not None and router_cfg.tiers:
        tiers = router_cfg.tiers
    else:
        _err(f, "tiers", "is required (or a router_config with tiers)")
    lab = _mapping(raw, "labeling", f, LABEL_KEYS)
    replay = None
    if lab.get("replay") is not None:
        v = lab.pop("replay")
        if not isinstance(v, str) or not v.strip():
            _err(f, "labeling.replay", f"must be the path of an evalset with each tier's score and cost, got {v!r}")
        replay = Path(os.path.expanduser(v))
        replay = replay if replay.is_absolute() else root / replay
        if not replay.is_file():
            _err(f, "labeling.replay", f"file not found: {replay}")
    for i, t in enumerate(tiers):
        if not t.api_base and replay is None:
            _err(f, f"tiers[{i}].api_base", f"tier '{t.name}' needs its OpenAI-compatible endpoint for labelling")
        if t.price_in is None or t.price_out is None:
            _err(f, f"tiers[{i}].price_in", f"tier '{t.name}' needs price_in and price_out")
    est_dir = path_of("estimator_dir", required=False)
    if est_dir is None:
        if router_cfg is None or not router_cfg.estimator:
            _err(f, "estimator_dir", "is required (or a router_config with an estimator)")
        est_dir = Path(router_cfg.estimator)
    judge_lm = _mapping(raw, "judge_lm", f, required=replay is None)  # replay labels need no judge
    if judge_lm.get("kind", "openai") not in ("openai", "local", "fake"):
        _err(f, "judge_lm.kind", f"must be openai, local or fake, got {judge_lm.get('kind')!r}")
    if judge_lm and judge_lm.get("kind", "openai") == "openai" and not (judge_lm.get("model") and judge_lm.get("api_base")):
        _err(f, "judge_lm.model", "kind openai needs model and api_base")
    router_lm = _mapping(raw, "router_lm", f, required=True)
    if router_lm.get("kind", "local") not in ("openai", "local", "fake"):
        _err(f, "router_lm.kind", f"must be openai, local or fake, got {router_lm.get('kind')!r}")
    opt = _mapping(raw, "optimize", f, OPT_KEYS)
    for k in OPT_KEYS & set(opt):
        opt[k] = check_number(opt, k, f, 1, None, int, required=True, where="optimize.")
    for k in ("concurrency", "retries", "assumed_out_tokens"):
        if k in lab:
            lab[k] = check_number(lab, k, f, 0 if k == "retries" else 1, None, int, required=True, where="labeling.")
    if "timeout_s" in lab:
        lab["timeout_s"] = check_number(lab, "timeout_s", f, 0.1, None, float, required=True, where="labeling.")
    if "max_tokens" in lab and not isinstance(lab["max_tokens"], (int, dict)):
        _err(f, "labeling.max_tokens", "must be an integer or {tier_name: integer}")
    gate = _mapping(raw, "gate", f, {"min_objective_delta", "confidence"})
    drift = _mapping(raw, "drift", f, DRIFT_KEYS)
    fit_cfg = _mapping(raw, "fit", f, {"target_quality"})
    return Job(
        file=f, name=name.strip(), artifact_root=path_of("artifact_root", "optimized"),
        start_program=program_of("start_program"), estimator_dir=est_dir,
        route_log=path_of("route_log"), evalset=path_of("evalset"), tiers=list(tiers), judge_lm=judge_lm,
        router_lm=router_lm,
        lam=None if raw.get("lambda", "break-even") == "break-even" else check_number(raw, "lambda", f, 0, required=True),
        period_days=check_number(raw, "period_days", f, 0.001, default=7, required=True),
        sample_size=check_number(raw, "sample_size", f, 1, None, int, default=200, required=True),
        seed=check_number(raw, "seed", f, 0, None, int, default=0, required=True), judge_program=program_of("judge_program"),
        optimize=opt, labeling=lab, target_quality=check_number(fit_cfg, "target_quality", f, 0, 1, where="fit.", default=0.95, required=True),
        min_objective_delta=check_number(gate, "min_objective_delta", f, where="gate.", default=0.0, required=True),
        gate_confidence=check_number(gate, "confidence", f, 0.5, 0.999, where="gate.", default=0.9, required=True),
        holdout_share=check_number(raw, "holdout_share", f, 0.05, 0.9, default=0.3, required=True),
        drift_threshold=check_number(drift, "threshold", f, 0, where="drift.", default=0.1, required=True),
        confidence_threshold=check_number(drift, "confidence_threshold", f, 0, where="drift.", default=0.1, required=True),
        drift_focus_share=check_number(drift, "focus_share", f, 0, 1, where="drift.", default=0.3, required=True),
        drift_max_groups=check_number(drift, "max_groups", f, 1, 20, int, where="drift.", default=3, required=True),
        replay=replay,
        report_dir=path_of("report_dir", "reports"), lock_file=path_of("lock_file", ".reoptimize.lock"),
        cache_dir=path_of("cache_dir", required=False), work_dir=path_of("work_dir", "runs/reoptimize"))

