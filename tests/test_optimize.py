"""MIPROv2 optimisation with the FAKE router engine: objective, artifact, cache, hand edits, kill -9."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from route_switch.core.paths import packaged_dir
from route_switch.llm.artifacts import load_artifact, load_program
from route_switch.core.errors import ConfigError
from route_switch.core.evalset import from_records, save_evalset
from route_switch.llm.fakes import FAKE_PROPOSALS
from route_switch.optimization.objective import expected_objective, objective
from route_switch.optimization.optimize import optimize

from conftest import synthetic_records

ROOT = Path(__file__).resolve().parents[1]
FAKE = {"kind": "fake"}
SMALL = dict(n_train=30, n_val=16, n_test=24, num_candidates=3, num_trials=4, progress=False)


@pytest.fixture(scope="module")
def split():
    ev = from_records(synthetic_records(120), models=["small", "medium", "large"])
    return ev.split(0.3, seed=0)


@pytest.fixture
def start():
    return load_program(packaged_dir("programs") / "default.yaml")


def test_objective():
    import numpy as np

    s, c = np.array([0.0, 1.0, 1.0]), np.array([1.0, 2.0, 10.0])
    assert objective(1, s, c, 0.5, 10.0) == pytest.approx(1 - 0.5 * 0.2)
    assert objective(None, s, c, 0.5, 10.0) == -0.5
    assert expected_objective([0, 1, 0], s, c, 0.5, 10.0) == pytest.approx(objective(1, s, c, 0.5, 10.0))
    assert expected_objective([0.5, 0, 0.5], s, c, 0.5, 10.0) == pytest.approx(0.5 * (0 - 0.05) + 0.5 * (1 - 0.5))


def test_optimize_improves_objective_and_writes_artifact(split, start, tmp_path):
    train, test = split
    res = optimize(train, test, start, lam=2.0, lm_cfg=FAKE, name="t", out_root=tmp_path, cache_dir=tmp_path / "c",
                   data_demos=False, **SMALL)
    m = res.metrics
    # at lambda=2 cost dominates: the fake follows "prefer tier 1", which MIPROv2 must find
    assert m["optimized_objective"] > m["start_objective"]
    assert m["gate"]["passed"] and m["gate"]["lower"] > 0 and m["held_out_gain"]["mean_gain"] > 0
    # gated as route() runs it (fused with an estimator fitted on the rest), LLM alone recorded beside
    assert m["gate"]["fused"]["mean_gain"] >= 0 and m["gate"]["lower"] > 0
    assert 0 <= m["optimized_fusion_w"] <= 1 and 0 < m["optimized_fused_aiq"] <= 1 and "held_out_fused_gain" in m
    assert FAKE_PROPOSALS[0] in (res.artifact / "instruction.txt").read_text()
    saved = json.loads((res.artifact / "metrics.json").read_text())
    for key in ("lambda", "evalset", "lm", "dspy_version", "created", "start_objective", "optimized_objective",
                "start_quality", "optimized_quality", "start_cost_share", "optimized_cost_share", "mined_policies"):
        assert key in saved
    assert saved["evalset"]["hash"] == train.content_hash()
    # instruction-only: the demos are the program's own, never evalset prompts
    assert load_artifact(res.artifact).demos == start.demos
    assert not set(train.prompts) & {d["query"] for d in load_artifact(res.artifact).demos}
    assert saved["objective"].startswith("mean over queries") and saved["lambda_source"] == "given"


def test_rerun_with_unchanged_inputs_makes_zero_lm_calls(split, start, tmp_path):
    train, test = split
    first = optimize(train, test, start, lam=0.5, lm_cfg=FAKE, name="t", out_root=tmp_path, cache_dir=tmp_path / "c", **SMALL)
    again = optimize(train, test, start, lam=0.5, lm_cfg=FAKE, name="t", out_root=tmp_path, cache_dir=tmp_path / "c", **SMALL)
    assert first.cache_misses > 0
    assert again.cache_misses == 0 and again.cache_hits > 0
    assert again.metrics["optimized_objective"] == first.metrics["optimized_objective"]


def test_hand_edited_instruction_is_the_next_starting_point(split, start, tmp_path):
    train, test = split
    res = optimize(train, test, start, lam=2.0, lm_cfg=FAKE, name="t", out_root=tmp_path, cache_dir=tmp_path / "c", **SMALL)
    (res.artifact / "instruction.txt").write_text("Hand-written: use the smallest tier you can.\n")
    edited = load_program(res.artifact)
    assert edited.instruction == "Hand-written: use the smallest tier you can."
    nxt = optimize(train, test, edited, lam=2.0, lm_cfg=FAKE, name="t2", out_root=tmp_path, cache_dir=tmp_path / "c", **SMALL)
    assert nxt.metrics["start_program"] == edited.name


def test_tier_mismatch_is_refused(split, start, tmp_path):
    train, test = split
    with pytest.raises(ConfigError, match="tiers"):
        optimize(train.select_models(["small", "large"]), test.select_models(["small", "large"]), start, lam=0.5,
                 lm_cfg=FAKE, out_root=tmp_path, cache_dir=tmp_path / "c", **SMALL)


def test_data_demos_record_their_ids_and_evaluation_drops_them(split, start, tmp_path, monkeypatch):
    from route_switch.llm.artifacts import artifact_demo_ids
    from route_switch.optimization.evaluate_llm import drop_demo_queries
    from route_switch.core.template import clip_query

    train, test = split
    monkeypatch.setenv("ROUTE_SWITCH_DATA", str(tmp_path))  # demos from "shared data" are allowed, with ids
    shared = train._replace(source=str(tmp_path / "x.parquet"))
    # the FAKE copies the demo nearest in words: the demo search matters; the start has no demos
    start.demos = []
    res = optimize(shared, test, start, lam=2.0, lm_cfg={"kind": "fake", "mode": "demos"}, out_root=tmp_path,
                   name="d", cache_dir=tmp_path / "c", mine=False, grounded=False,
                   **(SMALL | {"num_candidates": 6, "num_trials": 8}))
    assert res.metrics["gate"]["passed"] and res.metrics["held_out_gain"]["mean_gain"] > 0
    m, prog = res.metrics, load_artifact(res.artifact)
    assert m["demos"]["from"] == "evalset" and m["demos"]["evalset_hash"] == train.content_hash()
    ids = artifact_demo_ids(res.artifact)
    assert prog.demos and len(ids) == len(prog.demos) and ids <= set(train.queries["id"].astype(str))
    assert m["evalset"]["relative_to"] == "data root"
    # an evaluation whose test split holds the demo queries drops them, by id and by text
    dropped, n = drop_demo_queries(train, prog, ids, lambda q: clip_query(q, 256))
    assert n == len(ids) and not ids & set(dropped.queries["id"].astype(str))
    _, n_text = drop_demo_queries(train, prog, set(), lambda q: q)
    assert n_text == len(ids)


def test_kill_9_keeps_previous_artifact_and_rerun_resumes_from_cache(tmp_path):
    ev = from_records(synthetic_records(90), models=["small", "medium", "large"])
    data = tmp_path / "ev.parquet"
    save_evalset(ev, data)
    spec = tmp_path / "toy.yaml"
    spec.write_text(f"name: toy\nsource: {data}\ntiers:\n  - {{name: small, model: small}}\n"
                    "  - {name: medium, model: medium}\n  - {name: large, model: large}\n")
    # the FAKE engine is slowed down only for the run that is killed; its delay is not part of the cache key
    slow, fast = tmp_path / "slow.yaml", tmp_path / "fast.yaml"
    slow.write_text("kind: fake\ndelay_s: 0.2\n")
    fast.write_text("kind: fake\n")
    env = dict(os.environ, ROUTE_SWITCH_CACHE=str(tmp_path / "cache"))
    cmd = [sys.executable, "-m", "route_switch.cli", "optimize", "--evalset", str(spec), "--name", "toy",
           "--out-root", str(tmp_path / "opt"), "--n-train", "20", "--n-val", "12",
           "--n-test", "20", "--candidates", "2", "--trials", "3", "--quiet", "--start", str(packaged_dir("programs") / "default.yaml")]
    subprocess.run(cmd + ["--lm-config", str(fast), "--lambda", "0.5"], env=env, check=True, capture_output=True, timeout=300)
    before = (tmp_path / "opt" / "toy" / "metrics.json").read_text()

    # a different seed samples other queries: new LM calls (a lambda change alone would be all cache hits)
    second = cmd + ["--lambda", "1.0", "--seed", "1"]
    proc = subprocess.Popen(second + ["--lm-config", str(slow)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    time.sleep(3.5)  # well inside the run: dozens of new calls of 200 ms after ~1.5 s of start-up
    assert proc.poll() is None, "the run finished before it could be killed; slow the fake down"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert (tmp_path / "opt" / "toy" / "metrics.json").read_text() == before  # previous artifact intact
    load_artifact(tmp_path / "opt" / "toy")

    out = subprocess.run(second + ["--lm-config", str(fast)], env=env, check=True, capture_output=True, text=True,
                         timeout=300)
    hits = int(out.stdout.rsplit("cache hits ", 1)[1].split(")")[0])
    assert hits > 0  # the killed run's calls were replayed from the cache, not made again
    assert json.loads((tmp_path / "opt" / "toy" / "metrics.json").read_text())["lambda"] == 1.0


def test_corrupted_lm_cache_is_moved_aside_and_rebuilt(tmp_path):
    from route_switch.llm.cache import open_cache

    d = tmp_path / "lm"
    c = open_cache(d)
    c.set("k", "v")
    c.close()
    for f in d.glob("*.db"):
        f.write_bytes(b"this is not a sqlite database" * 100)
    c2 = open_cache(d)
    assert c2.get("k") is None  # a fresh, working cache
    c2.set("k2", "v2")
    assert c2.get("k2") == "v2"
    assert (tmp_path / "lm.corrupt").is_dir()


def test_candidates_are_screened_grounded_and_gated(split, start, tmp_path):
    from route_switch.llm.artifacts import instruction_origin, show

    train, test = split
    res = optimize(train, test, start, lm_cfg=FAKE, name="g", out_root=tmp_path, cache_dir=tmp_path / "c",
                   **(SMALL | {"num_candidates": 8}))  # reaches the fake's last proposal, not a routing text
    m = res.metrics
    origins = {(c["origin"], c["accepted"]) for c in m["candidates"]}
    assert ("data-grounded", True) in origins
    rejected = [c for c in m["candidates"] if not c["accepted"]]
    assert rejected and all(c["why_not"] for c in rejected)  # the "please provide ..." proposal never ran
    # break-even lambda by default: all-tier-1 and all-top have the same objective on the training split
    assert m["lambda_source"] == "break-even" and m["lambda"] > 0
    if m["instruction_origin"] != "start":  # a new program had to pass the paired gate
        assert m["gate"]["passed"] and m["gate"]["lower"] > m["gate"]["min_gain"]
    else:
        assert not m["gate"]["passed"]
    assert instruction_origin(res.artifact) == m["instruction_origin"]
    (res.artifact / "instruction.txt").write_text("Tier 1 for facts, tier 3 for proofs, tier 2 otherwise.\n")
    assert instruction_origin(res.artifact) == "hand-edited" and "origin: hand-edited" in show(res.artifact)


def test_gate_keeps_the_start_when_nothing_beats_it(split, start, tmp_path):
    train, test = split
    # an unreachable margin: whatever MIPROv2 prefers, the starting instruction stays
    res = optimize(train, test, start, lam=2.0, lm_cfg=FAKE, name="k", out_root=tmp_path, cache_dir=tmp_path / "c",
                   min_gain=10.0, **SMALL)
    assert load_artifact(res.artifact).instruction == start.instruction
    assert res.metrics["instruction_origin"] == "start" and res.metrics["gate"]["passed"] is False
    assert load_artifact(res.artifact).demos == start.demos


def test_break_even_lambda_ties_the_static_routers():
    import numpy as np

    from route_switch.core.selection import break_even_lambda, cost_normaliser

    rng = np.random.default_rng(0)
    scores = (rng.random((200, 3)) < [0.4, 0.6, 0.9]).astype(float)
    costs = np.tile([1.0, 4.0, 40.0], (200, 1)) * (1 + 0.1 * rng.random((200, 3)))
    lam, unit = break_even_lambda(scores, costs), cost_normaliser(costs.mean(axis=0))
    obj = lambda k: float(np.mean(scores[:, k] - lam * costs[:, k] / unit))  # noqa: E731
    assert obj(0) == pytest.approx(obj(2))


def test_grounded_instruction_reads_as_routing_text(split, start):
    from route_switch.optimization.grounding import describes_tiers, grounded_instruction, needed_tier_index

    train, _ = split
    text = grounded_instruction(train.prompts, train.scores, train.costs, start.tiers)
    assert describes_tiers(text, start.tiers) == (True, "")
    assert not any(p in text for p in train.prompts)  # words and counts, never a query
    import numpy as np

    s = np.array([[0, 1, 1], [1, 1, 1], [0, 0, 0], [0, 0, 0.5]])
    assert needed_tier_index(s, np.tile([1.0, 2.0, 3.0], (4, 1))).tolist() == [1, 0, 0, 2]
    assert not describes_tiers("Please provide me with a detailed description of the task, tier 1 tier 2.",
                               start.tiers)[0]
    from route_switch.optimization.grounding import strip_preamble

    body = "Choose tier 1 for facts and tier 3 for proofs."
    assert strip_preamble("Given the instructions you provided, here is a proposed instruction that helps:\n" + body) == body
    assert strip_preamble(body) == body
