"""Choose the cold-start program by measurement: how far above the tier-1/top line each variant routes.

    python benchmarks/cold_start.py --variants benchmarks/cold_start/*.yaml --n 100 [--split train]

For each program variant and 3-tier evalset, the router LLM routes ``n`` queries of the
*training* split (lowest-hash sample; disk-cached), so the choice of the default never looks at
the test queries that the figures of docs/results.md are measured on. Reported per variant: AIQ
of the LLM's distribution swept with τ, minus the AIQ of the straight line between all-tier-1 and all-top
(> 0: the program tells easy from hard better than chance), and minus the static rules' AIQ.
"""
from __future__ import annotations

import argparse
import json
import sys

import numpy as np


def main(argv=None):
    from route_switch.llm.artifacts import load_program
    from route_switch.core.evaluate import _points, _summary, curve_context
    from route_switch.routing.fusion import hash_sample
    from route_switch.llm.cache import cached_lm
    from route_switch.optimization.objective import outcomes, program_votes
    from route_switch.core.paths import cache_dir
    from route_switch.llm.router_llm import RouterLLM
    from route_switch.core.baselines import make_router
    from route_switch.core.selection import cost_normaliser
    from route_switch.core.spec import load_spec

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variants", nargs="+", required=True)
    ap.add_argument("--evalsets", default="dcrouter-3tier,zeroeval-3tier")
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--split", default="train", choices=["train", "test"])
    args = ap.parse_args(argv)

    rows = []
    for name in args.evalsets.split(","):
        spec = load_spec(name)
        train, test = spec.train_test()
        ev = train if args.split == "train" else test
        order = np.argsort(train.costs.mean(axis=0), kind="stable")
        ev = ev._replace(models=[ev.models[j] for j in order], scores=ev.scores[:, order], costs=ev.costs[:, order])
        sub = ev.subset(hash_sample(ev.prompts, args.n))
        ctx = curve_context(sub)
        static = make_router("static-rules").fit(train._replace(
            models=[train.models[j] for j in order], scores=train.scores[:, order], costs=train.costs[:, order]))
        spts = _points(static.score(sub.prompts), static.unit_cost_, sub, "tau", [0.0])
        static_aiq = _summary(spts, ctx)["aiq"]
        for path in args.variants:
            program = load_program(path)
            lm, _ = cached_lm({"kind": "local"}, program.labels, cache_dir() / "lm")
            router = RouterLLM(program, lm=lm)
            votes = program_votes(router.module, [router.clip(q) for q in sub.prompts])
            o = outcomes(votes, sub, 0.0, cost_normaliser(sub.costs.mean(axis=0)))
            row = {"evalset": name, "variant": path, "n": len(sub), "llm_aiq": round(o["llm_aiq"], 4),
                   "line_aiq": round(o["line_aiq"], 4), "static_rules_aiq": round(static_aiq, 4),
                   "above_line": round(o["llm_aiq"] - o["line_aiq"], 4),
                   "above_static": round(o["llm_aiq"] - static_aiq, 4), "label_tier_shares": o["tier_shares"],
                   "invalid": o["invalid"]}
            rows.append(row)
            print(json.dumps(row), file=sys.stderr)
    summary = {}
    for path in args.variants:
        mine = [r for r in rows if r["variant"] == path]
        summary[path] = {"mean_above_line": round(float(np.mean([r["above_line"] for r in mine])), 4),
                         "min_above_line": round(float(np.min([r["above_line"] for r in mine])), 4),
                         "mean_above_static": round(float(np.mean([r["above_static"] for r in mine])), 4)}
    print(json.dumps({"rows": rows, "summary": summary}, indent=1))


if __name__ == "__main__":
    main()
