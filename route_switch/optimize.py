"""MIPROv2 optimisation of a routing program against ``quality − λ·cost``.

**Objective.** For a query with per-tier scores ``s`` and costs ``c``, a router LLM that answers
the tier distribution ``p`` earns ``Σ_t p(t) · (s[t] − λ · c[t] / C)``; the metric is its mean
over queries. ``C`` (:func:`~route_switch.selection.cost_unit`) is the most expensive tier's mean
cost per query on the training split — the same unit λ has in ``route()``. By default λ is the
*break-even* λ of the training split (:func:`~route_switch.selection.break_even_lambda`), where
all-tier-1 and all-top score the same: the objective is then the height above the straight line
between those two static routers, and "always the cheapest" cannot win it.

**Candidates.** MIPROv2 chooses among the starting instruction, the proposer LLM's proposals
that read as routing instructions (:func:`~route_switch.grounding.describes_tiers`; the others
are rejected before scoring), and an instruction written from the labelled training split
(:func:`~route_switch.grounding.grounded_instruction`). The winner is kept only if it beats the
starting instruction *with the same demos* on the validation slice by ``min_gain``; otherwise
the starting instruction stays. ``metrics.json`` records where the instruction came from.

**Data.** The evalset's train split feeds MIPROv2 (train + validation) and the grounded
instruction, its test split gives the held-out figures of the starting and the optimised
program. Every LM call goes through a disk cache keyed by the request, so a re-run with
unchanged inputs makes zero model calls, and an interrupted run resumes by replaying them.

**Demos.** By default MIPROv2 changes the instruction only and the program keeps its own demos.
``demo_pool`` (examples the authors wrote) lets it also choose demos. ``data_demos=True`` lets it
pick demos from the evalset itself — refused when the evalset lives in the shared data
directory, whose prompts must never end up in a committed artifact.
"""
from __future__ import annotations

import datetime as _dt
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import ConfigError
from .evalset import Evalset
from .program import RoutingProgram
from .tiers import to_tier

log = logging.getLogger("route_switch")

OBJECTIVE = "mean over queries of sum_t p(t) * (score[t] - lambda * cost[t] / C)"


@dataclass
class OptimizeResult:
    artifact: Path
    metrics: dict
    cache_hits: int
    cache_misses: int


def objective(tier_index: int | None, scores: np.ndarray, costs: np.ndarray, lam: float, unit: float) -> float:
    """``score[t] − λ·cost[t]/C`` for one query routed to tier ``t``; ``−λ`` when there was no valid tier."""
    if tier_index is None:
        return -lam
    return float(scores[tier_index] - lam * costs[tier_index] / unit)


def expected_objective(probs, scores: np.ndarray, costs: np.ndarray, lam: float, unit: float) -> float:
    """``Σ_t p(t)·(score[t] − λ·cost[t]/C)``: the objective of a tier distribution; ``−λ`` for none."""
    if probs is None:
        return -lam
    return float(np.dot(np.asarray(probs, float), scores - lam * costs / unit))


def outcomes(votes: list, ev: Evalset, lam: float, unit: float) -> dict:
    """Held-out figures of per-query tier distributions (None = no valid answer) on ``ev``.

    ``objective``: the expected objective (see module docstring); ``label_*``: of the most likely
    tier; ``llm_aiq`` and ``line_aiq``: AIQ of the distribution's τ sweep and of the tier-1/top line.
    """
    from .evaluate import _points, _summary, curve_context
    from .fusion import llm_quality
    from .selection import TAU_GRID

    n_tiers = ev.scores.shape[1]
    idx = [None if v is None else int(np.argmax(v)) for v in votes]
    valid = [(i, k) for i, k in enumerate(idx) if k is not None]
    top = n_tiers - 1
    probs = np.array([v if v is not None else np.eye(n_tiers)[top] for v in votes], float)
    ctx = curve_context(ev)
    line = _summary([{"cost": float(ev.costs[:, top].mean()), "quality": float(ev.scores[:, top].mean())}], ctx)
    curve = _summary(_points(llm_quality(probs), ev.costs.mean(axis=0), ev, "tau", TAU_GRID), ctx)
    return {
        "objective": float(np.mean([expected_objective(v, ev.scores[i], ev.costs[i], lam, unit)
                                    for i, v in enumerate(votes)])),
        "label_objective": float(np.mean([objective(k, ev.scores[i], ev.costs[i], lam, unit) for i, k in enumerate(idx)])),
        "quality": float(np.mean([ev.scores[i, k] for i, k in valid])) if valid else 0.0,
        "cost_share": float(np.mean([ev.costs[i, k] for i, k in valid]) / unit) if valid else 1.0,
        "tier_shares": [float(np.mean([k == t for k in idx])) for t in range(n_tiers)],
        "invalid": int(sum(k is None for k in idx)), "n": len(idx),
        "llm_aiq": curve["aiq"], "line_aiq": line["aiq"]}


def program_votes(module, queries: list[str], progress=None) -> list:
    """Tier distribution of a routing module for each query (None where it failed)."""
    out = []
    for q in queries:
        try:
            out.append(list(module(query=q).probs))
        except Exception:
            out.append(None)
        if progress is not None:
            progress.update(1)
    return out


def to_examples(ev: Evalset, clip) -> list:
    """DSPy examples: the query as the router reads it, its scores and costs, and the needed tier as label."""
    import dspy

    from .grounding import needed_tier

    need = [to_tier(k) for k in needed_tier(ev.scores, ev.costs)]
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


def _routing_mipro(candidates: list[tuple[str, str]], tiers: list[dict], record: list):
    """MIPROv2 whose instruction candidates are filtered for readability and extended with ``candidates``."""
    import dspy

    from .grounding import describes_tiers

    class RoutingMIPROv2(dspy.MIPROv2):
        def _propose_instructions(self, program, *args, **kwargs):
            proposed = super()._propose_instructions(program, *args, **kwargs)
            for i, texts in proposed.items():
                keep = [texts[0]]  # the starting instruction
                for text in texts[1:]:
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


def optimize(train: Evalset, test: Evalset, start: RoutingProgram, *, lam: float | None = None,
             lm_cfg: dict | None = None, name: str = "default", out_root: str | Path = "optimized",
             evalset_name: str = "", n_train: int = 150, n_val: int = 60, n_test: int = 150, num_candidates: int = 4,
             num_trials: int = 8, seed: int = 0, cache_dir: str | Path | None = None, data_demos: bool = False,
             demo_pool: list[dict] | None = None, prompt_lm_cfg: dict | None = None, start_origin: str = "start",
             min_gain: float = 0.005, grounded: bool = True, progress: bool = True,
             optimizer: str = "mipro") -> OptimizeResult:
    """Run MIPROv2 from ``start`` and write ``out_root/name`` (see module docstring).

    ``lam``: the cost weight (None: break-even λ of ``train``). ``prompt_lm_cfg``: a (usually
    stronger) LM that writes instruction proposals; by default the router LM proposes its own.
    ``start_origin``: where the starting instruction came from (recorded if it is kept).
    ``optimizer="gepa"`` runs ``dspy.GEPA`` instead (:mod:`route_switch.gepa`, instruction only)
    on the same splits, objective, budget of routing calls and readability gate.
    """
    import dspy
    from tqdm import tqdm

    from .artifacts import instruction_sha256, save_artifact
    from .grounding import grounded_instruction
    from .llm.cache import cached_lm, lm_identity
    from .paths import cache_dir as default_cache, data_dir
    from .program import RouterLLM, build_module, program_from_module
    from .selection import break_even_lambda, cost_unit

    if optimizer not in ("mipro", "gepa"):
        raise ConfigError(f"unknown optimizer {optimizer!r}; expected mipro or gepa", field="optimizer")
    if len(train.models) != len(start.tiers):
        raise ConfigError(f"the evalset has {len(train.models)} tiers ({train.models}) but the program has "
                          f"{len(start.tiers)}", field="tiers")
    in_shared = str(Path(train.source).resolve()).startswith(str(data_dir().resolve()))
    if data_demos and in_shared:
        raise ConfigError("demos drawn from the shared data directory must not go into an artifact; "
                          "optimise instruction-only (the default) or use your own evalset", field="data_demos")
    # Tiers are the evalset's models in cost order.
    order = np.argsort(train.costs.mean(axis=0), kind="stable")
    train, test = (ev._replace(models=[ev.models[j] for j in order], scores=ev.scores[:, order],
                               costs=ev.costs[:, order]) for ev in (train, test))
    unit = cost_unit(train.costs.mean(axis=0))
    lam_source = "given" if lam is not None else "break-even"
    lam = float(lam) if lam is not None else round(break_even_lambda(train.scores, train.costs), 4)

    lm_cfg = dict(lm_cfg or {"kind": "local"})
    if not progress:
        logging.getLogger("dspy").setLevel(logging.WARNING)  # MIPROv2 logs every trial at INFO
    rng = np.random.default_rng(seed)
    tr_idx = rng.permutation(len(train))[: n_train + n_val]
    fit_ev, val_ev = train.subset(tr_idx[:n_train]), train.subset(tr_idx[n_train:])
    test_ev = test.subset(np.sort(rng.permutation(len(test))[:n_test]))

    cdir = Path(cache_dir) if cache_dir else default_cache() / "lm"
    task_lm, task_cache = cached_lm(lm_cfg, start.labels, cdir)
    proposer_cfg = dict(prompt_lm_cfg or lm_cfg)
    prompt_lm, prompt_cache = cached_lm(proposer_cfg, start.labels, cdir,
                                        max_tokens=int(proposer_cfg.get("proposal_max_tokens", 300)))
    reader = RouterLLM(start, lm=task_lm)
    clip = reader.clip  # the optimiser sees queries exactly as the router reads them
    test_q, val_q = [clip(q) for q in test_ev.prompts], [clip(q) for q in val_ev.prompts]

    extra = []
    if grounded:
        extra.append((grounded_instruction(train.prompts, train.scores, train.costs, start.tiers), "data-grounded"))
    record: list[dict] = []
    bar = tqdm(total=2 * len(test_ev) + (num_trials + 3) * len(val_ev), desc=f"optimize {name}",
               disable=not progress, unit="eval")
    with dspy.context(lm=task_lm):
        seed_votes = program_votes(build_module(start, task_lm), test_q, bar)
        pool = [dspy.Example(query=d["query"], tier=str(d["tier"])).with_inputs("query") for d in demo_pool or []]
        trainset = to_examples(fit_ev, clip) if data_demos or not pool else pool
        choose_demos = data_demos or bool(pool)
        student = build_module(start, task_lm)
        if optimizer == "gepa":  # the same splits and objective; GEPA's budget = MIPROv2's routing calls
            from .gepa import compile_gepa, feedback_metric

            if choose_demos:
                raise ConfigError("GEPA optimises the instruction only: drop the demo pool", field="optimizer")
            compiled = compile_gepa(student, to_examples(fit_ev, clip), to_examples(val_ev, clip),
                                    metric=feedback_metric(start, lam, unit, bar), reflection_lm=prompt_lm, seed=seed,
                                    budget=num_trials * len(val_ev) + len(val_ev), failure_score=-lam)
        else:
            opt = _routing_mipro(extra, start.tiers, record)(
                metric=make_metric(lam, unit, bar), prompt_model=prompt_lm, task_model=task_lm, auto=None,
                num_candidates=num_candidates,
                # >= 1 whenever demos are chosen: MIPROv2 draws a random bootstrap size in [1, max];
                # pool examples score 0, so none is ever bootstrapped from them
                max_bootstrapped_demos=1 if choose_demos else 0, max_labeled_demos=4 if choose_demos else 0,
                num_threads=1, seed=seed, verbose=False)
            compiled = opt.compile(student, trainset=trainset, valset=to_examples(val_ev, clip),
                                   num_trials=num_trials, minibatch=len(val_ev) > 35,
                                   minibatch_size=min(35, len(val_ev)), program_aware_proposer=False,
                                   data_aware_proposer=False, fewshot_aware_proposer=choose_demos)
        best = program_from_module(compiled, start)
        if not choose_demos:
            best.demos = list(start.demos)  # instruction-only: keep the program's own demos
        # Readability gate: a new instruction must beat the starting one with the same demos.
        origins = {text: origin for text, origin in extra}
        origin, gate = start_origin, {"min_gain": min_gain}
        if best.instruction.strip() != start.instruction.strip():
            same_demos = RoutingProgram(start.name, start.tiers, start.instruction, best.demos)
            v_new = outcomes(program_votes(build_module(best, task_lm), val_q, bar), val_ev, lam, unit)["objective"]
            v_old = outcomes(program_votes(build_module(same_demos, task_lm), val_q, bar), val_ev, lam, unit)["objective"]
            gate.update(val_objective_new=v_new, val_objective_start=v_old, kept=v_new >= v_old + min_gain)
            if gate["kept"]:
                origin = origins.get(best.instruction, "proposed")
            else:
                best.instruction = start.instruction
        opt_votes = program_votes(build_module(best, task_lm), test_q, bar)
    bar.close()
    seed_scores, opt_scores = outcomes(seed_votes, test_ev, lam, unit), outcomes(opt_votes, test_ev, lam, unit)

    src = Path(train.source)
    rel = str(src.resolve().relative_to(data_dir().resolve())) if in_shared else src.name
    metrics = {
        "lambda": lam, "lambda_source": lam_source, "objective": OBJECTIVE, "cost_unit": unit,
        "evalset": {"name": evalset_name, "path": rel, "relative_to": "data root" if in_shared else "",
                    "hash": train.content_hash(), "tiers": list(train.models), "n_train": len(fit_ev),
                    "n_val": len(val_ev), "n_test": len(test_ev)},
        "lm": lm_identity(lm_cfg), "prompt_lm": lm_identity(proposer_cfg), "dspy_version": dspy.__version__,
        "created": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "start_program": start.name, "instruction_origin": origin, "optimizer": optimizer,
        "instruction_sha256": instruction_sha256(best.instruction), "readability_gate": gate,
        "candidates": record, "demos_from": "evalset" if data_demos else ("pool" if pool else "program"),
        "num_candidates": num_candidates, "num_trials": num_trials, "seed": seed,
        "max_query_tokens": reader.max_query_tokens,
    }
    for key in ("objective", "label_objective", "quality", "cost_share", "tier_shares", "invalid", "llm_aiq"):
        metrics[f"seed_{key}"], metrics[f"optimized_{key}"] = seed_scores[key], opt_scores[key]
    metrics["line_aiq"] = opt_scores["line_aiq"]
    best.name = name
    path = save_artifact(Path(out_root) / name, best, metrics)
    hits = sum(c.hits for c in (task_cache, prompt_cache) if c)
    misses = sum(c.misses for c in (task_cache, prompt_cache) if c)
    return OptimizeResult(path, dict(metrics, lm_calls=misses, cache_hits=hits), hits, misses)
