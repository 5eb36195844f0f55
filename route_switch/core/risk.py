"""Risk-controlled operating point: "lose at most ε quality versus the best model, with probability ≥ 1 − δ".

Method: **Learn then Test** (Angelopoulos, Bates, Candès, Jordan, Lei, 2021, arXiv:2110.01052).
Each knob value τ of the anchored rule (:func:`route_switch.core.selection.select_anchored`) is a
hypothesis ``H_τ: R(τ) > ε`` where ``R(τ) = E[s_anchor − s_chosen(τ)]`` is the expected quality
lost against the anchor (the best single model on the training data), in score units (scores
0..1: ε = 0.02 is two points of accuracy). On held-out calibration queries each H_τ gets a
finite-sample p-value, and **fixed-sequence testing** walks the grid from the safest τ (never
leave the anchor: loss exactly 0) towards cheaper ones, stopping at the first τ whose p-value
exceeds δ. The cheapest τ rejected before that point is returned; fixed-sequence testing
controls the family-wise error at δ, so ``P(R(τ̂) > ε) ≤ δ`` over the draw of the calibration
set. The guarantee needs the estimator to stay frozen after calibration (it is not refitted)
and future queries to come from the calibration queries' distribution.

p-values (per-query losses mapped to [0, 1] as ``(ℓ + 1) / 2``):

* ``wsr`` (default): the Waudby-Smith–Ramdas betting martingale used in LTT and RCPS
  (Bates et al., 2021): ``p = 1 / max_t Π_{i≤t} (1 + λ_i (α − ℓ_i))``, valid by Ville's
  inequality; tight when most queries lose nothing, as here.
* ``hoeffding``: ``p = exp(−2 n (α − R̂)²)``, simple and conservative.
"""
from __future__ import annotations

import math

import numpy as np

from route_switch.core.selection import ANCHORED_GRID, anchor_index, outcome, select_anchored


def hoeffding_pvalue(losses: np.ndarray, alpha: float) -> float:
    """p-value of ``H0: E[loss] ≥ alpha`` for losses in [0, 1] (Hoeffding's inequality)."""
    n, mean = len(losses), float(np.mean(losses))
    return 1.0 if mean >= alpha else math.exp(-2 * n * (alpha - mean) ** 2)


def wsr_pvalue(losses: np.ndarray, alpha: float, delta: float, seed: int = 0) -> float:
    """p-value of ``H0: E[loss] ≥ alpha`` for losses in [0, 1] from a betting martingale (WSR).

    The bets ``λ_t`` are predictable (computed from the losses before t) and stay in
    ``[0, 1/(1 − α))`` so every factor is positive; under H0 the capital is a non-negative
    supermartingale and ``P(max capital ≥ 1/δ) ≤ δ`` (Ville).
    """
    x = np.asarray(losses, float)[np.random.default_rng(seed).permutation(len(losses))]
    n = len(x)
    if n == 0:
        return 1.0
    # running mean / variance of the losses seen so far (with a prior point at 1/2, as in WSR)
    t = np.arange(1, n + 1)
    mu = (0.5 + np.cumsum(x)) / (t + 1)
    var = (0.25 + np.cumsum((x - mu) ** 2)) / (t + 1)
    var_prev = np.r_[0.25, var[:-1]]
    lam = np.sqrt(2 * math.log(1 / delta) / (n * var_prev))
    lam = np.minimum(lam, 0.5 / (1 - alpha))  # half the largest admissible bet
    log_k = np.cumsum(np.log1p(lam * (alpha - x)))
    return float(min(1.0, math.exp(-float(log_k.max()))))


def pvalue(losses: np.ndarray, alpha: float, delta: float, method: str = "wsr") -> float:
    if method == "hoeffding":
        return hoeffding_pvalue(losses, alpha)
    if method == "wsr":
        return wsr_pvalue(losses, alpha, delta)
    raise ValueError(f"unknown p-value method '{method}' (wsr, hoeffding)")


def ltt_tau(pred: np.ndarray, unit_cost: np.ndarray, scores: np.ndarray, anchor: int, epsilon: float,
            delta: float, *, grid=ANCHORED_GRID, method: str = "wsr") -> dict:
    """Learn-then-Test on calibration data: the cheapest anchored τ certified ``R(τ) ≤ ε`` at level δ.

    ``pred``/``scores`` are the calibration queries' predictions and true scores. Returns
    ``{"tau", "certified", "n_cal", "tested", "epsilon", "delta", "method"}``; when no τ passes
    (too few calibration queries for ε), ``tau`` is the grid's safest value (always the anchor).
    """
    if not 0 < epsilon < 1 or not 0 < delta < 1:
        raise ValueError(f"need 0 < max quality loss < 1 and 0 < 1 - confidence < 1, got {epsilon}, {delta}")
    rows = np.arange(len(scores))
    grid = np.sort(np.asarray(grid, float))  # safest (most negative) first
    chosen, passed = float(grid[0]), 0
    for v in grid:
        choice = select_anchored(pred, unit_cost, v, anchor)
        loss = scores[:, anchor] - scores[rows, choice]          # in [-1, 1]
        if pvalue((loss + 1) / 2, (epsilon + 1) / 2, delta, method) > delta:
            break  # fixed-sequence testing: the first failure ends the walk
        chosen, passed = float(v), passed + 1
    return {"tau": chosen, "certified": passed > 0, "n_cal": len(scores), "n_passed": passed,
            "epsilon": epsilon, "delta": delta, "method": method}


def calibrate_risk(train, epsilon: float, delta: float, *, estimator_params: dict | None = None, seed: int = 0,
                   cal_share: float = 0.3, method: str = "wsr"):
    """Fit the estimator on part of ``train`` and certify τ on the rest. Returns (estimator, anchor, ltt dict).

    The estimator is *not* refitted afterwards: the guarantee holds for the calibrated one.
    """
    from route_switch.core.estimator import QualityEstimator

    fit_part, cal = train.split(cal_share, seed + 1)
    est = QualityEstimator(**(estimator_params or {})).fit(fit_part.prompts, fit_part.scores, fit_part.models,
                                                           fit_part.costs)
    anchor = anchor_index(fit_part.scores.mean(axis=0), est.unit_cost_)
    res = ltt_tau(est.predict(cal.prompts), est.unit_cost_, cal.scores, anchor, epsilon, delta, method=method)
    res["anchor"] = est.models_[anchor]
    return est, anchor, res


def risk_report(train, test, epsilon: float, delta: float, *, estimator_params: dict | None = None,
                seed: int = 0, method: str = "wsr") -> dict:
    """Calibrate with LTT on ``train``, then measure the quality actually lost on ``test``.

    ``violated`` compares with the test's best single model (stricter than the anchor when the two
    differ); ``violated_vs_anchor`` with the anchor the guarantee is stated for.
    """
    est, anchor, res = calibrate_risk(train, epsilon, delta, estimator_params=estimator_params, seed=seed,
                                      method=method)
    choice = select_anchored(est.predict(test.prompts), est.unit_cost_, res["tau"], anchor)
    cost, quality = outcome(choice, test.scores, test.costs)
    single_q, single_c = test.scores.mean(axis=0), test.costs.mean(axis=0)
    best = int(np.lexsort((single_c, -single_q))[0])
    loss_best, loss_anchor = float(single_q[best] - quality), float(single_q[anchor] - quality)
    return {**res, "test_cost": cost, "test_quality": quality, "cost_rel_best": float(cost / single_c[best]),
            "quality_loss": loss_best, "quality_loss_vs_anchor": loss_anchor,
            "violated": loss_best > epsilon, "violated_vs_anchor": loss_anchor > epsilon}


def format_risk(r: dict) -> str:
    """One line: the certified τ and what happened on the test split."""
    return (f"risk-controlled point (learn-then-test, max loss {r['epsilon']}, confidence {1 - r['delta']:.2f}, "
            f"{r['n_cal']} calibration queries): anchored tau={r['tau']}, test quality loss {r['quality_loss']:+.4f}, "
            f"cost {r['cost_rel_best']:.1%} of the best model ({'VIOLATED' if r['violated'] else 'held'})")
