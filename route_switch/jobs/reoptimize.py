"""The weekly re-optimisation job: logged queries → labels → MIPROv2 + refit → gate → promote → report.

``reoptimize(job_yaml)`` (see ``examples/weekly-job.yaml`` for every key):

1. take the job lock (``flock``; a second concurrent run fails at once, a dead run's lock is stale);
2. sample up to ``sample_size`` queries logged in the last ``period_days`` (route log, privacy=full);
3. drift check of those queries against the training evalset (:mod:`route_switch.jobs.drift`);
4. label the ones not yet in the evalset (:func:`route_switch.labeling.label`), merge, dedupe;
5. split off a held-out slice; run MIPROv2 from the current artifact into a temporary folder and
   refit the estimator into another;
6. score current vs candidate on the held-out slice with the optimiser's metric
   (quality − λ·cost/top-tier cost): the router program and the estimator are gated separately;
7. promote what passes ``gate.min_objective_delta`` by an atomic folder swap (the previous version
   stays beside it as ``.<name>.prev``), write the merged evalset and a markdown report.

Any failure before step 7 leaves the artifact, the estimator and the evalset untouched, and still
writes a report saying what failed; the exception is re-raised (non-zero exit for cron).
"""
from __future__ import annotations

import datetime as _dt
import json
import logging
import os
import shutil
import socket
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..config import check_number
from ..errors import ConfigError, RouteSwitchError
from ..tiers import to_index

log = logging.getLogger("route_switch")

KEYS = {"name", "root", "artifact_root", "start_program", "estimator_dir", "router_config", "route_log",
        "period_days", "sample_size", "seed", "evalset", "tiers", "judge_lm", "judge_program", "router_lm",
        "lambda", "optimize", "labeling", "fit", "gate", "holdout_share", "drift", "report_dir", "lock_file",
        "cache_dir", "work_dir"}
OPT_KEYS = {"num_candidates", "num_trials", "n_train", "n_val", "n_test"}
LABEL_KEYS = {"concurrency", "timeout_s", "retries", "max_tokens", "assumed_out_tokens"}


# ----------------------------------------------------------------------------- the job file
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
    min_objective_delta: float = 0.0
    holdout_share: float = 0.3
    drift_threshold: float = 0.1
    confidence_threshold: float = 0.1
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

    from ..tiers import tiers_from_list

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
        from ..paths import find_shipped

        shipped = find_shipped(raw[key], "programs")
        return shipped if shipped.exists() else q

    name = raw.get("name")
    if not isinstance(name, str) or not name.strip() or "/" in name:
        _err(f, "name", "must be the artifact name (a folder name under artifact_root), e.g. default")
    router_cfg = None
    if raw.get("router_config") is not None:
        from ..config import load_config

        router_cfg = load_config(path_of("router_config"))
    if raw.get("tiers") is not None:
        tiers = tiers_from_list(raw["tiers"], file=f)
    elif router_cfg is not None and router_cfg.tiers:
        tiers = router_cfg.tiers
    else:
        _err(f, "tiers", "is required (or a router_config with tiers)")
    for i, t in enumerate(tiers):
        if not t.api_base:
            _err(f, f"tiers[{i}].api_base", f"tier '{t.name}' needs its OpenAI-compatible endpoint for labelling")
        if t.price_in is None or t.price_out is None:
            _err(f, f"tiers[{i}].price_in", f"tier '{t.name}' needs price_in and price_out")
    est_dir = path_of("estimator_dir", required=False)
    if est_dir is None:
        if router_cfg is None or not router_cfg.estimator:
            _err(f, "estimator_dir", "is required (or a router_config with an estimator)")
        est_dir = Path(router_cfg.estimator)
    judge_lm = _mapping(raw, "judge_lm", f, required=True)
    if judge_lm.get("kind", "openai") not in ("openai", "local", "fake"):
        _err(f, "judge_lm.kind", f"must be openai, local or fake, got {judge_lm.get('kind')!r}")
    if judge_lm.get("kind", "openai") == "openai" and not (judge_lm.get("model") and judge_lm.get("api_base")):
        _err(f, "judge_lm.model", "kind openai needs model and api_base")
    router_lm = _mapping(raw, "router_lm", f, required=True)
    if router_lm.get("kind", "local") not in ("openai", "local", "fake"):
        _err(f, "router_lm.kind", f"must be openai, local or fake, got {router_lm.get('kind')!r}")
    opt = _mapping(raw, "optimize", f, OPT_KEYS)
    for k in OPT_KEYS & set(opt):
        opt[k] = check_number(opt, k, f, 1, None, int, required=True, where="optimize.")
    lab = _mapping(raw, "labeling", f, LABEL_KEYS)
    for k in ("concurrency", "retries", "assumed_out_tokens"):
        if k in lab:
            lab[k] = check_number(lab, k, f, 0 if k == "retries" else 1, None, int, required=True, where="labeling.")
    if "timeout_s" in lab:
        lab["timeout_s"] = check_number(lab, "timeout_s", f, 0.1, None, float, required=True, where="labeling.")
    if "max_tokens" in lab and not isinstance(lab["max_tokens"], (int, dict)):
        _err(f, "labeling.max_tokens", "must be an integer or {tier_name: integer}")
    gate = _mapping(raw, "gate", f, {"min_objective_delta"})
    drift = _mapping(raw, "drift", f, {"threshold", "confidence_threshold"})
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
        holdout_share=check_number(raw, "holdout_share", f, 0.05, 0.9, default=0.3, required=True),
        drift_threshold=check_number(drift, "threshold", f, 0, where="drift.", default=0.1, required=True),
        confidence_threshold=check_number(drift, "confidence_threshold", f, 0, where="drift.", default=0.1, required=True),
        report_dir=path_of("report_dir", "reports"), lock_file=path_of("lock_file", ".reoptimize.lock"),
        cache_dir=path_of("cache_dir", required=False), work_dir=path_of("work_dir", "runs/reoptimize"))


# ----------------------------------------------------------------------------- the lock
class JobLockedError(RouteSwitchError, RuntimeError):
    """Another run holds the job lock."""


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class JobLock:
    """``fcntl.flock`` on a file recording the holder's pid (the kernel drops it if the holder dies).

    A file naming a pid whose lock is gone is stale and taken over (``stale_from``); the file is
    never deleted, which would re-open the classic lock-file race.
    """

    def __init__(self, path):
        self.path, self.fd, self.stale_from = Path(path), None, None

    def _read(self) -> dict:
        try:
            return json.loads(self.path.read_text(encoding="utf-8") or "{}")
        except (OSError, ValueError):
            return {}

    def acquire(self) -> "JobLock":
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            info = self._read()
            raise JobLockedError(f"{self.path} is held by pid {info.get('pid', '?')} on {info.get('host', '?')} "
                                 f"since {info.get('started', '?')}: another run is in progress") from None
        prev = self._read()
        if isinstance(prev.get("pid"), int):
            self.stale_from = dict(prev, pid_alive=prev.get("host") == socket.gethostname() and pid_alive(prev["pid"]))
            log.warning("taking over a stale job lock %s left by pid %s", self.path, prev["pid"])
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                  "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}).encode(), 0)
        self.fd = fd
        return self

    def release(self) -> None:
        import fcntl

        if self.fd is not None:
            try:
                os.ftruncate(self.fd, 0)  # empty: nobody holds it
                fcntl.flock(self.fd, fcntl.LOCK_UN)
            finally:
                os.close(self.fd)
                self.fd = None

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()


# ----------------------------------------------------------------------------- helpers
def swap_in(src: Path, dst: Path) -> None:
    """Replace folder ``dst`` by a copy of ``src`` with renames; the old one is kept as ``.<name>.prev``."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.new-{os.getpid()}")
    prev = dst.with_name(f".{dst.name}.prev")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(src, tmp)
    shutil.rmtree(prev, ignore_errors=True)
    if dst.exists():
        dst.rename(prev)
    tmp.rename(dst)


def sample_logged_queries(job: Job, now: _dt.datetime | None = None) -> tuple[list[str], dict]:
    """Distinct logged query texts of the last period (seeded sample) and counts for the report."""
    from ..errors import InputError
    from ..routelog import read_route_log

    now = now or _dt.datetime.now(_dt.timezone.utc)
    recs = read_route_log(job.route_log, since=now - _dt.timedelta(days=job.period_days))
    texts = list(dict.fromkeys(r["query"] for r in recs if isinstance(r.get("query"), str) and r["query"].strip()))
    stats = {"logged": len(recs), "with_text": sum(isinstance(r.get("query"), str) for r in recs), "distinct": len(texts)}
    if recs and not texts:
        raise InputError("the route log holds only query hashes (privacy: hash): nothing to label. Set "
                         "route_log.privacy: full in the router config", file=str(job.route_log), field="query")
    rng = np.random.default_rng(job.seed)
    if len(texts) > job.sample_size:
        texts = [texts[i] for i in sorted(rng.choice(len(texts), job.sample_size, replace=False))]
    stats["sampled"] = len(texts)
    return texts, stats


def merge_evalsets(new, old):
    """New labels first (they win on duplicate prompts), then the existing evalset; deduped."""
    import pandas as pd

    from ..evalset import long_to_evalset, validate_long

    parts = [e.to_long() for e in (new, old) if e is not None]
    df = validate_long(pd.concat(parts, ignore_index=True), file="<merged>")
    models = (new or old).models
    return long_to_evalset(df, models=models, file=str(old.source if old is not None else new.source))


def _objectives(choice, ev, lam) -> dict:
    """Held-out figures of per-query tier choices (0-based; None = no valid tier), λ in the one unit."""
    from ..optimize import outcomes
    from ..selection import cost_unit

    eye = np.eye(len(ev.models))
    votes = [None if k is None else eye[k] for k in choice]
    return outcomes(votes, ev, lam, cost_unit(ev.costs.mean(axis=0)))


def program_choices(program, lm_cfg: dict, ev, cache_dir: Path) -> list:
    """Per-query tier index (0-based; None = no valid tier) of a routing program on ``ev``."""
    from ..llm.cache import cached_lm
    from ..optimize import program_votes
    from ..program import RouterLLM

    lm, _ = cached_lm(lm_cfg, program.labels, cache_dir)
    router = RouterLLM(program, lm=lm)
    votes = program_votes(router.module, [router.clip(q) for q in ev.prompts])
    return [None if v is None else int(np.argmax(v)) for v in votes]


def estimator_choices(est_dir: Path, ev, tiers) -> list | None:
    """Per-query tier index of the router fitted in ``est_dir`` (its router.yaml τ/λ); None if unusable."""
    from ..controller import Router

    if not (Path(est_dir) / "router.yaml").exists():
        return None
    try:
        r = Router.from_config(est_dir)
        r = type(r)(tiers=tiers, estimator=r.estimator, tau=r.tau, lam=r.lam, cache_size=0)
    except Exception as e:
        log.warning("current estimator %s cannot route these tiers: %s", est_dir, e)
        return None
    return [to_index(d.tier) for d in r.route_batch(ev.prompts)]


def _misroute_changes(ev, cur, cand, limit: int = 20) -> dict:
    from ..evaluate import misroutes

    unit = ev.costs.mean(axis=0)
    top = len(ev.models) - 1
    fix = lambda ch: np.array([top if k is None else k for k in ch])  # noqa: E731  (no tier: as if top were paid)
    a = {m["id"]: m for m in misroutes(ev, fix(cur), unit, 10_000)} if cur is not None else {}
    b = {m["id"]: m for m in misroutes(ev, fix(cand), unit, 10_000)}
    return {"current": len(a) if cur is not None else None, "candidate": len(b),
            "fixed": [a[i] for i in a if i not in b][:limit], "new": [b[i] for i in b if i not in a][:limit]}


def _gate(cur: dict | None, cand: dict, min_delta: float) -> tuple[bool, float | None, str]:
    if cur is None:
        return True, None, "no usable current version: the candidate is promoted"
    delta = cand["objective"] - cur["objective"]
    ok = delta >= min_delta
    return ok, delta, (f"objective delta {delta:+.4f} {'>=' if ok else '<'} gate {min_delta:+.4f}")


# ----------------------------------------------------------------------------- the job
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


def _run(job: Job, res: dict, tmp: Path, dry_run: bool, now, echo) -> None:
    from ..artifacts import diff, load_program, read_metrics
    from ..evalset import load_evalset, normalise_prompt, save_evalset
    from ..labeling import label
    from ..paths import cache_dir as default_cache

    t = time.time()
    clock = lambda k: res["timings_s"].__setitem__(k, round(time.time() - t, 2))  # noqa: E731
    models = [x.model for x in job.tiers]
    old = load_evalset(job.evalset, models=models) if job.evalset.exists() else None
    queries, res["route_log"] = sample_logged_queries(job, now)
    known = set(map(normalise_prompt, old.prompts)) if old is not None else set()
    new_q = [q for q in queries if normalise_prompt(q) not in known]
    res["route_log"]["already_labelled"] = len(queries) - len(new_q)
    echo(f"{job.name}: {res['route_log']['logged']} logged decisions in the last {job.period_days:g} days, "
         f"{len(queries)} sampled, {len(new_q)} new to label")
    current = job.artifact if (job.artifact / "instruction.txt").exists() else job.start_program
    if current is None:
        raise ConfigError(f"no artifact at {job.artifact} and no start_program", file=job.file, field="start_program")
    cache = job.cache_dir or default_cache()

    # drift of the period's queries vs the training evalset, through the current estimator
    from .drift import drift_report

    est = _current_estimator(job, old)
    res["drift"] = (drift_report(queries, old.prompts, est, threshold=job.drift_threshold,
                                 confidence_threshold=job.confidence_threshold, seed=job.seed)
                    if est is not None and old is not None and queries else {"flagged": False, "skipped": "no training evalset or estimator yet"})
    clock("sample_and_drift")

    lab = dict(job.labeling)
    if new_q or dry_run:
        new = label(new_q, job.tiers, judge_lm_cfg=job.judge_lm, judge_program=job.judge_program,
                    out_path=job.work_dir / f"{job.name}-labels.jsonl", cache_dir=Path(cache) / "labels",
                    dry_run=dry_run, echo=echo, **lab) if new_q else None
        if dry_run:
            res["status"] = "dry_run"
            return
        res["labeling"] = new.meta.get("labeling", {})
    else:
        new = None
    clock("labeling")
    if new is None and old is None:
        raise RouteSwitchError("nothing to optimise on: no logged queries and no existing evalset")
    merged = merge_evalsets(new, old)
    res["evalset"] = {"existing": 0 if old is None else len(old), "new": 0 if new is None else len(new),
                      "merged": len(merged)}
    if len(merged) < 8:
        raise RouteSwitchError(f"only {len(merged)} labelled queries: too few to optimise and hold out a slice")
    train, hold = merged.split(job.holdout_share, job.seed)
    res["evalset"].update(train=len(train), holdout=len(hold))

    # candidate router program (MIPROv2 from the current one) into a temporary out_root
    from ..optimize import optimize

    start = load_program(current)
    opt = dict(job.optimize)
    n_val = min(opt.get("n_val", 60), max(1, len(train) // 3))
    n_train = min(opt.get("n_train", 150), len(train) - n_val)
    r = optimize(train, hold, start, lam=job.lam, lm_cfg=job.router_lm, name=job.name, out_root=tmp / "optimized",
                 evalset_name=str(job.evalset), n_train=n_train, n_val=n_val, n_test=len(hold),
                 num_candidates=opt.get("num_candidates", 4), num_trials=opt.get("num_trials", 8), seed=job.seed,
                 cache_dir=Path(cache) / "lm", progress=False)
    clock("optimize")
    cand = load_program(r.artifact)
    lmc = Path(cache) / "lm"
    cur_ch, cand_ch = program_choices(start, job.router_lm, hold, lmc), program_choices(cand, job.router_lm, hold, lmc)
    lam = r.metrics["lambda"]  # the one optimize used (given, or break-even on the training part)
    p_cur, p_cand = _objectives(cur_ch, hold, lam), _objectives(cand_ch, hold, lam)
    ok, delta, why = _gate(p_cur, p_cand, job.min_objective_delta)
    res["program"] = {"current": p_cur, "candidate": p_cand, "delta": delta, "pass": ok, "gate": why,
                      "current_path": str(current), "optimizer_metrics": {k: r.metrics.get(k) for k in (
                          "seed_objective", "optimized_objective", "lm_calls", "cache_hits")},
                      "diff": diff(current, r.artifact), "misroutes": _misroute_changes(hold, cur_ch, cand_ch)}
    clock("evaluate_program")

    # candidate estimator: refit on the training part, compared with the current one
    from ..fitting import fit

    fit(train, tmp / "estimator", tiers=job.tiers, target_quality=job.target_quality, seed=job.seed)
    e_cur_ch = estimator_choices(job.estimator_dir, hold, job.tiers)
    e_cand_ch = estimator_choices(tmp / "estimator", hold, job.tiers)
    e_cur = _objectives(e_cur_ch, hold, lam) if e_cur_ch is not None else None
    e_cand = _objectives(e_cand_ch, hold, lam)
    eok, edelta, ewhy = _gate(e_cur, e_cand, job.min_objective_delta)
    res["estimator"] = {"current": e_cur, "candidate": e_cand, "delta": edelta, "pass": eok, "gate": ewhy,
                        "misroutes": _misroute_changes(hold, e_cur_ch, e_cand_ch)}
    clock("fit_and_evaluate_estimator")

    # promotion: everything above succeeded; each swap is atomic for readers
    if ok:
        m = read_metrics(r.artifact)
        m["reoptimize"] = {"job": job.file, "holdout": p_cand, "previous": p_cur, "delta": delta, "gate": why}
        from ..paths import atomic_write_text

        atomic_write_text(r.artifact / "metrics.json", json.dumps(m, indent=2, ensure_ascii=False) + "\n")
        swap_in(r.artifact, job.artifact)
    if eok:
        swap_in(tmp / "estimator", job.estimator_dir)
    save_evalset(merged, job.evalset)
    res["promoted"] = {"program": ok, "estimator": eok}
    res["status"] = "promoted" if (ok or eok) else "not_promoted"
    clock("total")


def _current_estimator(job: Job, old):
    """The deployed estimator, or one fitted on the training evalset (for the drift check only)."""
    from ..estimator import QualityEstimator

    try:
        return QualityEstimator.load(job.estimator_dir)
    except Exception:
        if old is None or len(old) < 4:
            return None
        return QualityEstimator().fit(old.prompts, old.scores, old.models, old.costs)


# ----------------------------------------------------------------------------- the report
def _fmt(d: dict | None) -> str:
    if d is None:
        return "n/a | n/a | n/a | n/a"
    return f"{d['objective']:.4f} | {d['quality']:.3f} | {d['cost_share']:.3f} | {', '.join(f'{s:.0%}' for s in d['tier_shares'])}"


def _misroute_md(m: dict) -> list[str]:
    cur = "n/a" if m["current"] is None else m["current"]
    lines = [f"Misroutes on the held-out slice (a cheaper tier would have scored higher): current {cur}, "
             f"candidate {m['candidate']}."]
    for kind, title in (("fixed", "fixed by the candidate"), ("new", "new with the candidate")):
        if m[kind]:
            lines += ["", f"{title}:"]
            lines += [f"- `{x['id']}` {x['prompt'][:100]!r}: chose {x['chosen']} ({x['chosen_score']:.2f}), "
                      f"{x['cheapest_success']} would score {x['its_score']:.2f}" for x in m[kind]]
    return lines


def write_report(job: Job, res: dict, stamp: str) -> Path:
    """Markdown report (and the same data as JSON) in ``report_dir``."""
    from ..paths import atomic_write_text
    from .drift import format_drift

    L = [f"# Re-optimisation `{job.name}` — {stamp} UTC", "", f"- job: `{job.file}`", f"- status: **{res['status']}**"]
    if res.get("error"):
        L += [f"- error: `{res['error'][:500]}`", "- the current artifact, estimator and evalset were left untouched"]
    pr = res.get("promoted", {})
    L += [f"- promoted: router program {'yes' if pr.get('program') else 'no'}, "
          f"estimator {'yes' if pr.get('estimator') else 'no'}"]
    if "route_log" in res:
        rl = res["route_log"]
        L += [f"- route log: {rl['logged']} decisions in {job.period_days:g} days, {rl['with_text']} with text, "
              f"{rl['distinct']} distinct, {rl['sampled']} sampled, {rl.get('already_labelled', 0)} already labelled"]
    if "evalset" in res:
        e = res["evalset"]
        L += [f"- evalset: {e['existing']} existing + {e['new']} new = {e['merged']} queries "
              f"({e.get('train', '?')} train / {e.get('holdout', '?')} held out)"]
    if "labeling" in res:
        lb = res["labeling"]
        L += [f"- labelling: {lb.get('labelled_this_run')} labelled, {lb.get('failed')} failed, "
              f"{lb.get('tier_calls')} endpoint calls, {lb.get('cache_hits')} cache hits, {lb.get('wall_s')} s"]
        if "judge_agreement" in lb:
            L += [f"- judge agreement with exact match: {lb['judge_agreement']['agreement']:.1%}"]
    head = ["| version | objective | quality | cost share | tier shares |", "|---|---|---|---|---|"]
    for key, title in (("program", "Router program (MIPROv2)"), ("estimator", "Estimator (refit)")):
        if key not in res:
            continue
        d = res[key]
        L += ["", f"## {title}", "", f"Gate: {d['gate']} → {'**promote**' if d['pass'] else '**keep current**'}", ""]
        L += head + [f"| current | {_fmt(d['current'])} |", f"| candidate | {_fmt(d['candidate'])} |", ""]
        if key == "program":
            L += ["Instruction diff (current → candidate):", "", "```diff", d["diff"], "```", ""]
        L += _misroute_md(d["misroutes"])
    if "drift" in res:
        L += ["", "## Drift", "", format_drift(res["drift"])]
    L += ["", "## Timings (s, cumulative)", "", ", ".join(f"{k} {v}" for k, v in res.get("timings_s", {}).items())]
    out = _ensure(job.report_dir) / f"reoptimize-{job.name}-{stamp}.md"
    atomic_write_text(out, "\n".join(L) + "\n")
    atomic_write_text(out.with_suffix(".json"), json.dumps(res, indent=1, default=str) + "\n")
    return out
