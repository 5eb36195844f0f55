"""Route-switch's added time per request in the in-process ``openai`` drop-in (and ``route()`` alone).

    python benchmarks/integrations_overhead.py [--n 300] [--cache-off]

Sends ``n`` chat completions to one FAKE upstream on loopback (``route_switch.testing``) with the
plain ``openai`` client, and the same with ``route_switch.OpenAI`` whose tiers all point at that
upstream, interleaved, one at a time (the upstream with TCP_NODELAY). Reports the median and p90 milliseconds of each, the
difference of the medians (what routing adds on top of the SDK and the HTTP round trip), and the
median ``route()`` latency of the decisions. Queries cycle through the synthetic set's test split;
``--cache-off`` turns the decision cache off, so every request is scored. Prints JSON.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--cache-off", action="store_true", help="decision cache off: every request is scored")
    a = ap.parse_args(argv)

    import openai

    import route_switch
    from route_switch.routing.controller import Router
    from route_switch.testing.upstreams import FakeUpstream, QuietHandler
    from route_switch.core.tiers import Tier

    # The stdlib server writes headers and body in two sends: with Nagle on, the body waits for the
    # client's delayed ACK (~40 ms on Linux), which would swamp what is measured here.
    QuietHandler.disable_nagle_algorithm = True

    from _common import fitted_router_dir

    router_dir, queries = fitted_router_dir(None)
    base = Router.from_config(router_dir)
    with FakeUpstream(text="ok") as up:
        tiers = [Tier(name=t.name, model=t.model, api_base=up.url) for t in base.tiers]
        router = Router(tiers=tiers, estimator=base.estimator, tau=base.tau, cache_size=0 if a.cache_off else 10_000)
        plain = openai.OpenAI(base_url=up.url, api_key="none", max_retries=0)
        routed = route_switch.OpenAI(router=router)
        plain_ms, routed_ms, route_ms = [], [], []
        for i in range(a.n + 20):  # the first 20 of each warm up connections and caches
            msgs = [{"role": "user", "content": queries[i % len(queries)]}]
            t0 = time.perf_counter()
            plain.chat.completions.create(model="small", messages=msgs)
            t1 = time.perf_counter()
            out = routed.chat.completions.create(model="router", messages=msgs)
            t2 = time.perf_counter()
            if i >= 20:
                plain_ms.append((t1 - t0) * 1000)
                routed_ms.append((t2 - t1) * 1000)
                route_ms.append(out.route_switch_decision.latency_ms)
    res = {"n": a.n, "decision_cache": not a.cache_off,
           "plain_openai_ms": {"p50": round(statistics.median(plain_ms), 3), "p90": round(pct(plain_ms, 0.9), 3)},
           "route_switch_openai_ms": {"p50": round(statistics.median(routed_ms), 3), "p90": round(pct(routed_ms, 0.9), 3)},
           "added_ms_p50": round(statistics.median(routed_ms) - statistics.median(plain_ms), 3),
           "route_ms_p50": round(statistics.median(route_ms), 3),
           "load_average": round(os.getloadavg()[0], 2)}
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
