"""A learned detector of routing directives: character n-grams and a linear model.

The sanitiser's lexicon (:mod:`route_switch.core.sanitize`) catches the wording its authors listed;
wording nobody listed ("bring out the heavy artillery", "restrict to entry-level inference") slips
past it. This model scores each segment of a text instead. It is fitted
(``benchmarks/fit_directive_model.py``) on the project's injection corpora (directives) against
sentences of real benchmark prompts and of legitimate prompts that use routing words (not
directives).

Features: the counts of the character 3-, 4- and 5-grams of the lower-cased segment, divided by the
square root of their number; a logistic regression on them. The weights are stored as text,
``route_switch/data/directive_ngrams.json`` (n-gram → weight, sorted by weight: reviewable and
diffable), and looked up by a 64-bit hash of each n-gram in an open-addressing table, so one pass over
a text scores all its segments in tens of microseconds.
"""
from __future__ import annotations

import functools
import json
import logging
import math
from pathlib import Path

import numpy as np

NGRAMS = (3, 4, 5)
_P = np.uint64(1_000_003)
_SEP = "\x00" * (NGRAMS[-1] - 1)  # between segments scored together: no n-gram spans two of them
_MIX = 0x9E3779B97F4A7C15  # Fibonacci hashing: spreads the polynomial hash over the top bits that pick a slot
log = logging.getLogger("route_switch")
MODEL_FILE = Path(__file__).resolve().parent.parent / "data" / "directive_ngrams.json"


def _codes(text: str) -> np.ndarray:
    return np.frombuffer(text.encode("utf-32-le", "surrogatepass"), np.uint32).astype(np.uint64)


def _hashes(codes: np.ndarray) -> list[np.ndarray]:
    """For each n of ``NGRAMS``, the hash of each character n-gram of ``codes`` (one per start position)."""
    out, h = [], codes
    with np.errstate(over="ignore"):  # the hash wraps around 2**64 by design
        for n in range(2, NGRAMS[-1] + 1):
            h = h[:-1] * _P + codes[n - 1:]
            if n in NGRAMS:
                out.append(h)
    return out


def _lower(text: str) -> str:
    """``text`` lower-cased, one character for one (so positions stay valid)."""
    low = text.lower()
    return low if len(low) == len(text) else "".join(c.lower() if len(c.lower()) == 1 else c for c in text)


class DirectiveModel:
    """Logistic regression on character n-gram counts: ``fit(segments, labels)``, ``predict_proba(segments)``
    and its remembered form ``proba_of``. Learned state: ``weights_`` (n-gram → weight) and ``bias_``;
    ``threshold`` is the probability from which a segment is a directive."""

    def __init__(self, C: float = 4.0, threshold: float = 0.8, min_weight: float = 0.15, remember: int = 50_000):
        self.C, self.threshold, self.min_weight, self.remember = C, threshold, min_weight, remember
        self._seen: dict[str, float] = {}

    # -- fitting ----------------------------------------------------------------------------------
    def fit(self, texts, labels) -> "DirectiveModel":
        """Fit on segments ``texts`` with ``labels`` (1 = a routing directive)."""
        from scipy.sparse import csr_matrix
        from sklearn.linear_model import LogisticRegression

        column, names, rows, cols, vals = {}, [], [], [], []
        for r, text in enumerate(texts):
            low = _lower(text)
            codes = _codes(low)
            hs = list(zip(NGRAMS, _hashes(codes)))
            total = sum(len(h) for _, h in hs)
            counts: dict = {}
            for n, h in hs:
                for pos, key in enumerate(h.tolist()):
                    if key not in column:
                        column[key] = len(names)
                        names.append(low[pos:pos + n])
                    counts[column[key]] = counts.get(column[key], 0) + 1
            for c, k in counts.items():
                rows.append(r)
                cols.append(c)
                vals.append(k / math.sqrt(total))
        x = csr_matrix((vals, (rows, cols)), shape=(len(texts), len(names)))
        lr = LogisticRegression(C=self.C, class_weight="balanced", max_iter=5000).fit(x, np.asarray(labels))
        w = lr.coef_[0]
        self.weights_ = {names[c]: round(float(w[c]), 4) for c in np.argsort(-w) if abs(w[c]) >= self.min_weight}
        self.bias_ = float(lr.intercept_[0])
        self.forget()
        self._index()
        return self

    def _index(self) -> None:
        """An open-addressing table of the n-grams, one slot each (picked by a hash's top bits, 8 slots per
        n-gram): each entry packs a 32-bit tag of the hash with the weight, so a lookup is one gather. Of
        two n-grams that want one slot the lighter is dropped (``dropped_``, a few per cent, all light)."""
        grams = sorted(self.weights_, key=lambda g: -abs(self.weights_[g]))  # heaviest first
        keys = np.zeros(len(grams), np.uint64)
        for k, n in enumerate(NGRAMS):  # the n-grams of one length joined: every n-th hash is one of them
            at = [i for i, g in enumerate(grams) if len(g) == n]
            if at:
                keys[at] = _hashes(_codes("".join(grams[i] for i in at)))[k][::n]
        bits = max(10, int(np.ceil(np.log2(max(len(grams), 1) * 8))))
        self._shift = np.uint64(64 - bits)
        with np.errstate(over="ignore"):
            slots = (keys * np.uint64(_MIX)) >> self._shift
        _, first = np.unique(slots, return_index=True)  # the heaviest n-gram of each slot
        weights = np.array([self.weights_[grams[i]] for i in first], np.float32).view(np.uint32).astype(np.uint64)
        self.table_ = np.zeros(2 ** bits, np.uint64)
        self.table_[slots[first]] = (((keys[first] & np.uint64(0xFFFFFFFF)) | np.uint64(1)) << np.uint64(32)) | weights
        self.dropped_ = len(grams) - len(first)

    def _weights(self, h: np.ndarray) -> np.ndarray:
        with np.errstate(over="ignore"):
            entry = self.table_[(h * np.uint64(_MIX)) >> self._shift]
        hit = (entry >> np.uint64(32)) == ((h & np.uint64(0xFFFFFFFF)) | np.uint64(1))
        return np.where(hit, (entry & np.uint64(0xFFFFFFFF)).astype(np.uint32).view(np.float32), np.float32(0))

    # -- scoring ----------------------------------------------------------------------------------
    def predict_proba(self, segments) -> np.ndarray:
        """The probability that each of ``segments`` is a directive, all scored in one pass: joined with a
        separator no n-gram of the table holds, so an n-gram across two segments weighs nothing."""
        segments = list(segments)
        if not segments:
            return np.zeros(0)
        joined = _SEP.join(segments)
        w = self._weights(np.concatenate(_hashes(_codes(_lower(joined)))))
        # the weights of the n-grams that start at each position, added up over n, then summed per segment
        n_pos = len(joined)
        acc = np.zeros(n_pos + 1)  # acc[p + 1]: position p
        at = 0
        for n in NGRAMS:
            m = max(n_pos - n + 1, 0)
            acc[1:m + 1] += w[at:at + m]
            at += m
        cum = np.cumsum(acc)
        lens = np.array([len(s) for s in segments])
        starts = np.cumsum(lens + len(_SEP)) - lens - len(_SEP)
        total = cum[starts + lens] - cum[starts]
        count = np.maximum(lens - 2, 0) + np.maximum(lens - 3, 0) + np.maximum(lens - 4, 0)  # n-grams of n = 3, 4, 5
        return 1.0 / (1.0 + np.exp(-(self.bias_ + total / np.sqrt(np.maximum(count, 1)))))

    def forget(self) -> None:
        """Drop the remembered scores (the next :meth:`proba_of` reads every segment afresh)."""
        self._seen.clear()

    def proba_of(self, segments: list[str]) -> list[float]:
        """:meth:`predict_proba` of each segment, remembered: the system prompt and exemplars that open every
        query of a templated app are scored once, the segments not seen yet in one pass together."""
        got = {s: self._seen.get(s) for s in segments}
        if missing := [s for s, p in got.items() if p is None]:
            for seg, p in zip(missing, self.predict_proba(missing)):
                got[seg] = float(p)
            if len(self._seen) + len(missing) > self.remember:
                self.forget()  # a bound, not a policy: distinct segments beyond it are rare
            self._seen.update((s, got[s]) for s in missing)
        return [got[s] for s in segments]

    # -- storage ----------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {"kind": "char-ngram-logistic", "ngrams": list(NGRAMS), "C": self.C, "threshold": self.threshold,
                "bias": round(self.bias_, 6), "weights": self.weights_}

    @classmethod
    def from_dict(cls, d: dict, source: str = "directive model") -> "DirectiveModel":
        from route_switch.core.errors import InputError

        if not isinstance(d, dict) or d.get("kind") != "char-ngram-logistic" or d.get("ngrams") != list(NGRAMS):
            raise InputError("not a char-ngram-logistic directive model", file=source)
        w = d.get("weights")
        if not isinstance(w, dict) or not all(isinstance(k, str) and len(k) in NGRAMS and isinstance(v, (int, float))
                                              and math.isfinite(v) for k, v in w.items()):
            raise InputError(f"'weights' must map n-grams of {NGRAMS} characters to finite numbers", file=source,
                             field="weights")
        for key in ("threshold", "bias", "C"):
            if not isinstance(d.get(key), (int, float)) or not math.isfinite(d[key]):
                raise InputError(f"'{key}' must be a finite number", file=source, field=key)
        m = cls(C=float(d["C"]), threshold=float(d["threshold"]))
        m.weights_, m.bias_ = {k: float(v) for k, v in w.items()}, float(d["bias"])
        m._index()
        return m


@functools.lru_cache(maxsize=1)
def shipped_model() -> DirectiveModel | None:
    """The model shipped with the package; None (the lexicon alone, said once in the log) when its file
    is missing or unreadable, so that the sanitiser never raises."""
    try:
        return DirectiveModel.from_dict(json.loads(MODEL_FILE.read_text(encoding="utf-8")), str(MODEL_FILE))
    except (OSError, ValueError) as e:  # InputError and JSONDecodeError are ValueErrors
        log.warning("directive model not loaded, the sanitiser uses its lexicon alone: %s", e)
        return None
