"""In-process drop-in for the ``openai`` client: route each chat completion, then call the chosen tier.

    client = route_switch.OpenAI(router="estimators/prod")          # or a Router
    out = client.chat.completions.create(model="router-tau-0.1", messages=[...])
    out.choices[0].message.content, out.route_switch_decision.tier, out.route_switch["tier"]

``model`` is parsed as the proxy parses it (``router``, ``router-tau-<t>``, ``router-lambda-<l>``),
the conversation is routed as the proxy routes it (:meth:`Router.route` on the message list:
last user message plus bounded context; ``session=`` or an ``X-Route-Switch-Session`` extra
header keeps a follow-up from dropping below its conversation's tier), and the chosen tier's
endpoint (its ``api_base``, ``upstream_model``, and the key in ``api_key_env``) is called with
the real ``openai`` client. The answer is the SDK's own type (``ChatCompletion``, or ``Stream`` /
``AsyncStream`` of ``ChatCompletionChunk``) with two attributes added:

* ``route_switch``: the same object the proxy adds to its JSON answers (tier that answered,
  routed tier, path, reason, ``retried_from``, predicted quality, route latency, ``cost_usd``
  when the tier has prices and the upstream reports usage); on a ``ChatCompletion`` it is in
  ``model_extra`` like the proxy's;
* ``route_switch_decision``: the :class:`~route_switch.core.decision.Decision`.

Fallback is the proxy's: a connection error, a timeout, HTTP 5xx / 401 / 403 / 404 / 408 / 409 /
429, a body that is not a chat completion, or a stream that ends before its first event moves
the request to the next tier up; other errors (a 400) are raised as the SDK raises them. When
every tier from the routed one up fails, :class:`AllTiersFailed` (an ``openai.APIError``) says
what each one answered. A stream is committed to a tier once its first chunk has arrived.
"""
from __future__ import annotations

import asyncio
import itertools
import threading
from pathlib import Path

import httpx
import openai
from openai.types.chat import ChatCompletion

from route_switch.routing import telemetry
from route_switch.routing.controller import Router
from route_switch.core.decision import Decision
from route_switch.core.errors import ConfigError
from route_switch.core.knobs import parse_router_model
from route_switch.server.upstream import RETRY_STATUS
from route_switch.core.tiers import Tier, api_key_from_env, to_index, to_tier

SESSION_HEADER = "x-route-switch-session"


class AllTiersFailed(openai.APIError):
    """Every tier from the routed one up failed; ``failures`` lists ``{tier, tier_name, error}``."""

    def __init__(self, failures: list[dict], decision: Decision, request: httpx.Request):
        self.failures, self.route_switch_decision = failures, decision
        msg = f"every tier from {decision.tier} up failed: " + "; ".join(
            f"tier {f['tier']} ({f['tier_name']}): {f['error']}" for f in failures)
        super().__init__(msg, request, body=None)


class _TierFailure(Exception):
    """This tier cannot answer now (the message says why, without secrets)."""


def failure_reason(e: BaseException, timeout_s: float) -> str | None:
    """Why a tier failed, when ``e`` is a failure the proxy would retry on the next tier; else None."""
    if isinstance(e, _TierFailure):
        return str(e)
    if isinstance(e, openai.APITimeoutError):
        return f"timeout after {timeout_s:g}s"
    if isinstance(e, openai.APIConnectionError):
        return "connection error (refused or unreachable)"
    if isinstance(e, openai.APIStatusError):
        return f"HTTP {e.status_code}" if e.status_code >= 500 or e.status_code in RETRY_STATUS else None
    if isinstance(e, (openai.APIResponseValidationError, ValueError)):  # ValueError: a body that is not JSON
        return f"malformed response: {type(e).__name__}"
    return None


def _plain(m):
    """A message as a dict (the SDK's message objects, e.g. a previous answer, are pydantic models)."""
    if isinstance(m, dict):
        return m
    dump = getattr(m, "model_dump", None)
    return dump(exclude_none=True) if dump is not None else m


def load_router(router) -> Router:
    """A Router from a Router, a RouterReloader (anything with ``.current``), or a config path."""
    if isinstance(router, (str, Path)):
        return Router.from_config(router)
    return router


def check_endpoints(router: Router) -> None:
    """``ConfigError`` when no tier has an ``api_base`` (every call would fail), as ``serve`` refuses to start."""
    tiers = _router(router).tiers
    if not any(t.api_base for t in tiers):
        raise ConfigError("no tier has an api_base, so every chat completion would fail: set api_base (and "
                          "api_key_env) of the tiers in router.yaml", field="tiers")


def _router(src) -> Router:
    return getattr(src, "current", src)  # a RouterReloader swaps routers between calls


def tier_info(d: Decision, tiers, index: int | None, failures: list, version: str = "") -> dict:
    """The proxy's ``route_switch`` object for decision ``d`` answered by ``tiers[index]``."""
    t = tiers[index] if index is not None else None
    return {"tier": to_tier(index) if t else None, "tier_name": t.name if t else None,
            "model": t.model if t else None, "routed_tier": d.tier, "path": d.path, "reason": d.reason,
            "retried_from": failures, "predicted_quality": d.predicted_quality, "route_latency_ms": d.latency_ms,
            "router_version": version}


class _Routing:
    """What the sync and async clients share: the router, one SDK client per endpoint, the decision."""

    def __init__(self, router, timeout: float, max_retries: int, client_kwargs: dict, async_: bool):
        self._src = load_router(router)
        check_endpoints(self._src)
        self.timeout, self.max_retries, self.client_kwargs, self.async_ = timeout, max_retries, client_kwargs, async_
        self._clients: dict = {}
        self._lock = threading.Lock()

    @property
    def router(self) -> Router:
        return _router(self._src)

    def client_for(self, tier: Tier):
        if not tier.api_base:
            raise _TierFailure("tier has no api_base configured")
        key = api_key_from_env(tier.api_key_env, f"tier '{tier.name}'", _TierFailure) or "none"
        ck = (tier.api_base, key)
        with self._lock:
            c = self._clients.get(ck)
            if c is None:
                cls = openai.AsyncOpenAI if self.async_ else openai.OpenAI
                c = self._clients[ck] = cls(base_url=tier.api_base, api_key=key, timeout=self.timeout,
                                            max_retries=self.max_retries, **self.client_kwargs)
        return c

    def prepare(self, model, messages, kwargs: dict) -> tuple[Router, float | None, float | None, str | None, dict]:
        """(router, tau, lam, session, kwargs to forward) of one create() call; ValueError on a bad model."""
        tau, lam = parse_router_model(model, who="route_switch.OpenAI")
        if not isinstance(messages, (list, tuple)) or not messages:
            raise ValueError("'messages' must be a non-empty list of {role, content} messages")
        session = kwargs.pop("session", None)
        headers = kwargs.get("extra_headers")
        if headers:
            rest = {k: v for k, v in headers.items() if k.lower() != SESSION_HEADER}
            if len(rest) != len(headers):  # the proxy's header, honoured here and never forwarded
                session = session or next(v for k, v in headers.items() if k.lower() == SESSION_HEADER)
                kwargs["extra_headers"] = rest
        return self.router, tau, lam, session, kwargs

    def annotate(self, out, d: Decision, router: Router, index: int, failures: list):
        info = tier_info(d, router.tiers, index, failures, router.version)
        usage = getattr(out, "usage", None)
        if usage is not None:
            cost = router.tiers[index].cost(usage.prompt_tokens or 0, usage.completion_tokens or 0)
            if cost is not None:
                info["cost_usd"] = cost
        if isinstance(out, ChatCompletion):
            out.route_switch = info  # pydantic extra: out.model_extra["route_switch"], as from the proxy
            object.__setattr__(out, "route_switch_decision", d)  # an attribute, not part of the dumped JSON
        else:
            out.route_switch, out.route_switch_decision = info, d
        return out


def _check_completion(out) -> None:
    if not isinstance(out, ChatCompletion) or not isinstance(out.choices, list):
        raise _TierFailure("malformed response: not a chat completion")


def _start(router: Router, span, messages, tau, lam, session) -> tuple[Decision, int]:
    d = router.route([_plain(m) for m in messages], tau=tau, lam=lam, session=session)
    span.decision(d)
    if not router.tiers:
        raise ConfigError("the router has no tiers configured", field="tiers")
    return d, to_index(min(d.tier, len(router.tiers)))


def _all_failed(span, failures, d, router, start):
    span.failed("all_tiers_failed", failures)
    base = router.tiers[start].api_base or "http://route-switch.invalid/v1"
    return AllTiersFailed(failures, d, httpx.Request("POST", base.rstrip("/") + "/chat/completions"))


def call_tiers(core: _Routing, router: Router, d: Decision, start: int, span, messages, stream: bool, kwargs: dict):
    """(answer, index of the tier that gave it, failures) from ``router.tiers[start]`` up; ``AllTiersFailed``."""
    failures: list[dict] = []
    for i in range(start, len(router.tiers)):
        tier = router.tiers[i]
        try:
            out = core.client_for(tier).chat.completions.create(
                model=tier.upstream_model or tier.model, messages=messages, stream=stream, **kwargs)
            if stream:
                out = _peek(out)
            else:
                _check_completion(out)
        except Exception as e:
            why = failure_reason(e, core.timeout)
            if why is None:
                raise
            failures.append({"tier": to_tier(i), "tier_name": tier.name, "error": why})
            continue
        span.answered(tier, i, failures, getattr(out, "usage", None), getattr(out, "model", None))
        return out, i, failures
    raise _all_failed(span, failures, d, router, start)


class _Completions:
    def __init__(self, core: _Routing):
        self._core = core

    def create(self, *, model, messages, stream: bool = False, **kwargs):
        """Route ``messages`` and create the completion at the chosen tier (the SDK's arguments and types)."""
        core = self._core
        router, tau, lam, session, kwargs = core.prepare(model, messages, kwargs)
        with telemetry.chat_span(model, stream, "openai") as span:
            d, start = _start(router, span, messages, tau, lam, session)
            out, i, failures = call_tiers(core, router, d, start, span, messages, stream, kwargs)
            return core.annotate(out, d, router, i, failures)


def _peek(stream):
    """The stream with its first chunk already read (an empty or broken start is a tier failure)."""
    it = stream._iterator
    try:
        first = next(it)
    except StopIteration:
        stream.close()
        raise _TierFailure("malformed or empty event stream: it ended before its first event") from None
    except BaseException:
        stream.close()
        raise
    stream._iterator = itertools.chain([first], it)
    return stream


async def _apeek(stream):
    it = stream._iterator
    try:
        first = await it.__anext__()
    except StopAsyncIteration:
        await stream.close()
        raise _TierFailure("malformed or empty event stream: it ended before its first event") from None
    except BaseException:
        await stream.close()
        raise

    async def chained():
        yield first
        async for item in it:
            yield item

    stream._iterator = chained()
    return stream


class _AsyncCompletions:
    def __init__(self, core: _Routing):
        self._core = core

    async def create(self, *, model, messages, stream: bool = False, **kwargs):
        """Route ``messages`` and create the completion at the chosen tier (awaitable; the SDK's types)."""
        core = self._core
        router, tau, lam, session, kwargs = core.prepare(model, messages, kwargs)
        with telemetry.chat_span(model, stream, "openai") as span:
            if router.llm is not None:  # the router LLM may take up to its timeout: off the event loop
                d, start = await asyncio.to_thread(_start, router, span, messages, tau, lam, session)
            else:  # the estimator decides in about a millisecond
                d, start = _start(router, span, messages, tau, lam, session)
            failures: list[dict] = []
            for i in range(start, len(router.tiers)):
                tier = router.tiers[i]
                try:
                    out = await core.client_for(tier).chat.completions.create(
                        model=tier.upstream_model or tier.model, messages=messages, stream=stream, **kwargs)
                    if stream:
                        out = await _apeek(out)
                    else:
                        _check_completion(out)
                except Exception as e:
                    why = failure_reason(e, core.timeout)
                    if why is None:
                        raise
                    failures.append({"tier": to_tier(i), "tier_name": tier.name, "error": why})
                    continue
                span.answered(tier, i, failures, getattr(out, "usage", None), getattr(out, "model", None))
                return core.annotate(out, d, router, i, failures)
            raise _all_failed(span, failures, d, router, start)


class _Chat:
    def __init__(self, completions):
        self.completions = completions


class OpenAI:
    """``openai.OpenAI`` look-alike for ``chat.completions.create``: routes, then calls the chosen tier.

    ``router``: a :class:`~route_switch.routing.controller.Router`, a router directory / ``router.yaml``
    path, or a :class:`~route_switch.routing.reload.RouterReloader`. Its tiers need ``api_base`` (and
    ``api_key_env`` where the endpoint wants a key). ``timeout`` bounds each tier's attempt;
    ``max_retries`` is the SDK's own retry count per tier (0: a failure moves to the next tier at
    once). Other keyword arguments go to each tier's ``openai.OpenAI`` (``http_client``,
    ``default_headers``, ...).
    """

    _async = False

    def __init__(self, router, *, timeout: float = 60.0, max_retries: int = 0, **client_kwargs):
        self._core = _Routing(router, timeout, max_retries, client_kwargs, self._async)
        self.chat = _Chat((_AsyncCompletions if self._async else _Completions)(self._core))

    @property
    def router(self) -> Router:
        return self._core.router

    def close(self) -> None:
        for c in self._core._clients.values():
            c.close()
        self._core._clients.clear()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class AsyncOpenAI(OpenAI):
    """``openai.AsyncOpenAI`` look-alike: ``await client.chat.completions.create(...)``; see :class:`OpenAI`."""

    _async = True

    async def close(self) -> None:
        for c in self._core._clients.values():
            await c.close()
        self._core._clients.clear()

    def __enter__(self):
        raise TypeError("route_switch.AsyncOpenAI is closed with 'async with', not 'with'")

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        await self.close()
