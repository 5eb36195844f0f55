"""Router-LLM path on shared data: quality/cost of LLM-only, estimator-only and hybrids, plus latency.

    python benchmarks/llm_router.py --evalset zeroeval-3tier --n 150 [--program optimized/NAME] [--lm-kind local]

Routes ``n`` held-out test queries of a 3-tier evalset with the router LLM (disk-cached, so a
re-run is instant), with the estimator (τ calibrated on the train split for 95% quality), and
with hybrids of the two; prints JSON. Latency percentiles are of uncached calls of this run.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np

from route_switch.artifacts import load_program
from route_switch.fitting import fit
from route_switch.optimize import cached_lm, objective
from route_switch.paths import cache_dir
from route_switch.program import RouterLLM
from route_switch.selection import outcome, select_tau
from route_switch.spec import load_spec


def summarise(choice, test, lam):
    c, q = outcome(np.asarray(choice), test.scores, test.costs)
    top = test.costs[:, -1].mean()
    obj = np.mean([objective(int(k), test.scores[i], test.costs[i], lam) for i, k in enumerate(choice)])
    return {"quality": q, "cost_share": c / top, "objective": float(obj),
            "tier_shares": np.bincount(np.asarray(choice), minlength=test.scores.shape[1]).tolist()}


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--evalset", default="zeroeval-3tier")
    ap.add_argument("--program", default="programs/default.yaml")
    ap.add_argument("--n", type=int, default=150)
    ap.add_argument("--lam", type=float, default=0.5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--lm-kind", default="local")
    args = ap.parse_args(argv)

    spec = load_spec(args.evalset)
    train, test = spec.train_test()
    test = test.subset(np.sort(np.random.default_rng(args.seed).permutation(len(test))[: args.n]))
    program = load_program(args.program)
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        cfg = fit(train, tmp, tiers=spec.tiers, target_quality=0.95)
        from route_switch.estimator import QualityEstimator

        est = QualityEstimator.load(tmp)
        pred = est.predict(test.prompts)
        est_choice = select_tau(pred, est.unit_cost_, cfg.tau)

    lm, cache = cached_lm({"kind": args.lm_kind}, program.labels, cache_dir() / "lm")
    llm = RouterLLM(program, lm=lm)
    llm_choice, lat, failures = [], [], 0
    for q in test.prompts:
        misses = cache.misses if cache else 0
        t = time.perf_counter()
        try:
            idx, _ = llm.predict(q, timeout_s=30)
        except Exception:
            idx, failures = None, failures + 1
        dt = (time.perf_counter() - t) * 1000
        if cache is None or cache.misses > misses:
            lat.append(dt)
        llm_choice.append(idx)
    llm_ok = [k if k is not None else int(e) for k, e in zip(llm_choice, est_choice)]  # product: fallback to estimator
    res = {
        "evalset": spec.name, "n": len(test), "program": args.program, "lambda": args.lam, "tau": cfg.tau,
        "llm_failures": failures,
        "llm_latency_ms": {"p50": statistics.median(lat), "p99": float(np.percentile(lat, 99)), "n_uncached": len(lat)} if lat else None,
        "routers": {
            "llm (estimator fallback)": summarise(llm_ok, test, args.lam),
            "estimator": summarise(est_choice, test, args.lam),
            "hybrid max(llm, estimator)": summarise(np.maximum(llm_ok, est_choice), test, args.lam),
            "hybrid min(llm, estimator)": summarise(np.minimum(llm_ok, est_choice), test, args.lam),
            "all top tier": summarise(np.full(len(test), test.scores.shape[1] - 1), test, args.lam),
            "all tier 1": summarise(np.zeros(len(test), int), test, args.lam),
        },
        "agreement_llm_estimator": float(np.mean(np.asarray(llm_ok) == est_choice)),
    }
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
