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
import math
from pathlib import Path

import numpy as np

NGRAMS = (3, 4, 5)
_P = np.uint64(1_000_003)
_MIX = 0x9E3779B97F4A7C15  # Fibonacci hashing: spreads the polynomial hash over the top bits that pick a slot
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


def _ngram_hash(gram: str) -> int:
    return int(_hashes(_codes(gram))[NGRAMS.index(len(gram))][0])


def _lower(text: str) -> str:
    """``text`` lower-cased, one character for one (so positions stay valid)."""
    low = text.lower()
    return low if len(low) == len(text) else "".join(c.lower() if len(c.lower()) == 1 else c for c in text)


class DirectiveModel:
    """Logistic regression on character n-gram counts: ``fit(texts, labels)``, ``predict_proba(texts)``,
    ``segment_proba(text, bounds)`` for the segments of one text. Learned state: ``weights_`` (n-gram →
    weight) and ``bias_``; ``threshold`` is the probability from which a segment is a directive."""

    def __init__(self, C: float = 4.0, threshold: float = 0.8, min_weight: float = 0.15):
        self.C, self.threshold, self.min_weight = C, threshold, min_weight

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
        self._index()
        return self

    def _index(self) -> None:
        """An open-addressing table of the n-grams, two slots per n-gram: a slot from a hash's top bits, a
        32-bit tag from its low bits, so a lookup is two gathers in two small arrays."""
        keys = [_ngram_hash(g) for g in self.weights_]
        bits = max(10, int(np.ceil(np.log2(max(len(keys), 1) * 4))))
        self._shift = np.uint64(64 - bits)
        self.tags_, self.values_ = np.zeros(2 ** bits + 1, np.uint32), np.zeros(2 ** bits + 1, np.float32)
        self.dropped_ = 0
        for k, v in sorted(zip(keys, self.weights_.values()), key=lambda kv: -abs(kv[1])):  # heaviest first
            slot, tag = ((k * _MIX) & (2 ** 64 - 1)) >> (64 - bits), (k & 0xFFFFFFFF) or 1
            slot += bool(self.tags_[slot])
            if self.tags_[slot]:  # both slots hold heavier n-grams: this light one is dropped
                self.dropped_ += 1
            else:
                self.tags_[slot], self.values_[slot] = tag, v

    def _weights(self, h: np.ndarray) -> np.ndarray:
        with np.errstate(over="ignore"):
            slot = (h * np.uint64(_MIX)) >> self._shift
        tag = (h & np.uint64(0xFFFFFFFF)).astype(np.uint32)
        tag[tag == 0] = 1
        return (np.where(self.tags_[slot] == tag, self.values_[slot], 0.0)
                + np.where(self.tags_[slot + 1] == tag, self.values_[slot + 1], 0.0))

    # -- scoring ----------------------------------------------------------------------------------
    def segment_proba(self, text: str, bounds) -> np.ndarray:
        """The probability that each segment ``text[bounds[i]:bounds[i + 1]]`` is a directive."""
        hs = _hashes(_codes(_lower(text)))
        a, b = np.asarray(bounds[:-1], np.int64), np.asarray(bounds[1:], np.int64)
        h = np.concatenate(hs)
        cum = np.concatenate(([0.0], np.cumsum(self._weights(h))))
        # the n-grams wholly inside a segment start in [a, b - n + 1) of their block of ``h``
        sizes = np.array([len(x) for x in hs])[:, None]
        offsets = np.concatenate(([0], np.cumsum(sizes[:-1, 0])))[:, None]
        last = np.clip(b[None, :] - np.array(NGRAMS)[:, None] + 1, a[None, :], sizes)
        first = np.minimum(a[None, :], last)
        total = (cum[offsets + last] - cum[offsets + first]).sum(0)
        count = (last - first).sum(0)
        return 1.0 / (1.0 + np.exp(-(self.bias_ + total / np.sqrt(np.maximum(count, 1)))))

    def predict_proba(self, texts) -> np.ndarray:
        """The probability that each text, read as one segment, is a directive."""
        return np.array([self.segment_proba(t, [0, len(t)])[0] for t in texts])

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
        if not isinstance(w, dict) or not all(isinstance(k, str) and isinstance(v, (int, float)) and math.isfinite(v)
                                              for k, v in w.items()):
            raise InputError("'weights' must map n-grams to finite numbers", file=source, field="weights")
        for key in ("threshold", "bias", "C"):
            if not isinstance(d.get(key), (int, float)) or not math.isfinite(d[key]):
                raise InputError(f"'{key}' must be a finite number", file=source, field=key)
        m = cls(C=float(d["C"]), threshold=float(d["threshold"]))
        m.weights_, m.bias_ = {k: float(v) for k, v in w.items()}, float(d["bias"])
        m._index()
        return m


@functools.lru_cache(maxsize=1)
def shipped_model() -> DirectiveModel | None:
    """The model shipped with the package (None when its file is missing)."""
    if not MODEL_FILE.is_file():
        return None
    return DirectiveModel.from_dict(json.loads(MODEL_FILE.read_text(encoding="utf-8")), str(MODEL_FILE))
