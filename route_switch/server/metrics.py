"""The proxy's Prometheus metrics, and the one JSON access-log line of each request."""
from __future__ import annotations

import json
import logging
import time

access_log = logging.getLogger("route_switch.server.access")


class Metrics:
    """The proxy's Prometheus metrics (``prometheus_client``) in a registry of its own, one per app:
    several apps may live in one process (tests, embedding), so the global registry is not used.

    ``budgets`` (optional :class:`~route_switch.server.budgets.Budgets`) adds the gauges
    ``route_switch_budget_spent_usd`` / ``route_switch_budget_limit_usd{budget, period}``, read at
    each scrape.

    Several processes sum their counters and histograms in a shared store: :meth:`unpushed` gives
    the increments since the last push, :meth:`render` shows the sums
    (:meth:`route_switch.server.state.RedisState.push_metrics`).
    """

    SHARED_TYPES = ("counter", "histogram")  # sums of increments; gauges stay per process

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
        self._pushed: dict[str, float] = {}  # field -> value already added to the shared store

    def _child(self, name: str, labels: dict | None):
        m = self._metrics[name]
        return m.labels(**labels) if labels else m

    def inc(self, name: str, labels: dict | None = None, value: float = 1.0):
        self._child(name, labels).inc(value)

    def observe(self, name: str, value: float, labels: dict | None = None):
        self._child(name, labels).observe(value)

    def unpushed(self) -> dict[str, float]:
        """Counter and histogram increments since the last :meth:`mark_pushed`, by field: the JSON of
        ``[family, sample name, labels]``."""
        out = {}
        for m in self.registry.collect():
            if m.type not in self.SHARED_TYPES:
                continue
            for s in m.samples:
                if s.name.endswith("_created"):
                    continue
                field = json.dumps([m.name, s.name, s.labels], sort_keys=True)
                delta = s.value - self._pushed.get(field, 0.0)
                if delta:
                    out[field] = delta
        return out

    def mark_pushed(self, deltas: dict[str, float]) -> None:
        for field, delta in deltas.items():
            self._pushed[field] = self._pushed.get(field, 0.0) + delta

    def render(self, shared: dict[str, float] | None = None) -> tuple[bytes, str]:
        """(Prometheus text exposition, its content type); ``shared``: counters and histograms summed
        over every process (fields of :meth:`unpushed`) shown instead of this process's."""
        import prometheus_client as pc

        registry = _WithoutCreated(self.registry) if shared is None else _Summed(self.registry, shared)
        return pc.generate_latest(registry), getattr(pc, "CONTENT_TYPE_PLAIN_0_0_4", pc.CONTENT_TYPE_LATEST)


class _WithoutCreated:
    """A registry's metrics without the ``*_created`` samples prometheus_client adds to counters and
    histograms (per registry; ``disable_created_metrics`` would change the whole process)."""

    def __init__(self, registry):
        self.registry = registry

    def collect(self):
        for m in self.registry.collect():
            m.samples = [s for s in m.samples if not s.name.endswith("_created")]
            yield m


class _Summed:
    """A registry's metrics with the samples of its counters and histograms replaced by the sums of
    every process (a field that does not parse is skipped: the store is shared, not trusted)."""

    def __init__(self, registry, shared: dict[str, float]):
        from prometheus_client.samples import Sample

        self.registry, self.families = registry, {}
        for field, value in shared.items():
            try:
                family, name, labels = json.loads(field)
                sample = Sample(str(name), {str(k): str(v) for k, v in labels.items()}, float(value))
            except (ValueError, TypeError, AttributeError):
                continue
            self.families.setdefault(family, []).append(sample)

    @staticmethod
    def _order(s):
        """Label set, then buckets by ``le``, then ``_count`` and ``_sum`` (the exposition's order)."""
        labels = sorted((k, v) for k, v in s.labels.items() if k != "le")
        return labels, s.name.endswith(("_count", "_sum")), s.name, float(s.labels.get("le", 0))

    def collect(self):
        for m in self.registry.collect():
            if m.type in Metrics.SHARED_TYPES:
                m.samples = sorted(self.families.get(m.name, []), key=self._order)
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


def record_request(metrics: Metrics, ctx, status: int, log_prompts: bool = False):
    """Count a finished request (``ctx``: its RequestContext) and write its access-log line."""
    dt = time.perf_counter() - ctx.t0
    metrics.inc("route_switch_requests_total", {"endpoint": ctx.endpoint, "status": str(status)})
    metrics.observe("route_switch_request_duration_seconds", dt, {"endpoint": ctx.endpoint})
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
    if log_prompts and ctx.query is not None:
        rec["query"] = ctx.query
    access_log.info(json.dumps(rec))


def record_decision(metrics: Metrics, d):
    """Count a routing decision: its tier, its path, a fallback, its latency."""
    metrics.inc("route_switch_tier_chosen_total", {"tier": str(d.tier), "tier_name": d.tier_name})
    metrics.inc("route_switch_route_path_total", {"path": d.path})
    if d.fallback_from:
        metrics.inc("route_switch_router_fallbacks_total")
    metrics.observe("route_switch_route_duration_seconds", d.latency_ms / 1000)


def record_failures(metrics: Metrics, failures: list):
    """Count the failed upstream attempts that were retried on the next tier up."""
    for f in failures:
        metrics.inc("route_switch_upstream_retries_total", {"tier": str(f["tier"])})
