"""The weekly job on replayed labels: stored outcomes stand in for endpoints and a judge.

The replay file is the project's synthetic evalset; the router LM is the FAKE engine (named as such).
Covers: replay labelling through the job's merge/dedupe/resume/report code, the one-line verdict,
drift groups named in the report with the tier they need, and the next run's focused sample.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from route_switch.core.decision import Decision
from route_switch.core.errors import ConfigError
from route_switch.core.evalset import from_records, load_evalset, save_evalset
from route_switch.jobs.job_config import load_job
from route_switch.jobs.reoptimize import reoptimize
from route_switch.labeling.replay import replay_label
from route_switch.core.paths import packaged_dir
from route_switch.core.routelog import RouteLog
from route_switch.testing.synthetic import synthetic_records
from route_switch.core.tiers import tiers_from_list

TIERS = [{"name": m, "model": m, "price_in": p, "price_out": p} for m, p in (("small", 0.1), ("medium", 0.5), ("large", 3.0))]
QUIET = dict(echo=lambda *a: None)


def project(tmp: Path, logged: list[str], start_task: str | None = None, **over) -> Path:
    recs = synthetic_records(240)
    save_evalset(from_records(recs, source="synthetic"), tmp / "replay.jsonl")
    start = [r for r in recs if start_task is None or r["task"] == start_task][:120]
    save_evalset(from_records(start, source="start"), tmp / "labels" / "evalset.jsonl")
    rl = RouteLog(tmp / "logs" / "routes.jsonl", privacy="full")
    for q in logged:
        rl.write(q, Decision(tier=1, tier_name="small", model="small", path="estimator", reason="test"))
    rl.close()
    job = {"name": "default", "start_program": str(packaged_dir("programs") / "default.yaml"),
           "estimator_dir": "estimators/prod", "route_log": "logs/routes.jsonl", "sample_size": 200,
           "evalset": "labels/evalset.jsonl", "tiers": TIERS, "router_lm": {"kind": "fake"}, "lambda": 0.3,
           "labeling": {"replay": "replay.jsonl"},
           "optimize": {"num_candidates": 2, "num_trials": 2, "n_train": 20, "n_val": 10},
           "report_dir": "reports", "lock_file": "run/.lock", "cache_dir": "cache", "work_dir": "run"}
    job.update(over)
    path = tmp / "weekly.yaml"
    path.write_text(yaml.safe_dump(job, sort_keys=False))
    return path


def prompts_of(task: str, start: int = 0) -> list[str]:
    return list(dict.fromkeys(r["prompt"] for r in synthetic_records(240)[start * 3:] if r["task"] == task))


def test_replay_labels_go_through_merge_resume_and_report(tmp_path):
    unknown = ["A query the replay file does not hold.", "Another one it does not hold."]
    logged = prompts_of("hard")[:20] + prompts_of("easy")[:10] + unknown
    job = project(tmp_path, logged)  # start evalset = the first 120 queries: the logged ones are known...
    save_evalset(from_records([r for r in synthetic_records(240) if r["id"] not in
                               {f"q{i}" for i in range(60)}][:120 * 3], source="start"),
                 tmp_path / "labels" / "evalset.jsonl")  # ...so drop them: all 30 are new
    res = reoptimize(job, **QUIET)
    lab = res["labeling"]
    assert lab["labelled_this_run"] == 30 and lab["failed"] == 2, lab
    assert lab["tier_calls"] == 0 and lab["judge_calls"] == 0 and lab["replay"].endswith("replay.jsonl")
    merged = load_evalset(tmp_path / "labels" / "evalset.jsonl")
    assert len(merged) == 120 + 30
    # replayed scores are the stored ones
    stored = load_evalset(tmp_path / "replay.jsonl")
    i, j = stored.prompts.index(logged[0]), merged.prompts.index(logged[0])
    assert (merged.scores[j] == stored.scores[i]).all()
    report = Path(res["report"]).read_text()
    assert "- verdict: " in report and res["verdict"]
    # the unknown queries alone cannot be labelled: a clear error, nothing changed
    before = (tmp_path / "labels" / "evalset.jsonl").read_bytes()
    with pytest.raises(Exception, match="no query could be labelled; first error: not in the replay file"):
        reoptimize(job, **QUIET)
    assert (tmp_path / "labels" / "evalset.jsonl").read_bytes() == before
    # a second run on the known queries labels nothing again
    for f in (tmp_path / "logs").iterdir():
        f.unlink()
    rl = RouteLog(tmp_path / "logs" / "routes.jsonl", privacy="full")
    for q in logged[:30]:
        rl.write(q, Decision(tier=1, tier_name="small", model="small", path="estimator", reason="test"))
    rl.close()
    res2 = reoptimize(job, **QUIET)
    assert res2["route_log"]["already_labelled"] == 30 and "labeling" not in res2
    assert len(load_evalset(tmp_path / "labels" / "evalset.jsonl")) == 150
    assert "no gain shown" in res2["verdict"] or "improved" in res2["verdict"]


def test_replay_progress_resumes_after_a_killed_run(tmp_path):
    recs = synthetic_records(30)
    save_evalset(from_records(recs, source="synthetic"), tmp_path / "replay.jsonl")
    tiers = tiers_from_list(TIERS)
    qs = list(dict.fromkeys(r["prompt"] for r in recs))
    replay_label(qs[:10], tiers, replay=tmp_path / "replay.jsonl", out_path=tmp_path / "l.jsonl", **QUIET)
    with open(tmp_path / "l.jsonl.progress.jsonl", "a") as f:
        f.write('{"qid": "torn')  # a killed run's last line
    ev = replay_label(qs, tiers, replay=tmp_path / "replay.jsonl", out_path=tmp_path / "l.jsonl", **QUIET)
    assert ev.meta["labeling"]["resumed"] == 10 and ev.meta["labeling"]["labelled_this_run"] == 20
    assert len(ev) == 30


def test_replay_job_file_errors_name_the_field(tmp_path):
    job = project(tmp_path, ["What is 2 + 2?"])
    data = yaml.safe_load(job.read_text())
    assert load_job(job).replay == tmp_path / "replay.jsonl"
    assert not load_job(job).judge_lm  # replay needs no judge, and tiers need no endpoint
    data["labeling"] = {"replay": "missing.jsonl"}
    job.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match="labeling.replay"):
        load_job(job)
    data["labeling"] = {}
    job.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match="api_base"):
        load_job(job)
    data["labeling"] = {"replay": "replay.jsonl"}
    data["drift"] = {"focus_share": 1.5}
    job.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match="focus_share"):
        load_job(job)


def test_drift_names_moved_groups_and_focuses_the_next_sample(tmp_path):
    # trained on easy queries only; this week's traffic is mostly hard ones
    hard, easy = prompts_of("hard"), prompts_of("easy")
    logged = hard[:60] + easy[:20]
    job = project(tmp_path, logged, start_task="easy", sample_size=40, drift={"threshold": 0.1, "focus_share": 0.75})
    res = reoptimize(job, **QUIET)
    d = res["drift"]
    assert d["flagged"], d
    groups = d["groups"]
    assert groups and all(g["n"] >= 3 for g in groups)
    assert all(any(q in hard for q in g["examples"]) for g in groups)
    # what the hard queries need: the synthetic large model succeeds where small/medium fail
    assert {g["tier"] for g in groups if g["n_labelled"] >= 5} == {"large"}, groups
    report = Path(res["report"]).read_text()
    assert "Query groups that moved" in report and "tier they now need" in report
    state = json.loads((tmp_path / "run" / "default-drift-groups.json").read_text())
    assert state["groups"] and len(state["groups"][0]["examples"]) >= 3
    # next run: 75% of the sample comes from logged queries near the drifted groups
    res2 = reoptimize(job, **QUIET)
    fo = res2["route_log"]["focus"]
    assert fo["sampled_from_groups"] == 30 and fo["in_drifted_groups"] >= 30, fo
    assert "drift focus:" in Path(res2["report"]).read_text()


def test_gate_holds_out_only_this_periods_new_queries(tmp_path):
    from route_switch.core.evalset import normalise_prompt
    from route_switch.jobs.inputs import merge_evalsets
    from route_switch.jobs.reoptimize import holdout_split

    recs = synthetic_records(240)
    old = from_records([r for r in recs if int(r["id"][1:]) < 150], source="old")
    new = from_records([r for r in recs if int(r["id"][1:]) >= 150], source="new")
    job = load_job(project(tmp_path, ["What is 2 + 2?"]))
    train, hold = holdout_split(merge_evalsets(new, old), new, job)
    fresh = set(map(normalise_prompt, new.prompts))
    assert len(hold) == round(job.holdout_share * len(new)) or abs(len(hold) - job.holdout_share * len(new)) <= 1
    assert all(normalise_prompt(p) in fresh for p in hold.prompts)
    assert len(train) + len(hold) == 240 and not set(train.prompts) & set(hold.prompts)
    # too few new labels: a slice of the whole merged evalset
    few = new.subset(list(range(10)))
    _, hold2 = holdout_split(merge_evalsets(few, old), few, job)
    assert sum(normalise_prompt(p) not in fresh for p in hold2.prompts) > 0


def test_estimator_gate_uses_every_label_the_deployed_estimator_has_not_seen(tmp_path):
    from route_switch.jobs.estimator_gate import record_path, unseen_rows

    hard, easy = prompts_of("hard"), prompts_of("easy")
    job = project(tmp_path, easy[:20], start_task="easy", sample_size=200)
    reoptimize(job, **QUIET)  # first run: deploys an estimator trained on easy queries only
    j = load_job(job)
    rec = record_path(j.work_dir, j.name)
    trained = json.loads(rec.read_text())["prompts"]
    assert len(trained) == len(load_evalset(tmp_path / "labels" / "evalset.jsonl"))
    # a week of hard traffic: the refit is judged on all of it, out of fold (not on a 30% slice)
    new_hard = [q for q in hard if q not in set(load_evalset(tmp_path / "labels" / "evalset.jsonl").prompts)][:45]
    for f in (tmp_path / "logs").iterdir():
        f.unlink()
    rl = RouteLog(tmp_path / "logs" / "routes.jsonl", privacy="full")
    for q in new_hard:
        rl.write(q, Decision(tier=1, tier_name="small", model="small", path="estimator", reason="test"))
    rl.close()
    res = reoptimize(job, **QUIET)
    e = res["estimator"]
    assert e["gate_kind"].startswith("3-fold on unseen labels") and e["gate_queries"] == len(new_hard), e
    # the hard queries need the large model; the easy-only estimator does not know it, the refit does
    assert e["pass"] and e["gain"]["lower"] > 0, e
    assert len(json.loads(rec.read_text())["prompts"]) == len(load_evalset(tmp_path / "labels" / "evalset.jsonl"))
    # an estimator replaced by hand no longer matches its record: only this period's labels count
    merged = load_evalset(tmp_path / "labels" / "evalset.jsonl")
    assert len(unseen_rows(rec, j.estimator_dir, merged, None)) == 0
    est_json = j.estimator_dir / "estimator.json"
    est_json.write_text(est_json.read_text() + " ")
    new = merged.subset(list(range(5)))
    assert sorted(unseen_rows(rec, j.estimator_dir, merged, new)) == list(range(5))
