"""Drift: do this period's queries still look like the queries the router was trained on?

Two signals, both in the estimator's own terms:

* **neighbour similarity**: each query's cosine similarity to its nearest training query in the
  estimator's encoder space, averaged. The baseline is the same number for a same-size sample
  of training queries held out from the reference set, so "normal" is measured, not assumed.
  ``similarity_drop = baseline − period``.
* **confidence**: mean ``|p − 0.5|`` of the estimator's predicted qualities (1 = sure, 0 = coin
  flip), period vs the same baseline sample. ``confidence_drop = baseline − period``.

Drift is flagged when ``similarity_drop > threshold`` or ``confidence_drop > confidence_threshold``.
"""
from __future__ import annotations

import numpy as np


def _nn_similarity(X, R) -> np.ndarray:
    if X.shape[0] == 0 or R.shape[0] == 0:
        return np.zeros(X.shape[0])
    sim = X @ R.T
    sim = sim.toarray() if hasattr(sim, "toarray") else np.asarray(sim)
    return sim.max(axis=1)


def drift_report(period_queries, train_queries, estimator, *, threshold: float = 0.1,
                 confidence_threshold: float = 0.1, seed: int = 0, max_n: int = 2000) -> dict:
    """Compare ``period_queries`` with ``train_queries`` through ``estimator`` (see module docstring)."""
    rng = np.random.default_rng(seed)
    period = list(period_queries)[:max_n]
    train = list(train_queries)
    if len(period) == 0 or len(train) < 4:
        return {"flagged": False, "skipped": f"too few queries (period {len(period)}, training {len(train)})"}
    n_base = min(len(period), len(train) // 2)
    order = rng.permutation(len(train))
    base = [train[i] for i in order[:n_base]]
    ref = [train[i] for i in order[n_base:]][: max_n * 5]
    enc = estimator.encoder_
    R = enc.transform(ref)
    sim_p = _nn_similarity(enc.transform(period), R)
    sim_b = _nn_similarity(enc.transform(base), R)
    conf_p = np.abs(estimator.predict(period) - 0.5).mean()
    conf_b = np.abs(estimator.predict(base) - 0.5).mean()
    out = {"n_period": len(period), "n_baseline": n_base, "n_reference": len(ref),
           "nn_similarity_period": float(sim_p.mean()), "nn_similarity_baseline": float(sim_b.mean()),
           "confidence_period": float(conf_p), "confidence_baseline": float(conf_b),
           "threshold": threshold, "confidence_threshold": confidence_threshold}
    out["similarity_drop"] = out["nn_similarity_baseline"] - out["nn_similarity_period"]
    out["confidence_drop"] = out["confidence_baseline"] - out["confidence_period"]
    reasons = []
    if out["similarity_drop"] > threshold:
        reasons.append(f"nearest-neighbour similarity fell by {out['similarity_drop']:.3f} (> {threshold})")
    if out["confidence_drop"] > confidence_threshold:
        reasons.append(f"estimator confidence fell by {out['confidence_drop']:.3f} (> {confidence_threshold})")
    out["flagged"], out["reasons"] = bool(reasons), reasons
    # the least familiar queries of the period, for the report
    worst = np.argsort(sim_p)[:5]
    out["least_similar"] = [{"query": period[i][:160], "nn_similarity": float(sim_p[i])} for i in worst]
    return out


def format_drift(d: dict) -> str:
    """Markdown section for the weekly report."""
    if "skipped" in d:
        return f"Drift check skipped: {d['skipped']}."
    flag = "**DRIFT FLAGGED**: " + "; ".join(d["reasons"]) if d["flagged"] else "No drift beyond the thresholds."
    lines = [flag, "", "| signal | period | baseline (training sample) | drop | threshold |", "|---|---|---|---|---|",
             f"| nearest-neighbour cosine | {d['nn_similarity_period']:.3f} | {d['nn_similarity_baseline']:.3f} | "
             f"{d['similarity_drop']:+.3f} | {d['threshold']} |",
             f"| estimator confidence mean abs(p-0.5) | {d['confidence_period']:.3f} | {d['confidence_baseline']:.3f} | "
             f"{d['confidence_drop']:+.3f} | {d['confidence_threshold']} |",
             "", f"{d['n_period']} period queries vs {d['n_baseline']} training queries (reference set "
             f"{d['n_reference']}). Least familiar period queries:"]
    lines += [f"- {x['nn_similarity']:.3f}: {x['query']!r}" for x in d["least_similar"]]
    return "\n".join(lines)
