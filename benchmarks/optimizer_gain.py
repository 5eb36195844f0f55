"""Does optimisation pay? An optimised program against its start, paired on the same held-out queries.

    python benchmarks/optimizer_gain.py --evalset dcrouter-3tier --start programs/default.yaml \
        --optimized optimized/dcrouter-3tier --seeds 0,1,2 --n 100 [--fit-n 100] [--lm-config F] [--out FILE]

For each split seed: the test split without the optimised program's demo queries (by evalset id,
recorded in its metrics.json, and by text), then ``evaluate_llm`` for both programs on the same
``n`` queries (the same fusion slice too). Reported per seed and as mean ± sd: LLM-alone AIQ and
fused AIQ of each program, their differences (optimised − start), and fused − estimator for the
optimised program. LLM calls are disk-cached, so a re-run is instant.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from llm_router import spread  # noqa: E402


def run(evalset: str, start: str, optimized: str, seeds: list[int], n: int, fit_n: int | None, lm_cfg: dict) -> dict:
    from route_switch.llm.artifacts import artifact_demo_ids, load_program
    from route_switch.optimization.evaluate_llm import drop_demo_queries, evaluate_llm
    from route_switch.routing.fusion import router_llm_for
    from route_switch.core.spec import load_spec

    opt_prog = load_program(optimized)
    ids = artifact_demo_ids(optimized)
    llms = {"start": router_llm_for(load_program(start), lm_cfg), "optimized": router_llm_for(opt_prog, lm_cfg)}
    rows = []
    for seed in seeds:
        spec = load_spec(evalset)
        spec.seed = seed
        train, test = spec.train_test()
        test, dropped = drop_demo_queries(test, opt_prog, ids, llms["optimized"].clip)
        row = {"seed": seed, "dropped_demo_queries": dropped}
        for name, prog in (("start", start), ("optimized", optimized)):
            res = evaluate_llm(train, test, prog, lm_cfg=lm_cfg, n=n, fit_n=fit_n, router_llm=llms[name],
                               progress=sys.stderr.isatty())
            r = res["routers"]
            row[name] = {"llm_aiq": r["llm"]["aiq"], "fused_aiq": r["route-switch+llm"]["aiq"],
                         "estimator_aiq": r["route-switch@llm"]["aiq"], "fusion_w": r["route-switch+llm"]["fusion"]["w"],
                         "llm_tier_shares": r["llm"]["label"]["tier_shares"], "n": res["llm_eval"]["n"]}
        row["llm_gain"] = row["optimized"]["llm_aiq"] - row["start"]["llm_aiq"]
        row["fused_gain"] = row["optimized"]["fused_aiq"] - row["start"]["fused_aiq"]
        row["fused_minus_estimator"] = row["optimized"]["fused_aiq"] - row["optimized"]["estimator_aiq"]
        rows.append(row)
        print(json.dumps({"evalset": evalset, **row}), file=sys.stderr)
    summary = {k: spread([r[k] for r in rows]) for k in ("llm_gain", "fused_gain", "fused_minus_estimator")}
    for name in ("start", "optimized"):
        for k in ("llm_aiq", "fused_aiq", "estimator_aiq"):
            summary[f"{name}.{k}"] = spread([r[name][k] for r in rows])
    summary["every_seed_positive"] = {k: all(r[k] > 0 for r in rows) for k in ("llm_gain", "fused_gain")}
    return {"evalset": evalset, "start": start, "optimized": optimized, "seeds": seeds, "n": n,
            "summary": summary, "per_seed": rows}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--evalset", required=True)
    ap.add_argument("--start", default="programs/default.yaml")
    ap.add_argument("--optimized", required=True)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--fit-n", type=int, default=None)
    ap.add_argument("--lm", default="local", choices=["local", "fake"])
    ap.add_argument("--lm-config", help="YAML router LM config (e.g. {kind: local, n_threads: 1} on a busy machine)")
    ap.add_argument("--out", help="also write the JSON here")
    a = ap.parse_args(argv)
    from route_switch.core.files import read_yaml

    lm_cfg = read_yaml(a.lm_config) if a.lm_config else {"kind": a.lm}
    out = run(a.evalset, a.start, a.optimized, [int(s) for s in a.seeds.split(",")], a.n, a.fit_n, lm_cfg)
    text = json.dumps(out, indent=1)
    print(text)
    if a.out:
        Path(a.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
