"""Concurrent ``route()`` load: T threads x N calls with a fitted router; errors, latency, RSS over time.

    python benchmarks/route_load.py [--threads 8] [--calls 10000] [--router DIR | --evalset dcrouter-3tier]

Every call routes a distinct query (a held-out prompt plus a counter), so the decision cache keeps
filling and evicting: RSS at start / middle / end shows whether memory stays flat. Prints JSON.
"""
from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import fitted_router_dir, percentile, rss_mb  # noqa: E402


def run(router, queries: list[str], threads: int = 8, calls: int = 10_000) -> dict:
    """Route ``threads x calls`` distinct queries concurrently; return the figures as a dict."""
    from route_switch.routing.controller import route

    done = [0] * threads
    errors, internal, paths = Counter(), [0], Counter()
    lat = [np.zeros(calls) for _ in range(threads)]  # preallocated: the benchmark's own memory stays flat
    lock = threading.Lock()

    def worker(t: int):
        local_paths = Counter()
        for i in range(calls):
            q = f"{queries[(t * calls + i) % len(queries)]} #{t}-{i}"
            t0 = time.perf_counter()
            try:
                d = route(q, router=router)
                local_paths[d.path] += 1
                if d.path == "default" and d.reason.startswith("internal error"):
                    internal[0] += 1
            except Exception as e:  # must never happen
                with lock:
                    errors[type(e).__name__] += 1
            lat[t][i] = time.perf_counter() - t0
            done[t] = i + 1
        with lock:
            paths.update(local_paths)

    route("warm-up query", router=router)
    total = threads * calls
    rss = {"start": round(rss_mb(), 1)}
    ths = [threading.Thread(target=worker, args=(t,)) for t in range(threads)]
    t0 = time.perf_counter()
    for th in ths:
        th.start()
    samples = []
    while any(th.is_alive() for th in ths):
        time.sleep(0.25)
        samples.append(rss_mb())
        if "middle" not in rss and sum(done) >= total // 2:
            rss["middle"] = round(samples[-1], 1)
    for th in ths:
        th.join()
    wall = time.perf_counter() - t0
    rss.update(end=round(rss_mb(), 1), max=round(max(samples + [rss_mb()]), 1))
    rss.setdefault("middle", rss["end"])
    all_lat = np.concatenate(lat).tolist()
    return {"threads": threads, "calls_per_thread": calls, "total_calls": total, "completed": sum(done),
            "errors": sum(errors.values()), "error_types": dict(errors), "internal_errors": internal[0],
            "paths": dict(paths), "wall_s": round(wall, 2), "calls_per_s": round(total / wall, 1),
            "latency_ms": {"p50": round(percentile(all_lat, 50) * 1000, 3), "p99": round(percentile(all_lat, 99) * 1000, 3),
                           "max": round(max(all_lat) * 1000, 3)},
            "rss_mb": rss, "rss_growth_mid_to_end_mb": round(rss["end"] - rss["middle"], 1)}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument("--calls", type=int, default=10_000, help="calls per thread")
    ap.add_argument("--router", help="a fitted router directory (default: fit one)")
    ap.add_argument("--evalset", help="fit on this evalset spec's train split (default: the synthetic set)")
    a = ap.parse_args(argv)
    from route_switch.routing.controller import Router

    d, queries = fitted_router_dir(a.evalset)
    router = Router.from_config(a.router or d)
    out = run(router, queries, a.threads, a.calls) | {"router": str(a.router or d), "n_base_queries": len(queries),
                                                      "cache_size": router._cache_size}
    print(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()
