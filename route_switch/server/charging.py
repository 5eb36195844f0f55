"""What a request may spend and what it spent: budget caps, ``max_cost``, and charging the
answering tier's prices (:mod:`route_switch.server.budgets` keeps the limits and the spend).

Every method reads the request's own router (``ctx.router``, pinned when the request started),
never the proxy's current one: a hot reload mid-request must not price or index another tier list.
"""
from __future__ import annotations

from starlette.requests import Request

from route_switch.core.conversation import message_text
from route_switch.core.tiers import to_tier
from route_switch.server.budgets import BudgetRefused, tiers_within, usage_cost
from route_switch.server.responses import ApiError

DEFAULT_OUTPUT_TOKENS = 256  # the expected answer length without a budget file that says otherwise


class Charging:
    """Spend caps and charges of one proxy (``budgets``: optional
    :class:`~route_switch.server.budgets.Budgets`; ``metrics``: its Metrics)."""

    def __init__(self, budgets, metrics):
        self.budgets, self.metrics = budgets, metrics

    @property
    def expected_output_tokens(self) -> int:
        return self.budgets.expected_output_tokens if self.budgets is not None else DEFAULT_OUTPUT_TOKENS

    def spend_cap(self, request: Request, ctx, body: dict) -> tuple[int | None, str]:
        """(highest tier this request may use or None, which limit sets it: budget | max_cost); raises 429 / 400.

        Pops ``max_cost`` from ``body`` (not an OpenAI parameter: never forwarded).
        """
        caps, notes = [], []
        if self.budgets is not None:
            tag = request.headers.get(self.budgets.tag_header) or None
            try:
                ctx.plan = self.budgets.plan(ctx.key, tag[:200] if tag else None)
            except BudgetRefused as e:
                self.metrics.inc("route_switch_budget_capped_total", {"reason": "refused"})
                raise ApiError(429, str(e), "insufficient_quota", "budget_exceeded") from None
            if ctx.plan.max_tier is not None:
                caps.append((ctx.plan.max_tier, "budget"))
                notes += ctx.plan.notes
        raw = body.pop("max_cost", None)
        raw = request.headers.get("x-route-switch-max-cost", raw) if raw is None else raw
        if raw is not None:
            k, note = self._max_cost_cap(ctx, body, raw)
            if k is not None:
                caps.append((k, "max_cost"))
                notes.append(note)
        ctx.cap_note = "; ".join(notes) or None
        return min(caps) if caps else (None, "")

    def _max_cost_cap(self, ctx, body: dict, raw) -> tuple[int | None, str]:
        """(how many of the cheapest tiers fit within ``max_cost`` or None for all, the note saying so)."""
        try:
            max_cost = float(raw)
        except (TypeError, ValueError, OverflowError):  # OverflowError: an integer of hundreds of digits
            max_cost = -1.0
        if isinstance(raw, bool) or not max_cost >= 0 or max_cost == float("inf"):
            raise ApiError(400, f"max_cost must be a number of USD >= 0, got {str(raw)[:50]!r}", code="invalid_max_cost")
        tiers = ctx.router.tiers
        n_in = sum(ctx.router.count_tokens(message_text(m.get("content"), "messages", strict=True))
                   for m in body.get("messages") or [] if isinstance(m, dict))
        n_out = body.get("max_completion_tokens") or body.get("max_tokens")
        n_out = n_out if isinstance(n_out, int) and not isinstance(n_out, bool) and n_out > 0 else \
            self.expected_output_tokens
        ok = tiers_within(tiers, max_cost, n_in, n_out)
        k = 0  # tiers are cheapest first: allow the prefix within max_cost
        while k < len(tiers) and to_tier(k) in ok:
            k += 1
        if k == 0:
            c = tiers[0].cost(n_in, n_out) if tiers else 0.0
            raise ApiError(400, f"max_cost ${max_cost:g} is below the expected cost of every tier "
                                f"(tier 1: ${c:.6f} for ~{n_in} input and {n_out} output tokens)",
                           code="max_cost_too_low")
        if k < len(tiers):
            return k, f"max_cost ${max_cost:g} excludes tiers above {k}"
        return None, ""

    def capped_start(self, ctx, cap: int | None, reason: str) -> tuple[list, int]:
        """(the tiers this request may use, the tier it starts at): the routed tier, lowered to the cap."""
        d = ctx.decision
        tiers = ctx.router.tiers[:cap] if cap else ctx.router.tiers
        start = min(d.tier, len(tiers))  # retries go up, but never past the cap
        if start < d.tier:
            ctx.cap_note = f"routed tier {d.tier} capped at tier {start}: {ctx.cap_note}"
            self.metrics.inc("route_switch_budget_capped_total", {"reason": reason})
        else:
            ctx.cap_note = None
        return tiers, start

    def charge(self, ctx, index: int, usage, text: str, estimate_out: int = 0):
        """Record what this answer cost (usage x the tier's prices; estimated without usage)."""
        tier = ctx.router.tiers[index]
        cost = usage_cost(tier, usage)
        if cost is None and tier.price_in is not None:  # no usage reported: estimate from the text
            cost = tier.cost(ctx.router.count_tokens(text), estimate_out)
        if cost is None:
            return
        ctx.cost = cost
        self.metrics.inc("route_switch_spend_usd_total", {"tier": str(to_tier(index)), "tier_name": tier.name}, cost)
        if self.budgets is not None and ctx.plan is not None:
            ctx.spent = self.budgets.charge(ctx.plan, cost)
