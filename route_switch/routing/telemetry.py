"""OpenTelemetry spans for routing (optional extra ``otel``): off unless enabled, and free when off.

* ``route_switch.route``: one span per ``Router.route()`` decision, with the tier, path, reason,
  latency, predicted quality and the LLM -> estimator fallback;
* ``chat <model>``: one span per routed chat completion (the proxy, :class:`route_switch.OpenAI`,
  the DSPy LM, the LiteLLM hook), with the GenAI semantic-convention attributes
  (``gen_ai.operation.name``, ``gen_ai.request.model``, ``gen_ai.response.model``,
  ``gen_ai.usage.input_tokens`` / ``output_tokens``, ``error.type``) and the tier that answered
  after any fallback to the next tier up.

Enable with :func:`enable` (optionally with your ``TracerProvider``), or ``ROUTE_SWITCH_OTEL=1``
in the environment (read when a ``Router`` is built; then the global provider is used). Without
it nothing is imported from ``opentelemetry`` and ``route()`` pays one ``is None`` check.
"""
from __future__ import annotations

import contextlib
import logging
import os

log = logging.getLogger("route_switch")

ENV = "ROUTE_SWITCH_OTEL"
tracer = None  # an opentelemetry Tracer when enabled, else None
_env_checked = False


def enable(tracer_provider=None):
    """Emit spans from now on (``tracer_provider``: yours, else OpenTelemetry's global one); returns the tracer.

    ``ImportError`` when opentelemetry is not installed (``pip install 'route-switch[otel]'``)."""
    global tracer
    from opentelemetry import trace

    from route_switch import __version__

    tracer = trace.get_tracer("route_switch", __version__, tracer_provider=tracer_provider)
    return tracer


def disable() -> None:
    global tracer
    tracer = None


def enable_from_env() -> None:
    """Enable once per process when ``$ROUTE_SWITCH_OTEL`` is 1/true (a warning if opentelemetry is missing)."""
    global _env_checked
    if _env_checked:
        return
    _env_checked = True
    if os.environ.get(ENV, "").strip().lower() in ("1", "true", "yes", "on") and tracer is None:
        try:
            enable()
        except ImportError:
            log.warning("%s is set but opentelemetry is not installed: pip install 'route-switch[otel]'", ENV)


def _clean(attrs: dict) -> dict:
    return {k: v for k, v in attrs.items() if v is not None}


def decision_attributes(d) -> dict:
    """Span attributes of a Decision (``route_switch.*``; the routed model as ``gen_ai.request.model``)."""
    pq = d.predicted_quality or {}
    return _clean({
        "route_switch.tier": d.tier, "route_switch.tier_name": d.tier_name, "route_switch.model": d.model,
        "route_switch.path": d.path, "route_switch.reason": d.reason[:500],
        "route_switch.latency_ms": float(d.latency_ms),
        "route_switch.predicted_quality": float(pq[d.model]) if d.model in pq else None,
        "route_switch.fallback_from": d.fallback_from, "route_switch.llm_error": d.llm_error,
    })


def record_route(d, start_ns: int, end_ns: int, tau=None, lam=None, session: bool = False) -> None:
    """One finished ``route_switch.route`` span for decision ``d`` (a child of the current span)."""
    t = tracer
    if t is None:
        return
    try:
        span = t.start_span("route_switch.route", start_time=start_ns,
                            attributes=_clean({**decision_attributes(d), "route_switch.tau": tau,
                                               "route_switch.lambda": lam,
                                               "route_switch.session": True if session else None}))
        span.end(end_time=end_ns)
    except Exception as e:  # tracing must never break routing
        log.warning("route span failed: %s", e)


class ChatSpan:
    """Attributes of a routed chat completion, filled as it goes (a no-op when tracing is off)."""

    def __init__(self, span):
        self.span = span

    def set(self, **attrs) -> None:
        if self.span is not None:
            self.span.set_attributes(_clean(attrs))

    def rename(self, request_model) -> None:
        if self.span is not None and isinstance(request_model, str):
            self.span.update_name(f"chat {request_model[:100]}")
            self.span.set_attribute("gen_ai.request.model", request_model[:100])

    def decision(self, d) -> None:
        if self.span is not None:
            self.span.set_attributes(decision_attributes(d))

    def answered(self, tier, index: int, failures: list, usage=None, response_model=None) -> None:
        if self.span is None:
            return
        u = usage if isinstance(usage, dict) else (usage.model_dump() if hasattr(usage, "model_dump") else {})
        self.set(**{"route_switch.answered_tier": index + 1, "route_switch.answered_tier_name": tier.name,
                    "route_switch.retried_from": [int(f["tier"]) for f in failures] or None,
                    "route_switch.fallback": bool(failures),
                    "gen_ai.response.model": response_model or tier.upstream_model or tier.model,
                    "server.address": tier.api_base,
                    "gen_ai.usage.input_tokens": u.get("prompt_tokens"),
                    "gen_ai.usage.output_tokens": u.get("completion_tokens")})

    def failed(self, error_type: str, failures: list | None = None) -> None:
        if self.span is None:
            return
        from opentelemetry.trace import Status, StatusCode

        self.set(**{"error.type": error_type,
                    "route_switch.retried_from": [int(f["tier"]) for f in failures or []] or None})
        self.span.set_status(Status(StatusCode.ERROR, error_type))


@contextlib.contextmanager
def chat_span(request_model: str, stream: bool = False, integration: str = ""):
    """``chat <request_model>``: a client span around one routed chat completion; yields a :class:`ChatSpan`."""
    t = tracer
    if t is None:
        yield ChatSpan(None)
        return
    from opentelemetry.trace import SpanKind

    with t.start_as_current_span(f"chat {request_model}", kind=SpanKind.CLIENT,
                                 attributes=_clean({"gen_ai.operation.name": "chat",
                                                    "gen_ai.provider.name": "openai",
                                                    "gen_ai.request.model": request_model,
                                                    "route_switch.stream": stream or None,
                                                    "route_switch.integration": integration or None})) as span:
        yield ChatSpan(span)
