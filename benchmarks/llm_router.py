"""The router LLM against the estimator on the same queries, over several split seeds.

    python benchmarks/llm_router.py --evalsets dcrouter-3tier,zeroeval-3tier --seeds 0,1,2 \
        --program programs/default.yaml --n 150 [--fit-n 150] [--lm-config lm.yaml] [--max-query-tokens 32] [--out FILE]

For every evalset and split seed this runs ``evaluate_llm`` (the routers ``llm``, ``route-switch+llm``
and ``route-switch@llm`` on the same ``n`` test queries) and prints JSON: per router the mean,
standard deviation, min and max over seeds of AIQ and the cost ratios at 95% / 100% of the best
model's quality, and the paired difference fused − estimator per seed. LLM calls are disk-cached.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys

KEYS = ("aiq", "cost_ratio_at_95", "cost_ratio_at_100")


def spread(values: list) -> dict:
    """mean, sd, min, max of the non-missing values (None where a ratio was never reached), and how many."""
    v = [x for x in values if x is not None]
    if not v:
        return {"mean": None, "sd": None, "min": None, "max": None, "n": 0}
    return {"mean": round(statistics.fmean(v), 4), "sd": round(statistics.stdev(v), 4) if len(v) > 1 else 0.0,
            "min": round(min(v), 4), "max": round(max(v), 4), "n": len(v)}


def run(evalset: str, seeds: list[int], program: str, n: int, fit_n: int | None, lm_cfg: dict,
        max_query_tokens: int | None = None) -> dict:
    from route_switch.llm.artifacts import load_program
    from route_switch.optimization.evaluate_llm import evaluate_llm
    from route_switch.routing.fusion import router_llm_for
    from route_switch.core.spec import load_spec

    router_llm = router_llm_for(load_program(program), lm_cfg)
    if max_query_tokens:
        router_llm.max_query_tokens = max_query_tokens

    per_seed = []
    for seed in seeds:
        spec = load_spec(evalset)
        spec.seed = seed
        train, test = spec.train_test()
        res = evaluate_llm(train, test, program, lm_cfg=lm_cfg, n=n, fit_n=fit_n, progress=sys.stderr.isatty(),
                           router_llm=router_llm)
        row = {"seed": seed, **res["llm_eval"]}
        for name, r in res["routers"].items():
            row[name] = {k: r[k] for k in KEYS} | {"lambda_aiq": r["lambda"]["aiq"]}
        row["llm_label"] = res["routers"]["llm"]["label"]
        per_seed.append(row)
        print(json.dumps({"evalset": evalset, **{k: v for k, v in row.items()}}), file=sys.stderr)
    out = {"evalset": evalset, "seeds": seeds, "n": n, "fit_n": fit_n or n, "program": program, "routers": {}}
    for name in ("llm", "route-switch+llm", "route-switch@llm"):
        out["routers"][name] = {k: spread([r[name][k] for r in per_seed]) for k in KEYS + ("lambda_aiq",)}
    out["fused_minus_estimator"] = {
        k: spread([None if r["route-switch+llm"][k] is None or r["route-switch@llm"][k] is None
                   else r["route-switch+llm"][k] - r["route-switch@llm"][k] for r in per_seed]) for k in KEYS}
    out["llm_minus_line_aiq"] = spread([r["llm"]["aiq"] - r["line_aiq"] for r in per_seed])
    out["per_seed"] = per_seed
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--evalsets", default="dcrouter-3tier,zeroeval-3tier")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--program", default="programs/default.yaml")
    ap.add_argument("--n", type=int, default=150)
    ap.add_argument("--fit-n", type=int, default=None)
    ap.add_argument("--lm", default="local", choices=["local", "fake"])
    ap.add_argument("--lm-config", help="YAML router LM config (e.g. a llama.cpp server with a bigger GGUF)")
    ap.add_argument("--max-query-tokens", type=int, help="the LLM's query token budget (default: the router's)")
    ap.add_argument("--out", help="also write the JSON here")
    args = ap.parse_args(argv)
    from route_switch.core.files import read_yaml

    lm_cfg = read_yaml(args.lm_config) if args.lm_config else {"kind": args.lm}
    seeds = [int(s) for s in args.seeds.split(",")]
    res = [run(e, seeds, args.program, args.n, args.fit_n, lm_cfg, args.max_query_tokens)
           for e in args.evalsets.split(",")]
    text = json.dumps(res, indent=1)
    if args.out:
        from route_switch.core.files import atomic_write_text

        atomic_write_text(args.out, text + "\n")
    print(text)


if __name__ == "__main__":
    main()
