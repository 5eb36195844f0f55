"""The router LLM measured against the estimator on the same queries, as cost–quality curves.

``evaluate_llm(train, test, program)`` routes ``n`` test queries with the router LLM and reports
three routers on exactly those queries, each with its τ and λ sweep, AIQ and cost ratios:

* ``llm`` — the LLM alone: its tier distribution read as quality (:func:`fusion.llm_quality`);
* ``route-switch+llm`` — the fused predictor (:class:`fusion.TierFusion`), fitted on ``fit_n``
  training queries that the estimator did not see;
* ``route-switch@llm`` — the estimator alone (fitted on all of ``train``).

Which queries: the ``n`` (and ``fit_n``) with the lowest hash of their text. That is a uniform
sample, and it overlaps between split seeds, so the LLM calls of one seed are cache hits for the
next. Every LLM call goes through the disk cache.
"""
from __future__ import annotations

import time

import numpy as np

from route_switch.core.errors import ConfigError
from route_switch.core.evalset import Evalset
from route_switch.core.evaluate import _points, _summary, curve_context, oracle_points
from route_switch.routing.fusion import TierFusion, fusion_slice, hash_sample, llm_quality, llm_votes, router_llm_for
from route_switch.core.selection import LAMBDA_GRID, TAU_GRID, outcome


def _curves(pred: np.ndarray, unit_cost: np.ndarray, sub: Evalset, ctx: dict) -> dict:
    pts = _points(pred, unit_cost, sub, "tau", TAU_GRID)
    lpts = _points(pred, unit_cost, sub, "lambda", LAMBDA_GRID)
    return {"points": pts, **_summary(pts, ctx), "lambda": {"points": lpts, **_summary(lpts, ctx)}}


def drop_demo_queries(test: Evalset, program, ids: set, clip) -> tuple[Evalset, int]:
    """``test`` without the queries that are the program's demos (by evalset id, or by the text the
    router reads), and how many were dropped: a demo must never be scored as a test query."""
    texts = {d["query"] for d in program.demos}
    keep = [i for i, (qid, p) in enumerate(zip(test.queries["id"].astype(str), test.prompts))
            if qid not in ids and clip(p) not in texts]
    return (test if len(keep) == len(test) else test.subset(keep)), len(test) - len(keep)


def evaluate_llm(train: Evalset, test: Evalset, program, *, lm_cfg: dict | None = None, n: int = 150,
                 fit_n: int | None = None, estimator_params: dict | None = None, router_llm=None,
                 progress: bool = True) -> dict:
    """Routers ``llm``, ``route-switch+llm`` and ``route-switch@llm`` on the same ``n`` test queries.

    ``program``: a RoutingProgram (or a path: ``programs/*.yaml`` or ``optimized/<name>``) with as
    many tiers as the evalset has models; tiers map to models in order of mean cost.
    """
    from route_switch.llm.artifacts import artifact_demo_ids, load_program
    from route_switch.core.estimator import QualityEstimator

    t0 = time.time()
    demo_ids: set = set()
    if not hasattr(program, "tiers"):
        demo_ids = artifact_demo_ids(program)
        program = load_program(program)
    m = len(train.models)
    if len(program.tiers) != m:
        raise ConfigError(f"the program has {len(program.tiers)} tiers but the evalset has {m} models",
                          field="tiers")
    unit_cost = train.costs.mean(axis=0)
    order = np.argsort(unit_cost, kind="stable")  # order[k] = model column of tier k+1
    fit_n = n if fit_n is None else fit_n

    router_llm = router_llm or router_llm_for(program, lm_cfg)
    counter = getattr(router_llm.lm, "engine", None)
    misses0 = getattr(counter, "misses", 0)

    test, n_demo = drop_demo_queries(test, program, demo_ids, router_llm.clip)
    params = estimator_params or {}
    e_fit, p_fit, s_fit, c_fit, failed_fit = fusion_slice(train, router_llm, fit_n, params, progress)
    fusion = TierFusion().fit(e_fit, p_fit, s_fit, c_fit)

    sub = test.subset(hash_sample(test.prompts, n))
    est_full = QualityEstimator(**params).fit(train.prompts, train.scores, train.models, train.costs)
    probs_test, ok_test = llm_votes(router_llm, sub.prompts, "router LLM (test)", progress)

    # Below, arrays are in the evalset's model order; tier k of the LLM is model order[k].
    def to_models(tier_array):
        out = np.empty_like(tier_array)
        out[:, order] = tier_array
        return out

    est_test = est_full.predict(sub.prompts)
    fused = est_test.copy()  # an invalid answer falls back to the estimator, as route() does
    fused[ok_test] = to_models(fusion.predict(est_test[:, order][ok_test], probs_test[ok_test]))
    llm_only = est_test.copy()
    llm_only[ok_test] = to_models(llm_quality(probs_test[ok_test]))

    ctx = curve_context(sub)
    top = int(np.argmax(unit_cost))
    line = _summary([{"cost": float(sub.costs[:, top].mean()), "quality": float(sub.scores[:, top].mean())}], ctx)
    argmax = np.where(ok_test, order[np.nan_to_num(probs_test, nan=0).argmax(axis=1)], top)
    c, q = outcome(argmax, sub.scores, sub.costs)
    routers = {
        "llm": {**_curves(llm_only, unit_cost, sub, ctx),
                "label": {"cost": c, "quality": q,
                          "tier_shares": [float(np.mean(argmax[ok_test] == order[k])) for k in range(m)]}},
        "route-switch+llm": {**_curves(fused, unit_cost, sub, ctx), "fusion": fusion.to_dict()},
        "route-switch@llm": _curves(est_test, unit_cost, sub, ctx),
    }
    singles = [{"name": name, "cost": float(c), "quality": float(q)}
               for name, c, q in zip(sub.models, sub.costs.mean(axis=0), sub.scores.mean(axis=0))]
    orc = oracle_points(sub)[0]
    return {"routers": routers, "llm_eval": {
        "singles": singles, "oracle": {"cost": orc["cost"], "quality": orc["quality"]},
        "program": program.name, "n": len(sub), "dropped_demo_queries": n_demo, "fit_n": len(s_fit) + failed_fit,
        "invalid_test": int((~ok_test).sum()), "invalid_fit": failed_fit, "line_aiq": line["aiq"],
        "distribution": "label" if np.all(np.nan_to_num(probs_test).max(axis=1) == 1) else "probabilities",
        "lm_calls": getattr(counter, "misses", 0) - misses0, "seconds": round(time.time() - t0, 1)}}
