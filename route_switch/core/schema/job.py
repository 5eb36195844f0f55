"""The schema of the weekly job's file (``route-switch reoptimize JOB.yaml``; see examples/weekly-job.yaml).

Paths are relative to ``root`` (itself relative to the job file). Cross-field rules (a tier needs an
endpoint unless labels are replayed, the judge is needed unless labels are replayed) are checked by
:func:`route_switch.jobs.job_config.load_job`, which has the file's folder to resolve paths against.
"""
from __future__ import annotations

from typing import Annotated, Any

from pydantic import BeforeValidator, Field

from route_switch.core.schema import Model, Text


def _break_even(v):
    return None if v == "break-even" else v


class JobOptimize(Model):
    """Budgets of the re-optimisation (the router LLM is slow: small numbers keep a run short)."""

    num_candidates: int | None = Field(None, ge=1, description="MIPROv2 instruction candidates (default 4)")
    num_trials: int | None = Field(None, ge=1, description="MIPROv2 trials (default 8)")
    n_train: int | None = Field(None, ge=1, description="training queries (default 150)")
    n_val: int | None = Field(None, ge=1, description="validation queries MIPROv2 scores on (default 60)")
    n_gate: int | None = Field(None, ge=1, description="queries of the optimiser's own gate (default 120)")
    n_test: int | None = Field(None, ge=1, description="held-out queries the router LLM is scored on "
                                                         "(default: all of the held-out slice)")


class JobLabeling(Model):
    """How new queries get their per-tier scores: calling the tiers and a judge, or a replay file."""

    concurrency: int | None = Field(None, ge=1, description="calls in flight")
    timeout_s: float | None = Field(None, ge=0.1, description="per call")
    retries: int | None = Field(None, ge=0, description="retries of a failed call (the openai client's)")
    max_tokens: int | dict[Text, int] | None = Field(None, description="answer length, or {tier name: length}")
    assumed_out_tokens: int | None = Field(None, ge=1, description="for the cost estimate printed first")
    replay: str | None = Field(None, min_length=1, description="an evalset file with each tier's score and cost: "
                                                             "labels are looked up there (simulation, tests)")


class JobGate(Model):
    """When a candidate replaces the deployed router: a paired held-out gain."""

    min_objective_delta: float = Field(0.0, description="the gain's lower bound must exceed this")
    confidence: float = Field(0.9, ge=0.5, le=0.999, description="one-sided confidence of that bound")
    estimator_folds: int = Field(3, ge=0, le=10, description="the estimator is judged out of fold on every "
                                                          "label the deployed one has not trained on (0: on "
                                                          "the held-out slice only)")


class JobDrift(Model):
    """Drift of this period's queries against the training evalset, and what follows from it."""

    threshold: float = Field(0.1, ge=0, description="flag drift when the distance exceeds this")
    confidence_threshold: float = Field(0.1, ge=0, description="flag drift when confidence falls by this")
    focus_share: float = Field(0.3, ge=0, le=1, description="share of the next sample drawn from the "
                                                           "groups flagged as drifted")
    max_groups: int = Field(3, ge=1, le=20, description="drifted groups named in the report")


class JobFit(Model):
    """The estimator's refit."""

    target_quality: float = Field(0.95, ge=0, le=1, description="calibration target of the refit's tau")


class JobFile(Model):
    """A weekly job: label new traffic, re-optimise, refit, gate, promote, report."""

    name: str = Field(min_length=1, pattern=r"^[^/]+$", description="the artifact's folder under artifact_root")
    root: str = Field(".", description="folder the other paths are relative to (relative to this file)")
    artifact_root: str = Field("optimized", min_length=1, description="where optimised programs live")
    start_program: str | None = Field(None, description="program of the first run (a path or a shipped name)")
    estimator_dir: str | None = Field(None, description="the deployed estimator (default: router_config's)")
    router_config: str | None = Field(None, description="a router.yaml to take tiers and estimator from")
    route_log: str = Field(min_length=1, description="the route log to sample queries from")
    period_days: float = Field(7.0, ge=0.001, description="sample the log's last this many days")
    sample_size: int = Field(200, ge=1, description="queries labelled per run")
    seed: int = Field(0, ge=0, description="sampling and split seed")
    evalset: str = Field(min_length=1, description="the training evalset (new labels are merged into it)")
    tiers: list[Any] | None = Field(None, description="as in router.yaml (default: router_config's)")
    judge_lm: dict[str, Any] | None = Field(None, description="the judge: {kind: openai|local|fake, model, "
                                                              "api_base, ...} (not needed with labeling.replay)")
    judge_program: str | None = Field(None, description="the judge's program (default: the shipped one)")
    router_lm: dict[str, Any] = Field(description="the router LLM the program runs on ({kind: local} ...)")
    lam: Annotated[float | None, BeforeValidator(_break_even)] = Field(
        None, ge=0, alias="lambda", description="cost weight of the objective; break-even (the default): the "
                                                "training part's own (see optimize)")
    optimize: JobOptimize = Field(default_factory=JobOptimize, description="optimiser budgets")
    labeling: JobLabeling = Field(default_factory=JobLabeling, description="labelling settings")
    fit: JobFit = Field(default_factory=JobFit, description="estimator refit")
    gate: JobGate = Field(default_factory=JobGate, description="promotion gate")
    holdout_share: float = Field(0.3, ge=0.05, le=0.9, description="share of labels held out for the gate")
    drift: JobDrift = Field(default_factory=JobDrift, description="drift detection and focus")
    report_dir: str = Field("reports", min_length=1, description="where run reports go")
    lock_file: str = Field(".reoptimize.lock", min_length=1, description="one run at a time")
    cache_dir: str | None = Field(None, description="LM and call caches (default: the user cache)")
    work_dir: str = Field("runs/reoptimize", min_length=1, description="a run's scratch folder")
