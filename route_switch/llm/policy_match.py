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
- each policy's threshold is calibrated so that at most ``max_background_rate`` of the background
  queries match it, raised above every counter-example; ``calibration_`` reports it, with the
  share of the policy's own examples that clear it;
- the first matching policy in the section wins (the order a person reads).

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


class PolicyMatcher:
    """``fit(policies, background)`` then ``match(query)`` → :class:`PolicyMatch` or None.

    ``encoder``: an object with ``embed(list[str]) -> (n, d)`` L2-normalised rows (default:
    ``minilm-onnx``). Learned state: ``policies_``, ``coef_`` (n_policies, d), ``intercept_``,
    ``threshold_`` and ``calibration_`` (one dict per policy).
    """

    def __init__(self, encoder=None, max_background_rate: float = 0.02, C: float = 1.0):
        self.encoder = encoder
        self.max_background_rate = max_background_rate
        self.C = C

    def _enc(self):
        if self.encoder is None:
            self.encoder = _shared_minilm()
        return self.encoder

    def _views(self, queries: list[str]) -> np.ndarray:
        """(2, n, d): each query as written and its request part."""
        enc = self._enc()
        both = enc.embed(list(queries) + [request_part(q) for q in queries])
        return both.reshape(2, len(queries), -1)

    _bg_memo: dict = {}  # the background's embeddings, shared by matchers of one process

    def _background_views(self, background: list[str]) -> np.ndarray:
        import hashlib

        key = (id(self._enc()), hashlib.blake2b("\x00".join(background).encode("utf-8", "surrogatepass"),
                                                digest_size=16).digest())
        if key not in self._bg_memo:
            self._bg_memo.clear()  # one background at a time: bounded memory
            self._bg_memo[key] = self._views(background)
        return self._bg_memo[key]

    def fit(self, policies, background=()) -> "PolicyMatcher":
        from sklearn.linear_model import LogisticRegression

        self.policies_ = [p if isinstance(p, Policy) else Policy.parse(p) for p in policies]
        background = [q for q in background if isinstance(q, str) and q.strip()]
        bg = self._background_views(background) if background else np.zeros((2, 0, 1))
        neg_bg = bg.reshape(-1, bg.shape[-1]) if background else None
        coefs, icpts, thresholds, report = [], [], [], []
        for i, p in enumerate(self.policies_):
            pos_text = topic_phrases(p.topic) + list(p.examples) + [request_part(q) for q in p.examples]
            others = [q for j, o in enumerate(self.policies_) if j != i for q in o.examples]
            neg_text = list(p.counter_examples) + others
            pos = self._enc().embed(list(dict.fromkeys(pos_text)))
            parts = [pos] + ([self._enc().embed(neg_text)] if neg_text else []) + \
                ([neg_bg] if neg_bg is not None else [])
            X = np.vstack(parts)
            y = np.r_[np.ones(len(pos)), np.zeros(len(X) - len(pos))]
            if y.min() == y.max():  # no negatives at all: a plain similarity to the positives' mean
                w, b = pos.mean(0), -0.5 * float(pos.mean(0) @ pos.mean(0))
            else:
                lr = LogisticRegression(C=self.C, class_weight="balanced", max_iter=2000).fit(X, y)
                w, b = lr.coef_[0], float(lr.intercept_[0])
            thr, bg_rate = 0.0, None
            if background:
                s_bg = np.sort((bg @ w).max(0) + b)[::-1]
                # just above the (k+1)-th highest background score: at most k = rate·n background
                # queries match, even when many share one score (a quantile would count the ties)
                k = min(int(self.max_background_rate * len(s_bg)), len(s_bg) - 1)
                thr = float(s_bg[k]) + 1e-6 * max(1.0, abs(float(s_bg[k])))  # above float noise
            if p.counter_examples:
                s_ce = (self._views(list(p.counter_examples)) @ w).max(0) + b
                thr = max(thr, float(s_ce.max()) + 1e-3)
            if background:
                bg_rate = float(np.mean((bg @ w).max(0) + b >= thr))
            s_ex = (self._views(list(p.examples)) @ w).max(0) + b if p.examples else np.zeros(0)
            coefs.append(w)
            icpts.append(b)
            thresholds.append(thr)
            report.append({"policy": p.topic, "tier": p.tier, "threshold": round(thr, 3),
                           "examples_matched": f"{int((s_ex >= thr).sum())}/{len(s_ex)}",
                           "counter_examples": len(p.counter_examples),
                           "background_queries": len(background),
                           "background_matched_pct": None if bg_rate is None else round(100 * bg_rate, 2)})
        d = bg.shape[-1] if background else (len(coefs[0]) if coefs else 1)
        self.coef_ = np.vstack(coefs) if coefs else np.zeros((0, d))
        self.intercept_ = np.asarray(icpts, float)
        self.threshold_ = np.asarray(thresholds, float)
        self.calibration_ = report
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
        s = self.scores([query])[0]
        hits = np.flatnonzero(s >= self.threshold_)
        if not len(hits):
            return None
        i = int(hits[0])
        return PolicyMatch(i, self.policies_[i], float(s[i]), float(self.threshold_[i]))


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
