"""The weekly job's file: ``load_job`` parses and validates a job YAML into a :class:`Job`.

The keys are :class:`route_switch.core.schema.job.JobFile` (``route-switch config-schema`` lists them;
``examples/weekly-job.yaml`` shows them); errors name the file and the field.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from route_switch.core.errors import ConfigError


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
    estimator_folds: int = 3  # cross-fitted estimator gate (see jobs/estimator_gate.py); 0: held-out slice
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


def load_job(path) -> Job:
    """Parse and validate a job YAML (:class:`~route_switch.core.schema.job.JobFile`); errors name the
    file and the field."""
    from route_switch.core.files import read_yaml
    from route_switch.core.schema import validate
    from route_switch.core.schema.job import JobFile

    p = Path(path)
    f = str(p)
    if not p.is_file():
        raise ConfigError("job file not found", file=f)
    raw = read_yaml(p)
    if not isinstance(raw, dict):
        raise ConfigError("must be a YAML mapping of job settings", file=f)
    spec = validate(JobFile, raw, f)
    root = p.parent / spec.root
    at = lambda v: None if v is None else _under(root, v)  # noqa: E731
    replay = at(spec.labeling.replay)
    if replay is not None and not replay.is_file():
        raise ConfigError(f"file not found: {replay}", file=f, field="labeling.replay")
    tiers, est_dir = _tiers_and_estimator(spec, f, at)
    for i, t in enumerate(tiers):
        if not t.api_base and replay is None:
            raise ConfigError(f"tier '{t.name}' needs its OpenAI-compatible endpoint for labelling", file=f,
                              field=f"tiers[{i}].api_base")
        if t.price_in is None or t.price_out is None:
            raise ConfigError(f"tier '{t.name}' needs price_in and price_out", file=f, field=f"tiers[{i}].price_in")
    _check_lms(spec, f, replay)
    return Job(
        file=f, name=spec.name.strip(), artifact_root=at(spec.artifact_root),
        start_program=_program(root, spec.start_program), estimator_dir=est_dir, route_log=at(spec.route_log),
        evalset=at(spec.evalset), tiers=list(tiers), judge_lm=dict(spec.judge_lm or {}),
        router_lm=dict(spec.router_lm), lam=spec.lam,
        period_days=spec.period_days, sample_size=spec.sample_size, seed=spec.seed,
        judge_program=_program(root, spec.judge_program),
        optimize=spec.optimize.model_dump(exclude_none=True),
        labeling=spec.labeling.model_dump(exclude_none=True, exclude={"replay"}),
        target_quality=spec.fit.target_quality, min_objective_delta=spec.gate.min_objective_delta,
        gate_confidence=spec.gate.confidence, estimator_folds=spec.gate.estimator_folds, holdout_share=spec.holdout_share,
        drift_threshold=spec.drift.threshold, confidence_threshold=spec.drift.confidence_threshold,
        drift_focus_share=spec.drift.focus_share, drift_max_groups=spec.drift.max_groups, replay=replay,
        report_dir=at(spec.report_dir), lock_file=at(spec.lock_file), cache_dir=at(spec.cache_dir),
        work_dir=at(spec.work_dir))


def _under(root: Path, v: str) -> Path:
    q = Path(os.path.expanduser(v))
    return q if q.is_absolute() else root / q


def _program(root: Path, v: str | None) -> Path | None:
    """A program path under root; failing that, a shipped program of that name (programs/default.yaml)."""
    if v is None:
        return None
    q = _under(root, v)
    if q.exists():
        return q
    from route_switch.core.paths import find_shipped

    shipped = find_shipped(v, "programs")
    return shipped if shipped.exists() else q


def _tiers_and_estimator(spec, f: str, at) -> tuple[list, Path]:
    """The job's tiers and estimator folder: its own, or its router_config's."""
    from route_switch.core.tiers import tiers_from_list

    router_cfg = None
    if spec.router_config is not None:
        from route_switch.routing.config import load_config

        router_cfg = load_config(at(spec.router_config))
    if spec.tiers is not None:
        tiers = tiers_from_list(spec.tiers, file=f)
    elif router_cfg is not None and router_cfg.tiers:
        tiers = router_cfg.tiers
    else:
        raise ConfigError("is required (or a router_config with tiers)", file=f, field="tiers")
    if spec.estimator_dir is not None:
        return tiers, at(spec.estimator_dir)
    if router_cfg is None or not router_cfg.estimator:
        raise ConfigError("is required (or a router_config with an estimator)", file=f, field="estimator_dir")
    return tiers, Path(router_cfg.estimator)


def _check_lms(spec, f: str, replay) -> None:
    judge = spec.judge_lm
    if judge is None and replay is None:  # replayed labels need no judge
        raise ConfigError("is required", file=f, field="judge_lm")
    if judge is not None:
        if judge.get("kind", "openai") not in ("openai", "local", "fake"):
            raise ConfigError(f"must be openai, local or fake, got {judge.get('kind')!r}", file=f, field="judge_lm.kind")
        if judge.get("kind", "openai") == "openai" and not (judge.get("model") and judge.get("api_base")):
            raise ConfigError("kind openai needs model and api_base", file=f, field="judge_lm.model")
    if spec.router_lm.get("kind", "local") not in ("openai", "local", "fake"):
        raise ConfigError(f"must be openai, local or fake, got {spec.router_lm.get('kind')!r}", file=f,
                          field="router_lm.kind")
