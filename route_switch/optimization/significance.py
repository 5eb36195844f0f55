"""Is a gain real? A one-sided paired bootstrap on per-query differences.

Both promotion decisions (the optimiser keeping a new program, the weekly job promoting one) compare
two routers *on the same held-out queries*. Differences between two routers on one query are far
less noisy than either router's mean, so the test resamples the per-query differences
``new − old`` and keeps the new router only when the lower bound of the mean difference is above
zero at the requested confidence. On a few dozen queries a fixed delta such as "+0.005" is
passed by noise about as often as by a real gain; a lower bound is not.
"""
from __future__ import annotations

import numpy as np


def paired_gain(new, old, *, confidence: float = 0.9, n_boot: int = 2000, seed: int = 0) -> dict:
    """Mean of ``new − old`` over queries and its one-sided bootstrap lower bound.

    Returns ``{"n", "mean_gain", "lower", "confidence", "passed"}``; ``passed`` is
    ``lower > 0``. Identical inputs give ``lower == 0`` and never pass.
    """
    new, old = np.asarray(new, float), np.asarray(old, float)
    if new.shape != old.shape or new.ndim != 1:
        raise ValueError(f"paired_gain needs two 1-d arrays of one length, got {new.shape} and {old.shape}")
    if not 0.5 <= confidence < 1:
        raise ValueError(f"confidence must be in [0.5, 1), got {confidence}")
    n = len(new)
    if n == 0:
        return {"n": 0, "mean_gain": 0.0, "lower": 0.0, "confidence": confidence, "passed": False}
    d = new - old
    rng = np.random.default_rng(seed)
    means = d[rng.integers(0, n, size=(n_boot, n))].mean(axis=1)
    lower = float(np.quantile(means, 1 - confidence))
    if not np.any(d):  # nothing differs: no resample can show a gain
        lower = 0.0
    return {"n": n, "mean_gain": float(d.mean()), "lower": lower, "confidence": confidence, "passed": lower > 0}


def describe_gain(g: dict) -> str:
    """One line for reports: ``gain +0.0123 (lower bound +0.0040 at 90%, 120 queries)``."""
    return (f"gain {g['mean_gain']:+.4f} (lower bound {g['lower']:+.4f} at {g['confidence']:.0%}, "
            f"{g['n']} queries)")
