"""Load on the routing proxy over loopback: N concurrent httpx clients for a fixed duration.

    python benchmarks/load_server.py [--duration 60] [--clients 16] [--router DIR] [--scenarios route,chat]

Starts, as subprocesses, a fast fake upstream (a real HTTP server answering at once) and the proxy
(``route-switch serve``) whose tiers all point at it; then runs each scenario for
``--duration`` seconds: ``route`` = ``POST /v1/route``, ``chat`` = ``POST /v1/chat/completions``
forwarded upstream. Each request routes a distinct query (no cache hits). Reports p50/p99 latency,
throughput, errors and the proxy's RSS as JSON. ``--url URL --key KEY`` targets a running proxy instead.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, fitted_router_dir, free_port, percentile, rss_mb, wait_http  # noqa: E402




async def _scenario(url: str, key: str, kind: str, clients: int, duration: float, queries: list[str]) -> dict:
    import httpx

    lat, status, errors = [], Counter(), Counter()
    n = [0]
    stop = time.perf_counter() + duration
    headers = {"Authorization": f"Bearer {key}"}

    async def client_loop(c: httpx.AsyncClient, cid: int):
        while time.perf_counter() < stop:
            i = n[0]
            n[0] += 1
            q = f"{queries[i % len(queries)]} #{cid}-{i}"
            if kind == "route":
                path, body = "/v1/route", {"query": q}
            else:
                path, body = "/v1/chat/completions", {"model": "router", "messages": [{"role": "user", "content": q}]}
            t0 = time.perf_counter()
            try:
                r = await c.post(url + path, json=body, headers=headers)
                status[r.status_code] += 1
                if r.status_code == 200 and kind == "chat" and "route_switch" not in r.json():
                    errors["no route_switch in body"] += 1
            except httpx.HTTPError as e:
                errors[type(e).__name__] += 1
            lat.append(time.perf_counter() - t0)

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(limits=limits, timeout=30, trust_env=False) as c:
        t0 = time.perf_counter()
        await asyncio.gather(*(client_loop(c, i) for i in range(clients)))
        wall = time.perf_counter() - t0
    non200 = sum(v for k, v in status.items() if k != 200)
    return {"requests": len(lat), "wall_s": round(wall, 2), "throughput_rps": round(len(lat) / wall, 1),
            "latency_ms": {"p50": round(percentile(lat, 50) * 1000, 2), "p99": round(percentile(lat, 99) * 1000, 2),
                           "max": round(max(lat) * 1000, 2)},
            "status": {str(k): v for k, v in sorted(status.items())}, "errors": non200 + sum(errors.values()),
            "error_types": dict(errors)}


def _router_for(upstream: str, router_dir: str | None, work: Path) -> Path:
    """A copy of the router config whose tiers are all served by ``upstream``."""
    from route_switch.routing.config import dump_config, load_config

    if router_dir is None:
        router_dir, _ = fitted_router_dir(None)
    cfg = load_config(router_dir)
    for t in cfg.tiers:
        t.api_base = upstream
    dump_config(cfg, work / "router.yaml")
    return work


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=60.0, help="seconds per scenario")
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--scenarios", default="route,chat")
    ap.add_argument("--router", help="router directory (default: fit one on the synthetic set)")
    ap.add_argument("--url", help="load a running proxy instead (its tiers must answer)")
    ap.add_argument("--key", help="API key for --url")
    a = ap.parse_args(argv)

    _, queries = fitted_router_dir(None)
    procs, out = [], {"clients": a.clients, "duration_s": a.duration}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            url, key, proxy = a.url, a.key, None
            if url is None:
                up_port, port, key = free_port(), free_port(), secrets.token_hex(16)
                up = subprocess.Popen([sys.executable, "-m", "route_switch.testing.upstreams", "fake",
                                       "--port", str(up_port)], stdout=subprocess.DEVNULL)
                procs.append(up)
                wait_http(f"http://127.0.0.1:{up_port}/v1/models", up)
                rdir = _router_for(f"http://127.0.0.1:{up_port}/v1", a.router, Path(tmp))
                log = open(Path(tmp) / "access.log", "w")
                proxy = subprocess.Popen([sys.executable, "-m", "route_switch.cli", "serve", "--router", str(rdir),
                                          "--port", str(port), "--rate-limit", "0", "--log-level", "warning"],
                                         env=os.environ | {"ROUTE_SWITCH_API_KEYS": key}, stderr=log, cwd=ROOT)
                procs.append(proxy)
                url = f"http://127.0.0.1:{port}"
                wait_http(f"{url}/health", proxy)
                out["proxy_rss_mb"] = {"start": round(rss_mb(proxy.pid), 1)}
            for kind in a.scenarios.split(","):
                out[kind] = asyncio.run(_scenario(url, key, kind, a.clients, a.duration, queries))
                if proxy is not None:
                    out["proxy_rss_mb"][f"after_{kind}"] = round(rss_mb(proxy.pid), 1)
            if proxy is not None:
                log.flush()
                out["access_log_lines"] = sum(1 for _ in open(Path(tmp) / "access.log"))
    finally:
        for p in reversed(procs):
            p.terminate()
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
    out["errors"] = sum(out[k]["errors"] for k in a.scenarios.split(","))
    print(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()
