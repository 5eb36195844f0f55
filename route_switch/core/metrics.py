"""Routing metrics as small pure functions over (cost, quality) points.

* ``aiq``: RouterBench's Average Improvement in Quality — the area under the router's
  non-decreasing upper convex hull of (cost, quality) points, extended flat to ``c_max``,
  divided by ``c_max − c_min``. Evaluation passes the cheapest and the most expensive single
  model's cost as ``c_min``/``c_max`` so every router is integrated over the same range, and
  anchors every hull at the cheapest model's point ``(c_min, q_floor)``: any router can send
  everything to the cheapest model, and without the anchor a router with one expensive point
  would be credited its quality at costs it cannot reach.
* ``cost_ratio_at``: the cheapest operating point reaching ``share`` × the best single model's
  quality, as a fraction of that model's cost (``None`` if no point reaches it).
* ``apgr`` / ``cpt``: RouteLLM's metrics for two models, from the router's points expressed as
  (share of calls to the strong model, quality).
"""
from __future__ import annotations

import numpy as np


def upper_hull(costs, quals) -> np.ndarray:
    """Non-decreasing upper convex hull of points, as an array of (cost, quality) rows."""
    pts = sorted(set(zip(map(float, costs), map(float, quals))))
    hull: list[tuple[float, float]] = []
    for p in pts:
        # keep only points that raise quality: the hull is non-decreasing
        if hull and p[1] <= hull[-1][1]:
            continue
        while len(hull) >= 2:
            (x1, y1), (x2, y2) = hull[-2], hull[-1]
            if (x2 - x1) * (p[1] - y1) - (y2 - y1) * (p[0] - x1) >= 0:  # hull[-1] under the chord
                hull.pop()
            else:
                break
        hull.append(p)
    return np.array(hull)


def aiq(costs, quals, c_min: float, c_max: float, q_floor: float | None = None) -> float:
    """Area under the non-decreasing convex hull over [c_min, c_max], divided by the range.

    ``q_floor``: quality at ``c_min`` (the cheapest model's), added to the points as an anchor.
    """
    costs, quals = list(costs), list(quals)
    if q_floor is not None:
        costs.append(c_min)
        quals.append(q_floor)
    hull = upper_hull(costs, quals)
    if c_max <= c_min:
        return float(hull[:, 1].max())
    xs = np.concatenate([[c_min], hull[:, 0], [c_max]])
    ys = np.concatenate([[hull[0, 1]], hull[:, 1], [hull[-1, 1]]])
    xs = np.clip(xs, c_min, c_max)
    return float(np.trapezoid(ys, xs) / (c_max - c_min))


def cost_ratio_at(costs, quals, best_quality: float, best_cost: float, share: float = 0.95) -> float | None:
    """Min cost of a point with quality ≥ share·best_quality, over best_cost; None if unreached."""
    costs, quals = np.asarray(costs, float), np.asarray(quals, float)
    ok = quals >= share * best_quality - 1e-12
    if not ok.any() or best_cost <= 0:
        return None
    return float(costs[ok].min() / best_cost)


def pgr(quality: float, weak_quality: float, strong_quality: float) -> float:
    """Performance gap recovered: 0 at the weak model's quality, 1 at the strong model's."""
    gap = strong_quality - weak_quality
    return float((quality - weak_quality) / gap) if gap != 0 else float("nan")


def apgr(strong_share, quals, weak_quality: float, strong_quality: float) -> float:
    """Average PGR over the share of strong-model calls from 0 to 1 (RouteLLM's APGR).

    The router's points are joined with (0, weak) and (1, strong), made non-decreasing in
    share (a router can always send more calls to the strong model at random), and integrated.
    """
    s = np.concatenate([[0.0], np.asarray(strong_share, float), [1.0]])
    q = np.concatenate([[weak_quality], np.asarray(quals, float), [strong_quality]])
    order = np.argsort(s, kind="stable")
    s, q = s[order], np.maximum.accumulate(q[order])
    grid = np.linspace(0, 1, 1001)
    qi = np.interp(grid, s, q)
    return float(np.trapezoid([pgr(x, weak_quality, strong_quality) for x in qi], grid))


def cpt(strong_share, quals, weak_quality: float, strong_quality: float, target_pgr: float) -> float | None:
    """Call-performance threshold: min share of strong calls reaching ``target_pgr``."""
    s, q = np.asarray(strong_share, float), np.asarray(quals, float)
    ok = np.array([pgr(x, weak_quality, strong_quality) >= target_pgr - 1e-12 for x in q])
    return float(s[ok].min()) if ok.any() else None


def pareto_front(costs, quals) -> np.ndarray:
    """Indices of points not dominated (cheaper-or-equal and better-or-equal) by another."""
    costs, quals = np.asarray(costs, float), np.asarray(quals, float)
    keep = []
    for i in range(len(costs)):
        dominated = np.any((costs <= costs[i]) & (quals >= quals[i]) & ((costs < costs[i]) | (quals > quals[i])))
        if not dominated:
            keep.append(i)
    return np.array(keep, dtype=int)
