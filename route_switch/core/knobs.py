"""The routing knobs and their valid ranges: one check shared by ``route()``, ``fit``, the YAML and the CLI.

* ``tau`` (τ, the tolerance of the τ rule): a finite number in [0, 1]; with the anchored rule
  (``selection.rule: anchored``) [-1, 1], where -1 means "always the anchor";
* ``lambda`` (λ, the cost weight of the λ rule): a finite number ≥ 0;
* ``target_quality`` / ``target_cost_share`` (calibration targets of ``fit``): finite numbers in [0, 1].

A value out of range, NaN, ±inf, a bool or a non-number raises ``ValueError`` naming the knob and
its range; before this check ``tau=nan`` silently routed everything to the cheapest tier.
"""
from __future__ import annotations

import math
import re

RANGES: dict[str, tuple[float, float]] = {
    "tau": (0.0, 1.0),
    "anchored_tau": (-1.0, 1.0),
    "lambda": (0.0, math.inf),
    "target_quality": (0.0, 1.0),
    "target_cost_share": (0.0, 1.0),
}


def describe_range(name: str) -> str:
    lo, hi = RANGES[name]
    return f"within [{lo:g}, {hi:g}]" if math.isfinite(hi) else f">= {lo:g}"


def check_knob(name: str, value) -> float | None:
    """``value`` as a float if it is a valid ``name`` knob (``None`` passes through); else ``ValueError``."""
    if value is None:
        return None
    lo, hi = RANGES[name]
    ok = not isinstance(value, bool)
    try:
        v = float(value) if ok and not isinstance(value, str) else math.nan
    except (TypeError, ValueError, OverflowError):
        ok, v = False, math.nan
    if not (ok and math.isfinite(v) and lo <= v <= hi):
        raise ValueError(f"{name} must be a finite number {describe_range(name)}, got {repr(value)[:60]}")
    return v


def check_knobs(tau=None, lam=None, rule: str = "tau") -> tuple[float | None, float | None]:
    """Both routing knobs checked (either may be ``None``); ``rule`` is the router's selection rule."""
    try:
        t = check_knob("anchored_tau" if rule == "anchored" else "tau", tau)
    except ValueError as e:
        raise ValueError(str(e).replace("anchored_tau", "tau")) from None
    return t, check_knob("lambda", lam)


ROUTER_MODELS = "'router', 'router-tau-<0..1>' (e.g. router-tau-0.2) and 'router-lambda-<number>'"
_MODEL_RE = re.compile(r"router-(tau|lambda)-([0-9]+(?:\.[0-9]+)?)")


class UnknownRouterModel(ValueError):
    """A model name that is none of ``router``, ``router-tau-<t>``, ``router-lambda-<l>``."""


def parse_router_model(name, who: str = "route-switch") -> tuple[float | None, float | None]:
    """(tau, lam) of a router model name: ``router`` -> (None, None), the router's defaults;
    ``router-tau-0.2`` -> (0.2, None); ``router-lambda-0.5`` -> (None, 0.5).

    The one parser of the proxy and the in-process clients. ``UnknownRouterModel`` for another
    name, ``ValueError`` for a missing name or a knob out of range."""
    if not isinstance(name, str) or not name:
        raise ValueError("'model' is required: use 'router', 'router-tau-<0..1>' or 'router-lambda-<number>'")
    if name == "router":
        return None, None
    m = _MODEL_RE.fullmatch(name)
    if not m:
        raise UnknownRouterModel(f"model '{name[:100]}' does not exist: {who} serves {ROUTER_MODELS}")
    v = check_knob(m.group(1), float(m.group(2)))
    return (v, None) if m.group(1) == "tau" else (None, v)


def knob_arg(name: str):
    """An ``argparse`` ``type=`` for a knob: a bad value is a one-line usage error (exit 2)."""
    import argparse

    def parse(text: str) -> float:
        try:
            return check_knob(name, float(text))
        except ValueError as e:
            msg = str(e) if "must be" in str(e) else f"{name} must be a finite number {describe_range(name)}, got {text!r}"
            raise argparse.ArgumentTypeError(msg) from None
    parse.__name__ = name  # argparse names the type in its messages
    return parse
