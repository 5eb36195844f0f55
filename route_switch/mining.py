"""Policies mined from a labelled split, written as the lines people edit.

Each line is a :class:`~route_switch.policies.Policy` in exactly the form ``apply_policy`` writes
("- If the request is about python, function, list or code, answer 1."), so a mined line and a
hand-written one read and behave the same. How one is found:

1. group the training queries by their words (TF-IDF + k-means; several group counts, so both
   broad and narrow topics are candidates);
2. in each group, take the tier with the best mean objective ``score − λ·cost/C``; keep the
   group when that tier is clearly the cheapest good choice there: its *precision* (share of the
   group's queries whose cheapest good tier it is) beats its share in the whole split by
   ``min_lift`` and the group has ``min_support`` queries;
3. describe the group by the words that set it apart (frequent in it, rare elsewhere): single
   words, never a copied query.

Every line records its support (training queries in the group) and precision, and
:func:`policy_candidates` turns the start instruction plus subsets of the lines into
instruction candidates for MIPROv2 / GEPA.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .grounding import STOP, needed_tier
from .policies import Policy, render_instruction, split_policies


@dataclass(frozen=True)
class MinedPolicy:
    """A policy line with the training evidence behind it."""
    policy: Policy
    support: int  # training queries in the group
    precision: float  # share of them whose cheapest good tier is the policy's tier
    base_rate: float  # that tier's share over the whole split
    terms: tuple[str, ...]

    def to_dict(self) -> dict:
        return {"line": self.policy.render(), "tier": self.policy.tier, "support": self.support,
                "precision": round(self.precision, 3), "base_rate": round(self.base_rate, 3),
                "terms": list(self.terms)}


def _describe(X, members: np.ndarray, words: np.ndarray, n_terms: int) -> list[str]:
    """Words frequent in the group and rare outside it (document frequency difference)."""
    present = X > 0
    inside = np.asarray(present[members].mean(axis=0)).ravel()
    outside = np.asarray(present[~members].mean(axis=0)).ravel() if (~members).any() else np.zeros_like(inside)
    score = inside - outside
    top = [j for j in np.argsort(-score) if inside[j] >= 0.2 and score[j] > 0.1][:n_terms]
    return [str(words[j]) for j in top]


def _topic(terms: list[str]) -> str:
    return terms[0] if len(terms) == 1 else ", ".join(terms[:-1]) + " or " + terms[-1]


def mine_policies(prompts: list[str], scores: np.ndarray, costs: np.ndarray, *, lam: float, unit: float,
                  group_counts=(6, 12, 24), min_support: int = 8, min_precision: float = 0.6,
                  min_lift: float = 0.15, n_terms: int = 4, max_policies: int = 8, seed: int = 0) -> list[MinedPolicy]:
    """Policy lines backed by ``prompts``/``scores``/``costs`` (tiers = columns in cost order); best first.

    ``lam``/``unit``: the objective's λ and cost normaliser. Lines are ranked by
    ``support × (precision − base_rate)``; lines whose words repeat a better line's are dropped.
    """
    from sklearn.cluster import KMeans
    from sklearn.feature_extraction.text import TfidfVectorizer

    scores, costs = np.asarray(scores, float), np.asarray(costs, float)
    n = len(prompts)
    if n < 2 * min_support:
        return []
    need = needed_tier(scores, costs)
    n_tiers = scores.shape[1]
    base = np.bincount(need, minlength=n_tiers) / n
    gain = scores - lam * costs / unit  # per-query objective of each tier
    vec = TfidfVectorizer(lowercase=True, token_pattern=r"(?u)\b[a-zA-Z][a-zA-Z]{2,}\b", stop_words=list(STOP),
                          min_df=3, max_df=0.5, sublinear_tf=True, max_features=20000)
    try:
        X = vec.fit_transform(prompts)
    except ValueError:  # no usable words
        return []
    words = np.array(vec.get_feature_names_out())
    found: list[tuple[float, MinedPolicy]] = []
    for k in group_counts:
        if n < k * min_support:
            continue
        labels = KMeans(n_clusters=k, n_init=3, random_state=seed).fit_predict(X)
        for c in range(k):
            members = labels == c
            size = int(members.sum())
            if size < min_support:
                continue
            t = int(np.argmax(gain[members].mean(axis=0)))
            precision = float(np.mean(need[members] == t))
            if precision < min_precision or precision < base[t] + min_lift:
                continue
            terms = _describe(X, members, words, n_terms)
            if len(terms) < 2:  # a group one word describes is too vague to state as a rule
                continue
            mp = MinedPolicy(Policy(_topic(terms), t + 1), size, precision, float(base[t]), tuple(terms))
            found.append((size * (precision - base[t]), mp))
    found.sort(key=lambda x: -x[0])
    kept: list[MinedPolicy] = []
    for _, mp in found:
        if any(len(set(mp.terms) & set(k.terms)) >= 2 for k in kept):
            continue  # the same topic, found at another group count
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

