"""DSPy engine for any OpenAI-compatible chat endpoint (OpenAI, vLLM, Ollama, llama.cpp server).

Calls go through the ``openai`` client, so ``max_tokens`` is what is sent (no provider prefix
decides it), and the calls can be wrapped by the disk cache like the in-process engine's.

``tier_probs`` asks for ``logprobs`` / ``top_logprobs`` and reads the probability of each tier
label at the position where the label is written. **Degradation:** an endpoint that returns no
logprobs, or rejects the parameter, gives a one-hot distribution on the label it wrote (the
``Decision`` then says ``source: label`` through ``TierVote``); an answer with no tier label
raises, it is never guessed. llama.cpp's server (``python -m llama_cpp.server``) returns logprobs.
"""
from __future__ import annotations

import math
import re

from route_switch.llm.engines import _request_messages, _response


def probs_from_logprobs(text: str, content, labels, output_field: str = "tier") -> tuple[list[float], str]:
    """(probability per label, "logprobs" | "label") from a chat reply and its logprobs content.

    ``content``: the reply's ``logprobs.content`` (a list of tokens with ``token``, ``logprob`` and
    ``top_logprobs``), or None. The label position is the first token after the field header
    whose text (stripped) is a label.
    """
    labels = [str(x) for x in labels]
    header = f"[[ ## {output_field} ## ]]"
    if content:
        seen = ""
        for tok in content:
            t = getattr(tok, "token", None) if not isinstance(tok, dict) else tok.get("token")
            if header in seen and t is not None and t.strip() in labels:
                tops = getattr(tok, "top_logprobs", None) if not isinstance(tok, dict) else tok.get("top_logprobs")
                mass = [0.0] * len(labels)
                for alt in tops or []:
                    at = alt.get("token") if isinstance(alt, dict) else getattr(alt, "token", None)
                    lp = alt.get("logprob") if isinstance(alt, dict) else getattr(alt, "logprob", None)
                    if at is not None and lp is not None and at.strip() in labels:
                        mass[labels.index(at.strip())] += math.exp(lp)
                if sum(mass) > 0:
                    s = sum(mass)
                    return [m / s for m in mass], "logprobs"
                break
            seen += t or ""
    m = re.search(re.escape(header) + r"\s*(\S+)", text or "")
    label = m.group(1).strip() if m else (text or "").strip()
    if label not in labels:
        raise ValueError(f"router answered {label[:40]!r}; allowed: {', '.join(labels)}")
    return [1.0 if x == label else 0.0 for x in labels], "label"


class OpenAIChatEngine:
    """``complete(Request) -> Response`` and ``tier_probs(messages)`` over the ``openai`` client."""

    forces_layout = False

    def __init__(self, model: str, api_base: str | None, api_key: str, labels=("1", "2", "3"),
                 output_field: str = "tier", timeout_s: float = 10.0, max_tokens: int = 16, top_logprobs: int = 10):
        self.model, self.api_base, self.api_key = model, api_base, api_key
        self.labels = tuple(str(x) for x in labels)
        self.output_field = output_field
        self.timeout_s, self.max_tokens, self.top_logprobs = timeout_s, max_tokens, top_logprobs
        self.logprobs_supported: bool | None = None  # learnt from the first reply
        self.last_source = ""
        self._client = None

    def __deepcopy__(self, memo):  # DSPy copies modules; the HTTP client is shared
        return self

    @property
    def client(self):
        if self._client is None:
            import openai

            self._client = openai.OpenAI(base_url=self.api_base, api_key=self.api_key, timeout=self.timeout_s,
                                         max_retries=0)
        return self._client

    def complete(self, request):
        from dspy.clients.engines.base import validate_request

        validate_request(request)
        cfg = request.config
        out = self.client.chat.completions.create(
            model=self.model, messages=_request_messages(request), max_tokens=cfg.max_tokens or self.max_tokens,
            temperature=cfg.temperature if cfg.temperature is not None else 0.0)
        usage = out.usage
        return _response(out.choices[0].message.content or "", self.model,
                         getattr(usage, "prompt_tokens", None), getattr(usage, "completion_tokens", None))

    def tier_probs(self, messages: list[dict]) -> list[float]:
        import openai

        kwargs = dict(model=self.model, messages=messages, max_tokens=self.max_tokens, temperature=0.0)
        out = None
        if self.logprobs_supported is not False:
            try:
                out = self.client.chat.completions.create(**kwargs, logprobs=True, top_logprobs=self.top_logprobs)
            except openai.BadRequestError:
                self.logprobs_supported = False  # the endpoint rejects logprobs: labels only from now on
            except openai.InternalServerError as e:
                if "logprob" not in str(e).lower():
                    raise
                self.logprobs_supported = False
        if out is None:
            out = self.client.chat.completions.create(**kwargs)
        choice = out.choices[0]
        content = getattr(getattr(choice, "logprobs", None), "content", None)
        probs, self.last_source = probs_from_logprobs(choice.message.content or "", content, self.labels,
                                                      self.output_field)
        if self.logprobs_supported is None:
            self.logprobs_supported = self.last_source == "logprobs"
        return probs

    def stream(self, request):
        from dspy.lm15 import response_to_events

        return response_to_events(self.complete(request))

    def close(self):
        pass

