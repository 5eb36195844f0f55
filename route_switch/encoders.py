"""Frozen query encoders: text -> feature vector, shared by every model's adapter.

An encoder is fitted once (e.g. its IDF weights on the training prompts) and then frozen:
adding a model trains only that model's adapter. State is saved as JSON parameters plus numpy
arrays (``np.savez``, loaded with ``allow_pickle=False``), never as a pickle.

The default, ``hashed-tfidf``, hashes word and character n-grams into a fixed space, so its
saved state holds no vocabulary (no text of the training prompts) and it needs no download.
"""
from __future__ import annotations

import numpy as np

ENCODERS: dict[str, type["Encoder"]] = {}


def register(name: str):
    def deco(cls):
        cls.name = name
        ENCODERS[name] = cls
        return cls
    return deco


class Encoder:
    """Base class: ``fit(prompts)``, ``transform(prompts)``; ``params`` + ``arrays`` are its state."""

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


@register("hashed-tfidf")
class HashedTfidfEncoder(Encoder):
    """Word 1–2-grams and char_wb n-grams hashed to ``2**n_bits`` columns, sublinear TF-IDF, L2-norm."""

    def __init__(self, n_bits: int = 18, char_ngrams: tuple[int, int] = (2, 5), word_ngrams: tuple[int, int] = (1, 2),
                 max_chars: int = 20_000):
        self.n_bits, self.char_ngrams, self.word_ngrams, self.max_chars = n_bits, tuple(char_ngrams), tuple(word_ngrams), max_chars
        self.idf_: np.ndarray | None = None
        self._build()

    def _build(self):
        from sklearn.feature_extraction.text import HashingVectorizer

        common = dict(n_features=2 ** self.n_bits, alternate_sign=False, norm=None, lowercase=True,
                      dtype=np.float32)
        self._word = HashingVectorizer(analyzer="word", ngram_range=self.word_ngrams,
                                       token_pattern=r"(?u)\b\w+\b|[^\w\s]", **common)
        self._char = HashingVectorizer(analyzer="char_wb", ngram_range=self.char_ngrams, **common)

    def _counts(self, prompts):
        # Long prompts are cut: routing signal sits in the first pages, and cost must stay bounded.
        texts = [p[: self.max_chars] for p in prompts]
        X = self._word.transform(texts) + self._char.transform(texts)
        X.data = np.log1p(X.data)  # sublinear tf
        return X

    def fit(self, prompts):
        X = self._counts(prompts)
        df = np.bincount(X.indices, minlength=X.shape[1])
        n = X.shape[0]
        self.idf_ = (np.log((1 + n) / (1 + df)) + 1).astype(np.float32)
        return self

    def transform(self, prompts):
        from sklearn.preprocessing import normalize

        X = self._counts(prompts)
        X = X.multiply(self.idf_).tocsr()
        return normalize(X, copy=False)

    def get_state(self):
        return ({"n_bits": self.n_bits, "char_ngrams": list(self.char_ngrams),
                 "word_ngrams": list(self.word_ngrams), "max_chars": self.max_chars},
                {"idf": self.idf_})

    @classmethod
    def from_state(cls, params, arrays):
        enc = cls(**params)
        enc.idf_ = np.asarray(arrays["idf"], dtype=np.float32)
        return enc


def make_encoder(name: str, **params) -> Encoder:
    if name not in ENCODERS:
        raise ValueError(f"unknown encoder '{name}' (known: {sorted(ENCODERS)})")
    return ENCODERS[name](**params)
