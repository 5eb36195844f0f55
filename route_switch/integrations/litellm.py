"""Let route-switch pick the deployment inside ``litellm.Router`` (a custom routing strategy).

    model_list = [  # one model group; each deployment says which route-switch tier it serves
        {"model_name": "route-switch", "litellm_params": {"model": "openai/llama-8b", "api_base": ...},
         "model_info": {"route_switch_tier": 1}},          # a tier number or a tier name
        {"model_name": "route-switch", "litellm_params": {"model": "openai/llama-70b", ...},
         "model_info": {"route_switch_tier": 2}},
        ...]
    llm_router = litellm.Router(model_list=model_list, num_retries=2)
    RouteSwitchStrategy(router="estimators/prod").install(llm_router)
    llm_router.completion(model="route-switch", messages=[...])
    llm_router.completion(model="route-switch", messages=[...], metadata={"route_switch": {"tau": 0.1}})

For a request to a routed group (``groups``, default ``("route-switch",)``) the conversation is
routed with the router (τ/λ per request from ``metadata={"route_switch": {"tau"|"lambda": x}}``)
and a deployment of the chosen tier is returned (several per tier are picked in turn). A tier
whose deployments are all cooling down after failures (LiteLLM's ``allowed_fails`` /
``cooldown_time``), or that already failed for this request (LiteLLM's retries call the strategy
again), is skipped for the next tier up. Other model groups keep LiteLLM's own strategy, so
LiteLLM's ``fallbacks`` to other groups work as before. The decision is written into the
request's ``metadata["route_switch"]`` (LiteLLM passes it to callbacks and the logging payload).
"""
from __future__ import annotations

import itertools
import threading

from route_switch.routing import telemetry
from route_switch.core.knobs import check_knobs
from route_switch.core.tiers import to_tier
from route_switch.integrations.openai_client import _router, load_router

META_KEY = "route_switch"


class RouteSwitchStrategy:
    """A ``litellm.Router`` custom routing strategy (``CustomRoutingStrategyBase`` interface)."""

    def __init__(self, router, groups=("route-switch",)):
        self._src = load_router(router)
        self.groups = set(groups)
        self._orig = None
        self._llm_router = None
        self._turn = itertools.count()
        self._lock = threading.Lock()

    @property
    def router(self):
        return _router(self._src)

    def install(self, llm_router) -> "RouteSwitchStrategy":
        """Set this strategy on ``llm_router`` (``set_custom_routing_strategy``), keeping its own for other groups."""
        self._orig = (llm_router.get_available_deployment, llm_router.async_get_available_deployment)
        self._llm_router = llm_router
        llm_router.set_custom_routing_strategy(self)
        return self

    # -- the interface LiteLLM calls
    def get_available_deployment(self, model, messages=None, input=None, specific_deployment=False,
                                 request_kwargs=None):
        if model not in self.groups:
            return self._orig[0](model=model, messages=messages, input=input, specific_deployment=specific_deployment,
                                 request_kwargs=request_kwargs)
        from litellm.router_utils.cooldown_handlers import get_cooldown_deployments

        return self._pick(model, messages, request_kwargs, get_cooldown_deployments(self._llm_router, None))

    async def async_get_available_deployment(self, model, messages=None, input=None, specific_deployment=False,
                                             request_kwargs=None):
        if model not in self.groups:
            return await self._orig[1](model=model, messages=messages, input=input,
                                       specific_deployment=specific_deployment, request_kwargs=request_kwargs or {})
        from litellm.router_utils.cooldown_handlers import async_get_cooldown_deployments

        cooldown = await async_get_cooldown_deployments(self._llm_router, None)
        return self._pick(model, messages, request_kwargs, cooldown)

    # -- the choice
    def tier_of(self, deployment) -> int | None:
        """The 1-based tier a deployment serves (``model_info.route_switch_tier``: a number or a tier name)."""
        tiers = self.router.tiers
        v = (deployment.get("model_info") or {}).get("route_switch_tier")
        if isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= len(tiers):
            return v
        if isinstance(v, str):
            if v.isdigit() and 1 <= int(v) <= len(tiers):
                return int(v)
            for i, t in enumerate(tiers):
                if v == t.name:
                    return to_tier(i)
        return None

    def _pick(self, model, messages, request_kwargs, cooldown):
        import litellm

        kw = request_kwargs if request_kwargs is not None else {}
        meta = kw.get("metadata")
        if not isinstance(meta, dict):
            meta = kw["metadata"] = {}
        asked = meta.get(META_KEY) if isinstance(meta.get(META_KEY), dict) else {}
        router = self.router
        tried = list(asked.get("tried_deployments") or [])
        with telemetry.chat_span(model, False, "litellm") as span:
            tau, lam = check_knobs(asked.get("tau"), asked.get("lambda"), router.rule)
            d = router.route([m if isinstance(m, dict) else dict(m) for m in messages] if messages else "",
                             tau=tau, lam=lam)  # a retry of the same request is a cache hit
            span.decision(d)
            cooling = {c if isinstance(c, str) else c[0] for c in cooldown or []}
            by_tier: dict[int, list] = {}
            for dep in self._llm_router.model_list:
                t = self.tier_of(dep) if dep.get("model_name") == model else None
                dep_id = (dep.get("model_info") or {}).get("id")
                if t is not None and dep_id not in cooling and dep_id not in tried:
                    by_tier.setdefault(t, []).append(dep)
            for tier in range(d.tier, len(router.tiers) + 1):
                if by_tier.get(tier):
                    deps = by_tier[tier]
                    dep = deps[next(self._turn) % len(deps)]
                    dep_id = (dep.get("model_info") or {}).get("id")
                    info = {"tier": tier, "tier_name": router.tiers[tier - 1].name, "routed_tier": d.tier,
                            "path": d.path, "reason": d.reason, "predicted_quality": d.predicted_quality,
                            "route_latency_ms": d.latency_ms, "deployment": dep_id,
                            "tried_deployments": tried + [dep_id]}
                    meta[META_KEY] = {**{k: asked[k] for k in ("tau", "lambda") if k in asked}, **info}
                    span.set(**{"route_switch.answered_tier": tier, "route_switch.fallback": tier != d.tier or None})
                    return dep
            span.failed("no_deployment")
            raise litellm.ServiceUnavailableError(
                f"route-switch: no deployment of tier {d.tier} or above is available for {model!r} "
                f"(cooling down: {len(cooling)}, failed for this request: {len(tried)})",
                llm_provider="route-switch", model=model)
