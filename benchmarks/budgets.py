"""Overhead of budget accounting per proxied request: ``Budgets.plan`` + ``Budgets.charge``.

    python benchmarks/budgets.py [--n 5000] [--keys 100]

Runs plan + charge for ``n`` requests spread over ``keys`` API keys (each with a key budget and a
shared tag budget) against the JSON spend store, once writing the state file on every charge
(``flush_s: 0``, the default: nothing is lost on kill -9) and once at most every second
(``flush_s: 1``). Reports the median and p99 microseconds per request and the state file size. Prints JSON.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def run(n: int, keys: int, flush_s: float, folder: Path) -> dict:
    from route_switch.server.budgets import Budgets, JsonSpendStore

    state = folder / f"state-{flush_s}.json"
    b = Budgets(keys={"default": {"limit_usd": 1e9, "period": "month", "near": 0.8, "policy": "cap", "cap_tier": 1}},
                tags={"team": {"limit_usd": 1e9, "period": "day", "near": 0.8, "policy": "refuse", "cap_tier": 1}},
                store=JsonSpendStore(state, flush_s))
    times = []
    for i in range(n):
        t0 = time.perf_counter()
        plan = b.plan(f"key{i % keys:04d}", "team")
        b.charge(plan, 1e-4)
        times.append((time.perf_counter() - t0) * 1e6)
    b.close()
    times.sort()
    return {"flush_s": flush_s, "p50_us": round(times[len(times) // 2], 1), "p99_us": round(times[int(len(times) * 0.99)], 1),
            "state_bytes": state.stat().st_size}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=5000)
    ap.add_argument("--keys", type=int, default=100)
    a = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as d:
        res = [run(a.n, a.keys, f, Path(d)) for f in (0.0, 1.0)]
    print(json.dumps({"n": a.n, "keys": a.keys, "load_avg": os.getloadavg()[0], "results": res}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
