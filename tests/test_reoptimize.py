"""The weekly job with fakes named as fakes: FAKE router LM and judge, ChatUpstream (a real HTTP
server with canned answers) as every tier. Job-file errors, the lock, failure safety, drift."""
from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from chat_upstream import ChatUpstream, tiers_at
from conftest import synthetic_records
from servers import free_port

from route_switch.core.paths import packaged_dir
from route_switch.core.decision import Decision
from route_switch.core.errors import ConfigError
from route_switch.core.evalset import from_records, load_evalset, save_evalset
from route_switch.jobs.job_config import load_job
from route_switch.core.files import JobLock, JobLockedError
from route_switch.jobs.reoptimize import reoptimize
from route_switch.core.routelog import RouteLog

NEW_QUERIES = [f"Prove that {n} has exactly two divisors, step by step." for n in (7, 11, 13)] + \
              [f"What is the capital of {c}?" for c in ("Italy", "Spain", "Greece", "Egypt", "Cuba")] + \
              [f"Say hello to {w}." for w in ("Ana", "Bo", "Cy", "Di")]


def hard_aware_answer(model: str, messages) -> str:
    """FAKE tier models: the small one gets proofs wrong, everything else matches the large one."""
    q = messages[-1]["content"]
    if model.startswith("small") and "Prove" in q:
        return "No idea, sorry."
    return f"Answer: {q[::-1][:40]}"


def tier_dicts(url):
    return [{k: v for k, v in t.__dict__.items() if v is not None} for t in tiers_at(url)]


def make_project(tmp: Path, url: str, queries=NEW_QUERIES, privacy="full", **over) -> Path:
    """A project folder: existing evalset, a route log with this week's queries, a job file."""
    save_evalset(from_records(synthetic_records(60), source="synthetic"), tmp / "labels" / "evalset.jsonl")
    rl = RouteLog(tmp / "logs" / "routes.jsonl", privacy=privacy)
    for q in queries:
        rl.write(q, Decision(tier=1, tier_name="small", model="small", path="estimator", reason="test"))
    rl.close()
    job = {"name": "default", "artifact_root": "optimized",
           "start_program": str(packaged_dir("programs") / "default.yaml"),
           "estimator_dir": "estimators/prod", "route_log": "logs/routes.jsonl", "period_days": 7,
           "sample_size": 50, "evalset": "labels/evalset.jsonl", "tiers": tier_dicts(url),
           "judge_lm": {"kind": "fake"}, "router_lm": {"kind": "fake"}, "lambda": 0.3,
           "optimize": {"num_candidates": 2, "num_trials": 2, "n_train": 20, "n_val": 10},
           "labeling": {"concurrency": 2, "timeout_s": 5, "retries": 1},
           "gate": {"min_objective_delta": 0.0}, "holdout_share": 0.3, "drift": {"threshold": 0.1},
           "report_dir": "reports", "lock_file": "run/.lock", "cache_dir": "cache", "work_dir": "run"}
    job.update(over)
    path = tmp / "weekly.yaml"
    path.write_text(yaml.safe_dump(job, sort_keys=False))
    return path


@pytest.fixture
def upstream():
    with ChatUpstream(answer=hard_aware_answer) as up:
        yield up


def snapshot(d: Path) -> dict:
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()} if d.exists() else {}


def test_full_run_promotes_and_reports(tmp_path, upstream):
    job = make_project(tmp_path, upstream.url)
    res = reoptimize(job, echo=lambda *a: None)
    assert res["status"] == "promoted", res
    assert res["promoted"]["program"] and res["promoted"]["estimator"]  # first run: nothing to beat
    art = tmp_path / "optimized" / "default"
    assert (art / "instruction.txt").exists() and "reoptimize" in json.loads((art / "metrics.json").read_text())
    assert (tmp_path / "estimators" / "prod" / "router.yaml").exists()
    merged = load_evalset(tmp_path / "labels" / "evalset.jsonl")
    assert len(merged) == 60 + len(NEW_QUERIES)
    assert res["labeling"]["labelled_this_run"] == len(NEW_QUERIES)
    assert upstream.hits == 3 * len(NEW_QUERIES)
    report = Path(res["report"]).read_text()
    for section in ("## Router program (MIPROv2)", "## Estimator (refit)", "## Drift", "Instruction diff", "objective"):
        assert section in report
    # a second run the same week: nothing new to label, the gate compares against the promoted version
    res2 = reoptimize(job, echo=lambda *a: None)
    assert upstream.hits == 3 * len(NEW_QUERIES)
    assert res2["route_log"]["already_labelled"] == len(NEW_QUERIES)
    assert res2["program"]["current"] is not None and res2["estimator"]["current"] is not None
    # unchanged data: whatever the search returns cannot show a gain over what it just promoted
    assert res2["promoted"] == {"program": False, "estimator": False}, (res2["program"]["gate"], res2["estimator"]["gate"])
    assert "keep the current version" in res2["program"]["gate"]


def test_gate_blocks_promotion(tmp_path, upstream):
    job = make_project(tmp_path, upstream.url)
    reoptimize(job, echo=lambda *a: None)
    before = snapshot(tmp_path / "optimized") | snapshot(tmp_path / "estimators")
    data = yaml.safe_load(job.read_text())
    data["gate"] = {"min_objective_delta": 5.0}  # an objective can never improve by 5
    job.write_text(yaml.safe_dump(data))
    res = reoptimize(job, echo=lambda *a: None)
    assert res["status"] == "not_promoted" and not any(res["promoted"].values())
    assert snapshot(tmp_path / "optimized") | snapshot(tmp_path / "estimators") == before
    assert "keep current" in Path(res["report"]).read_text()


def test_failed_run_leaves_artifact_untouched(tmp_path, upstream, monkeypatch):
    job = make_project(tmp_path, upstream.url)
    reoptimize(job, echo=lambda *a: None)
    watched = ("optimized", "estimators", "labels")
    before = {w: snapshot(tmp_path / w) for w in watched}
    # new queries arrive, then the estimator refit crashes half-way
    rl = RouteLog(tmp_path / "logs" / "routes.jsonl", privacy="full")
    rl.write("What is the capital of Peru?", Decision(1, "small", "small", "estimator", "t"))
    rl.close()
    import route_switch.routing.fitting as fitting

    def broken_fit(*a, **k):
        raise RuntimeError("disk full (simulated)")

    monkeypatch.setattr(fitting, "fit", broken_fit)
    with pytest.raises(RuntimeError, match="disk full"):
        reoptimize(job, echo=lambda *a: None)
    assert {w: snapshot(tmp_path / w) for w in watched} == before
    assert not [p for p in (tmp_path / "optimized").iterdir() if p.name.startswith(".") and "new" in p.name]
    assert not [p for p in (tmp_path / "run").iterdir() if p.name.startswith(".reoptimize-")]
    reports = sorted((tmp_path / "reports").glob("*.md"))
    assert "status: **failed**" in reports[-1].read_text() and "disk full" in reports[-1].read_text()


def test_upstream_down_fails_cleanly(tmp_path):
    job = make_project(tmp_path, f"http://127.0.0.1:{free_port()}/v1")
    with pytest.raises(Exception, match="no query could be labelled"):
        reoptimize(job, echo=lambda *a: None)
    assert not (tmp_path / "optimized" / "default").exists()
    assert len(load_evalset(tmp_path / "labels" / "evalset.jsonl")) == 60  # unchanged


def test_hash_only_route_log_is_a_clear_error(tmp_path, upstream):
    job = make_project(tmp_path, upstream.url, privacy="hash")
    with pytest.raises(Exception, match="privacy: full"):
        reoptimize(job, echo=lambda *a: None)
    assert upstream.hits == 0


def test_dry_run_spends_nothing(tmp_path, upstream):
    job = make_project(tmp_path, upstream.url)
    out = []
    res = reoptimize(job, dry_run=True, echo=out.append)
    assert res["status"] == "dry_run" and upstream.hits == 0
    assert any("tier calls" in line and "$" in line for line in out)
    assert not (tmp_path / "optimized" / "default").exists()


# ----------------------------------------------------------------------------- job file errors
@pytest.mark.parametrize("change, field", [
    ({"lambda": "lots"}, "lambda"),
    ({"period_days": -1}, "period_days"),
    ({"optimize": {"num_trials": 0}}, "optimize.num_trials"),
    ({"optimize": {"trials": 3}}, "optimize.trials"),
    ({"gate": {"min_objective_delta": "x"}}, "gate.min_objective_delta"),
    ({"colour": "blue"}, "colour"),
    ({"judge_lm": None}, "judge_lm"),
    ({"route_log": 12}, "route_log"),
    ({"tiers": [{"name": "a", "model": "a", "price_in": 1, "price_out": 1}, {"model": "b"}]}, "tiers[0].api_base"),
    ({"name": ""}, "name"),
    ({"sample_size": 2.5}, "sample_size"),
])
def test_malformed_job_names_file_and_field(tmp_path, change, field):
    job = make_project(tmp_path, "http://127.0.0.1:9/v1")
    data = yaml.safe_load(job.read_text())
    for k, v in change.items():
        if v is None:
            data.pop(k)
        else:
            data[k] = v
    job.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError) as e:
        load_job(job)
    assert e.value.file == str(job) and e.value.field == field, str(e.value)
    assert str(job) in str(e.value) and field in str(e.value)


def test_invalid_yaml_names_line(tmp_path):
    job = tmp_path / "bad.yaml"
    job.write_text("name: default\ntiers: [unclosed\n")
    with pytest.raises(ConfigError) as e:
        load_job(job)
    assert e.value.file == str(job) and e.value.line is not None


# ----------------------------------------------------------------------------- the lock
def test_lock_contention_in_process(tmp_path, upstream):
    job = make_project(tmp_path, upstream.url)
    with JobLock(tmp_path / "run" / ".lock"):
        with pytest.raises(JobLockedError, match=f"pid {os.getpid()}"):
            reoptimize(job, echo=lambda *a: None)
    assert upstream.hits == 0


def test_lock_held_by_another_process(tmp_path):
    lock = tmp_path / ".lock"
    code = ("import sys, time; sys.path.insert(0, %r)\n"
            "from route_switch.core.files import JobLock\n"
            "l = JobLock(%r).acquire(); print('held', flush=True); time.sleep(30)") % (
        str(Path(__file__).resolve().parents[1]), str(lock))
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "held"
        with pytest.raises(JobLockedError, match=str(p.pid)):
            JobLock(lock).acquire()
    finally:
        p.kill()
        p.wait()
    # the holder died: the kernel dropped its flock, the pid left in the file is stale
    l2 = JobLock(lock).acquire()
    assert l2.stale_from["pid"] == p.pid and l2.stale_from["pid_alive"] is False
    l2.release()
    assert JobLock(lock).acquire().stale_from is None  # a clean release leaves nothing stale


# ----------------------------------------------------------------------------- drift
def test_drift_flags_a_shifted_period(synthetic):
    from route_switch.core.estimator import QualityEstimator
    from route_switch.jobs.drift import drift_report, format_drift

    est = QualityEstimator().fit(synthetic.prompts, synthetic.scores, synthetic.models, synthetic.costs)
    same = synthetic_records(300, seed=5)[::3][200 // 3:]
    same_q = list(dict.fromkeys(r["prompt"] for r in same))
    d_same = drift_report(same_q, synthetic.prompts, est, threshold=0.1)
    shifted = [f"Bonjour, pouvez-vous réserver une table pour {i} personnes ce soir à Lyon ?" for i in range(30)]
    d_shift = drift_report(shifted, synthetic.prompts, est, threshold=0.1)
    assert not d_same["flagged"], d_same
    assert d_shift["flagged"] and d_shift["similarity_drop"] > 0.1
    assert d_shift["nn_similarity_period"] < d_same["nn_similarity_period"]
    assert "DRIFT FLAGGED" in format_drift(d_shift) and "confidence" in format_drift(d_shift)


def test_sampling_respects_period_and_size(tmp_path, upstream):
    from route_switch.jobs.inputs import sample_logged_queries

    job_path = make_project(tmp_path, upstream.url, sample_size=5)
    job = load_job(job_path)
    qs, stats = sample_logged_queries(job)
    assert len(qs) == 5 and stats["distinct"] == len(NEW_QUERIES)
    later = dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=30)
    assert sample_logged_queries(job, now=later)[0] == []
    assert np.all([q in NEW_QUERIES for q in qs])


def test_misspelt_job_key_gets_a_suggestion(tmp_path):
    job = make_project(tmp_path, "http://127.0.0.1:9/v1")
    data = yaml.safe_load(job.read_text())
    data["drift"] = {"focus_shar": 0.5}
    job.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match="did you mean 'focus_share'") as e:
        load_job(job)
    assert e.value.field == "drift.focus_shar"
