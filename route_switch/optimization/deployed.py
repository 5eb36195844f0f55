"""Score a routing program as ``route()`` deploys it: its tier distribution fused with the estimator.

What users run is the fused router (:class:`~route_switch.routing.fusion.TierFusion`), so the optimiser's
gate and held-out figures judge programs that way too, beside the LLM-alone figures. The
estimator is fitted on training queries the program is not judged on; each program gets its own
fusion weight, chosen by cross-validated AIQ on the validation slice (as ``fit`` does on its
fusion slice); a query the LLM failed on is routed by the estimator alone, as in ``route()``.
"""
from __future__ import annotations

import numpy as np

from route_switch.core.evalset import Evalset


class FusedScorer:
    """Estimator predictions for the optimiser's slices and the fused router's objective and AIQ.

    ``fit_ev``: the training queries the estimator learns from (tiers in cost order); ``lam`` and
    ``unit``: the objective's λ and cost normaliser.
    """

    def __init__(self, fit_ev: Evalset, lam: float, unit: float, estimator_params: dict | None = None):
        from route_switch.core.estimator import QualityEstimator

        self.lam, self.unit = lam, unit
        self.unit_cost = fit_ev.costs.mean(axis=0)
        self.estimator = QualityEstimator(**(estimator_params or {})).fit(
            fit_ev.prompts, fit_ev.scores, fit_ev.models, fit_ev.costs)

    def _arrays(self, ev: Evalset, votes: list):
        est = self.estimator.predict(ev.prompts)
        ok = np.array([v is not None for v in votes])
        probs = np.array([v if v is not None else [np.nan] * ev.scores.shape[1] for v in votes], float)
        return est, probs, ok

    def fusion_for(self, ev: Evalset, votes: list):
        """A TierFusion whose weight is chosen by cross-validated AIQ on ``ev`` (the validation slice)."""
        from route_switch.routing.fusion import TierFusion

        est, probs, ok = self._arrays(ev, votes)
        return TierFusion().fit(est[ok], probs[ok], ev.scores[ok], ev.costs[ok])

    def predict(self, fusion, ev: Evalset, votes: list) -> np.ndarray:
        """Fused quality per (query, tier); the estimator's own where the LLM gave nothing."""
        est, probs, ok = self._arrays(ev, votes)
        out = est.copy()
        if ok.any():
            out[ok] = fusion.predict(est[ok], probs[ok])
        return out

    def per_query(self, fusion, ev: Evalset, votes: list) -> np.ndarray:
        """Objective ``score − λ·cost/C`` of the λ rule's tier on the fused quality, per query."""
        from route_switch.core.selection import select_lambda

        choice = select_lambda(self.predict(fusion, ev, votes), self.unit_cost, self.lam)
        rows = np.arange(len(ev))
        return ev.scores[rows, choice] - self.lam * ev.costs[rows, choice] / self.unit

    def aiq(self, fusion, ev: Evalset, votes: list) -> dict:
        """AIQ of the τ sweep of the fused router and of the estimator alone on ``ev``."""
        from route_switch.core.evaluate import _points, _summary, curve_context
        from route_switch.core.selection import TAU_GRID

        ctx = curve_context(ev)
        curve = lambda pred: _summary(_points(pred, self.unit_cost, ev, "tau", TAU_GRID), ctx)["aiq"]  # noqa: E731
        return {"fused_aiq": curve(self.predict(fusion, ev, votes)),
                "estimator_aiq": curve(self.estimator.predict(ev.prompts)), "fusion_w": fusion.w_}
