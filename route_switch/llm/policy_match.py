"""Which enforced policy, if any, applies to a query: a matcher on sentence embeddings.

The policy section of the instruction (:mod:`route_switch.llm.policies`) is what a person reads and
edits; this module decides it at route time, without the router LLM reading prose:

- every policy is a small linear classifier on MiniLM embeddings (``minilm-onnx`` encoder):
  positives are its topic (and the comma-separated parts of a parenthesised topic) and its
  ``e.g.`` examples; negatives are background queries (the training queries), its ``not:``
  counter-examples and the other policies' examples. A linear model learns what sets the topic
  apart from ordinary traffic, which raw cosine similarity does not (code-heavy traffic looks
  "close" to a code-formatting topic);
- a query is read twice: as written, and as its request part with quoted or code payloads
  removed ("Translate into German: <long text>" is about translation, not about the text);
- the thresholds are calibrated jointly so that at most ``max_background_rate`` of the background
  queries match ANY policy (not each: five policies at 2% each could take 10% of ordinary
  traffic), each above its counter-examples and, where possible, below its lowest example
  (:func:`joint_thresholds`); ``calibration_`` reports each threshold, the share of the policy's own
  examples that clear it and of the background it matches;
- the first matching policy in the section wins (the order a person reads);
- a gate skips MiniLM for most queries no policy covers: the same classifiers on static
  word-piece vectors (:mod:`route_switch.core.static_embed`, ~0.1 ms) decide whether any policy
  can plausibly match; only then is the query encoded by MiniLM (5–20 ms) and matched.

Fitting is milliseconds per policy after the background is encoded once.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from route_switch.llm.policies import Policy

# Quoted or code payloads: what a request acts on, not what it is about.
_PAYLOAD = re.compile(r'"[^"]*"|“[^”]*”|«[^»]*»|\'[^\']{12,}\'|`[^`]*`')


def request_part(query: str, max_words: int = 16) -> str:
    """The request without its payload: quotes and code removed, the part before a colon."""
    head = _PAYLOAD.sub(" ", query)
    if ":" in head[:120]:
        head = head.split(":", 1)[0]
    words = head.split()[:max_words]
    return " ".join(words) if words else query


def topic_phrases(topic: str) -> list[str]:
    """The topic, its head and the parts of its parenthesis: "legal advice (leases, police)" ->
    ["legal advice (leases, police)", "legal advice", "leases", "police"]."""
    out = [topic]
    m = re.match(r"\s*(.*?)\s*\((.*)\)\s*(.*)$", topic)
    if m:
        out.append(m.group(1))
        out += [p.strip() for p in re.split(r",|;|\bor\b", m.group(2)) if len(p.strip()) > 2]
    return list(dict.fromkeys(p for p in out if p))


@dataclass(frozen=True)
class PolicyMatch:
    index: int  # position in the policy section (0 = first line)
    policy: Policy
    score: float
    threshold: float

    @property
    def reason(self) -> str:
        return (f"policy {self.index + 1} '{self.policy.topic}' → tier {self.policy.tier} "
                f"(match score {self.score:.2f} ≥ {self.threshold:.2f})")


_MINILM: list = []


def _shared_minilm():
    """One MiniLM encoder per process: its ONNX session and the background's embeddings (memoised
    per encoder) are then shared by every matcher, e.g. after a program reload."""
    if not _MINILM:
        from route_switch.core.encoders import make_encoder

        _MINILM.append(make_encoder("minilm-onnx"))
    return _MINILM[0]


_STATIC: list = []


def _shared_static():
    """One static embedder (MiniLM's distilled word pieces) per process, for the gate."""
    if not _STATIC:
        from route_switch.core.static_embed import StaticEmbedder

        _STATIC.append(StaticEmbedder(_shared_minilm()))
    return _STATIC[0]


def _embed_views(encoder, queries) -> np.ndarray:
    """(2, n, d): each query as written and its request part, each distinct text embedded once (a
    short question is its own request part: half the encoder's work on the common case)."""
    texts = list(queries) + [request_part(q) for q in queries]
    distinct = list(dict.fromkeys(texts))
    vecs = encoder.embed(distinct)
    if len(distinct) < len(texts):
        at = {t: i for i, t in enumerate(distinct)}
        vecs = vecs[[at[t] for t in texts]]
    return vecs.reshape(2, len(queries), -1)


class PolicyMatcher:
    """``fit(policies, background)`` then ``match(query)`` → :class:`PolicyMatch` or None.

    ``encoder``: an object with ``embed(list[str]) -> (n, d)`` L2-normalised rows (default:
    ``minilm-onnx``). ``max_background_rate``: the share of background queries that may match
    ANY policy (the union, jointly calibrated by :func:`joint_thresholds` with ``order``).
    Learned state: ``policies_``, ``coef_`` (n_policies, d), ``intercept_``, ``threshold_``,
    ``background_union_pct_`` and ``calibration_`` (one dict per policy).

    The gate: ``gate_encoder`` (default: MiniLM's static word-piece vectors,
    :mod:`route_switch.core.static_embed`, when the encoder is the default MiniLM; none otherwise)
    scores a query with the same classifiers in ~0.1 ms; only when some policy's gate score
    reaches its ``gate_threshold_`` is the query encoded by MiniLM and matched. The gate thresholds
    are calibrated like the match thresholds: at most ``gate_rate`` of the background opens any
    gate, and every example opens its policy's gate (``None``: no gate). ``gate_`` reports the
    share of background queries the gate lets through and how many of the background's matches
    it keeps.
    """

    def __init__(self, encoder=None, max_background_rate: float = 0.02, C: float = 1.0, order: str = "least-like",
                 gate_encoder=None, gate_rate: float | None = 0.3):
        self.encoder = encoder
        self.order = order
        self.gate_encoder, self.gate_rate = gate_encoder, gate_rate
        self.max_background_rate = max_background_rate
        self.C = C

    def _gate_enc(self):
        if self.gate_encoder is None and self.gate_rate is not None and _MINILM and self._enc() is _MINILM[0]:
            self.gate_encoder = _shared_static()
        return self.gate_encoder if self.gate_rate is not None else None

    def _gate_scores(self, queries) -> np.ndarray:
        """(n, n_policies) gate scores: the classifiers on static vectors (as written, request part)."""
        v = _embed_views(self._gate_enc(), queries)
        return (v @ self.coef_.T).max(0) + self.intercept_

    def _fit_gate(self, background, s_bg) -> None:
        """Gate thresholds, jointly: at most ``gate_rate`` of the background opens ANY gate, and every
        example opens its policy's gate (:func:`joint_thresholds` on the gate scores)."""
        self.gate_threshold_, self.gate_ = None, None
        if self._gate_enc() is None or not len(self.policies_) or not background:
            return
        g_bg = self._gate_scores(background)
        cap = [float(self._gate_scores(list(p.examples))[:, i].min()) for i, p in enumerate(self.policies_)]
        thr = joint_thresholds(g_bg.T, np.full(len(cap), -np.inf), cap, int(self.gate_rate * len(background)))
        self.gate_threshold_ = thr
        opened = (g_bg >= thr).any(1)
        full = (s_bg >= self.threshold_[:, None]).any(0)
        self.gate_ = {"gate_rate_pct": round(100 * self.gate_rate, 2),
                      "background_passed_pct": round(100 * float(opened.mean()), 2),
                      "background_matches_kept": f"{int((full & opened).sum())}/{int(full.sum())}"}

    def _enc(self):
        if self.encoder is None:
            self.encoder = _shared_minilm()
        return self.encoder

    def _views(self, queries: list[str]) -> np.ndarray:
        """(2, n, d): each query as written and its request part."""
        return _embed_views(self._enc(), queries)

    _bg_memo: dict = {}  # the background's embeddings, shared by matchers of one process

    def _background_views(self, background: list[str]) -> np.ndarray:
        import hashlib

        key = (id(self._enc()), hashlib.blake2b("\x00".join(background).encode("utf-8", "surrogatepass"),
                                                digest_size=16).digest())
        if key not in self._bg_memo:
            self._bg_memo.clear()  # one background at a time: bounded memory
            self._bg_memo[key] = self._views(background)
        return self._bg_memo[key]

    def _classifier(self, i: int, neg_bg) -> tuple[np.ndarray, float]:
        """Policy ``i``'s linear classifier (w, b) on the embeddings."""
        from sklearn.linear_model import LogisticRegression

        p = self.policies_[i]
        pos_text = topic_phrases(p.topic) + list(p.examples) + [request_part(q) for q in p.examples]
        others = [q for j, o in enumerate(self.policies_) if j != i for q in o.examples]
        neg_text = list(p.counter_examples) + others
        pos = self._enc().embed(list(dict.fromkeys(pos_text)))
        parts = [pos] + ([self._enc().embed(neg_text)] if neg_text else []) + ([neg_bg] if neg_bg is not None else [])
        X = np.vstack(parts)
        y = np.r_[np.ones(len(pos)), np.zeros(len(X) - len(pos))]
        if y.min() == y.max():  # no negatives at all: a plain similarity to the positives' mean
            return pos.mean(0), -0.5 * float(pos.mean(0) @ pos.mean(0))
        lr = LogisticRegression(C=self.C, class_weight="balanced", max_iter=2000).fit(X, y)
        return lr.coef_[0], float(lr.intercept_[0])

    def _view_scores(self, queries, w, b) -> np.ndarray:
        return (self._views(list(queries)) @ w).max(0) + b if queries else np.zeros(0)

    def fit(self, policies, background=()) -> "PolicyMatcher":
        self.policies_ = [p if isinstance(p, Policy) else Policy.parse(p) for p in policies]
        background = [q for q in background if isinstance(q, str) and q.strip()]
        bg = self._background_views(background) if background else None
        neg_bg = bg.reshape(-1, bg.shape[-1]) if bg is not None else None
        fitted = [self._classifier(i, neg_bg) for i in range(len(self.policies_))]
        d = bg.shape[-1] if bg is not None else (len(fitted[0][0]) if fitted else 1)
        self.coef_ = np.vstack([w for w, _ in fitted]) if fitted else np.zeros((0, d))
        self.intercept_ = np.asarray([b for _, b in fitted], float)
        s_ex = [self._view_scores(p.examples, w, b) for p, (w, b) in zip(self.policies_, fitted)]
        s_ce = [self._view_scores(p.counter_examples, w, b) for p, (w, b) in zip(self.policies_, fitted)]
        # Floors: above every counter-example; caps: every example still clears the threshold.
        floor = np.array([float(s.max()) + 1e-3 if len(s) else -np.inf for s in s_ce])
        cap = np.array([float(s.min()) if len(s) else np.inf for s in s_ex])
        if bg is not None and len(self.policies_):
            s_bg = ((bg @ self.coef_.T).max(0) + self.intercept_).T  # (n_policies, n_background)
            self.threshold_ = joint_thresholds(s_bg, floor, cap, int(self.max_background_rate * len(background)),
                                               order=self.order)
            matched = s_bg >= self.threshold_[:, None]
            self.background_union_pct_ = round(100 * float(matched.any(0).mean()), 2)
            self._fit_gate(background, s_bg)
        else:
            self.threshold_ = np.maximum(floor, 0.0) if len(floor) else np.zeros(0)
            matched, self.background_union_pct_ = None, None
            self.gate_threshold_, self.gate_ = None, None
        self.calibration_ = [{
            "policy": p.topic, "tier": p.tier, "threshold": round(float(t), 3),
            "examples_matched": f"{int((s_ex[i] >= t).sum())}/{len(s_ex[i])}",
            "counter_examples": len(p.counter_examples), "background_queries": len(background),
            "background_matched_pct": None if matched is None else round(100 * float(matched[i].mean()), 2),
            "background_matched_only_here": None if matched is None else
            int((matched[i] & (matched.sum(0) == 1)).sum())}
            for i, (p, t) in enumerate(zip(self.policies_, self.threshold_))]
        return self

    def scores(self, queries: list[str]) -> np.ndarray:
        """(n, n_policies) match scores; a policy applies where its score ≥ ``threshold_``."""
        if not len(self.policies_):
            return np.zeros((len(queries), 0))
        return (self._views(queries) @ self.coef_.T).max(0) + self.intercept_

    def match(self, query: str) -> PolicyMatch | None:
        """The first policy (in section order) that applies to ``query``, or None."""
        if not len(self.policies_):
            return None
        if self.gate_threshold_ is not None and not (self._gate_scores([query])[0] >= self.gate_threshold_).any():
            return None  # no policy can plausibly match: MiniLM is not run
        s = self.scores([query])[0]
        hits = np.flatnonzero(s >= self.threshold_)
        if not len(hits):
            return None
        i = int(hits[0])
        return PolicyMatch(i, self.policies_[i], float(s[i]), float(self.threshold_[i]))


def _above(x):
    """Just above ``x``: a threshold there excludes ``x`` and every score tied with it (float noise too)."""
    return x + 1e-6 * np.maximum(1.0, np.abs(x))


def joint_thresholds(scores: np.ndarray, floor, cap, allowed: int, order: str = "least-like") -> np.ndarray:
    """Thresholds, one per policy, so that at most ``allowed`` background queries match ANY policy.

    ``scores``: (n_policies, n_background) match scores of the background queries; ``floor``: the
    lowest threshold each policy may have (above its counter-examples); ``cap``: the highest that
    keeps all its examples matched (a floor above the cap wins: the counter-examples decide).
    Starting from the floors, background queries are dropped from the union one at a time,
    raising every policy that matches the dropped query just above its score (ties included),
    until the union is within ``allowed`` or no query can be dropped without losing an example.
    Which query goes first: ``least-like`` the one whose best normalised score (0 = the policy's
    median background score, 1 = its lowest example) is lowest, i.e. the query that looks least
    like any policy's examples; ``least-margin`` the one closest above the thresholds it passes.
    """
    scores = np.asarray(scores, float)
    floor, cap = np.asarray(floor, float), np.asarray(cap, float)
    if not scores.size:
        return floor.copy()
    # No policy alone may exceed the allowance, even at the cost of its examples (calibration_
    # reports it): start just above each policy's (allowed+1)-th highest score.
    k = min(max(allowed, 0), scores.shape[1] - 1)
    t = np.maximum(floor, _above(-np.sort(-scores, axis=1)[:, k]))
    med = np.median(scores, axis=1)
    scale = np.maximum(np.where(np.isfinite(cap), cap - med, 1.0), 1e-3)[:, None]
    while True:
        m = scores >= t[:, None]
        hit = m.any(0)
        if hit.sum() <= max(allowed, 0):
            return t
        need = np.where(m, _above(scores), -np.inf)  # each matching policy raised past the query
        ok = hit & ~(m & (need > np.maximum(cap, floor)[:, None])).any(0)
        if not ok.any():
            return t  # every remaining match would cost a policy one of its examples
        if order == "most-numerous":  # the lowest match of the policy with the most matches
            n_i = np.where((m & ok).any(1), m.sum(1), -1)
            i = int(np.argmax(n_i))
            cost = np.where(m[i], scores[i], np.inf)
        elif order == "least-margin":
            cost = np.where(m, (scores - t[:, None]) / scale, 0.0).sum(0)
        else:
            cost = np.where(m, (scores - med[:, None]) / scale, -np.inf).max(0)
        q = int(np.argmin(np.where(ok, cost, np.inf)))
        t = np.maximum(t, need[:, q])


def overlapping_examples(matcher: PolicyMatcher) -> list[str]:
    """Warnings for examples of one policy that another policy also matches (a conflict the
    section order then decides silently)."""
    out = []
    for i, p in enumerate(matcher.policies_):
        if not p.examples:
            continue
        s = matcher.scores(list(p.examples))
        for j, q in enumerate(p.examples):
            for k in np.flatnonzero(s[j] >= matcher.threshold_):
                if k != i:
                    who = "wins" if k < i else "loses"
                    out.append(f"example {q!r} of policy {i + 1} '{p.topic}' also matches policy {k + 1} "
                               f"'{matcher.policies_[k].topic}' (which {who}: the earlier line decides)")
    return out


def training_queries(n: int = 600, seed: int = 0) -> list[str]:
    """Background queries for calibration: training-split prompts of the shared outcome data
    (``ROUTE_SWITCH_DATA``), an empty list when it is not there."""
    import logging

    from route_switch.core.paths import data_dir

    files = [data_dir() / f for f in ("dcrouter.parquet", "zeroeval.parquet")]
    files = [f for f in files if f.exists()]
    if not files:
        logging.getLogger("route_switch").warning(
            "no training queries found under %s: policies are calibrated on their own examples only", data_dir())
        return []
    import pandas as pd

    rng = np.random.default_rng(seed)
    out = []
    for f in files:
        df = pd.read_parquet(f, columns=["prompt", "split"]).drop_duplicates("prompt")
        if (df["split"] == "train").any():
            df = df[df["split"] == "train"]
        prompts = df["prompt"].tolist()
        k = min(len(prompts), n // len(files))
        out += [prompts[i] for i in rng.choice(len(prompts), k, replace=False)]
    return out
