"""Anchored selection (parity), learn-then-test risk control and the error-bar helpers."""
from __future__ import annotations

import json

import numpy as np
import pytest

from route_switch.cli import main
from route_switch.routing.config import load_config
from route_switch.routing.controller import Router
from route_switch.core.risk import hoeffding_pvalue, ltt_tau, risk_report, wsr_pvalue
from route_switch.core.seeds import describe, evaluate_seeds
from route_switch.core.selection import ANCHORED_GRID, anchor_index, select_anchored

COST = np.array([1.0, 4.0, 20.0])


def test_anchored_rule_stays_on_anchor_leaves_only_for_cheaper_close_models():
    pred = np.array([[0.90, 0.80, 0.95], [0.50, 0.93, 0.95], [0.99, 0.99, 0.60]])
    assert (select_anchored(pred, COST, -1.0, anchor=2) == 2).all()            # τ = −1: never leave it
    assert select_anchored(pred, COST, 0.0, anchor=2).tolist() == [2, 2, 0]    # only when predicted ≥ anchor
    assert select_anchored(pred, COST, 0.05, anchor=2).tolist() == [0, 1, 0]   # cheapest within τ
    # never a model pricier than the anchor, however good its prediction
    assert (select_anchored(pred, COST, 1.0, anchor=1) != 2).all()
    assert anchor_index(np.array([0.7, 0.9, 0.9]), COST) == 1                  # ties: the cheaper


def test_pvalues_are_valid_under_the_null():
    # losses with mean exactly alpha: a valid p-value rejects at level δ at most δ of the time
    rng = np.random.default_rng(0)
    alpha, delta = 0.51, 0.1
    rej_w = rej_h = 0
    for _ in range(300):
        x = rng.choice([0.0, 0.5, 1.0], size=400, p=[0.05, 0.88, 0.07])   # mean 0.51
        rej_w += wsr_pvalue(x, alpha, delta, seed=int(rng.integers(1 << 30))) <= delta
        rej_h += hoeffding_pvalue(x, alpha) <= delta
    assert rej_w / 300 <= delta + 0.04 and rej_h / 300 <= delta + 0.04
    # and they do reject when the losses are clearly lower
    low = np.full(400, 0.5)
    assert wsr_pvalue(low, alpha, delta) < 0.05 and hoeffding_pvalue(low - 0.2, alpha) < 0.01


def _world(n, rng):
    """Fake world: 3 models; the cheap one succeeds on 'easy' queries; predictions are noisy truths."""
    easy = rng.random(n) < 0.6
    scores = np.column_stack([(rng.random(n) < np.where(easy, 0.95, 0.2)),
                              (rng.random(n) < np.where(easy, 0.95, 0.6)),
                              (rng.random(n) < 0.9)]).astype(float)
    pred = np.column_stack([np.where(easy, 0.9, 0.3), np.where(easy, 0.9, 0.6), np.full(n, 0.9)])
    return np.clip(pred + rng.normal(0, 0.1, pred.shape), 0, 1), scores


def test_learn_then_test_controls_the_true_loss():
    rng = np.random.default_rng(1)
    eps, delta = 0.03, 0.1
    pred_big, scores_big = _world(200_000, rng)   # stands for the population
    violations = 0
    for _ in range(40):
        pred, scores = _world(800, rng)
        res = ltt_tau(pred, COST, scores, anchor=2, epsilon=eps, delta=delta)
        ch = select_anchored(pred_big, COST, res["tau"], 2)
        true_loss = scores_big[:, 2].mean() - scores_big[np.arange(len(ch)), ch].mean()
        violations += true_loss > eps
        assert res["certified"] and res["tau"] >= -1
    assert violations / 40 <= delta + 0.05
    # too little calibration data for ε: nothing certified, the safe fallback is the anchor
    pred, scores = _world(5, rng)
    res = ltt_tau(pred, COST, scores, anchor=2, epsilon=0.001, delta=0.1)
    assert not res["certified"] and res["tau"] == ANCHORED_GRID.min()


def test_risk_report_and_fit_write_an_anchored_router(synthetic, tmp_path):
    train, test = synthetic.split(0.3, seed=0)
    r = risk_report(train, test, 0.05, 0.1)
    assert r["anchor"] == "large" and set(r) >= {"tau", "quality_loss", "violated", "cost_rel_best"}
    data = tmp_path / "syn.jsonl"
    data.write_text("".join(json.dumps(x) + "\n" for x in _records(synthetic)))
    assert main(["fit", "--data", str(data), "--out", str(tmp_path / "r"), "--max-quality-loss", "0.05",
                 "--confidence", "0.9"]) == 0
    cfg = load_config(tmp_path / "r")
    assert cfg.rule == "anchored" and cfg.risk["max_quality_loss"] == 0.05 and cfg.risk["confidence"] == 0.9
    router = Router.from_config(tmp_path / "r")
    d = router.route("Prove that the sum of the first 7 odd numbers is a perfect square, step by step.")
    assert d.path == "estimator" and "anchored" in d.reason
    # a bad value is a one-line usage error, not a traceback
    with pytest.raises(SystemExit) as e:
        main(["fit", "--data", str(data), "--max-quality-loss", "2"])
    assert e.value.code == 2


def _records(ev):
    rows = []
    for i in range(len(ev)):
        for j, m in enumerate(ev.models):
            rows.append({"id": str(ev.queries["id"].iloc[i]), "prompt": ev.prompts[i], "model": m,
                         "score": float(ev.scores[i, j]), "cost_usd": float(ev.costs[i, j])})
    return rows


def test_describe_and_seed_summary():
    d = describe([0.5, None, 0.7])
    assert d["n"] == 2 and d["n_missing"] == 1 and d["mean"] == pytest.approx(0.6) and d["std"] > 0
    fake = lambda s: {"evalset": "x", "n_train": 1, "n_test": 1, "oracle_aiq": 1.0,   # noqa: E731
                      "routers": {"route-switch": {"aiq": 0.5 + s / 10, "cost_ratio_at_95": None,
                                                   "cost_ratio_at_100": 0.9}}}
    res = evaluate_seeds(fake, [0, 1, 2])
    assert res["summary"]["route-switch.aiq"]["mean"] == pytest.approx(0.6)
    assert res["summary"]["route-switch.cost_ratio_at_95"]["n_missing"] == 3


def test_bootstrap_interval_contains_the_point_estimate(synthetic):
    from route_switch.core.evaluate import evaluate

    train, test = synthetic.split(0.3, seed=0)
    res = evaluate(train, test, routers=("route-switch",), operating_point=False, bootstrap=60)
    b = res["routers"]["route-switch"]["bootstrap"]
    lo, hi = b["tau"]["aiq"]["low"], b["tau"]["aiq"]["high"]
    assert lo <= res["aiq"] <= hi and hi - lo > 0
    assert "anchored" in b and res["routers"]["route-switch"]["anchored"]["anchor"] == "large"


def test_evaluate_seeds_cli_keeps_single_seed_json_without_seeds(synthetic, tmp_path, capsys):
    data = tmp_path / "syn.jsonl"
    data.write_text("".join(json.dumps(x) + "\n" for x in _records(synthetic)))
    assert main(["evaluate", "--data", str(data), "--routers", "route-switch", "--seeds", "0,1", "--json",
                 "--out", str(tmp_path / "s"), "--max-quality-loss", "0.05"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["seeds"] == [0, 1] and res["risk"]["splits"] == 2
    assert res["summary"]["route-switch.aiq"]["n"] == 2
    assert main(["evaluate", "--data", str(data), "--routers", "route-switch", "--json", "--out", str(tmp_path / "o")]) == 0
    single = json.loads(capsys.readouterr().out)
    assert "seeds" not in single and {"aiq", "cost_ratio_at_95", "cost_ratio_at_100"} <= set(single)


def test_router_yaml_selection_rule_is_validated(tmp_path):
    from route_switch.core.errors import ConfigError

    f = tmp_path / "router.yaml"
    f.write_text("selection: {rule: nope, tau: 0.1}\n")
    with pytest.raises(ConfigError, match="selection.rule"):
        load_config(f)
    f.write_text("selection: {rule: anchored, tau: -0.05, max_quality_loss: 0.02, confidence: 0.9}\n")
    cfg = load_config(f)
    assert cfg.rule == "anchored" and cfg.tau == -0.05 and cfg.risk == {"max_quality_loss": 0.02, "confidence": 0.9}
    f.write_text("selection: {tau: -0.05}\n")   # negative τ only means something for the anchored rule
    with pytest.raises(ConfigError):
        load_config(f)
