"""Selection rules and metrics: small pure functions with hand-checkable answers."""
from __future__ import annotations

import numpy as np
import pytest

from route_switch.core.metrics import aiq, apgr, cost_ratio_at, cpt, pareto_front, upper_hull
from route_switch.core.selection import calibrate, outcome, select_lambda, select_tau

PRED = np.array([[0.50, 0.80, 0.90],
                 [0.90, 0.92, 0.95],
                 [0.20, 0.30, 0.31]])
COST = np.array([1.0, 3.0, 10.0])


def test_tau_rule_picks_cheapest_within_tolerance():
    assert select_tau(PRED, COST, 0.0).tolist() == [2, 2, 2]
    assert select_tau(PRED, COST, 0.05).tolist() == [2, 0, 1]
    assert select_tau(PRED, COST, 0.1).tolist() == [1, 0, 1]
    assert select_tau(PRED, COST, 1.0).tolist() == [0, 0, 0]


def test_tau_rule_ties_prefer_cheaper():
    assert select_tau(np.array([[0.7, 0.7, 0.7]]), COST, 0.0).tolist() == [0]


def test_lambda_rule():
    assert select_lambda(PRED, COST, 0.0).tolist() == [2, 2, 2]
    # lambda=0.5: 0.5-0.05, 0.8-0.15, 0.9-0.5 -> medium wins on row 0
    assert select_lambda(PRED, COST, 0.5).tolist() == [1, 0, 0]  # row 3: 0.15 vs 0.15, first wins
    assert select_lambda(PRED, COST, 100).tolist() == [0, 0, 0]


def test_outcome_and_calibration():
    scores = np.array([[0, 1, 1], [1, 1, 1], [0, 0, 1]], float)
    costs = np.tile(COST, (3, 1))
    assert outcome(np.array([1, 0, 2]), scores, costs) == (pytest.approx(14 / 3), pytest.approx(1.0))
    tau = calibrate(PRED, COST, scores, costs, knob="tau", target_quality=1.0)
    assert outcome(select_tau(PRED, COST, tau), scores, costs)[1] == 1.0
    tau_cheap = calibrate(PRED, COST, scores, costs, knob="tau", target_cost_share=0.15)
    assert outcome(select_tau(PRED, COST, tau_cheap), scores, costs)[0] <= 1.5 + 1e-9
    with pytest.raises(ValueError):
        calibrate(PRED, COST, scores, costs)


def test_upper_hull_is_non_decreasing_and_convex():
    h = upper_hull([1, 2, 3, 4, 5], [0.5, 0.55, 0.9, 0.8, 0.95])
    assert h[:, 0].tolist() == [1, 3, 5]
    assert np.all(np.diff(h[:, 1]) > 0)


def test_aiq_known_values():
    # one flat point across the whole range
    assert aiq([1, 10], [0.5, 0.5], 1, 10) == pytest.approx(0.5)
    # straight line from (0, 0) to (10, 1): area 0.5
    assert aiq([0, 10], [0, 1], 0, 10) == pytest.approx(0.5)
    # anchored at the cheapest model's quality, a single expensive point gets no credit below its cost
    assert aiq([10], [1.0], 0, 10, q_floor=0.0) == pytest.approx(0.5)
    assert aiq([10], [1.0], 0, 10) == pytest.approx(1.0)


def test_cost_ratio():
    c, q = [1, 2, 5], [0.8, 0.9, 0.95]
    assert cost_ratio_at(c, q, 0.9, 10, 0.95) == pytest.approx(0.2)   # needs 0.855: reached at cost 2
    assert cost_ratio_at(c, q, 0.95, 10, 0.95) == pytest.approx(0.5)  # needs 0.9025: only the 0.95 point
    assert cost_ratio_at(c, q, 0.95, 10, 1.0) == pytest.approx(0.5)
    assert cost_ratio_at(c, q, 1.0, 10, 1.0) is None


def test_apgr_and_cpt():
    # a router on the diagonal between weak and strong has APGR 0.5 and CPT(50%) 0.5
    s = np.linspace(0, 1, 11)
    q = 0.6 + 0.2 * s
    assert apgr(s, q, 0.6, 0.8) == pytest.approx(0.5, abs=1e-3)
    assert cpt(s, q, 0.6, 0.8, 0.5) == pytest.approx(0.5)
    # a perfect router recovers everything at once
    assert apgr([0.0], [0.8], 0.6, 0.8) == pytest.approx(1.0, abs=1e-3)


def test_pareto_front():
    assert sorted(pareto_front([1, 2, 3, 2], [0.5, 0.6, 0.9, 0.4]).tolist()) == [0, 1, 2]


def test_pareto_plot_labels_every_single_model(tmp_path):
    from route_switch.core.evaluate import plot_pareto

    singles = [{"name": f"model-{i}", "cost": 1e-6 * 2 ** i, "quality": 0.4 + 0.05 * i} for i in range(5)]
    res = {"singles": singles, "evalset": "toy", "n_test": 10, "oracle": {"cost": 2e-6, "quality": 0.9},
           "routers": {"r": {"points": [{"cost": 1e-6, "quality": 0.4}, {"cost": 8e-6, "quality": 0.7}], "aiq": 0.6},
                       "fixed": {"points": [{"cost": 4e-6, "quality": 0.5}], "aiq": 0.5}}}
    assert plot_pareto(res, tmp_path / "p.png") == [x["name"] for x in singles]
    assert (tmp_path / "p.png").stat().st_size > 10_000
