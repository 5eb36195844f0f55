"""MIPROv2 optimisation of a routing program against ``quality − λ·cost``.

**Objective.** For a query with per-tier scores ``s`` and costs ``c``, a router LLM that answers
the tier distribution ``p`` earns ``Σ_t p(t) · (s[t] − λ · c[t] / C)``; the metric is its mean
over queries. ``C`` (:func:`~route_switch.core.selection.cost_normaliser`) is the most expensive tier's mean
cost per query on the training split — the same unit λ has in ``route()``. By default λ is the
*break-even* λ of the training split (:func:`~route_switch.core.selection.break_even_lambda`), where
all-tier-1 and all-top score the same: the objective is then the height above the straight line
between those two static routers, and "always the cheapest" cannot win it.

**Candidates.** MIPROv2 searches instruction × demo set. Instructions: the starting one, the
proposer LLM's proposals that read as routing instructions
(:func:`~route_switch.optimization.grounding.describes_tiers`; the others are rejected before scoring), one
written from the labelled training split (:func:`~route_switch.optimization.grounding.grounded_instruction`)
and the start text plus the best mined policy lines (:mod:`route_switch.optimization.mining`). Demo sets
(:func:`demo_sets_from`): the program's own, the mined lines' typical queries, and balanced sets of
clear training queries; their evalset ids are recorded, and evaluations drop them from test sets.

**The gate.** MIPROv2 picks its winner on the validation slice; the winner is kept only if, on a
separate gate slice, the one-sided paired-bootstrap lower bound of its per-query objective gain
over the start program is above ``min_gain`` (:mod:`route_switch.optimization.significance`) and the router
``route()`` runs — the program fused with an estimator fitted on the remaining training queries
(:mod:`route_switch.optimization.deployed`) — does not lose on average. (Gating on the fused gain alone fails
whenever the validation slice gives the LLM weight 0: then no program can differ.) Otherwise
the start program is written unchanged.
``metrics.json`` records where the instruction came from, the gate's interval, and the held-out
figures (LLM alone and fused) of the start and the kept program.

**Data.** The evalset's train split gives the validation slice, the gate slice and the rest
(demo candidates, mined lines, the estimator); its test split gives the held-out figures. Every
LM call goes through a disk cache keyed by the request, so a re-run with unchanged inputs makes
zero model calls, and an interrupted run resumes by replaying them.

**Where.** :mod:`~route_switch.optimization.settings` (the options),
:mod:`~route_switch.optimization.preparation` (slices, λ, LMs, candidates),
:mod:`~route_switch.optimization.strategies` (one search per optimiser, MIPROv2 in
:mod:`~route_switch.optimization.mipro`), :mod:`~route_switch.optimization.gate` and
:mod:`~route_switch.optimization.report` (metrics.json).
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path

from route_switch.core.evalset import Evalset
from route_switch.llm.program import RoutingProgram
from route_switch.optimization.settings import OptimizeSettings

__all__ = ["OptimizeResult", "OptimizeSettings", "optimize"]


@dataclass
class OptimizeResult:
    artifact: Path
    metrics: dict
    cache_hits: int
    cache_misses: int


def optimize(train: Evalset, test: Evalset, start: RoutingProgram, settings: OptimizeSettings | None = None,
             **options) -> OptimizeResult:
    """Search instruction × demos from ``start`` and write ``out_root/name`` (see module docstring).

    ``options``: the fields of :class:`~route_switch.optimization.settings.OptimizeSettings` as
    keywords (``lam=``, ``n_val=``, ``optimizer="gepa"``, ...), or ``settings`` itself (``options``
    then override its fields). An unknown keyword is a ``TypeError`` naming it.
    """
    import dspy

    from route_switch.llm.artifacts import save_artifact
    from route_switch.llm.router_llm import build_module, program_from_module
    from route_switch.optimization.gate import apply_gate, votes
    from route_switch.optimization.preparation import prepare
    from route_switch.optimization.report import run_metrics
    from route_switch.optimization.strategies import SEARCHES, quiet_dspy

    s = dataclasses.replace(settings, **options) if settings is not None else OptimizeSettings(**options)
    t0 = time.time()
    s.check(len(train.models), train.models, len(start.tiers))
    run = prepare(train, test, start, s)
    with dspy.context(lm=run.task_lm):
        with quiet_dspy():
            compiled = SEARCHES[s.optimizer](run, build_module(start, run.task_lm))
        best = program_from_module(compiled, start)
        if not s.chooses_demos:
            best.demos = list(start.demos)  # instruction-only: keep the program's own demos
        outcome = apply_gate(run, best)
        start_votes, opt_votes = votes(run, start, run.test), votes(run, outcome.kept, run.test)
    run.bar.total = run.bar.n  # the estimate is close, not exact: end at 100%
    run.bar.refresh()
    run.bar.close()
    metrics = run_metrics(run, outcome, start_votes, opt_votes, round((time.time() - t0) / 60, 2))
    outcome.kept.name = s.name
    path = save_artifact(Path(s.out_root) / s.name, outcome.kept, metrics)
    hits = sum(c.hits for c in run.caches if c)
    misses = sum(c.misses for c in run.caches if c)
    return OptimizeResult(path, dict(metrics, lm_calls=misses, cache_hits=hits), hits, misses)
