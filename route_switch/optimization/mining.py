"""Policies mined from a labelled split, written as the lines people edit.

Each line is a :class:`~route_switch.llm.policies.Policy` in exactly the form ``apply_policy`` writes
("- If the request is about python, function, list or code, answer 1."), so a mined line and a
hand-written one read and behave the same. How one is found:

1. group the training queries: by the evalset's task labels where it has several, and by their
   words (TF-IDF → LSA → k-means at several group counts, so broad and narrow topics compete);
2. in each group, take the tier with the best mean objective ``score − λ·cost/C``; keep the
   group when that tier beats every other tier there by ``min_advantage`` (the tier is clearly
   the cheapest good choice) and the group has ``min_support`` queries;
3. describe the group by the words that set it apart (frequent in it, rare elsewhere): single
   words, never a copied query.

Every line records its support (training queries in the group), its precision (share of them
on which its tier answers as well as any tier) and its advantage; :func:`policy_candidates` turns
the start instruction plus subsets of the lines into instruction candidates for MIPROv2 / GEPA.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from route_switch.optimization.grounding import STOP
from route_switch.llm.policies import Policy, render_instruction, split_policies


@dataclass(frozen=True)
class MinedPolicy:
    """A policy line with the training evidence behind it."""
    policy: Policy
    support: int  # training queries in the group
    precision: float  # share of them on which the policy's tier answers as well as any tier
    advantage: float  # mean objective of the policy's tier minus the best other tier's, in the group
    terms: tuple[str, ...]
    examples: tuple[int, ...] = ()  # rows of the mined split most typical of the group, where its tier is good

    def to_dict(self) -> dict:
        return {"line": self.policy.render(), "tier": self.policy.tier, "support": self.support,
                "precision": round(self.precision, 3), "advantage": round(self.advantage, 4),
                "terms": list(self.terms)}


def _describe(X, members: np.ndarray, words: np.ndarray, n_terms: int) -> list[str]:
    """Words frequent in the group and rare outside it (document frequency × log ratio of frequencies)."""
    present = X > 0
    inside = np.asarray(present[members].mean(axis=0)).ravel()
    outside = np.asarray(present[~members].mean(axis=0)).ravel() if (~members).any() else np.zeros_like(inside)
    score = inside * np.log((inside + 0.01) / (outside + 0.01))
    top = [j for j in np.argsort(-score) if inside[j] >= 0.2 and inside[j] > 2 * outside[j]][:n_terms]
    return [str(words[j]) for j in top]


def _typical(X, members: np.ndarray, k: int = 2) -> tuple[int, ...]:
    """The ``k`` member rows closest (cosine) to the members' mean vector: the group's most typical queries."""
    rows = np.flatnonzero(members)
    if not len(rows):
        return ()
    centre = np.asarray(X[rows].mean(axis=0)).ravel()
    sims = X[rows] @ centre  # TF-IDF rows are L2-normalised
    return tuple(int(rows[j]) for j in np.argsort(-np.asarray(sims).ravel())[:k])


def _topic(terms: list[str]) -> str:
    return terms[0] if len(terms) == 1 else ", ".join(terms[:-1]) + " or " + terms[-1]


def _groups(X, tasks, group_counts, min_support: int, seed: int):
    """Boolean masks of candidate groups: one per task label, then k-means clusters on LSA vectors."""
    from sklearn.cluster import KMeans
    from sklearn.decomposition import TruncatedSVD
    from sklearn.preprocessing import normalize

    n = X.shape[0]
    if tasks is not None and len(set(tasks)) > 1:
        tasks = np.asarray(tasks)
        yield from (tasks == t for t in sorted(set(tasks.tolist())))
    dims = min(50, X.shape[1] - 1, n - 1)
    if dims < 2:
        return
    Z = normalize(TruncatedSVD(dims, random_state=seed).fit_transform(X))
    for k in group_counts:
        if n >= k * min_support:
            labels = KMeans(n_clusters=k, n_init=3, random_state=seed).fit_predict(Z)
            yield from (labels == c for c in range(k))


def mine_policies(prompts: list[str], scores: np.ndarray, costs: np.ndarray, *, lam: float, unit: float,
                  tasks=None, group_counts=(8, 16), min_support: int = 8, min_advantage: float = 0.05, z: float = 2.5,
                  n_terms: int = 4, max_policies: int = 8, seed: int = 0) -> list[MinedPolicy]:
    """Policy lines backed by ``prompts``/``scores``/``costs`` (tiers = columns in cost order); best first.

    ``lam``/``unit``: the objective's λ and cost normaliser; ``tasks``: optional task label per
    query (groups to try besides the clusters). A group's tier must beat the runner-up by
    ``min_advantage`` on average and by ``z`` standard errors of the paired per-query difference
    (several dozen groups are tried: chance winners must not become rules). Lines are ranked by
    ``support × advantage``; a
    line whose words repeat a better line's is dropped.
    """
    from sklearn.feature_extraction.text import TfidfVectorizer

    scores, costs = np.asarray(scores, float), np.asarray(costs, float)
    if len(prompts) < 2 * min_support:
        return []
    gain = scores - lam * costs / unit  # per-query objective of each tier
    good = scores >= scores.max(axis=1, keepdims=True) - 1e-9
    vec = TfidfVectorizer(lowercase=True, token_pattern=r"(?u)\b[a-zA-Z][a-zA-Z]{2,}\b", stop_words=list(STOP),
                          min_df=3, max_df=0.5, sublinear_tf=True, max_features=20000)
    try:
        X = vec.fit_transform(prompts)
    except ValueError:  # no usable words
        return []
    words = np.array(vec.get_feature_names_out())
    found: list[tuple[float, MinedPolicy]] = []
    for members in _groups(X, tasks, group_counts, min_support, seed):
        size = int(members.sum())
        if size < min_support or size == len(prompts):
            continue
        mean = gain[members].mean(axis=0)
        t = int(np.argmax(mean))
        runner_up = int(np.argmax(np.where(np.arange(len(mean)) == t, -np.inf, mean)))
        d = gain[members, t] - gain[members, runner_up]  # paired, per query
        advantage = float(d.mean())
        # clearly better: a large mean advantage, and one that the group's size makes unlikely by chance
        if advantage < min_advantage or advantage - z * d.std(ddof=1) / np.sqrt(size) <= 0:
            continue
        terms = _describe(X, members, words, n_terms)
        if len(terms) < 2:  # a group one word describes is too vague to state as a rule
            continue
        mp = MinedPolicy(Policy(_topic(terms), t + 1), size, float(good[members, t].mean()), advantage, tuple(terms),
                         _typical(X, members & good[:, t]))
        found.append((size * advantage, mp))
    found.sort(key=lambda x: -x[0])
    kept: list[MinedPolicy] = []
    for _, mp in found:
        if any(len(set(mp.terms) & set(k.terms)) >= 2 for k in kept):
            continue  # the same topic, found as a task and as a cluster
        kept.append(mp)
        if len(kept) >= max_policies:
            break
    return kept


def policy_candidates(instruction: str, mined: list[MinedPolicy], sizes=(1, 3, 8)) -> list[tuple[str, str]]:
    """Instruction candidates: the start text plus the best 1, 3, … mined lines, after its own policies.

    Returns ``[(text, origin)]`` with origin ``"mined:<n>"``; hand-written policies stay first, so
    they keep priority (the earlier line wins).
    """
    body, own = split_policies(instruction)
    out, seen = [], set()
    for s in sizes:
        lines = [m.policy for m in mined[:s]]
        key = tuple(p.render() for p in lines)
        if not lines or key in seen:
            continue
        seen.add(key)
        out.append((render_instruction(body, own + lines), f"mined:{len(lines)}"))
    return out


def mined_lines_in(instruction: str, mined: list[dict]) -> list[dict]:
    """The mined lines (``MinedPolicy.to_dict`` records) that the instruction carries, as written."""
    _body, rules = split_policies(instruction)
    have = {r.render() for r in rules}
    return [m for m in mined if m["line"] in have]

