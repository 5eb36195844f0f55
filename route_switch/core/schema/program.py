"""The schema of a routing program (``programs/*.yaml``; see :mod:`route_switch.llm.program`)."""
from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, Field

from route_switch.core.schema import Model, Text


def _filled(v: str) -> str:
    if not v.strip():
        raise ValueError("must be a non-empty string")
    return v.strip()


def _not_blank(v: str) -> str:
    _filled(v)
    return v  # a demo's query is kept as written (demo ids hash it)


Filled = Annotated[str, AfterValidator(_filled)]
NotBlank = Annotated[str, AfterValidator(_not_blank)]


class ProgramTier(Model):
    """A tier as the router LLM sees it."""

    name: Filled = Field(description="the tier's name")
    description: Filled = Field(description="what the tier is good for (shown to the LLM)")


class Demo(Model):
    """A few-shot example: a query and the tier it needs."""

    query: NotBlank = Field(description="the query")
    tier: int | Text = Field(description="tier number 1..N or a tier name")


class ProgramFile(Model):
    """A routing program: tiers, an instruction and demos."""

    name: Filled = Field(description="the program's name")
    tiers: list[ProgramTier] = Field(min_length=2, max_length=9, description="2 to 9 tiers, cheapest first")
    instruction: Filled = Field(description="what the router LLM is told (MIPROv2 rewrites it)")
    demos: list[Demo] = Field(default_factory=list, description="few-shot examples (tier 1 = cheapest)")
