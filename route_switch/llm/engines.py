"""DSPy 3.4 custom engines (``complete(Request) -> Response``) for the router LLM.

- LlamaCppEngine: in-process llama.cpp; a routing call is one forward pass that reads the
  probability of each tier label (``tier_probs``); ``complete`` answers its most likely label.

The deterministic FAKE engine for tests lives in :mod:`route_switch.llm.fakes`. Engines answer in
the exact layout dspy.ChatAdapter parses::

    [[ ## tier ## ]]
    2

    [[ ## completed ## ]]
"""
from __future__ import annotations

import re
import threading
import time
from contextlib import contextmanager


# --- deadline passed from RouterLLM's worker thread to the engine -----------------
_DEADLINE = threading.local()


@contextmanager
def deadline_scope(deadline: float | None):
    """Set a monotonic deadline that engines running in this thread honour."""
    prev = getattr(_DEADLINE, "value", None)
    _DEADLINE.value = deadline
    try:
        yield
    finally:
        _DEADLINE.value = prev


def current_deadline() -> float | None:
    return getattr(_DEADLINE, "value", None)


# --- request helpers ---------------------------------------------------------------
def _request_messages(request) -> list[dict]:
    msgs = []
    if request.system is not None:
        system = request.system if isinstance(request.system, str) else "".join(p.text for p in request.system)
        msgs.append({"role": "system", "content": system})
    msgs.extend({"role": m.role, "content": m.text or ""} for m in request.messages)
    return msgs


def _layout(field: str, value: str) -> str:
    return f"[[ ## {field} ## ]]\n{value}\n\n[[ ## completed ## ]]"


def _response(text: str, model: str, input_tokens=None, output_tokens=None, cache_read_tokens=None,
              finish_reason: str = "stop"):
    from dspy.lm15 import Message, Response, TextPart, Usage

    usage = Usage(input_tokens=input_tokens, output_tokens=output_tokens, cache_read_tokens=cache_read_tokens)
    return Response(id=None, model=model, message=Message.assistant([TextPart(text)]),
                    finish_reason=finish_reason, usage=usage)


_OUTPUT_FIELDS = re.compile(r"Your output fields are:\n1\. `([^`]+)`[^\n]*\n(?!2\. )")


def single_output_field(messages: list[dict]) -> str | None:
    """The output field of a ChatAdapter request that has exactly one, else None."""
    if not messages or messages[0]["role"] != "system":
        return None
    m = _OUTPUT_FIELDS.search(messages[0]["content"])
    return m.group(1) if m else None


# --- in-process llama.cpp ----------------------------------------------------------
_LLAMAS: dict[tuple, object] = {}
_LLAMAS_LOCK = threading.Lock()


def _shared_llama(model_path: str, n_ctx: int, n_threads: int, n_batch: int):
    """(Llama, lock): one model per process and settings; the lock serialises its use."""
    key = (model_path, n_ctx, n_threads, n_batch)
    with _LLAMAS_LOCK:
        if key not in _LLAMAS:
            from llama_cpp import Llama

            llm = Llama(model_path=model_path, n_ctx=n_ctx, n_threads=n_threads, n_threads_batch=n_threads,
                        n_batch=n_batch, seed=0, verbose=False)
            if not _LLAMAS:
                import atexit

                from route_switch.core.tokens import set_default_tokenizer

                atexit.register(_drain)
                set_default_tokenizer(llm)  # the bypass counts tokens with the router model's tokenizer
            _LLAMAS[key] = (llm, threading.Lock())
        return _LLAMAS[key]


def _drain(wait_s: float = 30.0) -> None:
    """At exit, let a call abandoned by a timeout finish before the model is freed."""
    for _llm, lock in list(_LLAMAS.values()):
        if lock.acquire(timeout=wait_s):
            lock.release()


MAX_PREFIX_FILES = 8  # newest prefix states kept on disk (~9 MB each for the default program)


class LlamaCppEngine:
    """In-process llama.cpp engine for ``dspy.LM("local/<name>", engine=...)``.

    Routing requests (the system prompt mentions ``[[ ## <field> ## ]]``) are
    rendered with the model's chat template, the assistant turn is pre-filled with
    the field header, and one forward pass gives the probability of each tier label
    (``tier_probs``); ``complete`` replies with the most likely label in the ChatAdapter
    layout, so the answer is always a valid tier. The prompt prefix (system + demos) is identical
    across calls, so llama.cpp's KV cache re-uses it and only the query tokens are
    evaluated. Other requests (e.g. an optimiser's prompt model) get a plain
    chat completion. One model per process and path; calls are serialised.
    """

    forces_layout = True  # tells the routing module it may drop the output-format reminder

    def __init__(self, model_path: str, labels=("1", "2", "3"), output_field: str = "tier",
                 n_ctx: int = 4096, n_threads: int = 2, n_batch: int = 512, reuse_prefix: bool = True,
                 prefix_state_dir: str | None = None):
        self.model_path = str(model_path)
        self.labels = tuple(str(x) for x in labels) if labels else ()
        self.output_field = output_field
        self.n_ctx, self.n_threads, self.n_batch = n_ctx, n_threads, n_batch
        self.reuse_prefix = reuse_prefix
        self.prefix_state_dir = prefix_state_dir  # where evaluated prompt prefixes are kept across processes
        self.last_stats: dict = {}
        self._formatter = None

    # engines are borrowed: copying an LM/module must not reload the model
    def __copy__(self):
        return self

    def __deepcopy__(self, memo):
        return self

    def dump_state(self) -> dict:
        return {"model_path": self.model_path, "labels": list(self.labels), "output_field": self.output_field,
                "n_ctx": self.n_ctx, "n_threads": self.n_threads, "n_batch": self.n_batch,
                "reuse_prefix": self.reuse_prefix, "prefix_state_dir": self.prefix_state_dir}

    @classmethod
    def load_state(cls, state: dict) -> "LlamaCppEngine":
        return cls(**state)

    @property
    def llm(self):
        return _shared_llama(self.model_path, self.n_ctx, self.n_threads, self.n_batch)[0]

    def _format(self, messages: list[dict]) -> str:
        if self._formatter is None:
            from llama_cpp.llama_chat_format import Jinja2ChatFormatter

            llm = self.llm
            template = llm.metadata.get("tokenizer.chat_template")
            if not template:  # ChatML fallback
                template = ("{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n"
                            "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
            tok = lambda i: llm.detokenize([i], special=True).decode("utf-8", "ignore") if i >= 0 else ""
            self._formatter = Jinja2ChatFormatter(template, eos_token=tok(llm.token_eos()),
                                                  bos_token=tok(llm.token_bos()), add_generation_prompt=True)
        return self._formatter(messages=messages).prompt

    def _is_routing(self, messages: list[dict]) -> bool:
        """A ChatAdapter request whose only output field is `output_field`."""
        if not self.labels or messages[0]["role"] != "system" or messages[-1]["role"] != "user":
            return False
        pattern = rf"Your output fields are:\n1\. `{re.escape(self.output_field)}`[^\n]*\n(?!2\. )"
        return re.search(pattern, messages[0]["content"]) is not None

    def complete(self, request):
        from dspy.clients.engines.base import validate_request

        validate_request(request)
        messages = _request_messages(request)
        if self._is_routing(messages):
            probs = self.tier_probs(messages)
            label = self.labels[max(range(len(probs)), key=probs.__getitem__)]
            st = self.last_stats
            return _response(_layout(self.output_field, label), "llama.cpp:" + self.model_path.rsplit("/", 1)[-1],
                             input_tokens=st.get("prompt_tokens"), output_tokens=1,
                             cache_read_tokens=st.get("reused_tokens"))
        with _shared_llama(self.model_path, self.n_ctx, self.n_threads, self.n_batch)[1]:
            return self._chat(messages, request.config)

    def tier_probs(self, messages: list[dict]) -> list[float]:
        """Probability of each tier label as the answer: one forward pass, no sampling.

        The assistant turn is pre-filled with the field header; the next-token logits of the
        label tokens ("1".."N", one token each) are normalised over the labels. The constant
        prompt prefix stays in the KV cache, so only the query's tokens are evaluated.
        """
        import numpy as np

        with _shared_llama(self.model_path, self.n_ctx, self.n_threads, self.n_batch)[1]:
            llm = self.llm
            prompt = self._format(messages) + f"[[ ## {self.output_field} ## ]]\n"
            tokens = llm.tokenize(prompt.encode("utf-8"), add_bos=False, special=True)
            if len(tokens) + 1 > self.n_ctx:
                raise ValueError(f"routing prompt has {len(tokens)} tokens; n_ctx is {self.n_ctx}")
            source = "none"
            if not self.reuse_prefix:
                llm.reset()
            elif self.prefix_state_dir:
                source = self._ensure_prefix(llm, prompt, messages[-1]["content"], tokens)
            prev = llm._input_ids[: llm.n_tokens].tolist()
            reused = 0
            for a, b in zip(prev, tokens[:-1]):  # the last token is always evaluated: it yields the logits
                if a != b:
                    break
                reused += 1
            t0 = time.perf_counter()
            llm.n_tokens = reused  # eval() drops the KV cache beyond this point
            llm.eval(tokens[reused:])
            logits = np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(llm.n_vocab(),))
            z = logits[self._label_ids(llm)].astype(np.float64)
            p = np.exp(z - z.max())
            p /= p.sum()
            self.last_stats = {"prompt_tokens": len(tokens), "reused_tokens": reused, "prefix_source": source,
                               "evaluated_tokens": len(tokens) - reused, "seconds": time.perf_counter() - t0}
        deadline = current_deadline()
        if deadline is not None and time.monotonic() > deadline:
            raise TimeoutError("router LLM deadline exceeded")
        return [float(x) for x in p]

    def _label_ids(self, llm) -> list[int]:
        if getattr(self, "_label_ids_cache", None) is None:
            ids = [llm.tokenize(lab.encode("utf-8"), add_bos=False, special=False) for lab in self.labels]
            bad = [lab for lab, t in zip(self.labels, ids) if len(t) != 1]
            if bad:
                raise ValueError(f"tier labels {bad} are not single tokens for this model (at most 9 tiers)")
            self._label_ids_cache = [t[0] for t in ids]
        return self._label_ids_cache

    def clip(self, text: str, max_tokens: int) -> str:
        """Keep the first 3/4 and the last 1/4 of ``max_tokens`` tokens of ``text`` (the routing budget)."""
        llm = self.llm
        ids = llm.tokenize(text.encode("utf-8", "replace"), add_bos=False, special=False)
        if len(ids) <= max_tokens:
            return text
        head = max_tokens * 3 // 4
        dec = lambda t: llm.detokenize(t).decode("utf-8", "ignore")  # noqa: E731
        return dec(ids[:head]) + " ... " + dec(ids[len(ids) - (max_tokens - head):])

    def _ensure_prefix(self, llm, prompt: str, query: str, tokens: list[int]) -> str:
        """Make the KV cache hold the constant prefix (everything before the query).

        Returns "memory" (already there), "disk" (restored from prefix_state_dir) or
        "built" (evaluated now and saved). Any disk problem falls back to evaluating.
        """
        import hashlib
        import os
        from pathlib import Path

        cut = prompt.rfind(query) if query else -1
        if cut <= 0:
            return "none"
        head = llm.tokenize(prompt[:cut].encode("utf-8"), add_bos=False, special=True)
        n = 0
        for a, b in zip(head, tokens[:-1]):
            if a != b:
                break
            n += 1
        prefix = tokens[:n]
        if n < 16:
            return "none"
        have = llm._input_ids[: llm.n_tokens].tolist()
        if len(have) >= n and have[:n] == prefix:
            return "memory"
        st = os.stat(self.model_path)
        key = hashlib.sha256(f"{self.model_path}|{st.st_size}|{self.n_ctx}|{self.n_batch}|".encode()
                             + bytes(str(prefix), "ascii")).hexdigest()[:32]
        path = Path(self.prefix_state_dir) / f"prefix-{key}.npz"
        try:
            if path.is_file():
                _restore_state(llm, path, prefix)
                os.utime(path)  # most recently used survives pruning
                return "disk"
        except Exception:
            path.unlink(missing_ok=True)
        llm.reset()
        llm.eval(prefix)
        try:
            _save_state(llm, path)
        except Exception:
            pass
        return "built"

    def _chat(self, messages, config):
        """Free-text answer. For a one-output-field DSPy request (an optimiser's instruction proposal)
        the field header is pre-filled and the text wrapped in the layout, so a small model cannot
        miss the format."""
        field = single_output_field(messages)
        if field is None:
            out = self.llm.create_chat_completion(messages=messages, max_tokens=config.max_tokens or 512,
                                                  temperature=config.temperature or 0.0)
            usage = out.get("usage", {})
            return _response(out["choices"][0]["message"]["content"] or "", "llama.cpp",
                             usage.get("prompt_tokens"), usage.get("completion_tokens"))
        prompt = self._format(messages) + f"[[ ## {field} ## ]]\n"
        out = self.llm.create_completion(prompt, max_tokens=config.max_tokens or 512,
                                         temperature=config.temperature or 0.0, stop=["[[ ##", "<|im_end|>"],
                                         seed=config.seed if config.seed is not None else 0)
        usage = out.get("usage", {})
        return _response(_layout(field, out["choices"][0]["text"].strip()), "llama.cpp",
                         usage.get("prompt_tokens"), usage.get("completion_tokens"))

    def stream(self, request):
        from dspy.lm15 import response_to_events

        return response_to_events(self.complete(request))

    def close(self):
        pass


def _save_state(llm, path) -> None:
    """Write llama.cpp's context state (KV cache) + token ids, atomically, without pickle."""
    import ctypes
    import os
    import tempfile

    import llama_cpp
    import numpy as np

    size = llama_cpp.llama_state_get_size(llm._ctx.ctx)
    buf = (ctypes.c_uint8 * int(size))()
    n = int(llama_cpp.llama_state_get_data(llm._ctx.ctx, buf, size))
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, ids=np.asarray(llm._input_ids[: llm.n_tokens], dtype=np.int32),
                     state=np.frombuffer(bytes(buf)[:n], dtype=np.uint8))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    old = sorted(path.parent.glob("prefix-*.npz"), key=lambda p: p.stat().st_mtime, reverse=True)
    for stale in old[MAX_PREFIX_FILES:]:
        stale.unlink(missing_ok=True)


def _restore_state(llm, path, prefix: list[int]) -> None:
    import ctypes

    import llama_cpp
    import numpy as np

    with np.load(path, allow_pickle=False) as z:
        ids, state = z["ids"], z["state"].tobytes()
    if ids.tolist() != prefix:
        raise ValueError("prefix state does not match")
    buf = (ctypes.c_uint8 * len(state)).from_buffer_copy(state)
    if llama_cpp.llama_state_set_data(llm._ctx.ctx, buf, len(state)) != len(state):
        raise RuntimeError("llama_state_set_data failed")
    llm.input_ids[: len(ids)] = ids
    llm.n_tokens = len(ids)
    llm._requires_eval = True
