"""The answer of ``route()``: which tier and model, predicted qualities, the path taken and why."""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace

PATHS = ("policy", "bypass", "llm", "estimator", "cache", "default")


@dataclass(frozen=True)
class Decision:
    tier: int                 # 1 = cheapest tier
    tier_name: str
    model: str | None
    path: str                 # one of PATHS ("policy": an enforced policy line decided it)
    reason: str
    predicted_quality: dict[str, float] | None = None
    latency_ms: float = 0.0
    tier_probs: list[float] | None = None  # the router LLM's probability per tier (cheapest first), path llm
    fallback_from: str | None = None       # "llm" when the router LLM was asked but could not decide
    llm_error: str | None = None           # why it could not (timed out, failed, busy, invalid answer)

    def to_dict(self) -> dict:
        return asdict(self)

    def with_(self, **changes) -> "Decision":
        return replace(self, **changes)
