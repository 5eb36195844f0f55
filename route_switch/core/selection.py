"""Selection rules: from predicted qualities (n x m) and model unit costs (m) to a model per query.

Both rules are pure vectorised functions, shared by ``route()``, evaluation and calibration.

* **τ rule** (IPR's tolerance): among the models whose predicted quality is at least
  ``max_k q̂_k − τ`` choose the cheapest (ties: the higher predicted quality). τ = 0 picks the
  model predicted best (cheapest among ties); τ = 1 always picks the cheapest model.
* **λ rule**: choose ``argmax_k q̂_k − λ · c_k / C`` where ``C`` (:func:`cost_normaliser`) is the most
  expensive model's mean cost per query. λ has this one meaning everywhere: ``route()``, the
  oracle, and the optimiser's objective ``score − λ · cost / C`` (per query, with that query's cost).
  :func:`break_even_lambda` gives the λ at which sending everything to the cheapest or to the
  most expensive model score the same, so only a router that tells queries apart can beat both.
"""
from __future__ import annotations

import numpy as np


def select_tau(pred: np.ndarray, unit_cost: np.ndarray, tau: float) -> np.ndarray:
    """Index of the cheapest model within ``tau`` of the best predicted quality, per row."""
    pred = np.atleast_2d(pred)
    ok = pred >= pred.max(axis=1, keepdims=True) - tau - 1e-12
    # cost first, predicted quality as tie-break: a tiny fraction of quality keeps cost ordering.
    key = np.where(ok, np.asarray(unit_cost)[None, :] - 1e-9 * pred, np.inf)
    return key.argmin(axis=1)


def cost_normaliser(unit_cost) -> float:
    """The unit λ prices cost in: the most expensive model's mean cost per query (1 if all are free)."""
    m = float(np.max(unit_cost)) if len(unit_cost) else 0.0
    return m if m > 0 else 1.0


def select_lambda(pred: np.ndarray, unit_cost: np.ndarray, lam: float) -> np.ndarray:
    """Index maximising predicted quality − λ·cost/C, per row (C = :func:`cost_normaliser`)."""
    pred = np.atleast_2d(pred)
    c = np.asarray(unit_cost, dtype=float)
    return (pred - lam * c[None, :] / cost_normaliser(c)).argmax(axis=1)


def break_even_lambda(scores: np.ndarray, costs: np.ndarray) -> float:
    """λ at which all-cheapest and all-most-expensive have the same mean ``quality − λ·cost/C``.

    With this λ the objective is the height above the straight line between those two static
    routers (plus a constant), so "always tier 1" cannot win it.
    """
    q, c = np.asarray(scores, float).mean(axis=0), np.asarray(costs, float).mean(axis=0)
    lo, hi = int(np.argmin(c)), int(np.argmax(c))
    dc = (c[hi] - c[lo]) / cost_normaliser(c)
    return float(max(q[hi] - q[lo], 0.0) / dc) if dc > 0 else 0.0


def select(pred: np.ndarray, unit_cost: np.ndarray, tau: float | None = None,
           lam: float | None = None) -> np.ndarray:
    """Apply the λ rule when ``lam`` is given, else the τ rule (τ defaults to 0)."""
    if lam is not None:
        return select_lambda(pred, unit_cost, lam)
    return select_tau(pred, unit_cost, 0.0 if tau is None else tau)


def outcome(choice: np.ndarray, scores: np.ndarray, costs: np.ndarray) -> tuple[float, float]:
    """(mean cost, mean quality) actually obtained by a per-query choice of models."""
    rows = np.arange(len(choice))
    return float(costs[rows, choice].mean()), float(scores[rows, choice].mean())


TAU_GRID = np.unique(np.concatenate([np.linspace(0, 0.1, 41), np.linspace(0.1, 1, 91)]))
LAMBDA_GRID = np.unique(np.concatenate([np.linspace(0, 0.2, 41), np.linspace(0.2, 2, 37), [3, 5, 10]]))


def calibrate(pred: np.ndarray, unit_cost: np.ndarray, scores: np.ndarray, costs: np.ndarray, *,
              knob: str = "tau", target_cost_share: float | None = None,
              target_quality: float | None = None) -> float:
    """Pick τ (or λ) on validation data to meet a target (RouteLLM-style calibration).

    ``target_cost_share``: average cost at most this share of the most expensive model's cost —
    returns the knob value with the highest validation quality under that budget.
    ``target_quality``: validation quality at least this share of the best single model's —
    returns the cheapest knob value reaching it (or the best-quality one if none does).
    """
    if (target_cost_share is None) == (target_quality is None):
        raise ValueError("give exactly one of target_cost_share, target_quality")
    grid = TAU_GRID if knob == "tau" else LAMBDA_GRID
    rule = select_tau if knob == "tau" else select_lambda
    pts = np.array([outcome(rule(pred, unit_cost, v), scores, costs) for v in grid])
    top_cost = costs.mean(axis=0).max()
    best_q = scores.mean(axis=0).max()
    if target_cost_share is not None:
        ok = pts[:, 0] <= target_cost_share * top_cost + 1e-15
        if not ok.any():
            return float(grid[pts[:, 0].argmin()])
        i = np.flatnonzero(ok)[pts[ok, 1].argmax()]
        return float(grid[i])
    ok = pts[:, 1] >= target_quality * best_q - 1e-12
    if not ok.any():
        return float(grid[pts[:, 1].argmax()])
    i = np.flatnonzero(ok)[pts[ok, 0].argmin()]
    return float(grid[i])


# ---------------------------------------------------------------------- anchored rule (parity)
# The τ rule compares every model with the *predicted* best, so even τ = 0 swaps the best single
# model for whichever model the estimator happens to rate highest: it cannot promise that
# model's quality. The anchored rule starts from the best single model and leaves it only when
# a cheaper model is predicted close enough to *it*. τ < 0 demands that the cheaper model be
# predicted better than the anchor by |τ|; τ = −1 never leaves the anchor.
ANCHORED_GRID = np.unique(np.concatenate([[-1.0], np.linspace(-0.3, 0, 31), np.linspace(0, 0.1, 21),
                                          np.linspace(0.1, 1, 46)]))


def anchor_index(mean_quality: np.ndarray, unit_cost: np.ndarray) -> int:
    """The best single model: highest mean (training) quality, the cheaper one among ties."""
    return int(np.lexsort((np.asarray(unit_cost, float), -np.asarray(mean_quality, float)))[0])


def select_anchored(pred: np.ndarray, unit_cost: np.ndarray, tau: float, anchor: int) -> np.ndarray:
    """Per row: the cheapest model costing less than the anchor with q̂_k ≥ q̂_anchor − τ, else the anchor."""
    pred = np.atleast_2d(pred)
    c = np.asarray(unit_cost, float)
    ok = (pred >= pred[:, [anchor]] - tau - 1e-12) & (c < c[anchor])[None, :]
    ok[:, anchor] = True
    key = np.where(ok, c[None, :] - 1e-9 * pred, np.inf)
    return key.argmin(axis=1)


def select_rule(pred: np.ndarray, unit_cost: np.ndarray, *, rule: str = "tau", tau: float | None = None,
                lam: float | None = None, anchor: int | None = None) -> np.ndarray:
    """``select`` with a named rule: ``tau`` / ``lambda`` as :func:`select`, or ``anchored`` (needs ``anchor``)."""
    if rule == "anchored" and lam is None:
        if anchor is None:
            raise ValueError("the anchored rule needs the anchor model's index")
        return select_anchored(pred, unit_cost, 0.0 if tau is None else tau, anchor)
    return select(pred, unit_cost, tau=tau, lam=lam)


def sweep(pred: np.ndarray, unit_cost: np.ndarray, scores: np.ndarray, costs: np.ndarray, grid,
          rule: str = "tau", anchor: int | None = None) -> list[dict]:
    """(knob, cost, quality) for every knob value of ``grid`` under ``rule``."""
    out = []
    for v in grid:
        choice = (select_rule(pred, unit_cost, rule=rule, tau=v, anchor=anchor) if rule != "lambda"
                  else select_lambda(pred, unit_cost, v))
        c, q = outcome(choice, scores, costs)
        out.append({"tau" if rule != "lambda" else "lambda": round(float(v), 4), "cost": c, "quality": q})
    return out
