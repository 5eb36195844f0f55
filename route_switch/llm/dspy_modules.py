"""The router LLM as DSPy declares it: the ``RouteQuery`` signature, the adapter and the module.

Imports DSPy at module level, so it is itself imported lazily (by
:func:`route_switch.llm.router_llm.build_module`): ``import route_switch`` stays fast.

Two places rely on DSPy internals, each pinned by a contract test (tests/test_dspy_contract.py)
that fails loudly on a DSPy upgrade that changes them: :meth:`RoutingModule.forward` records its
engine-scored calls in ``dspy.settings.trace`` as ``dspy.Predict`` does (optimisers read the trace),
and the optimiser subclasses MIPROv2's instruction and demo proposal steps.
"""
from __future__ import annotations

from typing import Literal

import dspy

from route_switch.core.errors import RouteSwitchError
from route_switch.llm.program import RoutingProgram


class RouterOutputError(RouteSwitchError, ValueError):
    """The router LLM answered something that is not one of the allowed tier labels."""


def normalise_probs(probs, n: int) -> list[float]:
    """Validate an engine's tier distribution (n finite, non-negative values) and make it sum to 1."""
    import math

    try:
        p = [float(x) for x in probs]
    except (TypeError, ValueError):
        raise RouterOutputError(f"tier distribution is not a list of numbers: {probs!r:.80}") from None
    if len(p) != n or not all(math.isfinite(x) and x >= 0 for x in p) or sum(p) <= 0:
        raise RouterOutputError(f"invalid tier distribution {p!r:.80} for {n} tiers")
    s = sum(p)
    return [x / s for x in p]


class RouteQuery(dspy.Signature):
    """Route the query to the cheapest model tier that will answer it well."""

    query: str = dspy.InputField(desc="the user's request to be answered by one of the model tiers")
    tier: str = dspy.OutputField(desc="the cheapest tier that will answer well.")


def route_signature(program: RoutingProgram) -> type[dspy.Signature]:
    """``RouteQuery`` with the program's instruction, its tier labels as a Literal and their legend."""
    return (RouteQuery.with_instructions(program.instruction)
            .with_updated_fields("tier", type_=Literal[tuple(program.labels)],
                                 desc="the cheapest tier that will answer well. " + program.tier_legend()))


class CompactChatAdapter(dspy.ChatAdapter):
    """ChatAdapter without the per-call output-format reminder after the query.

    Used with engines that force the layout by grammar, so every token after the
    query is constant and the whole prompt before the query is a cacheable prefix."""

    def user_message_output_requirements(self, signature):
        return None


class _LMRef:
    """Holds the LM without deep-copying it when DSPy copies the module (optimisers do)."""

    def __init__(self, obj):
        self.obj = obj

    def __deepcopy__(self, memo):
        return self


class RoutingModule(dspy.Module):
    """One ``dspy.Predict(RouteQuery)``; ``forward(query)`` returns ``Prediction(tier=label, probs=[...])``.

    ``lm`` (optional) is used via ``dspy.context``; without it the configured ``dspy.settings.lm`` is
    used (e.g. MIPROv2's task model). An engine that scores every label in one call (``tier_probs``)
    gives the distribution; otherwise the written label, one-hot. A reply that is not an allowed label
    raises (AdapterParseError / RouterOutputError): no tier is guessed.
    """

    def __init__(self, program: RoutingProgram, lm=None):
        super().__init__()
        self.labels = tuple(program.labels)
        self.predict = dspy.Predict(route_signature(program))
        self.predict.demos = [dspy.Example(query=d["query"], tier=str(d["tier"])).with_inputs("query")
                              for d in program.demos]
        self._lm_ref = _LMRef(lm)

    def forward(self, query: str):
        use_lm = self._lm_ref.obj or dspy.settings.lm
        engine = getattr(use_lm, "engine", None)
        compact = getattr(engine, "forces_layout", False)
        adapter = CompactChatAdapter() if compact else dspy.ChatAdapter(use_json_adapter_fallback=False)
        scorer = getattr(engine, "tier_probs", None)
        if scorer is not None:  # one call gives the probability of every tier
            messages = adapter.format(self.predict.signature, self.predict.demos, {"query": query})
            probs = normalise_probs(scorer(messages), len(self.labels))
            pred = dspy.Prediction(tier=self.labels[probs.index(max(probs))], probs=probs)
            record_in_trace(self.predict, {"query": query}, pred)
            return pred
        with dspy.context(lm=use_lm, adapter=adapter):
            pred = self.predict(query=query)
        tier = str(getattr(pred, "tier", "")).strip()
        if tier not in self.labels:
            raise RouterOutputError(f"router answered {tier!r}; allowed: {', '.join(self.labels)}")
        pred.tier = tier
        pred.probs = [1.0 if lab == tier else 0.0 for lab in self.labels]  # no distribution: one-hot
        return pred


def record_in_trace(predictor, inputs: dict, pred) -> None:
    """Append ``(predictor, inputs, prediction)`` to ``dspy.settings.trace`` as ``dspy.Predict`` does,
    so optimisers (MIPROv2's bootstrapping) see calls the module answered without ``Predict``."""
    trace = dspy.settings.trace
    if trace is not None and dspy.settings.max_trace_size > 0:
        if len(trace) >= dspy.settings.max_trace_size:
            trace.pop(0)
        trace.append((predictor, inputs, pred))


def program_from_module(module: RoutingModule, base: RoutingProgram) -> RoutingProgram:
    """Read an (optimised) module's instruction and demos back into a RoutingProgram."""
    demos = []
    for d in module.predict.demos:
        q, t = d.get("query"), str(d.get("tier", "")).strip()
        if isinstance(q, str) and t in base.labels:
            demos.append({"query": q, "tier": int(t)})
    return RoutingProgram(base.name, [dict(t) for t in base.tiers], module.predict.signature.instructions, demos)
