"""route() latency and batched throughput by prompt length, this checkout against an earlier revision.

    python benchmarks/long_prompts.py [--spec zeroeval-26] [--lengths 300,2000,20000] [--baseline-rev c0cdb6b]
                                      [--out runs/long_prompts.json]

Both versions fit the estimator on the same train split, in their own process, then route the
same prompts (test prompts joined with blank lines and cut to each length). The two versions
run one after the other (the load average at start and end is recorded); the JSON reports
wall-clock and CPU-time medians and the new/old ratios. The baseline revision is exported with
``git archive`` into a temporary directory.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

WORKER = r"""
import json, sys, time
import numpy as np
from route_switch.core.spec import load_spec
from route_switch.core.estimator import QualityEstimator
from route_switch.routing.controller import Router
spec, lengths, n = sys.argv[1], [int(x) for x in sys.argv[2].split(",")], int(sys.argv[3])
train, test = load_spec(spec).train_test()
est = QualityEstimator().fit(train.prompts, train.scores, train.models, train.costs)
router = Router(estimator=est, cache_size=0)
rng = np.random.default_rng(0)
out = {}
for L in lengths:
    qs = []
    for _ in range(n):
        parts, size = [], 0
        while size < L:
            p = test.prompts[int(rng.integers(len(test.prompts)))]
            parts.append(p); size += len(p) + 2
        qs.append("\n\n".join(parts)[:L])
    for q in qs[:20]:
        router.route(q)
    wall, cpu = [], []
    for q in qs:
        t, c = time.perf_counter(), time.process_time()
        router.route(q)
        wall.append((time.perf_counter() - t) * 1000); cpu.append((time.process_time() - c) * 1000)
    t, c, k = time.perf_counter(), time.process_time(), 0
    for _ in range(3):
        for s in range(0, len(qs), 256):
            k += len(router.route_batch(qs[s:s + 256]))
    out[str(L)] = {"route_p50_ms": float(np.median(wall)), "route_cpu_p50_ms": float(np.median(cpu)),
                   "routes_per_s": k / (time.perf_counter() - t), "routes_per_cpu_s": k / (time.process_time() - c)}
print(json.dumps(out))
"""


def run(src: Path, spec: str, lengths: str, n: int) -> dict:
    from route_switch.core.paths import data_dir

    env = dict(os.environ, PYTHONPATH=str(src), ROUTE_SWITCH_DATA=str(data_dir().resolve()))
    out = subprocess.run([sys.executable, "-c", WORKER, spec, lengths, str(n)], capture_output=True, text=True,
                         env=env, cwd=str(src))
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-2000:])
    return json.loads(out.stdout)


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--spec", default="zeroeval-26")
    ap.add_argument("--lengths", default="300,2000,20000")
    ap.add_argument("--baseline-rev", default="c0cdb6b")
    ap.add_argument("--n", type=int, default=512)
    ap.add_argument("--out", default="runs/long_prompts.json")
    args = ap.parse_args(argv)
    res = {"spec": args.spec, "baseline_rev": args.baseline_rev, "load_average_start": list(os.getloadavg())}
    with tempfile.TemporaryDirectory() as tmp:
        old = Path(tmp)
        archive = subprocess.run(["git", "archive", args.baseline_rev, "route_switch", "evalsets"], cwd=ROOT,
                                 capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(old)], input=archive, check=True)
        res["new"] = run(ROOT, args.spec, args.lengths, args.n)
        res["old"] = run(old, args.spec, args.lengths, args.n)
    res["ratio_new_over_old"] = {L: {k: res["new"][L][k] / res["old"][L][k] for k in res["new"][L]} for L in res["new"]}
    res["load_average_end"] = list(os.getloadavg())
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=1) + "\n", encoding="utf-8")
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
