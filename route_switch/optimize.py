"""MIPROv2 optimisation of a routing program against ``quality − λ·cost``.

For a query routed to tier ``t`` the metric is ``score[t] − λ · cost[t] / cost[top tier]`` with
the evalset's per-query judge or correctness scores and costs; an answer that is not a tier
scores ``−λ`` (as if the top tier were paid for nothing). The evalset's train split feeds
MIPROv2 (train + validation), its test split gives the held-out objective of the starting
(cold-start or hand-edited) program and of the optimised one.

Every LM call goes through a disk cache keyed by the request, so a re-run with unchanged inputs
makes zero model calls, and an interrupted run resumes by replaying what it had already asked.
Demos: by default MIPROv2 proposes instructions only and the program keeps its own hand-written
demos. ``demo_pool`` (e.g. ``programs/demo_pool.yaml``, examples the authors wrote) lets it also
choose which demos to show, while the objective is still measured on the evalset.
``data_demos=True`` lets it bootstrap demos from the evalset itself — refused when the evalset
lives in the shared data directory, whose prompts must never end up in a committed artifact.
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

log = logging.getLogger("route_switch")


@dataclass
class OptimizeResult:
    artifact: Path
    metrics: dict
    cache_hits: int
    cache_misses: int


def objective(tier_index: int | None, scores: np.ndarray, costs: np.ndarray, lam: float) -> float:
    """``score[t] − λ·cost[t]/cost[top]`` for one query; ``−λ`` when the router gave no valid tier."""
    if tier_index is None:
        return -lam
    top = costs[-1] if costs[-1] > 0 else max(float(costs.max()), 1e-30)
    return float(scores[tier_index] - lam * costs[tier_index] / top)


def to_examples(ev: Evalset) -> list:
    import dspy

    return [dspy.Example(query=p, scores=ev.scores[i].tolist(), costs=ev.costs[i].tolist()).with_inputs("query")
            for i, p in enumerate(ev.prompts)]


def make_metric(program: RoutingProgram, lam: float, progress=None):
    labels = program.labels

    def metric(example, pred, trace=None):
        if example.get("scores") is None:  # a demo-pool example: nothing to score, never bootstrapped
            return 0.0
        tier = str(getattr(pred, "tier", "")).strip()
        idx = labels.index(tier) if tier in labels else None
        if progress is not None:
            progress.update(1)
        return objective(idx, np.asarray(example.scores), np.asarray(example.costs), lam)

    return metric


def score_program(module, program: RoutingProgram, ev: Evalset, lam: float, progress=None) -> dict:
    """Held-out objective, quality, normalised cost and tier shares of a program on ``ev``."""
    from .program import clip_query

    idx = []
    for q in ev.prompts:
        try:
            t = str(module(query=clip_query(q)).tier)
            idx.append(program.labels.index(t))
        except Exception:
            idx.append(None)
        if progress is not None:
            progress.update(1)
    top = np.where(ev.costs[:, -1] > 0, ev.costs[:, -1], 1e-30)
    obj = [objective(k, ev.scores[i], ev.costs[i], lam) for i, k in enumerate(idx)]
    valid = [(i, k) for i, k in enumerate(idx) if k is not None]
    quality = float(np.mean([ev.scores[i, k] for i, k in valid])) if valid else 0.0
    cost = float(np.mean([ev.costs[i, k] / top[i] for i, k in valid])) if valid else 1.0
    shares = [float(np.mean([k == t for k in idx])) for t in range(len(program.tiers))]
    return {"objective": float(np.mean(obj)), "quality": quality, "cost_share": cost,
            "tier_shares": shares, "invalid": int(sum(k is None for k in idx)), "n": len(idx)}


def _lm_identity(lm_cfg: dict) -> str:
    kind = lm_cfg.get("kind", "local")
    if kind == "local":
        from .llm.model_files import MODEL_SHA256

        return f"local:{lm_cfg.get('model_path') or MODEL_SHA256[:16]}"
    return f"{kind}:{lm_cfg.get('model')}@{lm_cfg.get('api_base', '')}:{lm_cfg.get('mode', '')}"


def cached_lm(lm_cfg: dict, labels, cache_dir: Path, max_tokens: int | None = None):
    """``make_lm(lm_cfg)`` with its engine wrapped by the disk cache."""
    import dspy

    from .llm.cache import CachedEngine
    from .llm.lm import make_lm

    cfg = dict(lm_cfg)
    if max_tokens:
        cfg["max_tokens"] = max_tokens
    lm = make_lm(cfg, labels=labels)
    engine = getattr(lm, "engine", None)
    if engine is None or isinstance(engine, str):
        log.warning("LM %s has no custom engine: its calls are not cached", lm.model)
        return lm, None
    cached = CachedEngine(engine, cache_dir, _lm_identity(lm_cfg))
    kwargs = {k: v for k, v in lm.kwargs.items() if k in ("temperature", "max_tokens")}
    return dspy.LM(lm.model, engine=cached, cache=False, num_retries=0, **kwargs), cached


def optimize(train: Evalset, test: Evalset, start: RoutingProgram, *, lam: float, lm_cfg: dict | None = None,
             name: str = "default", out_root: str | Path = "optimized", evalset_name: str = "",
             n_train: int = 150, n_val: int = 60, n_test: int = 150, num_candidates: int = 4, num_trials: int = 8,
             seed: int = 0, cache_dir: str | Path | None = None, data_demos: bool = False,
             demo_pool: list[dict] | None = None, prompt_lm_cfg: dict | None = None,
             progress: bool = True, optimizer: str = "mipro") -> OptimizeResult:
    """Run MIPROv2 from ``start`` and write ``out_root/name`` (see module docstring).

    ``optimizer="gepa"`` runs ``dspy.GEPA`` instead (:mod:`route_switch.gepa`, instruction only)
    on the same splits, objective and budget of routing calls.

    ``prompt_lm_cfg``: a (usually stronger) LM that writes the instruction proposals; by default
    the router LM proposes its own instructions.
    """
    import dspy
    from tqdm import tqdm

    from .artifacts import save_artifact
    from .paths import cache_dir as default_cache, data_dir
    from .program import build_module, program_from_module

    if optimizer not in ("mipro", "gepa"):
        raise ConfigError(f"unknown optimizer {optimizer!r}; expected mipro or gepa", field="optimizer")
    if len(train.models) != len(start.tiers):
        raise ConfigError(f"the evalset has {len(train.models)} tiers ({train.models}) but the program has "
                          f"{len(start.tiers)}", field="tiers")
    if data_demos and str(Path(train.source).resolve()).startswith(str(data_dir().resolve())):
        raise ConfigError("demos drawn from the shared data directory must not go into an artifact; "
                          "optimise instruction-only (the default) or use your own evalset", field="data_demos")
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

    bar = tqdm(total=2 * len(test_ev) + num_trials * len(val_ev) + len(val_ev), desc=f"optimize {name}",
               disable=not progress, unit="eval")
    with dspy.context(lm=task_lm):
        seed_module = build_module(start, task_lm)
        seed_scores = score_program(seed_module, start, test_ev, lam, bar)
        # Demo candidates come from the evalset (data_demos), the authors' pool, or nowhere.
        pool = [dspy.Example(query=d["query"], tier=str(d["tier"])).with_inputs("query") for d in demo_pool or []]
        trainset = to_examples(fit_ev) if data_demos or not pool else pool
        choose_demos = data_demos or bool(pool)
        student = build_module(start, task_lm)
        if optimizer == "gepa":  # the same splits and objective; GEPA's budget = MIPROv2's routing calls
            from .gepa import compile_gepa, feedback_metric

            if choose_demos:
                raise ConfigError("GEPA optimises the instruction only: drop the demo pool", field="optimizer")
            compiled = compile_gepa(student, to_examples(fit_ev), to_examples(val_ev),
                                    metric=feedback_metric(start, lam, bar), reflection_lm=prompt_lm, seed=seed,
                                    budget=num_trials * len(val_ev) + len(val_ev), failure_score=-lam)
        else:
            opt = dspy.MIPROv2(metric=make_metric(start, lam, bar), prompt_model=prompt_lm, task_model=task_lm,
                               auto=None, num_candidates=num_candidates,
                               # >= 1 whenever demos are chosen: MIPROv2 draws a random bootstrap size in [1, max];
                               # pool examples score 0, so none is ever bootstrapped from them
                               max_bootstrapped_demos=4 if data_demos else (1 if pool else 0),
                               max_labeled_demos=4 if choose_demos else 0, num_threads=1, seed=seed, verbose=False)
            compiled = opt.compile(student, trainset=trainset, valset=to_examples(val_ev), num_trials=num_trials,
                                   minibatch=len(val_ev) > 35, minibatch_size=min(35, len(val_ev)),
                                   program_aware_proposer=False, data_aware_proposer=False,
                                   fewshot_aware_proposer=choose_demos)
        best = program_from_module(compiled, start)
        if not choose_demos:
            best.demos = list(start.demos)  # instruction-only: keep the program's own demos
        best_module = build_module(best, task_lm)
        opt_scores = score_program(best_module, best, test_ev, lam, bar)
    bar.close()

    metrics = {
        "lambda": lam,
        "evalset": {"name": evalset_name, "path": train.source, "hash": train.content_hash(),
                    "tiers": list(train.models), "n_train": len(fit_ev), "n_val": len(val_ev), "n_test": len(test_ev)},
        "lm": _lm_identity(lm_cfg), "prompt_lm": _lm_identity(proposer_cfg), "dspy_version": dspy.__version__,
        "created": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "start_program": start.name, "demos_from": "evalset" if data_demos else ("pool" if pool else "program"),
        "num_candidates": num_candidates, "num_trials": num_trials, "seed": seed, "optimizer": optimizer,
        "seed_objective": seed_scores["objective"], "optimized_objective": opt_scores["objective"],
        "seed_quality": seed_scores["quality"], "optimized_quality": opt_scores["quality"],
        "seed_cost_share": seed_scores["cost_share"], "optimized_cost_share": opt_scores["cost_share"],
        "seed_tier_shares": seed_scores["tier_shares"], "optimized_tier_shares": opt_scores["tier_shares"],
        "seed_invalid": seed_scores["invalid"], "optimized_invalid": opt_scores["invalid"],
    }
    best.name = name
    path = save_artifact(Path(out_root) / name, best, metrics, module=best_module)
    hits = sum(c.hits for c in (task_cache, prompt_cache) if c)
    misses = sum(c.misses for c in (task_cache, prompt_cache) if c)
    metrics_out = dict(metrics, lm_calls=misses, cache_hits=hits)
    return OptimizeResult(path, metrics_out, hits, misses)
