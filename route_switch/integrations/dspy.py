"""``RoutedLM``: a ``dspy.LM`` that routes every call of any DSPy program to the cheapest adequate tier.

    lm = RoutedLM(router="estimators/prod")           # tiers with api_base, as for the proxy
    dspy.configure(lm=lm)
    qa = dspy.ChainOfThought("question -> answer")
    qa(question="What is the capital of Peru?")       # cheap calls go to cheap tiers
    lm.report()   # {"calls", "cost_usd", "cost_top_tier_usd", "tiers": {...}, "programs": {"ChainOfThought": {...}}}

Each call is a DSPy 3.4 engine request (``complete(Request) -> Response``). It is routed on the
text of its last user message with the adapter's field markers and "Respond with ..." footer
removed: the inputs of the call, not DSPy's boilerplate (few-shot demos and instructions are not
scored). The chosen tier's endpoint is called with the ``openai`` client and the same fallback
to the next tier up as the proxy (:mod:`route_switch.integrations.openai_client`).

The report counts calls, tier shares and cost (the upstream's usage × the tier's prices) per
program: the outermost DSPy module of the call (its class name), or the name given with
``with lm.program("name"):``. ``cost_top_tier_usd`` is what the same tokens would have cost on
the top tier.
"""
from __future__ import annotations

import contextlib
import contextvars
import re
import threading

import dspy

from route_switch.routing import telemetry
from route_switch.llm.engines import _request_messages, _response
from route_switch.integrations.openai_client import _Routing, call_tiers

_PROGRAM = contextvars.ContextVar("route_switch_dspy_program", default=None)
_FIELD = re.compile(r"^\[\[ ## [^\]]+ ## \]\]\s*$", re.M)
_FOOTER = re.compile(r"\n*Respond with the corresponding output fields.*\Z", re.S)
CONFIG_FIELDS = ("max_tokens", "temperature", "top_p", "seed", "frequency_penalty", "presence_penalty")


def query_of(messages: list[dict]) -> str:
    """The text a DSPy call is routed on: its last user message without the adapter's markup."""
    last = next((m.get("content") or "" for m in reversed(messages) if m.get("role") == "user"), "")
    return _FIELD.sub("", _FOOTER.sub("", last)).strip()


class TierReport:
    """Calls, tier shares and cost per program (thread-safe)."""

    def __init__(self, tiers):
        self.tiers = list(tiers)
        self._lock = threading.Lock()
        self._rows: dict[str, dict] = {}

    def add(self, program: str, index: int, usage, fallback: bool) -> None:
        n_in = getattr(usage, "prompt_tokens", None) or 0
        n_out = getattr(usage, "completion_tokens", None) or 0
        cost = self.tiers[index].cost(n_in, n_out)
        top = self.tiers[-1].cost(n_in, n_out)
        with self._lock:
            r = self._rows.setdefault(program, {"calls": 0, "fallbacks": 0, "cost_usd": 0.0,
                                                "cost_top_tier_usd": 0.0, "tiers": {}})
            r["calls"] += 1
            r["fallbacks"] += int(fallback)
            r["cost_usd"] += cost or 0.0
            r["cost_top_tier_usd"] += top or 0.0
            t = r["tiers"].setdefault(self.tiers[index].name, {"calls": 0, "cost_usd": 0.0})
            t["calls"] += 1
            t["cost_usd"] += cost or 0.0

    def reset(self) -> None:
        with self._lock:
            self._rows.clear()

    def as_dict(self) -> dict:
        """``{calls, fallbacks, cost_usd, cost_top_tier_usd, tiers: {name: {calls, share, cost_usd}}, programs: {...}}``."""
        with self._lock:
            rows = {k: {**v, "tiers": {n: dict(t) for n, t in v["tiers"].items()}} for k, v in self._rows.items()}
        total = {"calls": 0, "fallbacks": 0, "cost_usd": 0.0, "cost_top_tier_usd": 0.0, "tiers": {}}
        for r in rows.values():
            for k in ("calls", "fallbacks", "cost_usd", "cost_top_tier_usd"):
                total[k] += r[k]
            for n, t in r["tiers"].items():
                tt = total["tiers"].setdefault(n, {"calls": 0, "cost_usd": 0.0})
                tt["calls"] += t["calls"]
                tt["cost_usd"] += t["cost_usd"]

        def finish(r):
            order = {t.name: i for i, t in enumerate(self.tiers)}
            r["tiers"] = {n: {**t, "share": round(t["calls"] / r["calls"], 4) if r["calls"] else 0.0,
                              "cost_usd": round(t["cost_usd"], 8)}
                          for n, t in sorted(r["tiers"].items(), key=lambda kv: order.get(kv[0], 0))}
            r["cost_usd"], r["cost_top_tier_usd"] = round(r["cost_usd"], 8), round(r["cost_top_tier_usd"], 8)
            return r

        return {**finish(total), "programs": {k: finish(v) for k, v in sorted(rows.items())}}


class RoutingEngine:
    """DSPy engine: route the request, call the chosen tier (fallback upward), answer a DSPy ``Response``."""

    forces_layout = False

    def __init__(self, router, tau: float | None = None, lam: float | None = None, timeout: float = 60.0,
                 max_retries: int = 0, client_kwargs: dict | None = None):
        from route_switch.core.knobs import check_knobs

        self.core = _Routing(router, timeout, max_retries, client_kwargs or {}, async_=False)
        self.tau, self.lam = check_knobs(tau, lam, self.core.router.rule)
        self.report = TierReport(self.core.router.tiers)
        self.last_decision = None

    def __deepcopy__(self, memo):  # DSPy copies LMs and modules: one router, one report
        return self

    def complete(self, request):
        from dspy.clients.engines.base import validate_request

        validate_request(request)
        messages = _request_messages(request)
        cfg = request.config
        kwargs = {k: getattr(cfg, k) for k in CONFIG_FIELDS if getattr(cfg, k, None) is not None}
        if cfg.stop:
            kwargs["stop"] = list(cfg.stop)
        router = self.core.router
        with telemetry.chat_span("router", False, "dspy") as span:
            d = router.route(query_of(messages), tau=self.tau, lam=self.lam)
            span.decision(d)
            start = min(d.tier, len(router.tiers)) - 1
            out, i, failures = call_tiers(self.core, router, d, start, span, messages, False, kwargs)
        self.last_decision = d
        self.report.add(_program_name(), i, out.usage, bool(failures))
        choice = out.choices[0]
        usage = out.usage
        return _response(choice.message.content or "", out.model or router.tiers[i].model,
                         getattr(usage, "prompt_tokens", None), getattr(usage, "completion_tokens", None),
                         finish_reason=choice.finish_reason or "stop")

    def stream(self, request):
        from dspy.lm15 import response_to_events

        return response_to_events(self.complete(request))

    def close(self):
        for c in self.core._clients.values():
            c.close()
        self.core._clients.clear()


def _program_name() -> str:
    name = _PROGRAM.get()
    if name:
        return name
    callers = dspy.settings.caller_modules or []
    return type(callers[0]).__name__ if callers else "(direct call)"


class RoutedLM(dspy.LM):
    """A ``dspy.LM`` whose every call is routed across the router's tiers; see the module doc.

    ``router``: a Router, a router directory / ``router.yaml`` path, or a RouterReloader; its tiers
    need ``api_base``. ``tau`` / ``lam``: the knob for every call (default: the router's).
    ``timeout``: per tier attempt. Other keyword arguments are ``dspy.LM``'s (``temperature``,
    ``max_tokens``, ...); DSPy's response cache is off by default so that every call is routed.
    """

    def __init__(self, router, *, tau: float | None = None, lam: float | None = None, timeout: float = 60.0,
                 cache: bool = False, num_retries: int = 0, **kwargs):
        engine = RoutingEngine(router, tau=tau, lam=lam, timeout=timeout)
        super().__init__("route-switch/router", engine=engine, cache=cache, num_retries=num_retries, **kwargs)
        self.routing = engine

    def report(self) -> dict:
        """Calls, tier shares and cost, in total and per program (see :class:`TierReport`)."""
        return self.routing.report.as_dict()

    def reset_report(self) -> None:
        self.routing.report.reset()

    @staticmethod
    @contextlib.contextmanager
    def program(name: str):
        """Count the calls made inside this block under ``name`` in the report."""
        token = _PROGRAM.set(name)
        try:
            yield
        finally:
            _PROGRAM.reset(token)
