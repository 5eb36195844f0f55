"""The gate: the searched program is kept only when it beats the start program on queries neither
was chosen on — the LLM's own objective by a paired lower bound, and, fused with an estimator as
``route()`` runs it, not worse on average. Otherwise the start program is kept unchanged."""
from __future__ import annotations

from dataclasses import dataclass

from route_switch.core.evalset import Evalset
from route_switch.llm.program import RoutingProgram
from route_switch.optimization.objective import expected_objective, program_votes
from route_switch.optimization.preparation import Prepared


@dataclass
class GateOutcome:
    """The program kept, the gate's record for metrics.json, and (when fused) the scorer and each
    program's fusion weight (``fusions["start"]``, ``fusions["best"]``)."""

    kept: RoutingProgram
    gate: dict
    scorer: object
    fusions: dict


def votes(run: Prepared, program: RoutingProgram, ev: Evalset) -> list:
    """The program's tier votes on ``ev`` (cached calls through the run's task LM)."""
    from route_switch.llm.router_llm import build_module

    return program_votes(build_module(program, run.task_lm), [run.clip(q) for q in ev.prompts], run.bar)


def per_query(votes_, ev: Evalset, lam: float, unit: float) -> list[float]:
    return [expected_objective(v, ev.scores[i], ev.costs[i], lam, unit) for i, v in enumerate(votes_)]


def apply_gate(run: Prepared, best: RoutingProgram) -> GateOutcome:
    """Gate ``best`` against the run's start program on the gate slice (see the module docstring)."""
    from route_switch.optimization.deployed import FusedScorer
    from route_switch.optimization.significance import paired_gain

    s, start, gate_ev = run.settings, run.start, run.gate
    scorer = FusedScorer(run.fit, run.lam, run.unit) if s.fused and len(run.fit) >= 20 else None
    fusions = {}
    if scorer is not None:  # each program's fusion weight, chosen on the validation slice (cached calls)
        fusions["start"] = scorer.fusion_for(run.val, votes(run, start, run.val))
    gate: dict = {"confidence": s.confidence, "min_gain": s.min_gain, "n": len(gate_ev)}
    changed = best.instruction.strip() != start.instruction.strip() or best.demos != start.demos
    if changed and len(gate_ev):
        v_old, v_new = votes(run, start, gate_ev), votes(run, best, gate_ev)
        gate.update(paired_gain(per_query(v_new, gate_ev, run.lam, run.unit),
                                per_query(v_old, gate_ev, run.lam, run.unit), confidence=s.confidence, seed=s.seed))
        gate["passed"] = gate["lower"] > s.min_gain
        if scorer is not None:  # ... and the router route() runs must not get worse
            fusions["best"] = scorer.fusion_for(run.val, votes(run, best, run.val))
            gate["fused"] = paired_gain(scorer.per_query(fusions["best"], gate_ev, v_new),
                                        scorer.per_query(fusions["start"], gate_ev, v_old),
                                        confidence=s.confidence, seed=s.seed)
            gate["passed"] = gate["passed"] and gate["fused"]["mean_gain"] >= 0
    else:
        gate.update(passed=False, why="the search returned the start program" if not changed else "no gate slice")
    if not gate["passed"]:
        best = RoutingProgram(start.name, [dict(t) for t in start.tiers], start.instruction, list(start.demos))
        fusions["best"] = fusions.get("start")
    return GateOutcome(best, gate, scorer, fusions)
