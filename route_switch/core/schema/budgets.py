"""The schema of a budget file (``route-switch serve --budgets``; see :mod:`route_switch.server.budgets`)."""
from __future__ import annotations

from typing import Literal

from pydantic import Field

from route_switch.core.schema import Model, Text

Period = Literal["day", "week", "month"]
Policy = Literal["cap", "refuse"]


class BudgetDefaults(Model):
    """What every budget uses unless it says otherwise."""

    period: Period = Field("month", description="day, week or month (UTC)")
    near: float = Field(0.8, gt=0, le=1, description="the policy starts once this share of the limit is spent")
    policy: Policy = Field("cap", description="cap: at most cap_tier until the limit, then 429; refuse: 429")
    cap_tier: int = Field(1, ge=1, description="the highest tier a capped budget allows")


class BudgetRule(Model):
    """One budget: a limit and, optionally, its own period, near, policy and cap_tier."""

    limit_usd: float = Field(ge=0, description="USD per period")
    period: Period | None = Field(None, description="as in defaults")
    near: float | None = Field(None, gt=0, le=1, description="as in defaults")
    policy: Policy | None = Field(None, description="as in defaults")
    cap_tier: int | None = Field(None, ge=1, description="as in defaults")

    def merged(self, defaults: BudgetDefaults) -> dict:
        """The rule as the keyword arguments of a Budget, the defaults filling what it leaves out."""
        return defaults.model_dump() | self.model_dump(exclude_none=True)


class BudgetsFile(Model):
    """A budget file: spend limits per API key id and per tag."""

    state: str = Field("budgets-state.json", min_length=1, description="where spend is kept (relative to this file)")
    flush_s: float = Field(1.0, ge=0, description="write the state at most this often, off the request path "
                                                  "(0: on every request)")
    tag_header: str = Field("X-Route-Switch-Tag", min_length=1, description="request header carrying the tag")
    defaults: BudgetDefaults = Field(default_factory=BudgetDefaults, description="defaults of every budget")
    keys: dict[Text, BudgetRule] = Field(default_factory=dict, description="by key id (route-switch key-id); "
                                                                          "default: every key without its own entry")
    tags: dict[Text, BudgetRule] = Field(default_factory=dict, description="by tag; default: every other tag")
    expected_output_tokens: int = Field(256, ge=0, description="for max_cost when a request sets no max_tokens")
