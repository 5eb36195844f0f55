"""What enforced policies add to one route() call: the matcher's cost per query, JSON output.

    python benchmarks/policy_latency.py [--policies 1,5,20] [--queries 200] [--gate-rate 0.3]

For each number N of policies (the topics and examples of benchmarks/policy_edits*.yaml, repeated
when N is larger), fits a matcher with the shared data's training queries as background, then
times ``match(query)`` (what route() pays for policies) per query, with the gate (static
word-piece vectors first, MiniLM only when some policy's gate opens) and without it (MiniLM on
every query). Queries: the edits' controls (queries no policy covers: the common case) and the
edits' own queries (which policies do cover). Reports p50/p95/mean in ms, the share of queries
the gate let through to MiniLM, and the machine's load average (timings on a loaded machine
are slower).
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

from route_switch.core.files import read_yaml  # noqa: E402
from route_switch.llm.policies import Policy  # noqa: E402
from route_switch.llm.policy_match import PolicyMatcher, training_queries  # noqa: E402


def _load():
    edits, controls = [], []
    for f in ("policy_edits.yaml", "policy_edits_heldout.yaml"):
        d = read_yaml(ROOT / "benchmarks" / f)
        edits += d["edits"]
        controls += d["controls"]
    return edits, controls


def _policies(edits, n):
    return [Policy(f'{e["topic"]}' + (f" #{i // len(edits)}" if i >= len(edits) else ""), int(e["tier"]),
                   (e["example"],)) for i, e in ((i, edits[i % len(edits)]) for i in range(n))]


def _time(m, queries) -> tuple[dict, float]:
    for q in queries[:10]:
        m.match(q)  # warm the ONNX session
    ms, opened = [], 0
    for q in queries:
        t0 = time.perf_counter()
        m.match(q)
        ms.append(1e3 * (time.perf_counter() - t0))
        if m.gate_threshold_ is not None:
            opened += bool((m._gate_scores([q])[0] >= m.gate_threshold_).any())
    p = lambda k: round(sorted(ms)[int(k * (len(ms) - 1))], 3)
    return {"p50": p(0.5), "p95": p(0.95), "mean": round(statistics.mean(ms), 3)}, round(100 * opened / len(queries), 1)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--policies", default="1,5,20", help="comma-separated numbers of policies")
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--gate-rate", type=float, default=0.3)
    args = ap.parse_args(argv)
    edits, controls = _load()
    in_topic = [q for e in edits for q in e["queries"]]
    sets = {"controls": (controls * (args.queries // len(controls) + 1))[:args.queries],
            "policy_queries": in_topic[::max(1, len(in_topic) // args.queries)][:args.queries]}
    bg, out = training_queries(), []
    for n in (int(x) for x in args.policies.split(",")):
        pols = _policies(edits, n)
        gated = PolicyMatcher(gate_rate=args.gate_rate).fit(pols, bg)
        plain = PolicyMatcher(gate_rate=None).fit(pols, bg)
        row = {"n_policies": n, "gate": gated.gate_}
        for name, qs in sets.items():
            ms, opened = _time(gated, qs)
            full = [q for q in dict.fromkeys(qs) if plain.match(q) is not None]
            row[name] = {"gated_ms": ms, "passed_gate_pct": opened, "ungated_ms": _time(plain, qs)[0],
                         "matches_kept_by_gate": f"{sum(gated.match(q) is not None for q in full)}/{len(full)}"}
        out.append(row)
    print(json.dumps({"queries_per_set": args.queries, "gate_rate": args.gate_rate, "results": out,
                      "load_avg": [round(x, 2) for x in os.getloadavg()]}, indent=2))


if __name__ == "__main__":
    main()
