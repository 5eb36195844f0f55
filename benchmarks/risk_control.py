"""Does the learn-then-test guarantee hold? Violation rate over many random splits (JSON output).

    python benchmarks/risk_control.py [--specs dcrouter-9,zeroeval-26] [--splits 20]
                                      [--max-quality-loss 0.02] [--confidence 0.9] [--out runs/risk.json]

Per split (seed s: a random 70/30 train/test split): ``route_switch.core.risk.risk_report`` fits the
estimator on 70% of train, certifies the anchored rule's τ on the other 30% (learn then test),
and routes the test split. A split *violates* the guarantee when the test quality is more than
ε below the test's best single model. The guarantee allows a violation rate of δ = 1 − confidence;
the test split is finite, so part of the measured rate is the test set's own sampling noise.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

from route_switch.core.risk import risk_report
from route_switch.core.seeds import describe
from route_switch.core.spec import load_spec


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--specs", default="dcrouter-9,zeroeval-26")
    ap.add_argument("--splits", type=int, default=20)
    ap.add_argument("--max-quality-loss", type=float, default=0.02)
    ap.add_argument("--confidence", type=float, default=0.9)
    ap.add_argument("--method", default="wsr", choices=["wsr", "hoeffding"])
    ap.add_argument("--out", default="runs/risk_control.json")
    args = ap.parse_args(argv)
    eps, delta = args.max_quality_loss, 1 - args.confidence
    out = {"max_quality_loss": eps, "confidence": args.confidence, "method": args.method, "splits": args.splits,
           "load_average_start": list(os.getloadavg()), "specs": {}}
    for name in args.specs.split(","):
        spec = load_spec(name)
        ev = spec.load()
        rows = []
        for s in range(args.splits):
            t = time.time()
            train, test = ev.split(spec.test_size, s)
            r = risk_report(train, test, eps, delta, seed=s, method=args.method)
            r["seed"], r["seconds"] = s, round(time.time() - t, 1)
            rows.append(r)
            print(json.dumps({"spec": name, **{k: v for k, v in r.items()}}), flush=True)
        v = np.array([r["violated"] for r in rows], float)
        out["specs"][name] = {
            "violation_rate": float(v.mean()), "violations": int(v.sum()),
            "violation_rate_vs_anchor": float(np.mean([r["violated_vs_anchor"] for r in rows])),
            "certified_share": float(np.mean([r["certified"] for r in rows])),
            "quality_loss": describe([r["quality_loss"] for r in rows]),
            "cost_rel_best": describe([r["cost_rel_best"] for r in rows]),
            "tau": describe([r["tau"] for r in rows]), "per_split": rows}
    out["load_average_end"] = list(os.getloadavg())
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")
    print(json.dumps({k: {kk: vv for kk, vv in v.items() if kk != "per_split"} for k, v in out["specs"].items()},
                     indent=1))


if __name__ == "__main__":
    main()
