"""The weekly re-optimisation job: logged queries → labels → MIPROv2 + refit → gate → promote → report.

``reoptimize(job_yaml)`` (see ``examples/weekly-job.yaml`` for every key):

1. take the job lock (``flock``; a second concurrent run fails at once, a dead run's lock is stale);
2. sample up to ``sample_size`` queries logged in the last ``period_days`` (route log, privacy=full);
3. drift check of those queries against the training evalset (:mod:`route_switch.jobs.drift`);
4. label the ones not yet in the evalset (:func:`route_switch.labeling.label`), merge, dedupe;
5. split off a held-out slice (of this period's new labels when there are enough; see
   :func:`holdout_split`); run MIPROv2 from the current artifact into a temporary folder and
   refit the estimator into another (a promoted estimator is refit on every label);
6. score current vs candidate with the optimiser's metric (quality − λ·cost/top-tier cost): the
   router program on the held-out slice, the estimator's refit out of fold on every label the
   deployed estimator has not trained on (:mod:`.estimator_gate`); each is gated separately;
7. promote only a real gain: the one-sided paired-bootstrap lower bound of candidate − current
   (``gate.confidence``, default 90%) must exceed ``gate.min_objective_delta``
   (default 0, so a run on unchanged data promotes nothing); by an atomic folder swap (the previous version
   stays beside it as ``.<name>.prev``), write the merged evalset and a markdown report whose
   one-line verdict says what improved, and which query groups drifted (:mod:`.drift_groups`;
   the next run labels more of them).

The steps live in small modules beside this one: ``job_config`` (the job file), ``inputs``
(sampling the route log, merging evalsets), ``gate`` (held-out scoring and the gate),
``estimator_gate`` (the cross-fitted estimator gate), ``drift`` and ``drift_groups``, and ``report``;
the lock and the folder swap are in :mod:`route_switch.core.files`. This module runs the steps in order.

Any failure before step 7 leaves the artifact, the estimator and the evalset untouched, and still
writes a report saying what failed; the exception is re-raised (non-zero exit for cron).
"""
from __future__ import annotations

import datetime as _dt
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from route_switch.core.errors import ConfigError, RouteSwitchError
from route_switch.jobs.gate import (curve_per_query, estimator_choices, estimator_predictions, gain_gate, gate,
                                   misroute_changes, objectives, program_choices)
from route_switch.jobs.inputs import merge_evalsets, sample_logged_queries
from route_switch.jobs.job_config import Job, load_job
from route_switch.core.files import JobLock, copy_into
from route_switch.jobs.report import write_report

MIN_NEW_FOR_FRESH_HOLDOUT = 30  # fewer new labels: hold out a slice of the whole merged evalset


def reoptimize(job_yaml_path, *, dry_run: bool = False, now: _dt.datetime | None = None, echo=print) -> dict:
    """Run the weekly job described by ``job_yaml_path``; returns the summary dict (also in the report)."""
    job = load_job(job_yaml_path)
    with JobLock(job.lock_file) as lock:
        stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
        res: dict = {"job": job.file, "name": job.name, "started": stamp, "status": "running",
                     "promoted": {"program": False, "estimator": False}, "timings_s": {}}
        if lock.stale_from:
            res["stale_lock_taken_over"] = lock.stale_from
        tmp = Path(tempfile.mkdtemp(prefix=f".reoptimize-{job.name}-", dir=_ensure(job.work_dir)))
        try:
            _run(job, res, tmp, dry_run, now, echo)
        except BaseException as e:
            res["status"] = "failed"
            res["error"] = f"{type(e).__name__}: {e}"
            if not dry_run:
                res["report"] = str(write_report(job, res, stamp))
            raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        if not dry_run:
            res["report"] = str(write_report(job, res, stamp))
            echo(f"report: {res['report']}")
        return res


def _ensure(d: Path) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    return d


class _Run:
    """One run's state, shared by its steps: the job, the summary ``res`` and the scratch folder."""

    def __init__(self, job: Job, res: dict, tmp: Path, echo):
        from route_switch.core.paths import cache_dir as default_cache

        self.job, self.res, self.tmp, self.echo = job, res, tmp, echo
        self.cache = Path(job.cache_dir or default_cache())
        self.t0 = time.time()

    def clock(self, step: str) -> None:
        self.res["timings_s"][step] = round(time.time() - self.t0, 2)


def _run(job: Job, res: dict, tmp: Path, dry_run: bool, now, echo) -> None:
    """The steps in order; everything is written to ``tmp`` until the promotion at the end."""
    from route_switch.core.evalset import load_evalset

    run = _Run(job, res, tmp, echo)
    old = load_evalset(job.evalset, models=[x.model for x in job.tiers]) if job.evalset.exists() else None
    est = _current_estimator(job, old)
    queries, new_q, current = _sample(run, old, est, now)
    groups = _drift(run, queries, old, est)
    run.clock("sample_and_drift")
    new = _label(run, new_q, dry_run)
    if dry_run:
        res["status"] = "dry_run"
        return
    run.clock("labeling")
    merged, train, hold = _merge(run, new, old, groups)
    r, ok, why, lam = _candidate_program(run, current, train, hold)
    run.clock("evaluate_program")
    eok, ewhy = _candidate_estimator(run, new, train, hold, merged, lam)
    _promote(run, r, ok, eok, merged, groups)
    res["promoted"] = {"program": ok, "estimator": eok}
    res["status"] = "promoted" if (ok or eok) else "not_promoted"
    res["verdict"] = verdict(ok, eok, why, ewhy)
    run.clock("total")


def _sample(run: _Run, old, est, now):
    """This period's sampled queries (a share from last run's drifted groups), the new ones among
    them, and the program the run starts from."""
    from route_switch.core.evalset import normalise_prompt
    from route_switch.jobs.drift_groups import focus_mask, load_groups, state_path

    job, res = run.job, run.res
    last_groups = load_groups(state_path(job.work_dir, job.name))
    focus = ((lambda texts: focus_mask(texts, last_groups, old.prompts if old is not None else [], est, job.seed))
             if last_groups and est is not None else None)
    queries, res["route_log"] = sample_logged_queries(job, now, focus=focus)
    known = set(map(normalise_prompt, old.prompts)) if old is not None else set()
    new_q = [q for q in queries if normalise_prompt(q) not in known]
    res["route_log"]["already_labelled"] = len(queries) - len(new_q)
    run.echo(f"{job.name}: {res['route_log']['logged']} logged decisions in the last {job.period_days:g} days, "
             f"{len(queries)} sampled, {len(new_q)} new to label")
    current = job.artifact if (job.artifact / "instruction.txt").exists() else job.start_program
    if current is None:
        raise ConfigError(f"no artifact at {job.artifact} and no start_program", file=job.file, field="start_program")
    return queries, new_q, current


def _drift(run: _Run, queries, old, est) -> list:
    """Drift of the period's queries vs the training evalset, through the current estimator; the
    query groups that moved (a group can move while the period's mean barely does)."""
    from route_switch.jobs.drift import drift_report
    from route_switch.jobs.drift_groups import moved_groups

    job, res = run.job, run.res
    if est is None or old is None or not queries:
        res["drift"] = {"flagged": False, "skipped": "no training evalset or estimator yet"}
        return []
    res["drift"] = drift_report(queries, old.prompts, est, threshold=job.drift_threshold,
                                confidence_threshold=job.confidence_threshold, seed=job.seed)
    groups = moved_groups(queries, old.prompts, est, threshold=job.drift_threshold,
                          max_groups=job.drift_max_groups, seed=job.seed)
    if groups:
        res["drift"]["flagged"] = True
        res["drift"]["reasons"].append(f"{len(groups)} query group(s) moved: nearest-neighbour similarity "
                                       f"fell by more than {job.drift_threshold} (see below)")
    return groups


def _label(run: _Run, new_q: list[str], dry_run: bool):
    """Labels of the new queries (None when there are none): from the tiers and the judge, or
    replayed from stored outcomes (simulation, tests)."""
    from route_switch.labeling import label

    job = run.job
    lab = dict(job.labeling)
    if job.replay is not None:
        from route_switch.labeling.replay import replay_label as label

        lab = {"replay": job.replay}
    if not new_q and not dry_run:
        return None
    new = label(new_q, job.tiers, judge_lm_cfg=job.judge_lm, judge_program=job.judge_program,
                out_path=job.work_dir / f"{job.name}-labels.jsonl", cache_dir=run.cache / "labels",
                dry_run=dry_run, echo=run.echo, **lab) if new_q else None
    if new is not None and not dry_run:
        run.res["labeling"] = new.meta.get("labeling", {})
    return new


def _merge(run: _Run, new, old, groups: list):
    """The merged evalset and its (train, held-out) split; the drifted groups' needed tiers."""
    from route_switch.jobs.drift_groups import needed_tiers

    if new is None and old is None:
        raise RouteSwitchError("nothing to optimise on: no logged queries and no existing evalset")
    merged = merge_evalsets(new, old)
    res = run.res
    res["evalset"] = {"existing": 0 if old is None else len(old), "new": 0 if new is None else len(new),
                      "merged": len(merged)}
    if len(merged) < 8:
        raise RouteSwitchError(f"only {len(merged)} labelled queries: too few to optimise and hold out a slice")
    needed_tiers(groups, merged, [t.name for t in run.job.tiers])
    res["drift"]["groups"] = [{k: v for k, v in g.items() if k != "examples"} | {"examples": g["examples"][:3]}
                              for g in groups]
    train, hold = holdout_split(merged, new, run.job)
    res["evalset"].update(train=len(train), holdout=len(hold))
    return merged, train, hold


def _candidate_program(run: _Run, current, train, hold):
    """MIPROv2 from the current program into the scratch folder, scored against it on held-out
    queries and gated. Returns (optimize result, passed, why, the λ used)."""
    from route_switch.llm.artifacts import diff, load_program
    from route_switch.optimization.optimize import optimize

    job = run.job
    start = load_program(current)
    opt = dict(job.optimize)
    n_val = min(opt.get("n_val", 60), max(1, len(train) // 3))
    n_train = min(opt.get("n_train", 150), len(train) - n_val)
    r = optimize(train, hold, start, lam=job.lam, lm_cfg=job.router_lm, name=job.name,
                 out_root=run.tmp / "optimized", evalset_name=str(job.evalset), n_train=n_train, n_val=n_val,
                 n_test=min(len(hold), opt.get("n_test", len(hold))), n_gate=opt.get("n_gate", 120),
                 num_candidates=opt.get("num_candidates", 4), num_trials=opt.get("num_trials", 8), seed=job.seed,
                 cache_dir=run.cache / "lm", progress=False)
    run.clock("optimize")
    cand = load_program(r.artifact)
    # the router LLM is slow: optimize.n_test caps the held-out queries its programs are scored on
    # (seeded subset); the estimator, which is fast, is gated on the whole held-out slice
    hold_p = hold
    if opt.get("n_test") and opt["n_test"] < len(hold):
        hold_p = hold.subset(np.sort(np.random.default_rng(job.seed).permutation(len(hold))[:opt["n_test"]]))
    run.res["evalset"]["holdout_program"] = len(hold_p)
    lmc = run.cache / "lm"
    cur_ch, cand_ch = program_choices(start, job.router_lm, hold_p, lmc), program_choices(cand, job.router_lm, hold_p, lmc)
    lam = r.metrics["lambda"]  # the one optimize used (given, or break-even on the training part)
    p_cur, p_cand = objectives(cur_ch, hold_p, lam), objectives(cand_ch, hold_p, lam)
    # no artifact yet: the first run deploys one (from the start program when nothing beat it)
    ok, gain, why = gate(cur_ch if current == job.artifact else None, cand_ch, hold_p, lam, **_gate_kw(job))
    delta = p_cand["objective"] - p_cur["objective"]
    run.res["program"] = {"current": p_cur, "candidate": p_cand, "delta": delta, "gain": gain, "pass": ok, "gate": why,
                          "current_path": str(current), "optimizer_metrics": {k: r.metrics.get(k) for k in (
                              "start_objective", "optimized_objective", "gate", "lm_calls", "cache_hits")},
                          "diff": diff(current, r.artifact), "misroutes": misroute_changes(hold_p, cur_ch, cand_ch)}
    if ok:  # the artifact carries the gate's figures
        from route_switch.core.files import atomic_write_text
        from route_switch.llm.artifacts import read_metrics

        m = read_metrics(r.artifact)
        m["reoptimize"] = {"job": job.file, "holdout": p_cand, "previous": p_cur, "delta": delta, "gain": gain,
                           "gate": why}
        atomic_write_text(r.artifact / "metrics.json", json.dumps(m, indent=2, ensure_ascii=False) + "\n")
    return r, ok, why, lam


def _gate_kw(job: Job) -> dict:
    return dict(min_gain=job.min_objective_delta, confidence=job.gate_confidence, seed=job.seed)


def _candidate_estimator(run: _Run, new, train, hold, merged, lam):
    """A refit gated against the deployed estimator; when it passes, the estimator to deploy is
    refit on every label. Returns (passed, why).

    The refit is judged out of fold on every label the deployed estimator has not trained on
    (:mod:`.estimator_gate`) when there are enough of them, else on the held-out slice."""
    from route_switch.core.estimator import QualityEstimator
    from route_switch.jobs.estimator_gate import cross_fit, record_path, unseen_rows
    from route_switch.routing.fitting import fit

    job, tmp = run.job, run.tmp
    rows = unseen_rows(record_path(job.work_dir, job.name), job.estimator_dir, merged, new)
    cross = job.estimator_folds >= 2 and len(rows) >= MIN_NEW_FOR_FRESH_HOLDOUT
    gate_ev = merged.subset(rows) if cross else hold
    e_cur_ch = estimator_choices(job.estimator_dir, gate_ev, job.tiers)
    if e_cur_ch is None:  # nothing usable deployed: the candidate passes anyway, no folds needed
        cross, gate_ev = False, hold
    e_cur = objectives(e_cur_ch, gate_ev, lam) if e_cur_ch is not None else None
    if not len(rows) and e_cur_ch is not None:
        # no unseen labels: a refit could only reshuffle what the deployed estimator already learnt
        e_cand_ch, e_cand, eok, egain = e_cur_ch, e_cur, False, {}
        ewhy = "no new labels: nothing new to learn, the current estimator stays"
    else:
        if cross:  # judged over the τ sweep (see estimator_gate)
            e_cand_ch, cand_pred = cross_fit(merged, rows, job.tiers, tmp / "estimator-folds",
                                             folds=job.estimator_folds, target_quality=job.target_quality, seed=job.seed)
            cur_pred = estimator_predictions(QualityEstimator.load(job.estimator_dir), gate_ev)
            eok, egain, ewhy = gain_gate(curve_per_query(cur_pred, gate_ev, lam),
                                         curve_per_query(cand_pred, gate_ev, lam), **_gate_kw(job))
        else:
            fit(train, tmp / "estimator", tiers=job.tiers, target_quality=job.target_quality, seed=job.seed)
            e_cand_ch = estimator_choices(tmp / "estimator", hold, job.tiers)
            eok, egain, ewhy = gate(e_cur_ch, e_cand_ch, gate_ev, lam, **_gate_kw(job))
        e_cand = objectives(e_cand_ch, gate_ev, lam)
    edelta = None if e_cur is None else e_cand["objective"] - e_cur["objective"]
    run.res["estimator"] = {"current": e_cur, "candidate": e_cand, "delta": edelta, "gain": egain, "pass": eok,
                            "gate": ewhy, "gate_queries": len(gate_ev),
                            "gate_kind": (f"{job.estimator_folds}-fold on unseen labels, over the τ sweep" if cross
                                          else "held-out slice, at the operating point"),
                            "misroutes": misroute_changes(gate_ev, e_cur_ch, e_cand_ch)}
    run.clock("fit_and_evaluate_estimator")
    if eok:
        # the gate judged refits without the gate's queries; what is deployed learns from every label
        # (same settings), so no labelled query is left unused. Done before any swap: a failure here
        # still leaves everything as it was.
        t_full = time.time()
        fit(merged, tmp / "estimator-all", tiers=job.tiers, target_quality=job.target_quality, seed=job.seed)
        run.res["estimator"]["refit_all_s"] = round(time.time() - t_full, 2)
        run.clock("refit_all")
    return eok, ewhy


def _promote(run: _Run, r, ok: bool, eok: bool, merged, groups: list) -> None:
    """Everything above succeeded: swap in what passed (each swap atomic for readers), keep the
    merged labels and the drifted groups for the next run."""
    from route_switch.core.evalset import save_evalset
    from route_switch.jobs.drift_groups import save_groups, state_path

    job = run.job
    if ok:
        copy_into(r.artifact, job.artifact)
    if eok:
        from route_switch.jobs.estimator_gate import record_path, save_trained_on

        copy_into(run.tmp / "estimator-all", job.estimator_dir)
        save_trained_on(record_path(job.work_dir, job.name), job.estimator_dir, merged.prompts)
    save_evalset(merged, job.evalset)
    save_groups(state_path(job.work_dir, job.name), groups)  # [] clears last run's focus


def holdout_split(merged, new, job: Job):
    """(train, held-out) for the gates. With enough new labels, the held-out slice is drawn from this
    period's new queries only: neither the current versions nor the candidates have seen them, and
    they are the traffic the router now serves. Otherwise a seeded slice of the merged evalset."""
    from route_switch.core.evalset import normalise_prompt

    if new is None or len(new) < MIN_NEW_FOR_FRESH_HOLDOUT:
        return merged.split(job.holdout_share, job.seed)
    _, fresh = new.split(job.holdout_share, job.seed)
    held = set(map(normalise_prompt, fresh.prompts))
    is_held = np.array([normalise_prompt(p) in held for p in merged.prompts])
    return merged.subset(np.flatnonzero(~is_held)), merged.subset(np.flatnonzero(is_held))


def verdict(program_ok: bool, estimator_ok: bool, program_why: str, estimator_why: str) -> str:
    """One line: what improved ("the estimator", "the program", "both") or why the current router stays."""
    if program_ok and estimator_ok:
        return "both improved: the router program and the estimator were promoted"
    if program_ok:
        return f"the program improved (promoted); the estimator was kept: {estimator_why}"
    if estimator_ok:
        return f"the estimator improved (promoted); the program was kept: {program_why}"
    return f"no gain shown: the current router stays (program: {program_why}; estimator: {estimator_why})"


def _current_estimator(job: Job, old):
    """The deployed estimator, or one fitted on the training evalset (for the drift check only)."""
    from route_switch.core.estimator import QualityEstimator

    try:
        return QualityEstimator.load(job.estimator_dir)
    except Exception:
        if old is None or len(old) < 4:
            return None
        return QualityEstimator().fit(old.prompts, old.scores, old.models, old.costs)

