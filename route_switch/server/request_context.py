"""What one proxy request carries from its first line to its access-log line."""
from __future__ import annotations

import re
import time
import uuid

from starlette.requests import Request

from route_switch.routing import telemetry


class RequestContext:
    """One request's id, key id, router, decision, answer, cost and span.

    ``router`` is pinned when the request starts: a hot reload swaps the proxy's router between
    requests, and routing, caps, charging and the response all read this one.
    """

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
