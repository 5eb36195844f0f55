"""Token counting with the router model's tokenizer, or a documented estimate."""
from __future__ import annotations

import math

CHARS_PER_TOKEN = 4  # estimate used when no tokenizer is available (~4 chars/token for English/code)


def estimate_tokens(text: str) -> int:
    """ceil(len(text) / 4): a rough, tokenizer-free estimate."""
    return math.ceil(len(text) / CHARS_PER_TOKEN)


_default_tokenizer = None  # set by the router LLM's engine when it loads a model (core knows no engines)


def set_default_tokenizer(tokenizer) -> None:
    """Count tokens with ``tokenizer`` from now on (the in-process router model registers itself)."""
    global _default_tokenizer
    _default_tokenizer = tokenizer


def count_tokens(text, tokenizer=None) -> int:
    """Number of tokens in `text`; never raises.

    `tokenizer` may be a llama_cpp.Llama (``tokenize(bytes)``), an object with
    ``encode(str)`` (tiktoken / HF style), or a callable returning a sequence.
    Without one, the local router model's tokenizer is used if it is already
    loaded in this process; otherwise ``ceil(len(text)/4)``.
    """
    try:
        text = text if isinstance(text, str) else ("" if text is None else str(text))
    except Exception:
        return 0
    if not text:
        return 0
    tok = tokenizer if tokenizer is not None else _default_tokenizer
    if tok is not None:
        try:
            if hasattr(tok, "tokenize"):
                return len(tok.tokenize(text.encode("utf-8", "replace"), add_bos=False, special=False))
            if hasattr(tok, "encode"):
                return len(tok.encode(text))
            if callable(tok):
                return len(tok(text))
        except Exception:
            pass
    return estimate_tokens(text)
