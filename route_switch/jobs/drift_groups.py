"""Drift with consequences: which groups of this period's queries moved, and labelling more of them.

``moved_groups`` clusters the period's queries in the estimator's encoder space (k-means) and keeps
the clusters whose mean nearest-neighbour similarity to the training queries fell by more than the
drift threshold below the baseline (see :mod:`route_switch.jobs.drift`). Each group is named by its
most characteristic terms, its size, a few example queries and, once labelled, the cheapest tier
that reaches 95% of the top tier's mean score on it (the tier those queries now need).

The groups are kept in ``<work_dir>/<name>-drift-groups.json``; the next run draws
``drift.focus_share`` of its sample from logged queries closer to a drifted group than to the
training set (:func:`focus_mask`), so the job learns the moved traffic faster.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

EXAMPLES_KEPT = 40  # per group, in the state file: enough to recognise the group next week


def _dense_sim(X, R) -> np.ndarray:
    sim = X @ R.T
    return sim.toarray() if hasattr(sim, "toarray") else np.asarray(sim)


def _terms(texts: list[str], labels: np.ndarray, k: int, n_terms: int = 5) -> list[list[str]]:
    """Per cluster, the terms whose TF-IDF weight is highest in it relative to the other clusters."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    try:
        vec = TfidfVectorizer(stop_words="english", max_features=5000, token_pattern=r"(?u)\b[a-zA-Z][a-zA-Z]+\b")
        X = vec.fit_transform(texts)
    except ValueError:  # no usable words at all
        return [[] for _ in range(k)]
    vocab = np.array(vec.get_feature_names_out())
    overall = np.asarray(X.mean(axis=0)).ravel()
    out = []
    for c in range(k):
        m = labels == c
        if not m.any():
            out.append([])
            continue
        score = np.asarray(X[m].mean(axis=0)).ravel() - overall
        out.append([str(vocab[i]) for i in np.argsort(-score)[:n_terms] if score[i] > 0])
    return out


def moved_groups(period, train, estimator, *, threshold: float, max_groups: int = 3, seed: int = 0,
                 max_n: int = 2000) -> list[dict]:
    """Clusters of ``period`` queries whose similarity to ``train`` fell by more than ``threshold``."""
    from sklearn.cluster import KMeans

    period = list(dict.fromkeys(period))[:max_n]
    train = list(train)
    if len(period) < 10 or len(train) < 10:
        return []
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(train))
    n_base = min(len(period), len(train) // 2)
    base, ref = [train[i] for i in order[:n_base]], [train[i] for i in order[n_base:]][: max_n * 5]
    enc = estimator.encoder_
    Xp, R = enc.transform(period), enc.transform(ref)
    sim_p = _dense_sim(Xp, R).max(axis=1)
    baseline = float(_dense_sim(enc.transform(base), R).max(axis=1).mean())
    k = int(min(8, max(2, len(period) // 15)))
    labels = KMeans(n_clusters=k, n_init=4, random_state=seed).fit_predict(Xp)
    terms = _terms(period, labels, k)
    groups = []
    for c in range(k):
        m = np.flatnonzero(labels == c)
        drop = baseline - float(sim_p[m].mean())
        if len(m) >= 3 and drop > threshold:
            ex = [period[i] for i in m[np.argsort(sim_p[m])]]
            groups.append({"terms": terms[c], "n": int(len(m)), "share": len(m) / len(period),
                           "nn_similarity": float(sim_p[m].mean()), "baseline": baseline, "drop": drop,
                           "examples": ex[:EXAMPLES_KEPT]})
    groups.sort(key=lambda g: -g["drop"] * g["n"])
    return groups[:max_groups]


def needed_tiers(groups: list[dict], labelled, tier_names: list[str], share: float = 0.95) -> None:
    """Set each group's ``tier``: the cheapest tier reaching ``share`` × the top tier's mean score on
    the group's labelled queries (``labelled``: an Evalset, tiers cheapest first), and ``n_labelled``."""
    from route_switch.core.evalset import normalise_prompt

    if labelled is None:
        return
    index = {normalise_prompt(p): i for i, p in enumerate(labelled.prompts)}
    for g in groups:
        rows = [index[q] for q in map(normalise_prompt, g["examples"]) if q in index]
        g["n_labelled"] = len(rows)
        if not rows:
            g["tier"] = None
            continue
        mean = labelled.scores[rows].mean(axis=0)
        ok = np.flatnonzero(mean >= share * mean[-1] - 1e-12)
        g["tier"] = tier_names[int(ok[0])] if len(ok) else tier_names[-1]
        g["mean_scores"] = {t: round(float(s), 3) for t, s in zip(tier_names, mean)}


def state_path(work_dir: Path, name: str) -> Path:
    return Path(work_dir) / f"{name}-drift-groups.json"


def save_groups(path: Path, groups: list[dict]) -> None:
    from route_switch.core.files import atomic_write_text

    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps({"groups": groups}, indent=1, ensure_ascii=False) + "\n")


def load_groups(path: Path) -> list[dict]:
    """Groups flagged by the last run ([] when none, or the file is unreadable: it is only a hint)."""
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
        return [g for g in doc.get("groups", []) if isinstance(g, dict) and isinstance(g.get("examples"), list)]
    except (OSError, ValueError, AttributeError):
        return []


def focus_mask(texts: list[str], groups: list[dict], train: list[str], estimator, seed: int = 0,
               max_ref: int = 5000) -> np.ndarray:
    """True for each text closer (cosine, encoder space) to a drifted group's examples than to the rest of
    the training queries."""
    ex = [q for g in groups for q in g["examples"] if isinstance(q, str)]
    if not texts or not ex or estimator is None:
        return np.zeros(len(texts), bool)
    rng = np.random.default_rng(seed)
    # last run's labels joined the training set: the groups' own examples are not "training" here
    from route_switch.core.evalset import normalise_prompt

    mine = set(map(normalise_prompt, ex))
    train = [q for q in train if normalise_prompt(q) not in mine]
    if len(train) > max_ref:
        train = [train[i] for i in rng.choice(len(train), max_ref, replace=False)]
    enc = estimator.encoder_
    X = enc.transform(texts)
    to_group = _dense_sim(X, enc.transform(ex)).max(axis=1)
    to_train = _dense_sim(X, enc.transform(train)).max(axis=1) if train else np.zeros(len(texts))
    return to_group > to_train


def format_groups(groups: list[dict]) -> list[str]:
    """Markdown lines naming the moved groups for the report."""
    if not groups:
        return []
    L = ["", "Query groups that moved (k-means clusters of this period's queries, encoder space):", "",
         "| terms | queries | similarity (baseline) | labelled | tier they now need | example |", "|---|---|---|---|---|---|"]
    for g in groups:
        tier = g.get("tier") or "n/a (not labelled yet)"
        L.append(f"| {', '.join(g['terms']) or '-'} | {g['n']} ({g['share']:.0%}) | {g['nn_similarity']:.3f} "
                 f"({g['baseline']:.3f}) | {g.get('n_labelled', 0)} | {tier} | {g['examples'][0][:80]!r} |")
    return L
