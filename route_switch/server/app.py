"""The routing proxy: an OpenAI-compatible ASGI app (Starlette) in front of the tiers' upstreams.

Endpoints: ``POST /v1/chat/completions`` (model ``router``, ``router-tau-<t>`` or ``router-lambda-<l>``),
``GET /v1/models``, ``POST /v1/route`` (the decision only), ``GET /health``, ``GET /metrics``.
Every answer says which tier answered and why: a ``route_switch`` object in JSON bodies and
``X-Route-Switch-*`` headers (also on streams). Errors use OpenAI's shape
``{"error": {"message", "type", "code"}}``; a bug becomes a 500 with a request id, never a traceback.

This module wires the parts together: :mod:`~route_switch.server.auth` (keys and key ids),
:mod:`~route_switch.server.request_body` and :mod:`~route_switch.server.responses` (the OpenAI
request and response shapes), :mod:`~route_switch.server.charging` (budgets, ``max_cost``, spend),
:mod:`~route_switch.server.streaming` (the SSE relay), :mod:`~route_switch.server.admin` (models,
health, metrics, reload) and :mod:`~route_switch.server.metrics` (Prometheus and the access log).
"""
from __future__ import annotations

import asyncio
import logging
import math
import threading
from functools import partial

import httpx
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from route_switch.core.errors import ConfigError
from route_switch.core.tiers import to_index, to_tier
from route_switch.routing import telemetry
from route_switch.routing.controller import Router
from route_switch.server import admin
from route_switch.server.auth import (KEY_ID_SECRET_ENV, KEYS_ENV, Authenticator, client_address, key_hash,
                                     keys_from_env, too_many_failures)
from route_switch.server.charging import Charging
from route_switch.server.metrics import Metrics, record_decision, record_failures, record_request
from route_switch.server.ratelimit import RateLimiter
from route_switch.server.request_body import messages_query, parse_model, read_json, route_request, session_key
from route_switch.server.request_context import RequestContext
from route_switch.server.responses import ApiError, error_response, header_safe, json_response, route_info
from route_switch.server.state import make_state
from route_switch.server.streaming import relay
from route_switch.server.upstream import AllTiersFailed, forward

# Names other modules import from here (the CLI's key-id command among them).
__all__ = ["KEYS_ENV", "KEY_ID_SECRET_ENV", "Proxy", "create_app", "key_hash", "keys_from_env"]
log = logging.getLogger("route_switch.server")


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
        self.max_body = max_body_bytes
        self.limiter = RateLimiter(rate_limit_per_min)
        # Limits (per key, and failed authentications per address) and /metrics counters: shared
        # through Redis when the router config has ``state:`` (several workers or replicas).
        self.state = make_state(getattr(router, "state_config", None), rate_limit_per_min, auth_failures_per_min)
        self.auth = Authenticator(api_keys, insecure_no_auth, self.state)
        self.reloader = None  # set by create_app when the router comes from a config path (hot reload)
        self.timeout = upstream_timeout_s
        self.log_prompts = log_prompts
        self.metrics = Metrics(budgets)
        self.charging = Charging(budgets, self.metrics)
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
        await self.state.close(self.metrics)

    # -- per-request plumbing
    def finish(self, ctx: RequestContext, status: int):
        """Record metrics and write the one JSON access-log line of a request."""
        record_request(self.metrics, ctx, status, self.log_prompts)

    def endpoint(self, name: str, handler, *, auth: bool = True, limit: bool = True):
        async def run(request: Request) -> Response:
            ctx = RequestContext(request, name)
            ctx.router = self.router  # one router per request, pinned here: a hot reload swaps it between requests
            status = 500
            try:
                if auth:
                    ctx.key = await self.auth.key_id(request)
                if auth or limit:  # one call (one Redis round trip) for both limits
                    kind, wait = await self.state.admit(ctx.key if limit else None,
                                                        client_address(request) if auth and self.auth.enabled else None)
                    if wait and kind == "auth":
                        raise too_many_failures(wait)
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
    async def decide(self, ctx: RequestContext, text: str, tau, lam, session: str | None = None):
        ctx.query = text
        ctx.router = ctx.router or self.router
        d = await run_in_threadpool(ctx.router.route, text, tau=tau, lam=lam, session=session)
        ctx.decision = d
        ctx.span.decision(d)
        record_decision(self.metrics, d)
        return d

    # -- handlers
    async def chat(self, request: Request, ctx: RequestContext) -> Response:
        with telemetry.chat_span("router", integration="proxy") as span:  # a stream's span ends at its first event
            ctx.span = span
            return await self._chat(request, ctx)

    async def _chat(self, request: Request, ctx: RequestContext) -> Response:
        body = await read_json(request, self.max_body)
        tau, lam = parse_model(body.get("model"))
        ctx.span.rename(body.get("model"))
        text = messages_query(ctx, body.get("messages"))
        stream = body.get("stream", False)
        if not isinstance(stream, bool):
            raise ApiError(400, "'stream' must be true or false", code="invalid_stream")
        ctx.stream = stream
        ctx.span.set(**{"route_switch.stream": stream or None})
        cap, cap_reason = self.charging.spend_cap(request, ctx, body)
        d = await self.decide(ctx, text, tau, lam, session_key(request, ctx))
        if not ctx.router.tiers:
            raise ApiError(503, "the router has no tiers configured", "server_error", "no_tiers")
        tiers, start = self.charging.capped_start(ctx, cap, cap_reason)
        try:
            f = await forward(self.client, tiers, to_index(start), body, stream=stream, timeout_s=self.timeout)
        except AllTiersFailed as e:
            ctx.failures = e.failures
            ctx.span.failed("all_tiers_failed", e.failures)
            record_failures(self.metrics, ctx.failures)
            self.metrics.inc("route_switch_upstream_failures_total")
            _, headers = route_info(ctx, None)
            raise ApiError(502, f"every tier from {d.tier} up failed: {e}", "upstream_error", "upstream_failed",
                           headers) from None
        ctx.failures, ctx.answered = f.failures, to_tier(f.index)
        ctx.span.answered(ctx.router.tiers[f.index], f.index, f.failures,
                          f.data.get("usage") if isinstance(f.data, dict) else None,
                          f.data.get("model") if isinstance(f.data, dict) else None)
        record_failures(self.metrics, ctx.failures)
        self.metrics.inc("route_switch_tier_answered_total",
                         {"tier": str(to_tier(f.index)), "tier_name": ctx.router.tiers[f.index].name})
        return self._answer(ctx, f, text) if f.response is None else self._stream(ctx, f, text)

    def _answer(self, ctx: RequestContext, f, text: str) -> Response:
        """A non-streaming answer (or an upstream client error passed through), charged and annotated."""
        data = f.data if isinstance(f.data, dict) else {"data": f.data}
        if f.status == 200:
            self.charging.charge(ctx, f.index, data.get("usage"), text)
        rs, headers = route_info(ctx, f.index)
        if ctx.cost is not None:
            rs["cost_usd"] = ctx.cost
            headers["X-Route-Switch-Cost-Usd"] = f"{ctx.cost:.8f}"
        if ctx.spent:
            rs["budget_spent_usd"] = ctx.spent
        data["route_switch"] = rs
        return json_response(data, f.status, headers)

    def _stream(self, ctx: RequestContext, f, text: str) -> StreamingResponse:
        """The upstream's stream relayed; charged when it ends (the expected output without streamed usage)."""
        charge = partial(self.charging.charge, ctx, f.index, text=text,
                         estimate_out=self.charging.expected_output_tokens)
        _, headers = route_info(ctx, f.index)
        return StreamingResponse(relay(f, charge, partial(self.finish, ctx)),
                                 media_type="text/event-stream",
                                 headers={**headers, "Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    async def route(self, request: Request, ctx: RequestContext) -> Response:
        text, tau, lam = route_request(await read_json(request, self.max_body), ctx)
        d = await self.decide(ctx, text, tau, lam, session_key(request, ctx))
        return json_response(d.to_dict() | {"request_id": ctx.id, "router_version": ctx.router.version},
                             headers={"X-Route-Switch-Tier": str(d.tier), "X-Route-Switch-Path": d.path,
                                      "X-Route-Switch-Version": header_safe(ctx.router.version)})


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
        Route("/v1/models", p.endpoint("models", partial(admin.models, p)), methods=["GET"]),
        Route("/health", p.endpoint("health", partial(admin.health, p), auth=False, limit=False), methods=["GET"]),
        Route("/metrics", p.endpoint("metrics", partial(admin.metrics_text, p), limit=False), methods=["GET"]),
        Route("/admin/reload", p.endpoint("admin_reload", partial(admin.reload, p)), methods=["POST"]),
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
            import signal

            try:  # the reload runs in a thread: the event loop keeps serving while it loads
                asyncio.get_running_loop().add_signal_handler(
                    signal.SIGHUP, lambda: threading.Thread(target=reloader.reload, kwargs={"force": True},
                                                            daemon=True).start())
            except (ValueError, RuntimeError, NotImplementedError) as e:  # not the main thread, or no signals
                log.warning("SIGHUP reload unavailable: %s", e)
        pushing = asyncio.create_task(p.state.push_metrics_forever(p.metrics))
        yield
        pushing.cancel()
        if reloader is not None:
            reloader.stop()
        await p.close()

    app = Starlette(routes=routes, exception_handlers={HTTPException: http_error, Exception: server_error},
                    lifespan=lifespan)
    app.state.proxy = p
    return app
