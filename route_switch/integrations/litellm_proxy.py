"""Let route-switch choose the tier inside the LiteLLM proxy: a proxy callback (``CustomLogger``).

    # route_switch_hook.py, beside the proxy's config.yaml
    from route_switch.integrations.litellm_proxy import RouteSwitchHook
    hook = RouteSwitchHook(routers={"prod": "estimators/prod"}, budgets="budgets.yaml")

    # config.yaml: one model group per tier, named as the router's tiers; LiteLLM's own fallbacks
    model_list: [{model_name: small, litellm_params: {...}}, {model_name: medium, ...}, {model_name: large, ...}]
    router_settings: {fallbacks: [{small: [medium, large]}, {medium: [large]}]}
    litellm_settings: {callbacks: route_switch_hook.hook}

A chat completion for ``route-switch/<name>`` is routed with router ``<name>`` (τ/λ per request
from ``metadata: {route_switch: {tau | lambda: x}}``) and its ``model`` is replaced, before LiteLLM
routes it, by the model group named as the chosen tier; LiteLLM then does what it does for any
group: load balancing, retries, cooldowns and the ``fallbacks`` of its config. Other models pass
untouched. The decision is written to ``metadata["route_switch"]``, which LiteLLM hands to its
logging callbacks and spend logs.

``budgets``: a route-switch budget file (:mod:`route_switch.server.budgets`). Its keys are
LiteLLM's key hashes (``user_api_key_hash``: the SHA-256 of the key; ``litellm_proxy_master_key``
for the master key). A budget past ``near`` caps the tier (and the request's fallbacks) at
``cap_tier``; at its limit, or with ``policy: refuse``, the request gets a 429. Spend is the usage
LiteLLM logs × the answering tier's prices (LiteLLM's own ``response_cost`` for a group that is no
tier of the router), charged when LiteLLM logs the success, a moment after the answer.
"""
from __future__ import annotations

import asyncio
from pathlib import Path

from fastapi import HTTPException
from litellm.integrations.custom_logger import CustomLogger

from route_switch.core.errors import ConfigError
from route_switch.core.knobs import check_knobs
from route_switch.integrations.openai_client import _router, load_router
from route_switch.server.budgets import BudgetRefused, Budgets, Plan, usage_cost

PREFIX = "route-switch/"
META_KEY = "route_switch"


def _refuse(status: int, message: str) -> HTTPException:
    return HTTPException(status_code=status, detail={"error": message})


class RouteSwitchHook(CustomLogger):
    """LiteLLM proxy callback: ``route-switch/<name>`` goes to the model group of the chosen tier.

    ``routers``: ``{name: router}``, each a Router, a router directory / ``router.yaml`` path or a
    RouterReloader (its tiers need no ``api_base``: the proxy's model list holds the endpoints).
    ``budgets``: a budget file path or a :class:`~route_switch.server.budgets.Budgets`; None: no caps.
    """

    def __init__(self, routers: dict, budgets=None):
        super().__init__()
        if not isinstance(routers, dict) or not routers:
            raise ConfigError("RouteSwitchHook needs routers={name: router folder}, e.g. {'prod': 'estimators/prod'}")
        self._routers = {str(name): load_router(src) for name, src in routers.items()}
        self.budgets = Budgets.from_file(budgets) if isinstance(budgets, (str, Path)) else budgets

    def router(self, name: str):
        return _router(self._routers[name])

    async def async_pre_call_hook(self, user_api_key_dict, cache, data, call_type):
        model = data.get("model")
        if not (isinstance(model, str) and model.startswith(PREFIX)):
            return data
        name = model[len(PREFIX):]
        if name not in self._routers:
            raise _refuse(400, f"unknown model {model!r}: route-switch serves "
                               + ", ".join(PREFIX + n for n in self._routers))
        messages = data.get("messages")
        if not isinstance(messages, list) or not messages:
            raise _refuse(400, f"{model} routes chat completions: 'messages' must be a non-empty list")
        meta = data.get("metadata")
        if not isinstance(meta, dict):
            meta = data["metadata"] = {}
        asked = meta.get(META_KEY) if isinstance(meta.get(META_KEY), dict) else {}
        router = self.router(name)
        try:
            tau, lam = check_knobs(asked.get("tau"), asked.get("lambda"), router.rule)
        except ValueError as e:
            raise _refuse(400, f"metadata.route_switch: {e}") from None
        key = getattr(user_api_key_dict, "token", None) or "anonymous"
        plan = None
        if self.budgets is not None:
            try:
                plan = self.budgets.plan(key, None)
            except BudgetRefused as e:
                raise _refuse(429, str(e)) from None
        if router.llm is not None:  # the router LLM may take up to its timeout: off the event loop
            d = await asyncio.to_thread(router.route, messages, tau=tau, lam=lam)
        else:  # the estimator decides in about a millisecond
            d = router.route(messages, tau=tau, lam=lam)
        tiers = router.tiers
        top = min(plan.max_tier or len(tiers), len(tiers)) if plan is not None else len(tiers)
        tier = min(d.tier, top)
        data["model"] = tiers[tier - 1].name
        if top < len(tiers):  # a request-level list replaces the config's: no fallback above the cap
            data["fallbacks"] = [{tiers[tier - 1].name: [t.name for t in tiers[tier:top]]}]
        meta[META_KEY] = {**{k: asked[k] for k in ("tau", "lambda") if k in asked},
                          "router": name, "tier": tier, "tier_name": tiers[tier - 1].name, "routed_tier": d.tier,
                          "path": d.path, "reason": d.reason, "predicted_quality": d.predicted_quality,
                          "route_latency_ms": d.latency_ms, "key": key,
                          **({"capped": "; ".join(plan.notes)} if tier < d.tier else {})}
        return data

    async def async_log_success_event(self, kwargs, response_obj, start_time, end_time):
        meta = (kwargs.get("litellm_params") or {}).get("metadata") or {}
        info = meta.get(META_KEY)
        if self.budgets is None or not isinstance(info, dict) or info.get("router") not in self._routers:
            return
        cost = self.cost(info["router"], meta.get("model_group"), getattr(response_obj, "usage", None),
                         kwargs.get("response_cost"))
        if cost:
            self.budgets.charge(Plan(budgets=self.budgets.applicable(info["key"], None)), cost)

    def cost(self, name: str, group, usage, litellm_cost) -> float | None:
        """USD of one answer: usage × the prices of the tier named ``group``, else LiteLLM's cost."""
        tier = next((t for t in self.router(name).tiers if t.name == group), None)
        if tier is not None and usage is not None:
            usd = usage_cost(tier, {"prompt_tokens": getattr(usage, "prompt_tokens", None),
                                    "completion_tokens": getattr(usage, "completion_tokens", None)})
            if usd is not None:
                return usd
        return litellm_cost if isinstance(litellm_cost, (int, float)) and litellm_cost > 0 else None
