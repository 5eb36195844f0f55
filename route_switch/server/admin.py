"""The proxy's endpoints besides routing and chat: ``GET /v1/models``, ``GET /health``,
``GET /metrics`` and ``POST /admin/reload``. Each takes the :class:`~route_switch.server.app.Proxy`
first, then the request and its context."""
from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from route_switch.server.responses import ApiError, header_safe, json_response


def endpoint_problem(router) -> str | None:
    """Why no chat completion can be forwarded (no tier has an ``api_base``), or None."""
    if any(t.api_base for t in router.tiers):
        return None
    return ("no tier has an api_base, so every chat completion would fail: set api_base (and api_key_env) "
            "of the tiers in router.yaml, or try the proxy with stand-in upstreams: route-switch serve --demo")


async def models(proxy, request: Request, ctx) -> Response:
    data = [{"id": "router", "object": "model", "created": 0, "owned_by": "route-switch"}]
    if proxy.router.tau is not None:
        data.append({"id": f"router-tau-{proxy.router.tau:g}", "object": "model", "created": 0,
                     "owned_by": "route-switch"})
    return json_response({"object": "list", "data": data})


async def health(proxy, request: Request, ctx) -> Response:
    r = proxy.router
    problem = await run_in_threadpool(r.check)  # proves the router can score a query, not just that we run
    status = "error" if problem else "ok"
    if not problem and endpoint_problem(r):  # it routes, but cannot forward a chat anywhere
        status, problem = "not_ready", endpoint_problem(r)
    return json_response({"status": status, "tiers": [t.name for t in r.tiers],
                          "estimator": r.estimator is not None, "llm": r.llm is not None, "version": r.version,
                          **({"error": problem} if problem else {})}, 503 if problem else 200)


async def metrics_text(proxy, request: Request, ctx) -> Response:
    """This process's metrics; with a shared state, counters summed over every worker and replica."""
    from route_switch.server.state import RedisUnavailable

    try:
        shared = await proxy.state.shared_metrics(proxy.metrics)
    except RedisUnavailable as e:  # a failed scrape, rather than one process's counts passed off as the sum
        raise ApiError(503, f"the shared metrics store (Redis) did not answer: {e}", "server_error",
                       "metrics_unavailable") from None
    body, content_type = proxy.metrics.render(shared)
    return Response(body, media_type=content_type)


async def reload(proxy, request: Request, ctx) -> Response:
    """Reload the router from its config files now (this process; other workers poll the files)."""
    if proxy.reloader is None:
        raise ApiError(409, "this proxy was not started from a router config path: nothing to reload",
                       code="reload_unavailable")
    res = await run_in_threadpool(proxy.reloader.reload, force=True)
    if "error" in res:
        raise ApiError(409, f"reload failed, version {res['version']} kept: {res['error'][:300]}",
                       code="reload_failed")
    return json_response(res, headers={"X-Route-Switch-Version": header_safe(res["version"])})
