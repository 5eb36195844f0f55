"""What the proxy answers: OpenAI's error shape, JSON bodies, and the ``route_switch`` object and
``X-Route-Switch-*`` headers that say which tier answered and why."""
from __future__ import annotations

import json
import re

from starlette.responses import Response

from route_switch.core.tiers import to_tier


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


def header_safe(value) -> str:
    """A header-safe (ASCII, one line, bounded) rendering of a value."""
    s = str(value).encode("ascii", "replace").decode()
    return re.sub(r"[\x00-\x1f\x7f]", " ", s)[:300]


def route_info(ctx, index: int | None) -> tuple[dict, dict]:
    """The ``route_switch`` body object and the ``X-Route-Switch-*`` headers of a request
    (``ctx``: its :class:`~route_switch.server.request_context.RequestContext`; ``index``: the
    answering tier, 0-based, or None when none answered)."""
    d = ctx.decision
    t = ctx.router.tiers[index] if index is not None else None
    body = {"request_id": ctx.id, "tier": to_tier(index) if t else None, "tier_name": t.name if t else None,
            "model": t.model if t else None, "routed_tier": d.tier, "path": d.path, "reason": d.reason,
            "retried_from": ctx.failures, "predicted_quality": d.predicted_quality,
            "route_latency_ms": d.latency_ms}
    headers = {"X-Route-Switch-Routed-Tier": str(d.tier), "X-Route-Switch-Path": d.path,
               "X-Route-Switch-Reason": header_safe(d.reason), "X-Route-Switch-Version": header_safe(ctx.router.version)}
    body["router_version"] = ctx.router.version
    if t is not None:
        headers.update({"X-Route-Switch-Tier": str(to_tier(index)), "X-Route-Switch-Tier-Name": header_safe(t.name),
                        "X-Route-Switch-Model": header_safe(t.model)})
    if ctx.cap_note:
        body["capped"] = ctx.cap_note
        headers["X-Route-Switch-Capped"] = header_safe(ctx.cap_note)
    if ctx.failures:
        headers["X-Route-Switch-Retried-From"] = header_safe(",".join(f"{f['tier']}:{f['error']}" for f in ctx.failures))
    return body, headers
