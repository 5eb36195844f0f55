"""Static word-piece embeddings distilled from MiniLM: a sentence vector in ~0.1 ms instead of ~5–10 ms.

Each word piece of MiniLM's vocabulary is run through MiniLM once, alone (``[CLS] piece [SEP]``,
mean-pooled as a sentence); a text's static vector is the weighted mean of its pieces' vectors,
L2-normalised. It lives in MiniLM's embedding space, so a linear model fitted on MiniLM
embeddings (a policy's classifier) can score it directly, less precisely: the policy matcher
uses it as a gate that skips MiniLM for queries no policy can plausibly match
(:mod:`route_switch.llm.policy_match`).

Weights: frequent pieces count less, ``log(1 + rank)``, the rank read from the piece's id (the
BERT vocabulary is sorted by frequency after its ~2,000 single characters and unused slots).
The table (30,522 × 384, float16, 23 MB) is computed on first use (about 20 s on one core) and
kept under ``cache_dir()/models`` (``np.save``, read with ``allow_pickle=False``).
"""
from __future__ import annotations

import io
import logging
import threading

import numpy as np

log = logging.getLogger("route_switch")

FIRST_WORD_ID = 1996  # "the": word pieces from here on are sorted by frequency
_TABLES: dict = {}
_LOCK = threading.Lock()


def _distil(encoder, batch: int = 1024) -> np.ndarray:
    """(vocab, 384) MiniLM sentence embedding of each word piece alone."""
    if encoder._sess is None:
        encoder._load()
    cls_id, sep_id = encoder._tok.token_to_id("[CLS]"), encoder._tok.token_to_id("[SEP]")
    vocab = encoder._tok.get_vocab_size()
    out = np.zeros((vocab, encoder.dim), np.float32)
    for s in range(0, vocab, batch):
        ids = np.arange(s, min(vocab, s + batch))
        inp = np.stack([np.full(len(ids), cls_id), ids, np.full(len(ids), sep_id)], 1).astype(np.int64)
        feed = {"input_ids": inp, "attention_mask": np.ones_like(inp), "token_type_ids": np.zeros_like(inp)}
        out[s:s + len(ids)] = encoder._sess.run(None, {k: feed[k] for k in encoder._names})[0].mean(1)
    return out


def static_table(encoder) -> np.ndarray:
    """The distilled table for ``encoder`` (a MiniLMEncoder), from the disk cache or computed now."""
    from route_switch.core.encoders import minilm_files
    from route_switch.core.files import atomic_write_bytes
    from route_switch.core.paths import cache_dir

    onnx = minilm_files()[0]
    key = f"{onnx.name}-{onnx.stat().st_size}"
    with _LOCK:
        if key in _TABLES:
            return _TABLES[key]
        path = cache_dir() / "models" / f"minilm-static-{key}.npy"
        table = None
        if path.exists():
            try:
                table = np.load(path, allow_pickle=False)
            except (OSError, ValueError) as e:
                log.warning("%s is unreadable (%s): distilling it again", path, e)
        if table is None or table.ndim != 2 or table.shape[1] != encoder.dim:
            log.info("distilling MiniLM's word pieces into %s (once, about 20 s)", path)
            table = _distil(encoder).astype(np.float16)
            buf = io.BytesIO()
            np.save(buf, table, allow_pickle=False)
            atomic_write_bytes(path, buf.getvalue())
        _TABLES[key] = table
        return table


class StaticEmbedder:
    """``embed(texts) -> (n, 384)`` L2-normalised static vectors in MiniLM's space."""

    def __init__(self, encoder):
        from tokenizers import Tokenizer

        from route_switch.core.encoders import minilm_files

        self.encoder = encoder
        self.table = static_table(encoder).astype(np.float32)
        self._tok = Tokenizer.from_file(str(minilm_files()[1]))
        self._tok.no_padding()  # tokenizer.json may pad: [PAD] pieces would join the mean
        self._tok.enable_truncation(encoder.max_len)
        ids = np.arange(len(self.table))
        self.weight = np.log1p(np.maximum(ids - (FIRST_WORD_ID - 6), 1)).astype(np.float32)  # rank ≈ id − 1990
        self.dim = self.table.shape[1]

    def embed(self, texts) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), np.float32)
        for i, enc in enumerate(self._tok.encode_batch([self.encoder.view(t) for t in texts])):
            ids = enc.ids[1:-1]  # without [CLS] and [SEP]
            if ids:
                v = self.weight[ids] @ self.table[ids]
                out[i] = v / max(float(np.linalg.norm(v)), 1e-12)
        return out
