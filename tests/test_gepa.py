"""GEPA beside MIPROv2 with the FAKE router engine: feedback text, the search, the artifact."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from route_switch.core.paths import packaged_dir
from route_switch.llm.artifacts import load_artifact, load_program
from route_switch.core.errors import ConfigError
from route_switch.core.evalset import from_records
from route_switch.optimization.gepa import explain, feedback_metric
from route_switch.llm.fakes import FAKE_PROPOSALS
from route_switch.optimization.objective import objective
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


def test_feedback_names_chosen_and_right_tier_with_costs(start):
    scores, costs = np.array([1.0, 1.0, 1.0]), np.array([1.0, 2.0, 10.0])
    score, text = explain(start, 2, scores, costs, 0.5, 10.0)
    assert score == pytest.approx(objective(2, scores, costs, 0.5, 10.0))
    assert "You chose tier 3" in text and "100% of the top tier's mean cost" in text
    assert "right choice was tier 1" in text and "10% of the top tier's mean cost" in text and "cheaper tier" in text
    # too cheap: tier 1 fails, tier 3 is right
    score, text = explain(start, 0, np.array([0.0, 0.0, 1.0]), costs, 0.5, 10.0)
    assert score == 0.0 - 0.5 * 0.1 and "right choice was tier 3" in text and "needs a larger tier" in text
    score, text = explain(start, 0, scores, costs, 0.5, 10.0)
    assert "Correct" in text and "right choice" not in text
    score, text = explain(start, None, scores, costs, 0.5, 10.0)
    assert score == -0.5 and "not a valid tier" in text


def test_feedback_metric_has_gepa_signature_and_returns_prediction(start):
    import dspy

    m = feedback_metric(start, 0.5, 10.0)
    gold = dspy.Example(query="q", scores=[0.0, 1.0, 1.0], costs=[1.0, 2.0, 10.0]).with_inputs("query")
    out = m(gold, dspy.Prediction(tier="2", probs=[0.0, 1.0, 0.0]), None, "predict", None)
    assert out.score == pytest.approx(1 - 0.5 * 0.2) and "Correct" in out.feedback
    out = m(gold, dspy.Prediction(tier="9"))
    assert out.score == -0.5 and "not a valid tier" in out.feedback


def test_gepa_optimize_improves_objective_and_writes_artifact(split, start, tmp_path):
    train, test = split
    # the fake proposes its texts in turn; 8 trials' budget gives GEPA ~20 proposals, so it meets the
    # "prefer tier 1" one
    res = optimize(train, test, start, lam=2.0, lm_cfg=FAKE, name="g", out_root=tmp_path, cache_dir=tmp_path / "c",
                   optimizer="gepa", **dict(SMALL, num_trials=8))
    m = res.metrics
    # at lambda=2 cost dominates; the fake follows "prefer tier 1", which GEPA's proposals must find
    assert m["optimizer"] == "gepa"
    assert m["optimized_objective"] > m["start_objective"]
    assert FAKE_PROPOSALS[0] in (res.artifact / "instruction.txt").read_text()
    assert load_artifact(res.artifact).demos == start.demos  # instruction only
    assert json.loads((res.artifact / "metrics.json").read_text())["optimizer"] == "gepa"


def test_gepa_refuses_demo_pool_and_unknown_optimizer(split, start, tmp_path):
    train, test = split
    with pytest.raises(ConfigError, match="instruction only"):
        optimize(train, test, start, lam=0.5, lm_cfg=FAKE, name="g", out_root=tmp_path, cache_dir=tmp_path / "c",
                 optimizer="gepa", demo_pool=[{"query": "hi", "tier": 1}], **SMALL)
    with pytest.raises(ConfigError, match="unknown optimizer"):
        optimize(train, test, start, lam=0.5, lm_cfg=FAKE, name="g", out_root=tmp_path, optimizer="sgd", **SMALL)
    assert not (tmp_path / "g").exists()


def test_compact_proposer_shows_short_requests_with_feedback():
    import dspy

    from route_switch.optimization.gepa import RouterInstructionProposer
    from route_switch.llm.lm import make_lm

    lm = make_lm(FAKE)
    seen = []
    real = lm.engine.complete

    def spy(request):  # records what the reflection model is shown
        seen.append(request)
        return real(request)

    lm.engine.complete = spy
    data = {"predict": [{"Inputs": {"query": "Prove " + "x" * 500}, "Generated Outputs": {"tier": "3"},
                         "Feedback": "You chose tier 3 (large) ... The right choice was tier 1 (small)"}]}
    with dspy.context(lm=lm):
        out = RouterInstructionProposer("1 = small; 2 = large", max_query_chars=40)(
            {"predict": "Old instruction."}, data, ["predict"])
    # the learned rule is appended as a bullet; the instruction so far is kept
    assert out["predict"].startswith("Old instruction.\n- Route each request")
    shown = str(seen[-1])
    assert "The right choice was tier 1" in shown and "1 = small; 2 = large" in shown
    assert "x" * 41 not in shown and "x" * 34 + "..." in shown  # the request is cut to 40 characters


def test_compact_proposer_rejects_pasted_requests_and_rules_without_tier():
    from route_switch.optimization.gepa import RouterInstructionProposer

    recs = [{"Inputs": {"query": "A baker sells 12 muffins for $3 each and 8 cakes for $10 each. How much?"},
             "Feedback": "You chose tier 3 (large): quality 1.00 at 100% of the top tier's cost."}]
    ok = RouterInstructionProposer.usable
    assert ok("Send short arithmetic word problems to tier 1.", "Old.", recs)
    assert not ok("Send a baker sells 12 muffins for $3 each and 8 cakes for $10 each to tier 1.", "Old.", recs)
    assert not ok("Send it to tier 3 (large): quality 1.00 at 100% of the top tier's cost.", "Old.", recs)
    assert not ok("Use a bigger model for hard things.", "Old.", recs)  # names no tier
    assert not ok("Send proofs to tier 3.", "Old.\n- Send proofs to tier 3.", recs)  # already there
