"""Calling tier models on their OpenAI-compatible endpoints: timeouts, retries, a JSON disk cache.

Every call is cached in a ``diskcache`` as JSON text keyed by a SHA-256 of (endpoint, model,
messages, params), so a re-run never asks a model the same thing twice. Retries are the ``openai``
client's own (``max_retries``: exponential backoff with jitter, ``Retry-After`` honoured) and cover
408 / 409 / 429 / 5xx, timeouts and connection errors; anything else (4xx, a malformed response)
fails at once with :class:`TierCallError`. Cost = the API's ``usage`` x the tier's prices.
"""
from __future__ import annotations

import hashlib
import json
import logging
import threading
from dataclasses import dataclass

from route_switch.core.errors import RouteSwitchError
from route_switch.llm.cache import get_json

log = logging.getLogger("route_switch")


class TierCallError(RouteSwitchError, RuntimeError):
    """A tier model could not answer (after retries); the message says which endpoint and why."""


@dataclass
class CallResult:
    text: str
    in_tokens: int
    out_tokens: int
    cached: bool = False
    usage_estimated: bool = False


def cache_key(endpoint: str, model: str, messages: list[dict], params: dict) -> str:
    payload = {"endpoint": endpoint.rstrip("/"), "model": model, "messages": messages, "params": params}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, ensure_ascii=False)
                          .encode("utf-8", "surrogatepass")).hexdigest()


class ChatCaller:
    """Cached, retried, thread-safe chat completions against OpenAI-compatible endpoints.

    ``calls`` counts requests that reached an endpoint (retries included), ``hits`` cache hits.
    """

    def __init__(self, cache_dir, timeout_s: float = 60.0, retries: int = 3):
        from route_switch.llm.cache import open_cache

        self.cache = open_cache(cache_dir)
        self.timeout_s, self.retries = float(timeout_s), int(retries)
        self.calls = self.hits = 0
        self._lock = threading.Lock()
        self._clients: dict = {}

    def _count_request(self, _request) -> None:
        with self._lock:
            self.calls += 1

    def _client(self, api_base: str, api_key_env: str | None, who: str):
        import httpx
        import openai

        from route_switch.core.tiers import api_key_from_env

        key = (api_base, api_key_env)
        with self._lock:
            if key not in self._clients:
                # without api_key_env: local servers accept any key
                api_key = api_key_from_env(api_key_env, who, TierCallError) or "none"
                # the event hook counts every attempt the client makes, its own retries included
                http = httpx.Client(timeout=self.timeout_s, event_hooks={"request": [self._count_request]})
                self._clients[key] = openai.OpenAI(base_url=api_base, api_key=api_key, timeout=self.timeout_s,
                                                   max_retries=self.retries, http_client=http)
            return self._clients[key]

    def chat(self, api_base: str, model: str, messages: list[dict], *, api_key_env: str | None = None,
             max_tokens: int = 512, temperature: float = 0.0, extra: dict | None = None,
             who: str | None = None) -> CallResult:
        """One chat completion (from the cache when this exact request was made before)."""
        import openai

        params = {"max_tokens": int(max_tokens), "temperature": float(temperature), **(extra or {})}
        key = cache_key(api_base, model, messages, params)
        d = get_json(self.cache, key)
        if d is not None:
            try:
                result = CallResult(d["text"], int(d["in"]), int(d["out"]), cached=True,
                                    usage_estimated=bool(d.get("est")))
                with self._lock:
                    self.hits += 1
                return result
            except (KeyError, TypeError, ValueError):
                log.warning("ignoring a corrupt call cache entry %s", key[:12])
        client = self._client(api_base, api_key_env, who or f"model {model}")
        body = {k: v for k, v in params.items() if k in ("max_tokens", "temperature")}
        extra_body = {k: v for k, v in params.items() if k not in body} or None
        where = f"{api_base} (model {model})"
        attempts = f"after {self.retries + 1} attempt(s)"
        try:
            resp = client.chat.completions.create(model=model, messages=messages, extra_body=extra_body, **body)
            text = resp.choices[0].message.content
        except (openai.APITimeoutError, openai.APIConnectionError) as e:
            raise TierCallError(f"{where}: {type(e).__name__} {attempts}: {str(e)[:200]}") from None
        except openai.APIStatusError as e:
            retried = e.status_code in (408, 409, 429) or e.status_code >= 500
            raise TierCallError(f"{where}: HTTP {e.status_code}{' ' + attempts if retried else ''}: "
                                f"{str(e)[:200]}") from None
        except (ValueError, AttributeError, IndexError, TypeError) as e:  # not JSON / not a completion
            raise TierCallError(f"{where}: malformed response ({type(e).__name__}: {str(e)[:120]})") from None
        if not isinstance(text, str):
            raise TierCallError(f"{where}: the response has no message content")
        usage = getattr(resp, "usage", None)
        n_in, n_out = getattr(usage, "prompt_tokens", None), getattr(usage, "completion_tokens", None)
        est = n_in is None or n_out is None
        if est:  # no usage reported: ~4 characters per token
            n_in = sum(len(m.get("content") or "") for m in messages) // 4 + 1
            n_out = len(text) // 4 + 1
        self.cache.set(key, json.dumps({"text": text, "in": int(n_in), "out": int(n_out), "est": est}))
        return CallResult(text, int(n_in), int(n_out), usage_estimated=est)

    def call_tier(self, tier, messages: list[dict], max_tokens: int = 512, temperature: float = 0.0) -> CallResult:
        """Ask a :class:`~route_switch.core.tiers.Tier`'s model (``upstream_model`` or ``model``)."""
        if not tier.api_base:
            raise TierCallError(f"tier '{tier.name}' has no api_base")
        return self.chat(tier.api_base, tier.upstream_model or tier.model, messages, api_key_env=tier.api_key_env,
                         max_tokens=max_tokens, temperature=temperature, who=f"tier '{tier.name}'")

    def close(self) -> None:
        for client in self._clients.values():
            client.close()
        self.cache.close()
