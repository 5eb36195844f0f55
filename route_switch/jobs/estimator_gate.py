"""The estimator's gate when traffic moves: judge a refit on every label the deployed estimator has
not trained on, out of fold, instead of on a small held-out slice of this period's labels.

Why: a held-out slice of one week's new labels (a few dozen queries) rarely shows a real gain at
90% confidence, so a router falls behind drifting traffic week after week. Cross-fitting uses every
unseen label once as a test query, and labels from weeks whose refit was not promoted stay unseen,
so the evidence grows until it is enough. The gain is each query's objective averaged over the τ
sweep (:func:`~route_switch.jobs.gate.curve_per_query`): a refit must route better across the
operating points, as AIQ measures, not only at the one its own τ calibration lands on (a noisy
20% validation slice moves that point by more than the gain being tested).

The deployed estimator's training queries are recorded (hashes of the normalised prompts, with the
SHA-256 of its ``estimator.json``) when the job promotes it; an estimator replaced by hand no longer
matches its record, and then only this period's new labels count as unseen.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from route_switch.jobs.gate import estimator_choices, estimator_predictions


def record_path(work_dir: Path, name: str) -> Path:
    return Path(work_dir) / f"{name}-estimator-trained-on.json"


def _key(prompt: str) -> str:
    from route_switch.core.evalset import normalise_prompt

    return hashlib.sha1(normalise_prompt(prompt).encode("utf-8", "surrogatepass")).hexdigest()[:16]


def _estimator_sha(est_dir: Path) -> str | None:
    try:
        return hashlib.sha256((Path(est_dir) / "estimator.json").read_bytes()).hexdigest()
    except OSError:
        return None


def save_trained_on(path: Path, est_dir: Path, prompts) -> None:
    """Record what the estimator now in ``est_dir`` was fitted on (call after promoting it)."""
    from route_switch.core.files import atomic_write_text

    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {"estimator_sha256": _estimator_sha(est_dir), "prompts": sorted({_key(p) for p in prompts})}
    atomic_write_text(path, json.dumps(doc) + "\n")


def unseen_rows(path: Path, est_dir: Path, merged, new) -> np.ndarray:
    """Rows of ``merged`` the deployed estimator has not trained on: from its record when the record
    matches it, else this period's new labels."""
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
        ok = doc.get("estimator_sha256") == _estimator_sha(est_dir) and isinstance(doc.get("prompts"), list)
    except (OSError, ValueError, AttributeError):
        ok = False
    if ok:
        seen = set(doc["prompts"])
        return np.array([i for i, p in enumerate(merged.prompts) if _key(p) not in seen], dtype=int)
    fresh = set() if new is None else {_key(p) for p in new.prompts}
    return np.array([i for i, p in enumerate(merged.prompts) if _key(p) in fresh], dtype=int)


def cross_fit(merged, rows: np.ndarray, tiers, work: Path, *, folds: int, target_quality: float,
              seed: int) -> tuple[list, np.ndarray]:
    """Out-of-fold tier choices and predictions on ``merged.subset(rows)``: each fold of ``rows`` is
    routed by an estimator fitted on every other label (the earlier weeks included), as the job
    would deploy it."""
    from route_switch.core.estimator import QualityEstimator
    from route_switch.routing.fitting import fit

    order = np.random.default_rng(seed).permutation(len(rows))
    choice: list = [None] * len(rows)
    pred = np.zeros((len(rows), len(merged.models)))
    for k, part in enumerate(np.array_split(order, folds)):
        held = np.zeros(len(merged), dtype=bool)
        held[rows[part]] = True
        out = Path(work) / f"fold-{k}"
        fit(merged.subset(np.flatnonzero(~held)), out, tiers=tiers, target_quality=target_quality, seed=seed)
        fold = merged.subset(rows[part])
        for j, c in zip(part, estimator_choices(out, fold, tiers)):
            choice[j] = c
        pred[part] = estimator_predictions(QualityEstimator.load(out), fold)
    return choice, pred
