"""Tiers: tier 1 = cheapest ... tier N = largest; each names a model, its price and its endpoint.

Tier *numbers* are 1-based wherever people see them (Decision, CLI, HTTP, YAML); arrays are indexed
0-based. :func:`to_index` and :func:`to_tier` are the one place that converts between the two.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

from route_switch.core.errors import ConfigError


def to_index(tier: int) -> int:
    """The 0-based array index of a public (1-based) tier number: tier 1 -> 0."""
    return int(tier) - 1


def to_tier(index: int) -> int:
    """The public (1-based) tier number of a 0-based array index: 0 -> tier 1."""
    return int(index) + 1


def api_key_from_env(env: str | None, who: str, error: type[Exception] = ConfigError) -> str | None:
    """The API key in the environment variable named by ``api_key_env`` (None when no variable is named).

    The one behaviour everywhere a key is used (proxy, labelling, router LM): a named variable that is
    unset or empty raises ``error`` naming ``who`` (the tier or LM config) and the variable."""
    if not env:
        return None
    key = os.environ.get(env)
    if not key:
        raise error(f"{who}: environment variable {env} (api_key_env) is not set")
    return key


@dataclass
class Tier:
    """One routing tier: a name, the model behind it, its price (USD per 1M tokens) and endpoint.

    ``api_base`` / ``api_key_env`` / ``upstream_model`` say where the tier's model is served
    (any OpenAI-compatible endpoint; the key is read from the named environment variable);
    they are needed only by the proxy and the labelling job, not by ``route()``.
    """

    name: str
    model: str
    price_in: float | None = None
    price_out: float | None = None
    api_base: str | None = None
    api_key_env: str | None = None
    upstream_model: str | None = None

    def cost(self, in_tokens: int, out_tokens: int) -> float | None:
        """USD for a call with these token counts, or None without prices."""
        if self.price_in is None or self.price_out is None:
            return None
        return (in_tokens * self.price_in + out_tokens * self.price_out) / 1e6


def tiers_from_list(items, file: str = "") -> list[Tier]:
    """Parse a YAML list of tiers (schema: :class:`~route_switch.core.schema.router.TierSpec`), naming the
    offending entry on error."""
    from route_switch.core.schema import validate
    from route_switch.core.schema.router import TierList

    if not isinstance(items, list) or not items:
        raise ConfigError("must be a non-empty list of {name, model, price_in, price_out}", file=file, field="tiers")
    return tiers_from_specs(validate(TierList, {"tiers": items}, file).tiers)


def tiers_from_specs(specs) -> list[Tier]:
    """Tiers of validated :class:`~route_switch.core.schema.router.TierSpec` entries (unnamed: tier<N>)."""
    return [Tier(**t.model_dump(exclude={"api_key"}, exclude_none=True) | {"name": t.name or f"tier{to_tier(i)}"})
            for i, t in enumerate(specs)]


def tiers_by_cost(models, unit_cost) -> list[Tier]:
    """One tier per model, cheapest first, each named after its model (when no tiers are configured)."""
    order = sorted(range(len(models)), key=lambda i: unit_cost[i])
    return [Tier(name=models[i], model=models[i]) for i in order]
