"""What enforced policies add to one route() call: the matcher's cost per query, JSON output.

    python benchmarks/policy_latency.py [--policies 20] [--queries 200]

Fits a matcher on N policies (the topics and examples of benchmarks/policy_edits*.yaml, repeated
when N is larger) with the shared data's training queries as background, then times per query:
``embed`` (MiniLM on the query and its request part), ``score`` (N linear scores and thresholds on
those embeddings) and ``match`` (both, what route() pays). Queries are the edits' controls.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from route_switch.core.files import read_yaml
from route_switch.llm.policies import Policy  # noqa: E402
from route_switch.llm.policy_match import PolicyMatcher, training_queries  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--policies", type=int, default=20)
    ap.add_argument("--queries", type=int, default=200)
    args = ap.parse_args(argv)
    edits, controls = [], []
    for f in ("policy_edits.yaml", "policy_edits_heldout.yaml"):
        d = read_yaml(ROOT / "benchmarks" / f)
        edits += d["edits"]
        controls += d["controls"]
    pols = [Policy(f'{e["topic"]}' + (f" #{i // len(edits)}" if i >= len(edits) else ""), int(e["tier"]),
                   (e["example"],)) for i, e in ((i, edits[i % len(edits)]) for i in range(args.policies))]
    m = PolicyMatcher().fit(pols, training_queries())
    queries = (controls * (args.queries // len(controls) + 1))[:args.queries]
    for q in queries[:10]:
        m.match(q)  # warm the ONNX session
    emb, score, match = [], [], []
    for q in queries:
        t0 = time.perf_counter()
        v = m._views([q])
        t1 = time.perf_counter()
        s = (v @ m.coef_.T).max(0) + m.intercept_
        _ = (s >= m.threshold_).any()
        t2 = time.perf_counter()
        m.match(q)
        t3 = time.perf_counter()
        emb.append(1e3 * (t1 - t0))
        score.append(1e3 * (t2 - t1))
        match.append(1e3 * (t3 - t2))
    p = lambda xs, k: round(sorted(xs)[int(k * (len(xs) - 1))], 4)
    print(json.dumps({"n_policies": len(pols), "n_queries": len(queries),
                      "ms_per_query": {k: {"p50": p(v, 0.5), "p90": p(v, 0.9), "mean": round(statistics.mean(v), 4)}
                                       for k, v in (("embed", emb), ("score", score), ("match", match))},
                      "load_avg": [round(x, 2) for x in os.getloadavg()]}, indent=2))


if __name__ == "__main__":
    main()
