"""Routing quality of the estimator vs the plain TF-IDF + LR baseline over several random splits.

    python benchmarks/estimator_quality.py [--specs zeroeval-26,dcrouter-9,...] [--seeds 0,1,2,3,4]

For each evalset spec and split seed (70/30), fits both on train and reports on test: AIQ and
cost ratio at 95% / 100% of the best single model's quality (τ sweep). Prints JSON with
per-seed figures, their mean ± standard deviation (``spread``) and how often the estimator beats
the baseline; ``anchored`` is the estimator's anchored-rule sweep.
"""
from __future__ import annotations

import argparse
import json
import statistics

from route_switch.core.evaluate import evaluate
from route_switch.core.seeds import describe
from route_switch.core.spec import load_spec

KEYS = ("aiq", "cost_ratio_at_95", "cost_ratio_at_100")


def _mean(xs):
    xs = [x for x in xs if x is not None]
    return statistics.mean(xs) if xs else None


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--specs", default="zeroeval-26,dcrouter-9,zeroeval-3tier,dcrouter-3tier,routellm")
    ap.add_argument("--seeds", default="0,1,2,3,4")
    args = ap.parse_args(argv)
    out = {}
    for name in args.specs.split(","):
        spec = load_spec(name)
        ev = spec.load()
        runs = []
        for seed in map(int, args.seeds.split(",")):
            train, test = ev.split(spec.test_size, seed)
            res = evaluate(train, test, routers=("route-switch", "tfidf-lr"), seed=seed, operating_point=False)
            row = {"seed": seed, "best_single": res["best_single"]["name"]}
            for router in ("route-switch", "tfidf-lr"):
                row[router] = {k: res["routers"][router][k] for k in KEYS}
            row["anchored"] = {k: res["routers"]["route-switch"]["anchored"][k] for k in KEYS}
            runs.append(row)
        routers = ("route-switch", "tfidf-lr", "anchored")
        summary = {r: {k: _mean([x[r][k] for x in runs]) for k in KEYS} for r in routers}
        spread = {r: {k: describe([x[r][k] for x in runs]) for k in KEYS} for r in routers}
        wins = {
            "aiq": sum(x["route-switch"]["aiq"] > x["tfidf-lr"]["aiq"] for x in runs),
            "cost_ratio_at_95": sum((x["route-switch"]["cost_ratio_at_95"] or 9) < (x["tfidf-lr"]["cost_ratio_at_95"] or 9)
                                    for x in runs),
        }
        out[name] = {"n_queries": len(ev), "models": len(ev.models), "mean": summary, "spread": spread, "wins_of": len(runs),
                     "wins": wins, "runs": runs}
        print(json.dumps({name: {"mean": summary, "wins": wins, "of": len(runs)}}), flush=True)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
