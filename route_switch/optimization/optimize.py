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
"""
from __future__ import annotations

import datetime as _dt
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from route_switch.core.errors import ConfigError
from route_switch.core.evalset import Evalset
from route_switch.llm.program import RoutingProgram
from route_switch.core.tiers import to_tier
from route_switch.optimization.objective import OBJECTIVE, expected_objective, outcomes, program_votes

log = logging.getLogger("route_switch")



@dataclass
class OptimizeResult:
    artifact: Path
    metrics: dict
    cache_hits: int
    cache_misses: int


def to_examples(ev: Evalset, clip) -> list:
    """DSPy examples: the query as the router reads it, its scores and costs, and the needed tier as label."""
    import dspy

    from route_switch.optimization.grounding import needed_tier_index

    need = [to_tier(k) for k in needed_tier_index(ev.scores, ev.costs)]
    return [dspy.Example(query=clip(p), scores=ev.scores[i].tolist(), costs=ev.costs[i].tolist(),
                         tier=str(need[i])).with_inputs("query") for i, p in enumerate(ev.prompts)]


def make_metric(lam: float, unit: float, progress=None):
    def metric(example, pred, trace=None):
        if example.get("scores") is None:  # a demo-pool example: nothing to score, never bootstrapped
            return 0.0
        if progress is not None:
            progress.update(1)
        return expected_objective(getattr(pred, "probs", None), np.asarray(example.scores),
                                  np.asarray(example.costs), lam, unit)

    return metric


def _routing_mipro(candidates: list[tuple[str, str]], tiers: list[dict], record: list, demo_sets=None):
    """MIPROv2 whose instruction candidates are filtered for readability and extended with
    ``candidates``, and whose demo-set candidates are ``demo_sets`` (when given)."""
    import dspy

    from route_switch.optimization.grounding import describes_tiers, strip_preamble

    class RoutingMIPROv2(dspy.MIPROv2):
        def _bootstrap_fewshot_examples(self, program, *args, **kwargs):
            if demo_sets is None:
                return super()._bootstrap_fewshot_examples(program, *args, **kwargs)
            return {i: [list(s) for s in demo_sets] for i, _ in enumerate(program.predictors())}

        def _propose_instructions(self, program, *args, **kwargs):
            proposed = super()._propose_instructions(program, *args, **kwargs)
            for i, texts in proposed.items():
                keep = [texts[0]]  # the starting instruction
                for text in texts[1:]:
                    text = strip_preamble(text)  # bigger proposers open with "here is a proposed instruction:"
                    ok, why = describes_tiers(text, tiers)
                    record.append({"origin": "proposed", "accepted": ok, "why_not": why,
                                   "text": text.strip()[:300]})
                    if ok and text not in keep:
                        keep.append(text)
                for text, origin in candidates:
                    record.append({"origin": origin, "accepted": True, "why_not": "", "text": text.strip()[:300]})
                    keep.append(text)
                proposed[i] = keep
            return proposed

    return RoutingMIPROv2


def demo_sets_from(ev: Evalset, clip, start_demos: list[dict], n_sets: int, per_tier: int = 1,
                   seed: int = 0, mined=()) -> list[list]:
    """Demo-set candidates for the search: the program's own demos; with ``mined`` policies, the most
    typical query of each (labelled with the policy's tier: what the group needs, not what one
    noisy query scored), alone and after the program's demos; then sets of ``per_tier`` labelled
    training queries per tier, up to ``n_sets`` sets in all.

    Clear cases only: a query no tier answered (its "needed tier" is tier 1 only because all
    failed) would teach the wrong thing. Equal numbers per tier stop the search from copying the
    split's majority tier (the failure of unbalanced demo sets: 92% tier-1 labels).
    """
    import dspy

    from route_switch.optimization.grounding import needed_tier_index

    need = needed_tier_index(ev.scores, ev.costs)
    clear = ev.scores.max(axis=1) >= 0.5
    rng = np.random.default_rng(seed)
    pools = [rng.permutation(np.flatnonzero(clear & (need == t))).tolist() for t in range(ev.scores.shape[1])]
    sets = [[dspy.Example(query=d["query"], tier=str(d["tier"])).with_inputs("query") for d in start_demos]]
    typical = [dspy.Example(query=clip(ev.prompts[m.examples[0]]), tier=str(m.policy.tier)).with_inputs("query")
               for m in list(mined)[:2 * ev.scores.shape[1]] if m.examples]
    if typical:
        sets += [typical, sets[0] + typical]
    while len(sets) < n_sets:
        rows = [pool.pop() for pool in pools for _ in range(per_tier) if pool]
        if not rows:
            break
        rows = rng.permutation(rows).tolist()  # tiers interleaved, not in label order
        sets.append(to_examples(ev.subset(rows), clip))
    return sets


def _splits(train: Evalset, test: Evalset, n_train: int | None, n_val: int, n_gate: int, n_test: int, seed: int):
    """Disjoint slices of the train split — MIPROv2's validation, the gate, and the rest (at most
    ``n_train``) for demos and mined policies — and a sample of the test split."""
    rng = np.random.default_rng(seed)
    idx = rng.permutation(len(train))
    n_val = min(n_val, len(train) // 2)
    n_gate = min(n_gate, (len(train) - n_val) // 2)  # a small split keeps half of the rest for demos
    val, gate, rest = idx[:n_val], idx[n_val:n_val + n_gate], idx[n_val + n_gate:]
    rest = rest[:n_train] if n_train else rest
    return (*(train.subset(np.sort(p)) for p in (rest, val, gate)),
            test.subset(np.sort(rng.permutation(len(test))[:n_test])))


def _per_query(votes, ev: Evalset, lam: float, unit: float) -> list[float]:
    return [expected_objective(v, ev.scores[i], ev.costs[i], lam, unit) for i, v in enumerate(votes)]


def _shared_path(train: Evalset) -> tuple[bool, str]:
    from route_switch.core.paths import data_dir

    src = Path(train.source)
    in_shared = str(src.resolve()).startswith(str(data_dir().resolve()))
    return in_shared, (str(src.resolve().relative_to(data_dir().resolve())) if in_shared else src.name)


def optimize(train: Evalset, test: Evalset, start: RoutingProgram, *, lam: float | None = None,
             lm_cfg: dict | None = None, name: str = "default", out_root: str | Path = "optimized",
             evalset_name: str = "", n_train: int | None = None, n_val: int = 60, n_gate: int = 120, n_test: int = 150,
             num_candidates: int = 4, num_trials: int = 8, seed: int = 0, cache_dir: str | Path | None = None,
             data_demos: bool = True, demo_pool: list[dict] | None = None, mine: bool = True, fused: bool = True,
             prompt_lm_cfg: dict | None = None, start_origin: str = "start", confidence: float = 0.9,
             min_gain: float = 0.0, grounded: bool = True, progress: bool = True,
             optimizer: str = "mipro") -> OptimizeResult:
    """Search instruction × demos from ``start`` and write ``out_root/name`` (see module docstring).

    ``lam``: the cost weight (None: break-even λ of ``train``). Disjoint slices of ``train``:
    ``n_val`` (MIPROv2's validation), ``n_gate`` (the gate: the winner is kept only when the one-sided
    paired-bootstrap lower bound of its gain over ``start`` exceeds ``min_gain`` at
    ``confidence``) and the rest, at most ``n_train`` (None: all), where demo candidates and mined
    policy lines come from. ``data_demos``: demos drawn from the evalset (ids recorded); ``demo_pool``:
    demos people wrote instead. ``mine``: add instruction candidates made of mined policy lines.
    ``fused``: gate and report the program as ``route()`` runs it, fused with an estimator fitted on
    the rest (:mod:`route_switch.optimization.deployed`); the LLM-alone figures are recorded beside.
    ``prompt_lm_cfg``: a (usually stronger) LM that writes proposals; by default the router LM.
    ``optimizer="gepa"`` runs ``dspy.GEPA`` (instruction only) on the same slices and gate.
    """
    import time

    import dspy
    from tqdm import tqdm

    from route_switch.llm.artifacts import instruction_sha256, save_artifact
    from route_switch.optimization.deployed import FusedScorer
    from route_switch.optimization.grounding import grounded_instruction
    from route_switch.llm.cache import cached_lm, lm_identity
    from route_switch.optimization.mining import mine_policies, policy_candidates
    from route_switch.core.paths import cache_dir as default_cache
    from route_switch.llm.router_llm import RouterLLM, build_module, program_from_module
    from route_switch.core.selection import break_even_lambda, cost_normaliser
    from route_switch.optimization.significance import paired_gain

    t0 = time.time()
    if optimizer not in ("mipro", "gepa"):
        raise ConfigError(f"unknown optimizer {optimizer!r}; expected mipro or gepa", field="optimizer")
    if len(train.models) != len(start.tiers):
        raise ConfigError(f"the evalset has {len(train.models)} tiers ({train.models}) but the program has "
                          f"{len(start.tiers)}", field="tiers")
    if optimizer == "gepa" and demo_pool:
        raise ConfigError("GEPA optimises the instruction only: drop the demo pool", field="optimizer")
    choose_demos = optimizer == "mipro" and (bool(demo_pool) or data_demos)
    # Tiers are the evalset's models in cost order.
    order = np.argsort(train.costs.mean(axis=0), kind="stable")
    train, test = (ev._replace(models=[ev.models[j] for j in order], scores=ev.scores[:, order],
                               costs=ev.costs[:, order]) for ev in (train, test))
    unit = cost_normaliser(train.costs.mean(axis=0))
    lam_source = "given" if lam is not None else "break-even"
    lam = float(lam) if lam is not None else round(break_even_lambda(train.scores, train.costs), 4)

    lm_cfg = dict(lm_cfg or {"kind": "local"})
    if not progress:
        logging.getLogger("dspy").setLevel(logging.WARNING)  # MIPROv2 logs every trial at INFO
    fit_ev, val_ev, gate_ev, test_ev = _splits(train, test, n_train, n_val, n_gate, n_test, seed)

    cdir = Path(cache_dir) if cache_dir else default_cache() / "lm"
    task_lm, task_cache = cached_lm(lm_cfg, start.labels, cdir)
    proposer_cfg = dict(prompt_lm_cfg or lm_cfg)
    prompt_lm, prompt_cache = cached_lm(proposer_cfg, start.labels, cdir,
                                        max_tokens=int(proposer_cfg.get("proposal_max_tokens", 300)))
    reader = RouterLLM(start, lm=task_lm)
    clip = reader.clip  # the optimiser sees queries exactly as the router reads them

    extra, mined = [], []
    if grounded:
        extra.append((grounded_instruction(train.prompts, train.scores, train.costs, start.tiers), "data-grounded"))
    if mine:
        mined = mine_policies(fit_ev.prompts, fit_ev.scores, fit_ev.costs, lam=lam, unit=unit, seed=seed,
                              tasks=fit_ev.queries["task"].tolist() if "task" in fit_ev.queries else None)
        extra += policy_candidates(start.instruction, mined)
    record: list[dict] = []
    # routing calls (cached or not): MIPROv2's minibatches and full evaluations, then validation
    # (fusion weights), the gate and the test sample for the start and the kept program
    mini = min(35, len(val_ev))
    bar = tqdm(total=num_trials * mini + (num_trials // 5 + 4) * len(val_ev) + 2 * (len(gate_ev) + len(test_ev)),
               desc=f"optimize {name}", disable=not progress, unit="eval", miniters=1)
    with dspy.context(lm=task_lm):
        student = build_module(start, task_lm)
        valset = to_examples(val_ev, clip)
        if optimizer == "gepa":  # the same slices and objective; GEPA's budget = MIPROv2's routing calls
            from route_switch.optimization.gepa import compile_gepa, feedback_metric

            reflect_on = fit_ev.subset(np.arange(min(150, len(fit_ev))))  # GEPA reads feedback on these
            compiled = compile_gepa(student, to_examples(reflect_on, clip), valset,
                                    metric=feedback_metric(start, lam, unit, bar), reflection_lm=prompt_lm, seed=seed,
                                    max_metric_calls=num_trials * len(val_ev) + len(val_ev), failure_score=-lam)
        else:
            trainset = to_examples(fit_ev, clip)
            demo_sets = None
            if demo_pool:
                trainset = [dspy.Example(query=d["query"], tier=str(d["tier"])).with_inputs("query") for d in demo_pool]
            elif data_demos:
                demo_sets = demo_sets_from(fit_ev, clip, start.demos, num_candidates + 2, seed=seed, mined=mined)
            compiled = _compile_mipro(extra, start.tiers, record, make_metric(lam, unit, bar), prompt_lm, task_lm,
                                      student, trainset, valset, num_candidates, num_trials, seed, choose_demos,
                                      demo_sets)
        best = program_from_module(compiled, start)
        if not choose_demos:
            best.demos = list(start.demos)  # instruction-only: keep the program's own demos
        # The gate: a changed program must beat the start on queries neither has been chosen on
        # (the LLM's own objective, a paired lower bound), and the router route() runs (fused with
        # an estimator, each program with its own weight) must not lose on them on average.
        scorer = FusedScorer(fit_ev, lam, unit) if fused and len(fit_ev) >= 20 else None
        votes = lambda prog, ev: program_votes(build_module(prog, task_lm), [clip(q) for q in ev.prompts], bar)  # noqa: E731
        fusions = {}
        if scorer is not None:  # each program's fusion weight, chosen on the validation slice (cached calls)
            fusions["start"] = scorer.fusion_for(val_ev, votes(start, val_ev))
        gate: dict = {"confidence": confidence, "min_gain": min_gain, "n": len(gate_ev)}
        changed = best.instruction.strip() != start.instruction.strip() or best.demos != start.demos
        if changed and len(gate_ev):
            v_old, v_new = votes(start, gate_ev), votes(best, gate_ev)
            llm_gain = paired_gain(_per_query(v_new, gate_ev, lam, unit), _per_query(v_old, gate_ev, lam, unit),
                                   confidence=confidence, seed=seed)
            gate.update(llm_gain)
            gate["passed"] = gate["lower"] > min_gain
            if scorer is not None:  # ... and the router route() runs must not get worse
                fusions["best"] = scorer.fusion_for(val_ev, votes(best, val_ev))
                gate["fused"] = paired_gain(scorer.per_query(fusions["best"], gate_ev, v_new),
                                            scorer.per_query(fusions["start"], gate_ev, v_old),
                                            confidence=confidence, seed=seed)
                gate["passed"] = gate["passed"] and gate["fused"]["mean_gain"] >= 0
        else:
            gate.update(passed=False, why="the search returned the start program" if not changed else "no gate slice")
        if not gate["passed"]:
            best = RoutingProgram(start.name, [dict(t) for t in start.tiers], start.instruction, list(start.demos))
            fusions["best"] = fusions.get("start")
        start_votes, opt_votes = votes(start, test_ev), votes(best, test_ev)
    bar.total = bar.n  # the estimate above is close, not exact: end at 100%
    bar.refresh()
    bar.close()
    origins = dict(extra)
    origin = start_origin if best.instruction.strip() == start.instruction.strip() else \
        origins.get(best.instruction, "proposed")
    in_shared, rel = _shared_path(train)
    demo_ids = _demo_ids(best.demos, fit_ev, clip) if choose_demos and not demo_pool else []
    metrics = {
        "lambda": lam, "lambda_source": lam_source, "objective": OBJECTIVE, "cost_normaliser": unit,
        "evalset": {"name": evalset_name, "path": rel, "relative_to": "data root" if in_shared else "",
                    "hash": train.content_hash(), "tiers": list(train.models), "n_train": len(fit_ev),
                    "n_val": len(val_ev), "n_gate": len(gate_ev), "n_test": len(test_ev)},
        "lm": lm_identity(lm_cfg), "prompt_lm": lm_identity(proposer_cfg), "dspy_version": dspy.__version__,
        "created": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "start_program": start.name, "instruction_origin": origin, "optimizer": optimizer,
        "instruction_sha256": instruction_sha256(best.instruction), "gate": gate,
        "candidates": record, "mined_policies": [m.to_dict() | {"example_ids": [str(fit_ev.queries["id"].iloc[r])
                                                                          for r in m.examples]} for m in mined],
        "demos": {"from": "pool" if demo_pool else ("evalset" if choose_demos and best.demos != start.demos
                                                    else "program"),
                  "ids": demo_ids, "evalset_hash": train.content_hash()},
        "num_candidates": num_candidates, "num_trials": num_trials, "seed": seed,
        "max_query_tokens": reader.max_query_tokens, "minutes": round((time.time() - t0) / 60, 2),
    }
    metrics.update(_held_out(start_votes, opt_votes, test_ev, lam, unit, confidence, seed))
    if scorer is not None:
        metrics.update(_held_out_fused(scorer, fusions, start_votes, opt_votes, test_ev, confidence, seed))
    best.name = name
    path = save_artifact(Path(out_root) / name, best, metrics)
    hits = sum(c.hits for c in (task_cache, prompt_cache) if c)
    misses = sum(c.misses for c in (task_cache, prompt_cache) if c)
    return OptimizeResult(path, dict(metrics, lm_calls=misses, cache_hits=hits), hits, misses)


def _compile_mipro(extra, tiers, record, metric, prompt_lm, task_lm, student, trainset, valset,
                   num_candidates, num_trials, seed, choose_demos, demo_sets):
    opt = _routing_mipro(extra, tiers, record, demo_sets)(
        metric=metric, prompt_model=prompt_lm, task_model=task_lm, auto=None, num_candidates=num_candidates,
        # >= 1 whenever demos are chosen from a pool: MIPROv2 draws a bootstrap size in [1, max];
        # pool examples score 0, so none is ever bootstrapped from them
        max_bootstrapped_demos=1 if choose_demos else 0, max_labeled_demos=4 if choose_demos else 0,
        num_threads=1, seed=seed, verbose=False)
    return opt.compile(student, trainset=trainset, valset=valset, num_trials=num_trials,
                       minibatch=len(valset) > 35, minibatch_size=min(35, len(valset)),
                       program_aware_proposer=False, data_aware_proposer=False, fewshot_aware_proposer=False)


def _demo_ids(demos: list[dict], ev: Evalset, clip) -> list[str]:
    """Evalset ids of the demos (matched on the query as the router reads it)."""
    by_text = {clip(p): str(i) for p, i in zip(ev.prompts, ev.queries["id"])}
    return [by_text[d["query"]] for d in demos if d["query"] in by_text]


def _held_out_fused(scorer, fusions: dict, start_votes, opt_votes, ev: Evalset, confidence: float, seed: int) -> dict:
    """The fused router's held-out AIQ for the start and the kept program, the estimator's, and the paired gain."""
    from route_switch.optimization.significance import paired_gain

    a, b = scorer.aiq(fusions["start"], ev, start_votes), scorer.aiq(fusions["best"], ev, opt_votes)
    return {"start_fused_aiq": a["fused_aiq"], "optimized_fused_aiq": b["fused_aiq"],
            "estimator_aiq": a["estimator_aiq"], "start_fusion_w": a["fusion_w"], "optimized_fusion_w": b["fusion_w"],
            "held_out_fused_gain": paired_gain(scorer.per_query(fusions["best"], ev, opt_votes),
                                               scorer.per_query(fusions["start"], ev, start_votes),
                                               confidence=confidence, seed=seed)}


def _held_out(start_votes, opt_votes, ev: Evalset, lam: float, unit: float, confidence: float, seed: int) -> dict:
    """``start_*`` / ``optimized_*`` figures on the test sample and the paired gain between them."""
    from route_switch.optimization.significance import paired_gain

    a, b = outcomes(start_votes, ev, lam, unit), outcomes(opt_votes, ev, lam, unit)
    out = {}
    for key in ("objective", "label_objective", "quality", "cost_share", "tier_shares", "invalid", "llm_aiq"):
        out[f"start_{key}"], out[f"optimized_{key}"] = a[key], b[key]
    out["line_aiq"] = b["line_aiq"]
    out["held_out_gain"] = paired_gain(_per_query(opt_votes, ev, lam, unit), _per_query(start_votes, ev, lam, unit),
                                       confidence=confidence, seed=seed)
    return out
