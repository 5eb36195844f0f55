"""Latency of the router LLM path per query-token budget, and what the budget costs in routing quality.

    python benchmarks/llm_latency.py --evalsets zeroeval-3tier,dcrouter-3tier --budgets 32,64,96,128 --n 60 \
        [--program programs/default.yaml] [--threads 2]

The embedded model routes ``n`` test queries (lowest-hash sample) of each evalset with each
budget (queries longer than the budget are cut to their head and tail). Calls are timed without
the disk cache, after a warm-up that fills the prompt-prefix KV cache. Reported per budget:
p50 / p90 / p99 of ``RouterLLM.vote`` in ms, mean tokens evaluated per call, and the AIQ of the
LLM's distribution swept with τ on those queries (the quality the budget costs), with the
machine's load average at the start (other processes slow these figures down).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import numpy as np


def main(argv=None):
    from route_switch.llm.artifacts import load_program
    from route_switch.routing.fusion import hash_sample
    from route_switch.llm.lm import make_lm
    from route_switch.optimization.objective import outcomes
    from route_switch.llm.router_llm import RouterLLM
    from route_switch.core.selection import cost_normaliser
    from route_switch.core.spec import load_spec

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--evalsets", default="zeroeval-3tier,dcrouter-3tier")
    ap.add_argument("--budgets", default="32,64,96,128")
    ap.add_argument("--n", type=int, default=60)
    ap.add_argument("--program", default="programs/default.yaml")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)

    program = load_program(args.program)
    lm = make_lm({"kind": "local", "n_threads": args.threads}, labels=program.labels)
    out = {"program": args.program, "threads": args.threads, "load_avg_start": os.getloadavg()[0], "rows": []}
    for name in args.evalsets.split(","):
        spec = load_spec(name)
        train, test = spec.train_test()
        order = np.argsort(train.costs.mean(axis=0), kind="stable")
        test = test._replace(models=[test.models[j] for j in order], scores=test.scores[:, order],
                             costs=test.costs[:, order])
        sub = test.subset(hash_sample(test.prompts, args.n))
        for budget in [int(b) for b in args.budgets.split(",")]:
            router = RouterLLM(program, lm=lm, max_query_tokens=budget)
            router.warmup()
            ms, evaluated, votes = [], [], []
            for q in sub.prompts:
                t0 = time.perf_counter()
                try:
                    votes.append(list(router.vote(q).probs))
                except Exception:
                    votes.append(None)
                ms.append(1000 * (time.perf_counter() - t0))
                evaluated.append(lm.engine.last_stats.get("evaluated_tokens", 0))
            o = outcomes(votes, sub, 0.0, cost_normaliser(sub.costs.mean(axis=0)))
            q = np.percentile(ms, [50, 90, 99])
            row = {"evalset": name, "budget_tokens": budget, "n": len(ms), "p50_ms": round(q[0], 1),
                   "p90_ms": round(q[1], 1), "p99_ms": round(q[2], 1), "mean_ms": round(statistics.fmean(ms), 1),
                   "mean_evaluated_tokens": round(statistics.fmean(evaluated), 1), "llm_aiq": round(o["llm_aiq"], 4),
                   "line_aiq": round(o["line_aiq"], 4), "load_avg": round(os.getloadavg()[0], 2)}
            out["rows"].append(row)
            print(json.dumps(row), flush=True)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
