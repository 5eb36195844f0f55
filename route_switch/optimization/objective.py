"""The optimisation objective, ``quality − λ·cost``, and the held-out figures of a program.

For a query with per-tier scores ``s`` and costs ``c``, a router LLM that answers the tier
distribution ``p`` earns ``Σ_t p(t) · (s[t] − λ · c[t] / C)``; the metric is its mean over queries.
``C`` (:func:`~route_switch.core.selection.cost_normaliser`) is the most expensive tier's mean cost per
query on the training split — the same unit λ has in ``route()``.
"""
from __future__ import annotations

import numpy as np

from route_switch.core.evalset import Evalset

OBJECTIVE = "mean over queries of sum_t p(t) * (score[t] - lambda * cost[t] / C)"


def objective(tier_index: int | None, scores: np.ndarray, costs: np.ndarray, lam: float, unit: float) -> float:
    """``score[t] − λ·cost[t]/C`` for one query routed to tier ``t``; ``−λ`` when there was no valid tier."""
    if tier_index is None:
        return -lam
    return float(scores[tier_index] - lam * costs[tier_index] / unit)


def expected_objective(probs, scores: np.ndarray, costs: np.ndarray, lam: float, unit: float) -> float:
    """``Σ_t p(t)·(score[t] − λ·cost[t]/C)``: the objective of a tier distribution; ``−λ`` for none."""
    if probs is None:
        return -lam
    return float(np.dot(np.asarray(probs, float), scores - lam * costs / unit))


def outcomes(votes: list, ev: Evalset, lam: float, unit: float) -> dict:
    """Held-out figures of per-query tier distributions (None = no valid answer) on ``ev``.

    ``objective``: the expected objective (see module docstring); ``label_*``: of the most likely
    tier; ``llm_aiq`` and ``line_aiq``: AIQ of the distribution's τ sweep and of the tier-1/top line.
    """
    from route_switch.core.evaluate import _points, _summary, curve_context
    from route_switch.routing.fusion import llm_quality
    from route_switch.core.selection import TAU_GRID

    n_tiers = ev.scores.shape[1]
    idx = [None if v is None else int(np.argmax(v)) for v in votes]
    valid = [(i, k) for i, k in enumerate(idx) if k is not None]
    top = n_tiers - 1
    probs = np.array([v if v is not None else np.eye(n_tiers)[top] for v in votes], float)
    ctx = curve_context(ev)
    line = _summary([{"cost": float(ev.costs[:, top].mean()), "quality": float(ev.scores[:, top].mean())}], ctx)
    curve = _summary(_points(llm_quality(probs), ev.costs.mean(axis=0), ev, "tau", TAU_GRID), ctx)
    return {
        "objective": float(np.mean([expected_objective(v, ev.scores[i], ev.costs[i], lam, unit)
                                    for i, v in enumerate(votes)])),
        "label_objective": float(np.mean([objective(k, ev.scores[i], ev.costs[i], lam, unit) for i, k in enumerate(idx)])),
        "quality": float(np.mean([ev.scores[i, k] for i, k in valid])) if valid else 0.0,
        "cost_share": float(np.mean([ev.costs[i, k] for i, k in valid]) / unit) if valid else 1.0,
        "tier_shares": [float(np.mean([k == t for k in idx])) for t in range(n_tiers)],
        "invalid": int(sum(k is None for k in idx)), "n": len(idx),
        "llm_aiq": curve["aiq"], "line_aiq": line["aiq"]}


def program_votes(module, queries: list[str], progress=None) -> list:
    """Tier distribution of a routing module for each query (None where it failed)."""
    out = []
    for q in queries:
        try:
            out.append(list(module(query=q).probs))
        except Exception:
            out.append(None)
        if progress is not None:
            progress.update(1)
    return out
