"""The routing proxy: an OpenAI-compatible ASGI app (Starlette) in front of the tiers' upstreams.

Endpoints: ``POST /v1/chat/completions`` (model ``router``, ``router-tau-<t>`` or ``router-lambda-<l>``),
``GET /v1/models``, ``POST /v1/route`` (the decision only), ``GET /health``, ``GET /metrics``.
Every answer says which tier answered and why: a ``route_switch`` object in JSON bodies and
``X-Route-Switch-*`` headers (also on streams). Errors use OpenAI's shape
``{"error": {"message", "type", "code"}}``; a bug becomes a 500 with a request id, never a traceback.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import logging
import math
import os
import re
import threading
import time
import uuid

import httpx
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from route_switch.routing import telemetry
from route_switch.routing.controller import Router
from route_switch.core.errors import ConfigError
from route_switch.core.knobs import UnknownRouterModel, check_knob, parse_router_model
from route_switch.core.tiers import to_index, to_tier
from route_switch.server.ratelimit import RateLimiter
from route_switch.server.state import make_state
from route_switch.server.upstream import AllTiersFailed, forward

KEYS_ENV = "ROUTE_SWITCH_API_KEYS"
access_log = logging.getLogger("route_switch.server.access")
log = logging.getLogger("route_switch.server")
BODY_TIMEOUT_S = 30.0  # the whole request body must arrive within this (slow-loris clients)
_DRAIN_LIMIT = 32 * 1024 * 1024  # read (and drop) oversized bodies up to this, so the client sees the 413


def keys_from_env(env: str = KEYS_ENV) -> set[str]:
    """API keys from ``$ROUTE_SWITCH_API_KEYS`` (comma-separated; blanks ignored)."""
    return {k.strip() for k in os.environ.get(env, "").split(",") if k.strip()}


KEY_ID_SECRET_ENV = "ROUTE_SWITCH_KEY_ID_SECRET"
_PROCESS_SECRET = os.urandom(32)


def key_hash(key: str) -> str:
    """A log-safe id of an API key: HMAC-SHA256 keyed by a per-deployment secret.

    ``$ROUTE_SWITCH_KEY_ID_SECRET`` makes ids stable across restarts and replicas; without it a
    random per-process secret is used. Without the secret, an id cannot be tested against guesses.
    """
    secret = os.environ.get(KEY_ID_SECRET_ENV, "").encode() or _PROCESS_SECRET
    return hmac.new(secret, key.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()[:12]


class ApiError(Exception):
    """An error answered as ``{"error": {...}}`` with this status."""

    def __init__(self, status: int, message: str, type_: str = "invalid_request_error", code: str | None = None,
                 headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.type, self.code, self.headers = status, message, type_, code, headers or {}


def json_response(data, status: int = 200, headers: dict | None = None) -> Response:
    return Response(json.dumps(data).encode(), status_code=status, headers=headers, media_type="application/json")


def error_response(e: ApiError, request_id: str = "") -> Response:
    body = {"error": {"message": e.message, "type": e.type, "code": e.code}}
    return json_response(body, e.status, {**e.headers, **({"X-Request-Id": request_id} if request_id else {})})


def _header(value) -> str:
    """A header-safe (ASCII, one line, bounded) rendering of a value."""
    s = str(value).encode("ascii", "replace").decode()
    return re.sub(r"[\x00-\x1f\x7f]", " ", s)[:300]


# ---------------------------------------------------------------------------------------- metrics
class Metrics:
    """The proxy's Prometheus metrics (``prometheus_client``) in a registry of its own, one per app:
    several apps may live in one process (tests, embedding), so the global registry is not used.

    ``budgets`` (optional :class:`~route_switch.server.budgets.Budgets`) adds the gauges
    ``route_switch_budget_spent_usd`` / ``route_switch_budget_limit_usd{budget, period}``, read at
    each scrape.
    """

    BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
    SPECS = {  # name: (kind, help, label names)
        "route_switch_requests_total": ("counter", "HTTP requests by endpoint and status", ("endpoint", "status")),
        "route_switch_tier_chosen_total": ("counter", "routing decisions by tier", ("tier", "tier_name")),
        "route_switch_tier_answered_total": ("counter", "forwarded requests by the tier that answered", ("tier", "tier_name")),
        "route_switch_route_path_total": ("counter", "routing decisions by router path (cache, bypass, llm, estimator, default)", ("path",)),
        "route_switch_router_fallbacks_total": ("counter", "decisions where the router LLM could not decide and the estimator did", ()),
        "route_switch_upstream_retries_total": ("counter", "failed upstream attempts retried on the next tier up, by failed tier", ("tier",)),
        "route_switch_upstream_failures_total": ("counter", "requests for which every remaining tier failed", ()),
        "route_switch_spend_usd_total": ("counter", "USD spent upstream (usage x tier prices) by answering tier", ("tier", "tier_name")),
        "route_switch_budget_capped_total": ("counter", "requests whose tier a budget or max_cost capped, by reason", ("reason",)),
        "route_switch_request_duration_seconds": ("histogram", "request latency by endpoint (streams: until the last chunk)", ("endpoint",)),
        "route_switch_route_duration_seconds": ("histogram", "routing decision latency", ()),
    }

    def __init__(self, budgets=None):
        from prometheus_client import CollectorRegistry, Counter, Histogram

        self.registry = CollectorRegistry()
        self._metrics = {
            name: (Counter(name, text, labels, registry=self.registry) if kind == "counter" else
                   Histogram(name, text, labels, buckets=self.BUCKETS, registry=self.registry))
            for name, (kind, text, labels) in self.SPECS.items()}
        if budgets is not None:
            self.registry.register(_BudgetGauges(budgets))

    def _child(self, name: str, labels: dict | None):
        m = self._metrics[name]
        return m.labels(**labels) if labels else m

    def inc(self, name: str, labels: dict | None = None, value: float = 1.0):
        self._child(name, labels).inc(value)

    def observe(self, name: str, value: float, labels: dict | None = None):
        self._child(name, labels).observe(value)

    def render(self) -> tuple[bytes, str]:
        """(Prometheus text exposition, its content type)."""
        import prometheus_client as pc

        return pc.generate_latest(_WithoutCreated(self.registry)), getattr(pc, "CONTENT_TYPE_PLAIN_0_0_4",
                                                                           pc.CONTENT_TYPE_LATEST)


class _WithoutCreated:
    """A registry's metrics without the ``*_created`` samples prometheus_client adds to counters and
    histograms (per registry; ``disable_created_metrics`` would change the whole process)."""

    def __init__(self, registry):
        self.registry = registry

    def collect(self):
        for m in self.registry.collect():
            m.samples = [s for s in m.samples if not s.name.endswith("_created")]
            yield m


class _BudgetGauges:
    """Collector of the budget gauges: spend this period and limit of each named budget."""

    def __init__(self, budgets):
        self.budgets = budgets

    def collect(self):
        from prometheus_client.core import GaugeMetricFamily

        spent = GaugeMetricFamily("route_switch_budget_spent_usd", "spend of each named budget in its current period",
                                  labels=("budget", "period"))
        limit = GaugeMetricFamily("route_switch_budget_limit_usd", "limit of each named budget per period",
                                  labels=("budget", "period"))
        for b, usd in self.budgets.snapshot():
            spent.add_metric((b.subject, b.period), usd)
            limit.add_metric((b.subject, b.period), b.limit_usd)
        yield spent
        yield limit


# ---------------------------------------------------------------------------------------- parsing
async def _read_body(request: Request, limit: int) -> tuple[bytearray, int]:
    """The body (its first ``limit`` bytes) and its length; a body far beyond ``limit`` raises 413 at once."""
    cl = request.headers.get("content-length", "")
    buf, n = bytearray(), 0
    async for chunk in request.stream():
        n += len(chunk)
        if n <= limit:
            buf += chunk
        elif n > _DRAIN_LIMIT or (cl.isdigit() and int(cl) > _DRAIN_LIMIT):
            raise ApiError(413, f"request body larger than {limit} bytes", code="request_too_large")
    return buf, n


async def read_json(request: Request, limit: int) -> dict:
    """The request body as a JSON object, or ApiError 413 / 400 / 408 with a clear message."""
    import asyncio

    try:
        buf, n = await asyncio.wait_for(_read_body(request, limit), BODY_TIMEOUT_S)
    except ClientDisconnect:  # nobody is left to answer: logged as 499 (nginx's "client closed request")
        raise ApiError(499, "the client disconnected before sending the whole body", code="client_closed_request") from None
    except asyncio.TimeoutError:  # a slow-loris client holds a connection and a worker slot no longer
        raise ApiError(408, f"the request body did not arrive within {BODY_TIMEOUT_S:g} s", code="request_timeout",
                       headers={"Connection": "close"}) from None
    if n > limit:
        raise ApiError(413, f"request body larger than {limit} bytes", code="request_too_large")
    if not buf.strip():
        raise ApiError(400, "request body is empty: send a JSON object", code="invalid_json")
    try:
        data = json.loads(bytes(buf))
    except UnicodeDecodeError:
        raise ApiError(400, "request body is not valid UTF-8", code="invalid_json") from None
    except (ValueError, RecursionError) as e:
        raise ApiError(400, f"request body is not valid JSON: {str(e)[:200]}", code="invalid_json") from None
    if not isinstance(data, dict):
        raise ApiError(400, f"request body must be a JSON object, got {type(data).__name__}", code="invalid_json")
    return data


def parse_model(name) -> tuple[float | None, float | None]:
    """``router`` -> router defaults; ``router-tau-0.2`` / ``router-lambda-0.5`` -> that knob
    (:func:`route_switch.core.knobs.parse_router_model`, as an ``ApiError``)."""
    try:
        return parse_router_model(name, who="this proxy")
    except UnknownRouterModel as e:
        raise ApiError(404, str(e), code="model_not_found") from None
    except ValueError as e:
        raise ApiError(400, str(e), code="invalid_model") from None


def content_text(content, where: str) -> str:
    """Text of a message ``content``: a string, null, or a list of parts (text parts are joined)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for j, p in enumerate(content):
            if not isinstance(p, dict) or not isinstance(p.get("type"), str):
                raise ApiError(400, f"{where}.content[{j}] must be an object with a 'type'", code="invalid_messages")
            if p["type"] == "text":
                if not isinstance(p.get("text"), str):
                    raise ApiError(400, f"{where}.content[{j}].text must be a string", code="invalid_messages")
                texts.append(p["text"])
        return "\n".join(texts)
    raise ApiError(400, f"{where}.content must be a string, null or a list of parts", code="invalid_messages")


def query_from_messages(messages, conversation=None, count_tokens=None) -> str:
    """The text to route: the last user message plus earlier context (``conversation``:
    a :class:`~route_switch.core.conversation.ConversationConfig`; None = the last user message only)."""
    from route_switch.core.conversation import flatten_turns

    if not isinstance(messages, list) or not messages:
        raise ApiError(400, "'messages' must be a non-empty list of {role, content} objects", code="invalid_messages")
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str):
            raise ApiError(400, f"messages[{i}] must be an object with a string 'role'", code="invalid_messages")
    texts = [content_text(m.get("content"), f"messages[{i}]") for i, m in enumerate(messages)]
    c = conversation
    kw = {"context_tokens": c.context_tokens, "roles": c.roles} if c is not None else {"context_tokens": 0}
    if count_tokens is not None:
        kw["count_tokens"] = count_tokens
    return flatten_turns([(m["role"], t) for m, t in zip(messages, texts)], **kw)


SESSION_HEADER = "x-route-switch-session"


def session_key(request: Request, ctx) -> str | None:
    """The conversation's session key from ``X-Route-Switch-Session``, scoped to the API key
    (one client cannot raise another's floor); None without the header."""
    raw = request.headers.get(SESSION_HEADER, "").strip()
    if not raw:
        return None
    if len(raw) > 200:
        raise ApiError(400, "X-Route-Switch-Session must be at most 200 characters", code="invalid_session")
    return f"{ctx.key}:{raw}"


# ---------------------------------------------------------------------------------------- the app
class _Ctx:
    __slots__ = ("id", "endpoint", "key", "t0", "decision", "answered", "failures", "stream", "query", "plan", "cost",
                 "spent", "cap_note", "router", "span")

    def __init__(self, request: Request, endpoint: str):
        rid = request.headers.get("x-request-id", "")
        self.id = rid if re.fullmatch(r"[A-Za-z0-9._-]{1,64}", rid) else uuid.uuid4().hex
        self.endpoint, self.key, self.t0 = endpoint, "-", time.perf_counter()
        self.decision = self.answered = self.query = self.plan = self.cost = self.spent = self.cap_note = None
        self.router = None
        self.span = telemetry.ChatSpan(None)  # the request's OpenTelemetry span (a no-op when tracing is off)
        self.failures: list = []
        self.stream = False


class Proxy:
    """State and handlers of one app (router, keys, limits, metrics, upstream client)."""

    def __init__(self, router: Router, api_keys: set[str] | None, max_body_bytes: int, rate_limit_per_min: float | None,
                 upstream_timeout_s: float, insecure_no_auth: bool, log_prompts: bool, budgets=None,
                 auth_failures_per_min: float | None = 20):
        for name, v, lo in (("max_body_bytes", max_body_bytes, 1), ("rate_limit_per_min", rate_limit_per_min or 0, 0),
                            ("upstream_timeout_s", upstream_timeout_s, 1e-9),
                            ("auth_failures_per_min", auth_failures_per_min or 0, 0)):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < lo:
                raise ConfigError(f"must be a finite number >= {lo:g}, got {v!r}", field=name)
        self.router = router
        self.budgets = budgets  # optional spend limits (route_switch.server.budgets.Budgets)
        self.keys = {k for k in (api_keys or ()) if k}
        self.auth = not insecure_no_auth
        if self.auth and not self.keys:
            raise ConfigError(f"no API key configured: set {KEYS_ENV}=key1,key2 (comma-separated), "
                              "or pass --insecure-no-auth to run without authentication")
        self.max_body = max_body_bytes
        self.limiter = RateLimiter(rate_limit_per_min)
        # Shared through Redis when the router config has ``state:`` (several workers or replicas).
        self.state = make_state(getattr(router, "state_config", None), rate_limit_per_min)
        self.reloader = None  # set by create_app when the router comes from a config path (hot reload)
        # failed authentications per client address: a brute force gets 429s, not answers
        self.auth_failures = RateLimiter(auth_failures_per_min)
        self.timeout = upstream_timeout_s
        self.log_prompts = log_prompts
        self.metrics = Metrics(budgets)
        self._client: httpx.AsyncClient | None = None

    @property
    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(limits=httpx.Limits(max_connections=200, max_keepalive_connections=50),
                                             trust_env=False)
        return self._client

    async def close(self):
        if self.budgets is not None:
            self.budgets.close()
        if self._client is not None:
            await self._client.aclose()
            self._client = None
        await self.state.close()

    # -- per-request plumbing
    def _authenticate(self, request: Request, ctx: _Ctx):
        if not self.auth:
            ctx.key = "anon:" + key_hash(request.client.host if request.client else "-")
            return
        addr = request.client.host if request.client else "-"
        wait = self.auth_failures.blocked(addr)
        if wait:
            raise ApiError(429, f"too many failed authentications from this address; retry after "
                                f"{RateLimiter.retry_after(wait)}s", "rate_limit_error", "auth_rate_limited",
                           {"Retry-After": RateLimiter.retry_after(wait)})
        h = request.headers.get("authorization", "")
        scheme, _, given = h.partition(" ")
        given = given.strip()
        if scheme.lower() != "bearer" or not given:
            self.auth_failures.check(addr)
            raise ApiError(401, "missing API key: send 'Authorization: Bearer <key>'", code="invalid_api_key")
        ok = False
        for k in self.keys:  # constant-time compare against every key
            ok |= hmac.compare_digest(given.encode("utf-8", "surrogatepass"), k.encode())
        if not ok:
            self.auth_failures.check(addr)
            raise ApiError(401, "invalid API key", code="invalid_api_key")
        ctx.key = key_hash(given)

    def finish(self, ctx: _Ctx, status: int):
        """Record metrics and write the one JSON access-log line of a request."""
        dt = time.perf_counter() - ctx.t0
        self.metrics.inc("route_switch_requests_total", {"endpoint": ctx.endpoint, "status": str(status)})
        self.metrics.observe("route_switch_request_duration_seconds", dt, {"endpoint": ctx.endpoint})
        rec = {"ts": round(time.time(), 3), "id": ctx.id, "endpoint": ctx.endpoint, "status": status, "key": ctx.key,
               "latency_ms": round(dt * 1000, 2)}
        if ctx.decision is not None:
            rec.update(tier=ctx.decision.tier, tier_name=ctx.decision.tier_name, path=ctx.decision.path)
        if ctx.answered is not None:
            rec["answered_tier"] = ctx.answered
        if ctx.failures:
            rec["retried_from"] = [f["tier"] for f in ctx.failures]
        if ctx.stream:
            rec["stream"] = True
        if ctx.cost is not None:
            rec["cost_usd"] = round(ctx.cost, 8)
        if ctx.spent:
            rec["budget_spent_usd"] = {k: round(v, 6) for k, v in ctx.spent.items()}
        if ctx.cap_note:
            rec["capped"] = ctx.cap_note
        if self.log_prompts and ctx.query is not None:
            rec["query"] = ctx.query
        access_log.info(json.dumps(rec))

    def endpoint(self, name: str, handler, *, auth: bool = True, limit: bool = True):
        async def run(request: Request) -> Response:
            ctx = _Ctx(request, name)
            ctx.router = self.router  # one router per request, pinned here: a hot reload swaps it between requests
            status = 500
            try:
                if auth:
                    self._authenticate(request, ctx)
                if limit:
                    wait = await self.state.rate_check(ctx.key)
                    if wait:
                        raise ApiError(429, f"rate limit of {self.limiter.per_minute:g} requests per minute exceeded; "
                                            f"retry after {RateLimiter.retry_after(wait)}s", "rate_limit_error",
                                       "rate_limit_exceeded", {"Retry-After": RateLimiter.retry_after(wait)})
                resp = await handler(request, ctx)
                status = resp.status_code
                resp.headers["X-Request-Id"] = ctx.id
                if isinstance(resp, StreamingResponse):
                    status = None  # the stream records itself when it ends
                return resp
            except ApiError as e:
                status = e.status
                return error_response(e, ctx.id)
            except Exception:
                log.exception("internal error in %s (request %s)", name, ctx.id)
                return error_response(ApiError(500, f"internal error (request id {ctx.id})", "server_error",
                                               "internal_error"), ctx.id)
            finally:
                if status is not None:
                    self.finish(ctx, status)
        return run

    # -- routing
    @staticmethod
    def _messages_text(ctx: _Ctx, messages) -> str:
        return query_from_messages(messages, ctx.router.conversation, ctx.router.count_tokens)

    async def decide(self, ctx: _Ctx, text: str, tau, lam, session: str | None = None):
        ctx.query = text
        ctx.router = ctx.router or self.router
        d = await run_in_threadpool(ctx.router.route, text, tau=tau, lam=lam, session=session)
        ctx.decision = d
        ctx.span.decision(d)
        m = self.metrics
        m.inc("route_switch_tier_chosen_total", {"tier": str(d.tier), "tier_name": d.tier_name})
        m.inc("route_switch_route_path_total", {"path": d.path})
        if d.fallback_from:
            m.inc("route_switch_router_fallbacks_total")
        m.observe("route_switch_route_duration_seconds", d.latency_ms / 1000)
        return d

    def info(self, ctx: _Ctx, index: int | None) -> tuple[dict, dict]:
        """The ``route_switch`` body object and the ``X-Route-Switch-*`` headers."""
        d = ctx.decision
        t = ctx.router.tiers[index] if index is not None else None
        body = {"request_id": ctx.id, "tier": to_tier(index) if t else None, "tier_name": t.name if t else None,
                "model": t.model if t else None, "routed_tier": d.tier, "path": d.path, "reason": d.reason,
                "retried_from": ctx.failures, "predicted_quality": d.predicted_quality,
                "route_latency_ms": d.latency_ms}
        headers = {"X-Route-Switch-Routed-Tier": str(d.tier), "X-Route-Switch-Path": d.path,
                   "X-Route-Switch-Reason": _header(d.reason), "X-Route-Switch-Version": _header(ctx.router.version)}
        body["router_version"] = ctx.router.version
        if t is not None:
            headers.update({"X-Route-Switch-Tier": str(to_tier(index)), "X-Route-Switch-Tier-Name": _header(t.name),
                            "X-Route-Switch-Model": _header(t.model)})
        if ctx.cap_note:
            body["capped"] = ctx.cap_note
            headers["X-Route-Switch-Capped"] = _header(ctx.cap_note)
        if ctx.failures:
            headers["X-Route-Switch-Retried-From"] = _header(",".join(f"{f['tier']}:{f['error']}" for f in ctx.failures))
        return body, headers

    # -- handlers
    async def chat(self, request: Request, ctx: _Ctx) -> Response:
        with telemetry.chat_span("router", integration="proxy") as span:  # a stream's span ends at its first event
            ctx.span = span
            return await self._chat(request, ctx)

    async def _chat(self, request: Request, ctx: _Ctx) -> Response:
        body = await read_json(request, self.max_body)
        tau, lam = parse_model(body.get("model"))
        ctx.span.rename(body.get("model"))
        text = self._messages_text(ctx, body.get("messages"))
        stream = body.get("stream", False)
        if not isinstance(stream, bool):
            raise ApiError(400, "'stream' must be true or false", code="invalid_stream")
        ctx.stream = stream
        ctx.span.set(**{"route_switch.stream": stream or None})
        cap, cap_reason = self._spend_cap(request, ctx, body)
        d = await self.decide(ctx, text, tau, lam, session_key(request, ctx))
        if not ctx.router.tiers:
            raise ApiError(503, "the router has no tiers configured", "server_error", "no_tiers")
        tiers = ctx.router.tiers[:cap] if cap else ctx.router.tiers
        start = min(d.tier, len(tiers))  # retries go up, but never past the cap
        if start < d.tier:
            ctx.cap_note = f"routed tier {d.tier} capped at tier {start}: {ctx.cap_note}"
            self.metrics.inc("route_switch_budget_capped_total", {"reason": cap_reason})
        else:
            ctx.cap_note = None
        try:
            f = await forward(self.client, tiers, to_index(start), body, stream=stream, timeout_s=self.timeout)
        except AllTiersFailed as e:
            ctx.failures = e.failures
            ctx.span.failed("all_tiers_failed", e.failures)
            self._count_failures(ctx)
            self.metrics.inc("route_switch_upstream_failures_total")
            _, headers = self.info(ctx, None)
            raise ApiError(502, f"every tier from {d.tier} up failed: {e}", "upstream_error", "upstream_failed",
                           headers) from None
        ctx.failures, ctx.answered = f.failures, to_tier(f.index)
        ctx.span.answered(ctx.router.tiers[f.index], f.index, f.failures,
                          f.data.get("usage") if isinstance(f.data, dict) else None,
                          f.data.get("model") if isinstance(f.data, dict) else None)
        self._count_failures(ctx)
        self.metrics.inc("route_switch_tier_answered_total",
                         {"tier": str(to_tier(f.index)), "tier_name": ctx.router.tiers[f.index].name})
        if f.response is None:  # non-streaming answer (or an upstream client error passed through)
            data = f.data if isinstance(f.data, dict) else {"data": f.data}
            if f.status == 200:
                self._charge(ctx, f.index, data.get("usage"), text)
            rs, headers = self.info(ctx, f.index)
            if ctx.cost is not None:
                rs["cost_usd"] = ctx.cost
                headers["X-Route-Switch-Cost-Usd"] = f"{ctx.cost:.8f}"
            if ctx.spent:
                rs["budget_spent_usd"] = ctx.spent
            data["route_switch"] = rs
            return json_response(data, f.status, headers)
        rs, headers = self.info(ctx, f.index)
        return StreamingResponse(self._relay(ctx, f, text), media_type="text/event-stream",
                                 headers={**headers, "Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    def _spend_cap(self, request: Request, ctx: _Ctx, body: dict) -> tuple[int | None, str]:
        """(highest tier this request may use or None, which limit sets it: budget | max_cost); raises 429 / 400."""
        from route_switch.server.budgets import BudgetRefused, tiers_within

        caps, notes = [], []
        if self.budgets is not None:
            tag = request.headers.get(self.budgets.tag_header) or None
            try:
                ctx.plan = self.budgets.plan(ctx.key, tag[:200] if tag else None)
            except BudgetRefused as e:
                self.metrics.inc("route_switch_budget_capped_total", {"reason": "refused"})
                raise ApiError(429, str(e), "insufficient_quota", "budget_exceeded") from None
            if ctx.plan.max_tier is not None:
                caps.append((ctx.plan.max_tier, "budget"))
                notes += ctx.plan.notes
        raw = body.pop("max_cost", None)  # not an OpenAI parameter: never forwarded
        raw = request.headers.get("x-route-switch-max-cost", raw) if raw is None else raw
        if raw is not None:
            try:
                max_cost = float(raw)
            except (TypeError, ValueError, OverflowError):  # OverflowError: an integer of hundreds of digits
                max_cost = -1.0
            if isinstance(raw, bool) or not max_cost >= 0 or max_cost == float("inf"):
                raise ApiError(400, f"max_cost must be a number of USD >= 0, got {str(raw)[:50]!r}", code="invalid_max_cost")
            n_in = sum(ctx.router.count_tokens(content_text(m.get("content"), "messages"))
                       for m in body.get("messages") or [] if isinstance(m, dict))
            n_out = body.get("max_completion_tokens") or body.get("max_tokens")
            n_out = n_out if isinstance(n_out, int) and not isinstance(n_out, bool) and n_out > 0 else \
                (self.budgets.expected_output_tokens if self.budgets is not None else 256)
            ok = tiers_within(ctx.router.tiers, max_cost, n_in, n_out)
            k = 0  # tiers are cheapest first: allow the prefix within max_cost
            while k < len(ctx.router.tiers) and to_tier(k) in ok:
                k += 1
            if k == 0:
                c = ctx.router.tiers[0].cost(n_in, n_out) if ctx.router.tiers else 0.0
                raise ApiError(400, f"max_cost ${max_cost:g} is below the expected cost of every tier "
                                    f"(tier 1: ${c:.6f} for ~{n_in} input and {n_out} output tokens)",
                               code="max_cost_too_low")
            if k < len(ctx.router.tiers):
                caps.append((k, "max_cost"))
                notes.append(f"max_cost ${max_cost:g} excludes tiers above {k}")
        ctx.cap_note = "; ".join(notes) or None
        return min(caps) if caps else (None, "")

    def _charge(self, ctx: _Ctx, index: int, usage, text: str, estimate_out: int = 0):
        """Record what this answer cost (usage x the tier's prices; estimated without usage)."""
        from route_switch.server.budgets import usage_cost

        tier = ctx.router.tiers[index]
        cost = usage_cost(tier, usage)
        if cost is None and tier.price_in is not None:  # no usage reported: estimate from the text
            cost = tier.cost(ctx.router.count_tokens(text), estimate_out)
        if cost is None:
            return
        ctx.cost = cost
        self.metrics.inc("route_switch_spend_usd_total", {"tier": str(to_tier(index)), "tier_name": tier.name}, cost)
        if self.budgets is not None and ctx.plan is not None:
            ctx.spent = self.budgets.charge(ctx.plan, cost)

    def _count_failures(self, ctx: _Ctx):
        for f in ctx.failures:
            self.metrics.inc("route_switch_upstream_retries_total", {"tier": str(f["tier"])})

    async def _relay(self, ctx: _Ctx, f, text: str = ""):
        """Pass upstream SSE bytes through as they arrive; an error mid-stream ends it with an error event."""
        from route_switch.server.budgets import StreamUsage

        status = 200
        usage = StreamUsage()
        try:
            usage.feed(f.first)
            yield f.first
            async for chunk in f.chunks:
                usage.feed(chunk)
                yield chunk
        except httpx.HTTPError as e:
            status = 502
            err = {"error": {"message": f"upstream stream broke: {type(e).__name__}", "type": "upstream_error",
                             "code": "upstream_stream_error"}}
            yield f"data: {json.dumps(err)}\n\n".encode()
        except BaseException:
            status = 499  # client went away
            raise
        finally:
            try:
                await f.response.aclose()
                if status == 200:  # without stream_options.include_usage: charge the expected output
                    self._charge(ctx, f.index, usage.usage, text,
                                 self.budgets.expected_output_tokens if self.budgets is not None else 256)
            finally:
                self.finish(ctx, status)

    async def route(self, request: Request, ctx: _Ctx) -> Response:
        body = await read_json(request, self.max_body)
        if "query" in body:
            if not isinstance(body["query"], str):
                raise ApiError(400, "'query' must be a string", code="invalid_query")
            text = body["query"]
        elif "messages" in body:
            text = self._messages_text(ctx, body["messages"])
        else:
            raise ApiError(400, "send {\"query\": \"...\"} or {\"messages\": [...]}", code="invalid_query")
        tau, lam = parse_model(body.get("model", "router"))
        for k in ("tau", "lambda"):
            if body.get(k) is None:
                continue
            try:  # JSON admits NaN and Infinity: the shared check refuses them
                v = check_knob(k, body[k])
            except ValueError as e:
                raise ApiError(400, str(e), code="invalid_knob") from None
            tau, lam = (v, None) if k == "tau" else (None, v)
        d = await self.decide(ctx, text, tau, lam, session_key(request, ctx))
        return json_response(d.to_dict() | {"request_id": ctx.id, "router_version": ctx.router.version},
                             headers={"X-Route-Switch-Tier": str(d.tier), "X-Route-Switch-Path": d.path,
                                      "X-Route-Switch-Version": _header(ctx.router.version)})

    async def admin_reload(self, request: Request, ctx: _Ctx) -> Response:
        """Reload the router from its config files now (this process; other workers poll the files)."""
        if self.reloader is None:
            raise ApiError(409, "this proxy was not started from a router config path: nothing to reload",
                           code="reload_unavailable")
        res = await run_in_threadpool(self.reloader.reload, force=True)
        if "error" in res:
            raise ApiError(409, f"reload failed, version {res['version']} kept: {res['error'][:300]}",
                           code="reload_failed")
        return json_response(res, headers={"X-Route-Switch-Version": _header(res["version"])})

    async def models(self, request: Request, ctx: _Ctx) -> Response:
        data = [{"id": "router", "object": "model", "created": 0, "owned_by": "route-switch"}]
        if self.router.tau is not None:
            data.append({"id": f"router-tau-{self.router.tau:g}", "object": "model", "created": 0, "owned_by": "route-switch"})
        return json_response({"object": "list", "data": data})

    async def health(self, request: Request, ctx: _Ctx) -> Response:
        r = self.router
        problem = await run_in_threadpool(r.check)  # proves the router can score a query, not just that we run
        status = "error" if problem else "ok"
        if not problem and endpoint_problem(r):  # it routes, but cannot forward a chat anywhere
            status, problem = "not_ready", endpoint_problem(r)
        return json_response({"status": status, "tiers": [t.name for t in r.tiers],
                              "estimator": r.estimator is not None, "llm": r.llm is not None, "version": r.version,
                              **({"error": problem} if problem else {})}, 503 if problem else 200)

    async def metrics_text(self, request: Request, ctx: _Ctx) -> Response:
        body, content_type = self.metrics.render()
        return Response(body, media_type=content_type)


def endpoint_problem(router: Router) -> str | None:
    """Why no chat completion can be forwarded (no tier has an ``api_base``), or None."""
    if any(t.api_base for t in router.tiers):
        return None
    return ("no tier has an api_base, so every chat completion would fail: set api_base (and api_key_env) "
            "of the tiers in router.yaml, or try the proxy with stand-in upstreams: route-switch serve --demo")


def create_app(router: Router, *, api_keys: set[str] | None, max_body_bytes: int = 1_000_000,
               rate_limit_per_min: float | None = 600, upstream_timeout_s: float = 60.0,
               insecure_no_auth: bool = False, log_prompts: bool = False, budgets=None,
               sighup_reload: bool = False, auth_failures_per_min: float | None = 20) -> Starlette:
    """The proxy app. ``api_keys`` empty raises ``ConfigError`` unless ``insecure_no_auth``.

    ``rate_limit_per_min`` is per API key (per client address without auth); 0/None disables it.
    ``router`` may be a :class:`~route_switch.routing.reload.RouterReloader`: then each reload swaps the
    router between requests, ``POST /admin/reload`` reloads now, and with ``sighup_reload`` so
    does ``SIGHUP`` (main thread only).
    ``auth_failures_per_min`` bounds failed authentications per client address (then 429).
    ``app.state.proxy`` holds the :class:`Proxy` (metrics, router) for tests and embedding.
    ``budgets``: optional :class:`~route_switch.server.budgets.Budgets` (spend limits, ``max_cost``).
    """
    from route_switch.routing.reload import RouterReloader

    reloader = router if isinstance(router, RouterReloader) else None
    p = Proxy(reloader.current if reloader else router, api_keys, max_body_bytes, rate_limit_per_min,
              upstream_timeout_s, insecure_no_auth, log_prompts, budgets,
              auth_failures_per_min)
    if reloader is not None:
        p.reloader = reloader
        reloader.on_swap = lambda new: setattr(p, "router", new)
    routes = [
        Route("/v1/chat/completions", p.endpoint("chat_completions", p.chat), methods=["POST"]),
        Route("/v1/route", p.endpoint("route", p.route), methods=["POST"]),
        Route("/v1/models", p.endpoint("models", p.models), methods=["GET"]),
        Route("/health", p.endpoint("health", p.health, auth=False, limit=False), methods=["GET"]),
        Route("/metrics", p.endpoint("metrics", p.metrics_text, limit=False), methods=["GET"]),
        Route("/admin/reload", p.endpoint("admin_reload", p.admin_reload), methods=["POST"]),
    ]

    async def http_error(request: Request, exc: HTTPException) -> Response:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code)
        p.metrics.inc("route_switch_requests_total", {"endpoint": "other", "status": str(exc.status_code)})
        return error_response(ApiError(exc.status_code, f"{request.method} {request.url.path[:200]}: {exc.detail}",
                                       code=code))

    async def server_error(request: Request, exc: Exception) -> Response:
        return error_response(ApiError(500, "internal error", "server_error", "internal_error"))

    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def lifespan(app):
        if sighup_reload and reloader is not None:
            import asyncio
            import signal

            try:  # the reload runs in a thread: the event loop keeps serving while it loads
                asyncio.get_running_loop().add_signal_handler(
                    signal.SIGHUP, lambda: threading.Thread(target=reloader.reload, kwargs={"force": True},
                                                            daemon=True).start())
            except (ValueError, RuntimeError, NotImplementedError) as e:  # not the main thread, or no signals
                log.warning("SIGHUP reload unavailable: %s", e)
        yield
        if reloader is not None:
            reloader.stop()
        await p.close()

    app = Starlette(routes=routes, exception_handlers={HTTPException: http_error, Exception: server_error},
                    lifespan=lifespan)
    app.state.proxy = p
    return app


LOOPBACK = {"127.0.0.1", "::1", "localhost"}
