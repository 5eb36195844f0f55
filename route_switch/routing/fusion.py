"""Fusion: one predicted quality per (query, tier) from the estimator and the router LLM together.

The router LLM answers a probability per tier, ``p(t)``: how likely tier ``t`` is the cheapest
tier that answers well. Read as a quality signal, tier ``k`` is good enough when the needed
tier is ``k`` or cheaper: ``llm_quality_k = p(1) + … + p(k)`` (:func:`llm_quality`). That alone
is a router with the same τ/λ knob as the estimator.

:class:`TierFusion` combines the two per tier. Two methods, chosen by measurement
(``benchmarks/llm_router.py``; docs/results.md, "Router LLM against the estimator"):

* ``mix`` (default): ``fused_k = (1 − w) · estimator_k + w · llm_quality_k``. By default
  (``w="cv"``) the weight is chosen from :data:`W_GRID` (estimator only … LLM only) by 5-fold
  cross-validated AIQ on the fusion slice, with the one-standard-error rule towards 0.5
  (:func:`one_se_weight`): which part deserves more weight depends on the data (a fixed 0.5 lost
  to the LLM alone on one held-out split), but on ~100 queries the best weight alone is noisy.
  A number fixes it;
* ``stack``: per-tier logistic regression on ``logit(estimator_k)`` and ``logit(llm_quality_k)``,
  fitted on that slice (``C`` = 0.1). With a few hundred queries it recalibrates more than it
  learns, and lost to the estimator alone.

Either predicts quality, so the τ/λ rules and calibration apply unchanged. When the LLM gives
nothing (slow, down, invalid) the estimator's own prediction is used. Saved as readable JSON
(``fusion.json``); nothing is pickled.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from route_switch.core.errors import ArtifactError
from route_switch.core.files import read_artifact_json

EPS = 1e-3  # probabilities are clipped to [EPS, 1 − EPS] before the logit
W_GRID = (0.0, 0.25, 0.5, 0.75, 1.0)  # the LLM's weight in the mix, from estimator only to LLM only


def llm_quality(tier_probs: np.ndarray) -> np.ndarray:
    """P(tier k is enough) = cumulative tier probability, shape (n, n_tiers), cheapest first."""
    return np.clip(np.cumsum(np.atleast_2d(np.asarray(tier_probs, float)), axis=1), 0.0, 1.0)


def _logit(p) -> np.ndarray:
    p = np.clip(np.asarray(p, float), EPS, 1 - EPS)
    return np.log(p / (1 - p))


class TierFusion:
    """Estimator predictions and the LLM's tier distribution -> quality per tier (see module docstring).

    Hyper-parameters: ``method`` ("mix" or "stack"), ``w`` (the LLM's weight in the mix, or "cv"
    to choose it by cross-validation), ``C`` (inverse L2 strength of the stacking regressions).
    Learned by ``fit``: ``n_fit_``, ``w_`` (the weight used) and ``cv_scores_`` (mean fold AIQ per
    weight, with ``w="cv"``), and for "stack" ``coef_`` (n_tiers × 2: estimator, LLM) and
    ``intercept_`` (n_tiers).
    """

    def __init__(self, method: str = "mix", w: "float | str" = "cv", C: float = 0.1):
        self.method, self.w, self.C = method, w, C

    def get_params(self, deep: bool = True) -> dict:
        return {"method": self.method, "w": self.w, "C": self.C}

    def set_params(self, **params) -> "TierFusion":
        for k, v in params.items():
            setattr(self, k, v)
        return self

    @staticmethod
    def _features(est_pred, tier_probs, k: int) -> np.ndarray:
        return np.column_stack([_logit(est_pred[:, k]), _logit(llm_quality(tier_probs)[:, k])])

    def fit(self, est_pred: np.ndarray, tier_probs: np.ndarray, scores: np.ndarray,
            costs: np.ndarray | None = None) -> "TierFusion":
        """Fit on a slice: estimator predictions, LLM tier probabilities, true scores and (for ``w="cv"``)
        costs, all n × n_tiers in tier order."""
        from route_switch.core.estimator import fit_soft_logistic

        cv = isinstance(self.w, str) and self.w == "cv"
        if self.method not in ("mix", "stack") or not (cv or (isinstance(self.w, (int, float)) and 0 <= self.w <= 1)):
            raise ValueError(f"fusion method must be 'mix' or 'stack' and w 'cv' or within [0, 1], got "
                             f"{self.method!r}, {self.w!r}")
        est_pred, tier_probs, scores = (np.atleast_2d(np.asarray(a, float)) for a in (est_pred, tier_probs, scores))
        if not (est_pred.shape == tier_probs.shape == scores.shape) or len(scores) < 2:
            raise ValueError(f"fusion needs matching (n, tiers) arrays with n >= 2, got {est_pred.shape}, "
                             f"{tier_probs.shape}, {scores.shape}")
        self.n_fit_, self.n_tiers_ = len(scores), scores.shape[1]
        self.w_, self.cv_scores_ = (0.5 if cv else float(self.w)), {}
        if cv and self.method == "mix":
            if costs is None:
                raise ValueError("w='cv' chooses the weight by routing AIQ: pass costs to fit")
            folds = cv_weight_scores(est_pred, tier_probs, scores, np.asarray(costs, float))
            self.cv_scores_ = {w: float(np.mean(a)) for w, a in folds.items()}
            self.w_ = one_se_weight(folds)
        if self.method == "stack":
            fitted = [fit_soft_logistic(self._features(est_pred, tier_probs, k), scores[:, k], self.C)
                      for k in range(scores.shape[1])]
            self.coef_ = np.array([f[0] for f in fitted], float)
            self.intercept_ = np.array([f[1] for f in fitted], float)
        return self

    def predict(self, est_pred: np.ndarray, tier_probs: np.ndarray) -> np.ndarray:
        """Fused predicted quality, shape (n, n_tiers)."""
        est_pred, tier_probs = np.atleast_2d(est_pred), np.atleast_2d(tier_probs)
        if self.method == "mix":
            return (1 - self.w_) * est_pred + self.w_ * llm_quality(tier_probs)
        z = np.column_stack([self._features(est_pred, tier_probs, k) @ self.coef_[k] + self.intercept_[k]
                             for k in range(len(self.intercept_))])
        return 1.0 / (1.0 + np.exp(-z))

    # ------------------------------------------------------------------ persistence
    def to_dict(self) -> dict:
        doc = {"format": "route-switch-fusion", "version": 2, "method": self.method, "w": self.w_, "C": self.C,
               "n_fit": int(self.n_fit_), "n_tiers": int(self.n_tiers_)}
        if self.cv_scores_:
            doc["w_cv_aiq"] = {str(w): round(v, 5) for w, v in self.cv_scores_.items()}
        if self.method == "stack":
            doc.update(features=["logit(estimator quality)", "logit(LLM: P(needed tier <= k))"],
                       coef=self.coef_.round(6).tolist(), intercept=self.intercept_.round(6).tolist())
        return doc

    def save(self, path: str | Path) -> Path:
        from route_switch.core.files import atomic_write_text

        atomic_write_text(path, json.dumps(self.to_dict(), indent=2) + "\n")
        return Path(path)

    @classmethod
    def load(cls, path: str | Path, n_tiers: int | None = None) -> "TierFusion":
        """Read ``fusion.json``; a malformed file raises ArtifactError naming it."""
        p = Path(path)
        if not p.exists() and not p.is_symlink():
            raise ArtifactError("missing (fit with --program to create it)", file=str(p))
        doc = read_artifact_json(p, "fusion", ArtifactError)
        method, w = doc.get("method", "stack"), doc.get("w", 0.5)
        if method not in ("mix", "stack") or isinstance(w, bool) or not isinstance(w, (int, float)) or not 0 <= w <= 1:
            raise ArtifactError("method must be mix or stack and w a number within [0, 1]", file=str(p), field="method")
        self = cls(method=method, w=float(w))  # C only matters when fitting
        self.w_, self.cv_scores_ = float(w), {}
        try:
            self.n_fit_ = int(doc.get("n_fit", 0))
            if method == "stack":
                coef, intercept = np.array(doc["coef"], float), np.array(doc["intercept"], float)
                tiers = coef.shape[0] if coef.ndim == 2 else -1
            else:
                tiers = int(doc["n_tiers"])
        except (KeyError, TypeError, ValueError) as e:
            raise ArtifactError(f"malformed fusion parameters: {e}", file=str(p)) from None
        if method == "stack" and (coef.ndim != 2 or coef.shape[1] != 2 or intercept.shape != (coef.shape[0],)
                                  or not np.isfinite(coef).all() or not np.isfinite(intercept).all()):
            raise ArtifactError("coef must be n_tiers × 2 and intercept n_tiers, all finite", file=str(p), field="coef")
        if n_tiers is not None and tiers != n_tiers:
            raise ArtifactError(f"fitted for {tiers} tiers, the router has {n_tiers}", file=str(p), field="n_tiers")
        self.n_tiers_ = tiers
        if method == "stack":
            self.coef_, self.intercept_ = coef, intercept
        return self


def cv_weight_scores(est_pred, tier_probs, scores, costs, folds: int = 5) -> dict:
    """AIQ on each of ``folds`` folds of the τ-rule router on the mix, for each weight in :data:`W_GRID`."""
    from route_switch.core.evaluate import _points, _summary, curve_context
    from route_switch.core.selection import TAU_GRID

    class _Fold:  # the two arrays _points reads from an evalset
        def __init__(self, s, c):
            self.scores, self.costs = s, c

    unit_cost = costs.mean(axis=0)
    fold = np.arange(len(scores)) % folds
    out = {}
    for w in W_GRID:
        pred = (1 - w) * est_pred + w * llm_quality(tier_probs)
        aiqs = []
        for k in range(folds):
            m = fold == k
            if m.sum() < 2:
                continue
            part = _Fold(scores[m], costs[m])
            aiqs.append(_summary(_points(pred[m], unit_cost, part, "tau", TAU_GRID), curve_context(part))["aiq"])
        out[w] = aiqs
    return out


def one_se_weight(fold_aiqs: dict) -> float:
    """The weight nearest 0.5 whose fold AIQs are within one standard error (paired over folds) of
    the best weight's: on a slice of ~100 queries the best weight alone swings from seed to seed,
    and an extreme weight (one part ignored) should need more than noise to win."""
    best = max(fold_aiqs, key=lambda w: np.mean(fold_aiqs[w]))

    def close(w):
        d = np.asarray(fold_aiqs[w]) - np.asarray(fold_aiqs[best])
        return d.mean() >= -(d.std(ddof=1) / np.sqrt(len(d)) if len(d) > 1 else 0.0) - 1e-12

    return min((w for w in fold_aiqs if close(w)), key=lambda w: (abs(w - 0.5), w))


def hash_sample(prompts: list[str], n: int) -> np.ndarray:
    """Sorted indices of the ``n`` prompts with the lowest BLAKE2 hash (deterministic, split-independent)."""
    h = [hashlib.blake2b(p.encode("utf-8", "surrogatepass"), digest_size=8).digest() for p in prompts]
    return np.sort(np.argsort(h, kind="stable")[:n])


def llm_votes(router_llm, prompts: list[str], desc: str = "router LLM", progress: bool = True):
    """Tier probabilities (n × tiers, cheapest first) and a mask of the queries the LLM answered."""
    from tqdm import tqdm

    n_tiers = len(router_llm.program.tiers)
    probs, ok = np.full((len(prompts), n_tiers), np.nan), np.zeros(len(prompts), bool)
    for i, q in enumerate(tqdm(prompts, desc=desc, unit="query", disable=not progress)):
        try:
            probs[i] = router_llm.vote(q).probs
            ok[i] = True
        except Exception:  # counted as invalid; the estimator decides for it, as in route()
            pass
    return probs, ok


def router_llm_for(program, lm_cfg: dict | None = None):
    """A RouterLLM for ``program`` whose calls go through the disk cache."""
    from route_switch.llm.cache import cached_lm
    from route_switch.core.paths import cache_dir
    from route_switch.llm.router_llm import RouterLLM

    lm, _ = cached_lm(lm_cfg or {"kind": "local"}, program.labels, cache_dir() / "lm")
    return RouterLLM(program, lm=lm)


def fusion_slice(train, router_llm, n: int, estimator_params: dict | None = None, progress: bool = True):
    """What a fusion is fitted on: ``n`` training queries (lowest hash) routed by the LLM and by an
    estimator fitted on the rest of ``train``.

    Returns ``(estimator predictions, tier probabilities, scores, costs)``, each (usable rows × tiers)
    in tier order (cheapest first), and the number of queries the LLM failed on.
    """
    from route_switch.core.estimator import QualityEstimator

    order = np.argsort(train.costs.mean(axis=0), kind="stable")
    rows = hash_sample(train.prompts, n)
    rest = train.subset(np.setdiff1d(np.arange(len(train)), rows))
    part = train.subset(rows)
    est = QualityEstimator(**(estimator_params or {})).fit(rest.prompts, rest.scores, rest.models, rest.costs)
    probs, ok = llm_votes(router_llm, part.prompts, "router LLM (fusion slice)", progress)
    return (est.predict(part.prompts)[:, order][ok], probs[ok], part.scores[:, order][ok],
            part.costs[:, order][ok], int((~ok).sum()))


def fit_fusion(train, program, *, lm_cfg: dict | None = None, n: int = 200, estimator_params: dict | None = None,
               target_quality: float = 0.95, router_llm=None, progress: bool = True) -> tuple[TierFusion, float, dict]:
    """Fit a TierFusion for deployment and calibrate its τ; returns (fusion, τ, report).

    The fit uses :func:`fusion_slice`. τ is calibrated for ``target_quality`` on fused
    predictions made out of fold (5 folds), so it is not fitted on the queries it is judged on.
    """
    from route_switch.core.selection import calibrate

    router_llm = router_llm or router_llm_for(program, lm_cfg)
    e, p, s, c, failed = fusion_slice(train, router_llm, n, estimator_params, progress)
    if len(s) < 10:
        raise ValueError(f"only {len(s)} usable router-LLM answers on the fusion slice: too few to fit")
    oof = np.empty_like(s)
    folds = np.arange(len(s)) % 5
    for k in range(5):
        tr = folds != k
        oof[~tr] = TierFusion().fit(e[tr], p[tr], s[tr], c[tr]).predict(e[~tr], p[~tr])
    unit_cost = np.sort(train.costs.mean(axis=0))
    tau = calibrate(oof, unit_cost, s, c, knob="tau", target_quality=target_quality)
    fusion = TierFusion().fit(e, p, s, c)
    return fusion, float(tau), {"n": len(s) + failed, "usable": len(s), "tau": float(tau), "w": fusion.w_,
                                "w_cv_aiq": fusion.cv_scores_}
