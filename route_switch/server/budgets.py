"""Spend limits for the proxy: per API key and per tag, over a day, week or month.

Spend is the usage the upstream reports (``prompt_tokens``, ``completion_tokens``) × the answering
tier's prices. A budget file (``route-switch serve --budgets budgets.yaml``)::

    state: budgets-state.json   # where spend is kept (relative to this file); survives restarts
    flush_s: 1                  # write it at most every second, off the request path (0: on every request)
    tag_header: X-Route-Switch-Tag
    defaults: {period: month, near: 0.8, policy: cap, cap_tier: 1}
    keys:                       # by key id (`route-switch key-id`, as in the access log); never the key itself
      default: {limit_usd: 20}          # every key without its own entry, each on its own
      3f2a9c0d1e4b: {limit_usd: 200, policy: refuse}
    tags:
      team-search: {limit_usd: 50, period: week}
    expected_output_tokens: 256  # for max_cost when the request sets no max_tokens

Policies, once a budget has spent ``near`` × its limit:

- ``cap``: requests go to at most ``cap_tier`` (cheaper answers) until the limit; at the limit, 429;
- ``refuse``: 429 with a message naming the budget, what it spent and when it resets.

A request may also carry ``max_cost`` (USD; body field or ``X-Route-Switch-Max-Cost``): tiers whose
expected cost for this request (its input tokens and ``max_tokens`` or ``expected_output_tokens``
at the tier's prices) exceeds it are excluded.

The spend store is a small interface (:class:`SpendStore`: ``get``, ``add``, ``close``);
:class:`JsonSpendStore` keeps it in one JSON file written atomically. A shared store (e.g. for
several replicas) implements the same three methods.
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from route_switch.core.errors import ConfigError
from route_switch.core.tiers import to_tier

log = logging.getLogger("route_switch.server")
PERIODS = ("day", "week", "month")
POLICIES = ("cap", "refuse")


def period_id(period: str, now: float | None = None) -> str:
    """The current UTC period: ``2026-11-29``, ``2026-W48`` or ``2026-11``."""
    t = dt.datetime.fromtimestamp(time.time() if now is None else now, dt.timezone.utc)
    if period == "day":
        return t.strftime("%Y-%m-%d")
    if period == "week":
        y, w, _ = t.isocalendar()
        return f"{y}-W{w:02d}"
    return t.strftime("%Y-%m")


def period_reset(period: str, now: float | None = None) -> str:
    """When the current period ends (UTC, ISO 8601)."""
    t = dt.datetime.fromtimestamp(time.time() if now is None else now, dt.timezone.utc)
    day = t.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "day":
        end = day + dt.timedelta(days=1)
    elif period == "week":
        end = day + dt.timedelta(days=7 - t.weekday())
    else:
        end = (day.replace(day=1) + dt.timedelta(days=32)).replace(day=1)
    return end.strftime("%Y-%m-%dT%H:%M:%SZ")


# ------------------------------------------------------------------------------------- the store
class SpendStore(Protocol):
    """Where spend lives. ``add`` returns the new total of (subject, period)."""

    def get(self, subject: str, period: str) -> float: ...

    def add(self, subject: str, period: str, usd: float) -> float: ...

    def close(self) -> None: ...


class JsonSpendStore:
    """Spend in memory, persisted to one JSON file (atomic replace + fsync).

    With ``flush_s > 0`` (default 1 s) a background thread writes the file when something changed,
    so requests never wait for the disk, and a kill -9 loses at most the last ``flush_s`` seconds
    of spend; ``close`` writes what is left. ``flush_s = 0`` writes on every ``add`` (about 15 ms
    per request on a busy 2-core machine). Only the current period of each subject is kept. A corrupt
    file is moved aside (``.corrupt``) and spend starts from zero, with a warning."""

    def __init__(self, path: str | Path, flush_s: float = 1.0):
        self.path, self.flush_s = Path(path), flush_s
        self._lock = threading.Lock()        # guards _data
        self._write_lock = threading.Lock()  # one writer at a time, outside _lock
        self._data: dict[str, dict] = {}     # subject -> {"period": id, "usd": total}
        self._version = self._written = 0
        if self.path.exists():
            try:
                raw = json.loads(self.path.read_text())
                self._data = {str(k): {"period": str(v["period"]), "usd": float(v["usd"])}
                              for k, v in raw["spend"].items()}
            except Exception as e:
                bad = self.path.with_suffix(self.path.suffix + ".corrupt")
                self.path.replace(bad)
                log.warning("budget state %s unreadable (%s); moved to %s, spend starts at 0", self.path, e, bad)
        self._stop = threading.Event()
        self._thread = None
        if flush_s > 0:
            self._thread = threading.Thread(target=self._flusher, name="route-switch-budgets", daemon=True)
            self._thread.start()

    def get(self, subject: str, period: str) -> float:
        with self._lock:
            rec = self._data.get(subject)
            return rec["usd"] if rec and rec["period"] == period else 0.0

    def add(self, subject: str, period: str, usd: float) -> float:
        with self._lock:
            rec = self._data.get(subject)
            total = (rec["usd"] if rec and rec["period"] == period else 0.0) + usd
            self._data[subject] = {"period": period, "usd": total}
            self._version += 1
        if self.flush_s <= 0:
            self.flush()
        return total

    def flush(self) -> None:
        """Write the file now if anything changed since the last write."""
        from route_switch.core.files import atomic_write_text

        with self._write_lock:
            with self._lock:
                if self._version == self._written:
                    return
                version, text = self._version, json.dumps({"version": 1, "spend": self._data}, sort_keys=True)
            try:
                atomic_write_text(self.path, text)
                self._written = version
            except OSError as e:  # keep serving; the next flush retries
                log.error("cannot write budget state %s: %s", self.path, e)

    def _flusher(self):
        while not self._stop.wait(self.flush_s):
            self.flush()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        self.flush()


# ------------------------------------------------------------------------------------- the rules
@dataclass(frozen=True)
class Budget:
    subject: str            # "key:<id>" or "tag:<value>"
    limit_usd: float
    period: str = "month"
    near: float = 0.8
    policy: str = "cap"
    cap_tier: int = 1


@dataclass
class Plan:
    """What the budgets allow for one request: the highest tier, and what to charge afterwards."""

    budgets: list[Budget] = field(default_factory=list)
    max_tier: int | None = None       # 1-based; None = no cap
    notes: list[str] = field(default_factory=list)
    spent: dict[str, float] = field(default_factory=dict)   # subject -> spend this period (before)
    cost_usd: float | None = None


class BudgetRefused(Exception):
    """A budget refuses this request (answer 429 with this message)."""


class Budgets:
    """Budget rules + spend store; :meth:`plan` before routing, :meth:`charge` after the answer."""

    def __init__(self, keys: dict[str, dict] | None = None, tags: dict[str, dict] | None = None,
                 store: SpendStore | None = None, tag_header: str = "X-Route-Switch-Tag",
                 expected_output_tokens: int = 256, clock=time.time):
        self.keys, self.tags = keys or {}, tags or {}
        self.store = store if store is not None else JsonSpendStore(Path(".route-switch") / "budgets-state.json")
        self.tag_header = tag_header.lower()
        self.expected_output_tokens = expected_output_tokens
        self.clock = clock

    @classmethod
    def from_file(cls, path: str | Path) -> "Budgets":
        """Read a budget YAML (see the module docstring); errors name the file and field."""
        from route_switch.core.files import read_yaml
        from route_switch.core.schema import validate
        from route_switch.core.schema.budgets import BudgetsFile

        p = Path(path)
        if not p.exists():
            raise ConfigError("budget file not found", file=str(p))
        raw = read_yaml(p, ConfigError)
        if not isinstance(raw, (dict, type(None))):
            raise ConfigError("must be a YAML mapping", file=str(p))
        m = validate(BudgetsFile, {k: v for k, v in (raw or {}).items() if v is not None}, str(p))
        rules = {section: {str(k): r.merged(m.defaults) for k, r in getattr(m, section).items()}
                 for section in ("keys", "tags")}
        return cls(rules["keys"], rules["tags"], JsonSpendStore(p.parent / m.state, m.flush_s), m.tag_header,
                   m.expected_output_tokens)

    # -- which budgets apply
    def applicable(self, key_id: str, tag: str | None) -> list[Budget]:
        out = []
        r = self.keys.get(key_id) or self.keys.get("default")
        if r is not None:
            out.append(Budget(subject=f"key:{key_id}", **r))
        if tag:
            r = self.tags.get(tag) or self.tags.get("default")
            if r is not None:
                out.append(Budget(subject=f"tag:{tag}", **r))
        return out

    def plan(self, key_id: str, tag: str | None) -> Plan:
        """The cap these budgets put on this request; :class:`BudgetRefused` when one refuses it."""
        now = self.clock()
        plan = Plan(budgets=self.applicable(key_id, tag))
        for b in plan.budgets:
            spent = self.store.get(b.subject, period_id(b.period, now))
            plan.spent[b.subject] = spent
            used = spent / b.limit_usd if b.limit_usd > 0 else float("inf")
            state = (f"budget {b.subject} has spent ${spent:.6g} of ${b.limit_usd:g} this {b.period} "
                     f"(resets {period_reset(b.period, now)})")
            if used >= 1.0 or (used >= b.near and b.policy == "refuse"):
                raise BudgetRefused(f"{state}; policy {b.policy}: request refused")
            if used >= b.near:  # policy cap
                plan.max_tier = b.cap_tier if plan.max_tier is None else min(plan.max_tier, b.cap_tier)
                plan.notes.append(f"{state}: capped at tier {b.cap_tier}")
        return plan

    def charge(self, plan: Plan, usd: float) -> dict[str, float]:
        """Add ``usd`` to every budget of ``plan``; returns subject -> new total this period."""
        plan.cost_usd = usd
        now = self.clock()
        return {b.subject: self.store.add(b.subject, period_id(b.period, now), usd) for b in plan.budgets}

    def snapshot(self) -> list[tuple[Budget, float]]:
        """(budget, spend this period) of every budget with a named subject (for /metrics)."""
        now = self.clock()
        out = []
        for section, prefix in ((self.keys, "key"), (self.tags, "tag")):
            for name, r in section.items():
                if name == "default":
                    continue
                b = Budget(subject=f"{prefix}:{name}", **r)
                out.append((b, self.store.get(b.subject, period_id(b.period, now))))
        return out

    def close(self) -> None:
        self.store.close()


# ------------------------------------------------------------------------------------- max_cost
def expected_cost(tier, in_tokens: int, out_tokens: int) -> float | None:
    """USD for this request on ``tier`` (None when the tier has no prices)."""
    return tier.cost(in_tokens, out_tokens)


def tiers_within(tiers, max_cost: float, in_tokens: int, out_tokens: int) -> list[int]:
    """1-based tiers whose expected cost for this request is at most ``max_cost`` (unpriced tiers count as free)."""
    return [to_tier(i) for i, t in enumerate(tiers) if (expected_cost(t, in_tokens, out_tokens) or 0.0) <= max_cost]


def usage_cost(tier, usage) -> float | None:
    """Cost of an upstream ``usage`` object at ``tier``'s prices; None without usage or prices."""
    if not isinstance(usage, dict):
        return None
    pin, pout = usage.get("prompt_tokens"), usage.get("completion_tokens")
    if not all(isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in (pin, pout)):
        return None
    return tier.cost(pin, pout)


class StreamUsage:
    """Finds the ``usage`` object in an SSE stream as it passes (``stream_options.include_usage``)."""

    def __init__(self):
        self._tail = b""
        self.usage = None

    def feed(self, chunk: bytes) -> None:
        buf = self._tail + chunk
        lines = buf.split(b"\n")
        self._tail = lines.pop()[-65536:]
        for line in lines:
            if line.startswith(b"data:") and b'"usage"' in line:
                try:
                    u = json.loads(line[5:].strip()).get("usage")
                except (ValueError, AttributeError):
                    continue
                if isinstance(u, dict):
                    self.usage = u


__all__ = ["Budget", "Budgets", "BudgetRefused", "JsonSpendStore", "Plan", "SpendStore", "StreamUsage",
           "expected_cost", "period_id", "period_reset", "tiers_within", "usage_cost"]
