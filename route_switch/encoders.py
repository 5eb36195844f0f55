"""Frozen query encoders: text -> L2-normalised sparse feature vector, shared by every adapter.

An encoder is fitted once (its vocabulary and IDF weights, on the training prompts) and then
frozen: adding a model trains only that model's adapter. State is saved as JSON parameters plus
numpy arrays (``np.savez``, loaded with ``allow_pickle=False``), never as a pickle.

The default, ``tfidf``, is word 1–2-gram TF-IDF (sublinear tf, n-grams seen in at least
``min_df`` training prompts). It was chosen by measurement (README, "How the estimator works"):
it fits the 1 ms ``route()`` budget that an int8 MiniLM sentence encoder (13–55 ms) breaks, needs
neither torch nor a download, and routes as well on math/code traffic (MiniLM is better on
mixed-task traffic). Its vocabulary holds n-grams of the
training prompts, so a fitted estimator belongs with your data, not in a public repository.
"""
from __future__ import annotations

import re

import numpy as np

ENCODERS: dict[str, type["Encoder"]] = {}


def register(name: str):
    def deco(cls):
        cls.name = name
        ENCODERS[name] = cls
        return cls
    return deco


class Encoder:
    """Base class: ``fit(prompts)``, ``transform(prompts) -> csr_matrix``; state via get/from_state."""

    name = "base"

    def fit(self, prompts: list[str]) -> "Encoder":
        return self

    def transform(self, prompts: list[str]):
        raise NotImplementedError

    def get_state(self) -> tuple[dict, dict[str, np.ndarray]]:
        raise NotImplementedError

    @classmethod
    def from_state(cls, params: dict, arrays: dict[str, np.ndarray]) -> "Encoder":
        raise NotImplementedError


TOKEN = re.compile(r"(?u)\b\w\w+\b")  # scikit-learn's default token pattern


@register("tfidf")
class TfidfEncoder(Encoder):
    """Word 1–2-gram TF-IDF with sublinear tf and L2 norm.

    Fitting uses scikit-learn's ``TfidfVectorizer``; transforming is a dictionary lookup per
    n-gram in plain Python + numpy, which is several times faster than the vectorizer's
    per-call overhead for the one-query case that ``route()`` serves.
    """

    def __init__(self, min_df: int = 2, max_chars: int = 20_000):
        self.min_df, self.max_chars = min_df, max_chars
        self.vocabulary_: dict[str, int] = {}
        self.idf_ = np.zeros(0, np.float32)

    def fit(self, prompts):
        from sklearn.feature_extraction.text import TfidfVectorizer

        min_df = self.min_df if len(prompts) >= 10 * self.min_df else 1  # tiny evalsets keep every n-gram
        v = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=min_df, dtype=np.float32)
        v.fit([p[: self.max_chars] for p in prompts])
        self.vocabulary_ = {t: int(i) for t, i in v.vocabulary_.items()}
        self.idf_ = v.idf_.astype(np.float32)
        return self

    @property
    def dim(self) -> int:
        return len(self.idf_)

    def _row(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        toks = TOKEN.findall(text[: self.max_chars].lower())
        counts: dict[int, int] = {}
        vocab = self.vocabulary_
        for g in toks:
            j = vocab.get(g)
            if j is not None:
                counts[j] = counts.get(j, 0) + 1
        for a, b in zip(toks, toks[1:]):
            j = vocab.get(a + " " + b)
            if j is not None:
                counts[j] = counts.get(j, 0) + 1
        idx = np.fromiter(counts.keys(), np.int32, len(counts))
        val = (1 + np.log(np.fromiter(counts.values(), np.float32, len(counts)))) * self.idf_[idx]
        norm = float(np.sqrt(val @ val))
        return idx, (val / norm if norm > 0 else val)

    def transform(self, prompts):
        import scipy.sparse as sp

        rows = [self._row(p) for p in prompts]
        indptr = np.zeros(len(rows) + 1, np.int64)
        indptr[1:] = np.cumsum([len(r[0]) for r in rows])
        idx = np.concatenate([r[0] for r in rows]) if rows else np.zeros(0, np.int32)
        val = np.concatenate([r[1] for r in rows]) if rows else np.zeros(0, np.float32)
        return sp.csr_matrix((val, idx, indptr), shape=(len(rows), self.dim))

    def get_state(self):
        # The vocabulary is stored as one newline-joined string array: compact, no pickle.
        terms = sorted(self.vocabulary_, key=self.vocabulary_.get)
        return {"min_df": self.min_df, "max_chars": self.max_chars}, {"terms": np.array("\n".join(terms)),
                                                                         "idf": self.idf_}

    @classmethod
    def from_state(cls, params, arrays):
        enc = cls(**params)
        text = str(arrays["terms"])
        terms = text.split("\n") if text else []
        enc.vocabulary_ = {t: i for i, t in enumerate(terms)}
        enc.idf_ = np.asarray(arrays["idf"], np.float32)
        if len(enc.vocabulary_) != len(enc.idf_):
            raise ValueError(f"vocabulary has {len(enc.vocabulary_)} terms but idf has {len(enc.idf_)} weights")
        return enc


def make_encoder(name: str, **params) -> Encoder:
    if name not in ENCODERS:
        raise ValueError(f"unknown encoder '{name}' (known: {sorted(ENCODERS)})")
    return ENCODERS[name](**params)
