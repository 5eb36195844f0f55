"""Several workers and hot reload, measured on loopback; JSON on stdout.

    python benchmarks/replicas.py [--workers 4] [--rate 120] [--duration 30] [--reloads 10]

1. **Rate limit across workers.** ``route-switch serve --workers N --rate-limit R`` with one key,
   once with ``state: {redis_url_env: ...}`` (a real ``redis-server`` started here) and once
   without. Clients send more than the limit for ``--duration`` seconds (a burst, then a steady
   overload); a single token bucket allows ``R + R/60 · elapsed`` requests. Reported: allowed
   requests and their ratio to that bound (1.00 = exact; ≤ 1.05 is the promise).
2. **Hot reload under load.** The same N-worker proxy (file watch every ``--watch-s``), clients
   sending chat completions to a FAKE upstream, and ``--reloads`` promotions (the weekly job's
   folder swap of the estimator plus a new τ in ``router.yaml``). Reported: failed requests, and
   seconds from each promotion until the first and until every worker answered with the new
   ``X-Route-Switch-Version``.
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
import threading
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, fitted_router_dir, free_port, percentile, wait_http  # noqa: E402

from route_switch.testing.processes import stop  # noqa: E402



def _serve(router_dir: Path, port: int, workers: int, rate: int, env: dict, watch_s: float = 2.0) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "route_switch.cli", "serve", "--router", str(router_dir), "--port",
                             str(port), "--workers", str(workers), "--rate-limit", str(rate), "--watch-s", str(watch_s),
                             "--log-level", "warning"], env=os.environ | env, cwd=ROOT, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _stop(proc: subprocess.Popen):
    stop(proc, 30, group=True)  # the supervisor stops its workers; SIGKILL the group if that takes too long


async def _overload(url: str, key: str, duration: float, burst: int, steady_rps: float) -> tuple[Counter, float]:
    """``burst`` requests at once, then ``steady_rps`` per second until ``duration`` s have passed."""
    import httpx

    codes: Counter = Counter()
    async with httpx.AsyncClient(trust_env=False, timeout=30, limits=httpx.Limits(max_connections=64)) as c:
        async def one(i):
            r = await c.post(f"{url}/v1/route", json={"query": f"What is {i} + {i}?"},
                             headers={"Authorization": f"Bearer {key}"})
            codes[r.status_code] += 1
        t0 = time.monotonic()
        await asyncio.gather(*(one(i) for i in range(burst)))
        tasks, i = [], burst
        while time.monotonic() - t0 < duration:
            tasks.append(asyncio.create_task(one(i)))
            i += 1
            await asyncio.sleep(1 / steady_rps)
        await asyncio.gather(*tasks)
        return codes, time.monotonic() - t0


def rate_limit_run(router_dir: Path, a, redis_url: str | None, tmp: Path) -> dict:
    from route_switch.routing.config import dump_config, load_config

    cfg = load_config(router_dir)
    cfg.state = {"redis_url_env": "BENCH_REDIS_URL", "prefix": f"bench-{secrets.token_hex(4)}"} if redis_url else None
    for t in cfg.tiers:  # serve needs an endpoint; this run only asks /v1/route, so nothing listens there
        t.api_base = "http://127.0.0.1:9/v1"
    d = tmp / ("shared" if redis_url else "local")
    d.mkdir()
    dump_config(cfg, d / "router.yaml")
    port, key = free_port(), secrets.token_hex(8)
    proc = _serve(d, port, a.workers, a.rate, {"ROUTE_SWITCH_API_KEYS": key, "BENCH_REDIS_URL": redis_url or ""})
    try:
        wait_http(f"http://127.0.0.1:{port}/health", proc, 180)
        time.sleep(2)  # every worker up
        codes, elapsed = asyncio.run(_overload(f"http://127.0.0.1:{port}", key, a.duration, burst=2 * a.rate,
                                               steady_rps=3 * a.rate / 60))
    finally:
        _stop(proc)
    bound = a.rate + a.rate / 60 * elapsed
    return {"state": "redis" if redis_url else "in-process", "requests": sum(codes.values()),
            "allowed": codes.get(200, 0), "refused_429": codes.get(429, 0), "other": sum(v for k, v in codes.items()
                                                                                       if k not in (200, 429)),
            "elapsed_s": round(elapsed, 2), "single_bucket_bound": round(bound, 1),
            "allowed_over_bound": round(codes.get(200, 0) / bound, 3)}


def reload_run(a, tmp: Path) -> dict:
    import httpx

    from route_switch.routing.config import dump_config, load_config
    from route_switch.routing.fitting import fit
    from route_switch.core.files import copy_into
    from route_switch.routing.version import config_version
    from route_switch.testing.synthetic import synthetic_evalset
    from route_switch.testing.upstreams import FakeUpstream

    ev = synthetic_evalset()
    half, _ = ev.split(0.5, 3)
    fit(ev, tmp / "est-a")
    fit(half, tmp / "est-b")
    prod = tmp / "prod"
    copy_into(tmp / "est-a", prod / "estimator")
    out: dict = {"workers": a.workers, "reloads": a.reloads, "watch_s": a.watch_s}
    with FakeUpstream("ok") as up:
        cfg = load_config(tmp / "est-a")
        cfg.estimator = str(prod / "estimator")
        for t in cfg.tiers:
            t.api_base = up.url
        dump_config(cfg, prod / "router.yaml")
        port, key = free_port(), secrets.token_hex(8)
        proc = _serve(prod, port, a.workers, 0, {"ROUTE_SWITCH_API_KEYS": key}, watch_s=a.watch_s)
        url = f"http://127.0.0.1:{port}"
        stop, seen, status, errors = threading.Event(), [], Counter(), Counter()

        def client(cid):
            with httpx.Client(trust_env=False, timeout=30) as c:
                i = 0
                while not stop.is_set():
                    i += 1
                    try:
                        r = c.post(f"{url}/v1/chat/completions", headers={"Authorization": f"Bearer {key}"},
                                   json={"model": "router", "messages": [{"role": "user", "content": f"Spell {cid}-{i}"}]})
                        status[r.status_code] += 1
                        if r.status_code == 200 and r.json().get("choices"):
                            seen.append((time.monotonic(), r.headers.get("x-route-switch-version")))
                    except Exception as e:
                        errors[type(e).__name__] += 1
        try:
            wait_http(f"{url}/health", proc, 180)
            time.sleep(2)
            threads = [threading.Thread(target=client, args=(k,), daemon=True) for k in range(a.clients)]
            for t in threads:
                t.start()
            first, all_ = [], []
            for k in range(a.reloads):
                t0 = time.monotonic()
                copy_into(tmp / ("est-b" if k % 2 == 0 else "est-a"), prod / "estimator")
                cfg = load_config(prod)
                cfg.tau = round(0.05 + 0.02 * k, 2)
                dump_config(cfg, prod / "router.yaml")
                target = config_version(prod)
                t_first = t_all = None
                deadline = t0 + 60
                while time.monotonic() < deadline and t_all is None:
                    time.sleep(0.01)
                    recent = [(t, v) for t, v in seen[-400:] if t > t0]
                    if t_first is None and any(v == target for _, v in recent):
                        t_first = min(t for t, v in recent if v == target) - t0
                    # every worker switched: the last 50 answers all carry the new version
                    tail = [v for _, v in seen[-50:]]
                    if len(tail) == 50 and all(v == target for v in tail) and seen[-50][0] > t0:
                        t_all = seen[-50][0] - t0
                first.append(t_first)
                all_.append(t_all)
            time.sleep(1)
        finally:
            stop.set()
            time.sleep(0.5)
            _stop(proc)
    ok = [x for x in first if x is not None]
    done = [x for x in all_ if x is not None]
    out.update({"requests": sum(status.values()) + sum(errors.values()), "status": dict(status),
                "failed": sum(v for k, v in status.items() if k != 200) + sum(errors.values()),
                "errors": dict(errors), "versions_served": len({v for _, v in seen}),
                "reloads_seen": len(ok), "reloads_on_all_workers": len(done),
                "s_to_first_new_answer": {"median": percentile(ok, 50), "max": max(ok) if ok else None},
                "s_to_all_workers": {"median": percentile(done, 50), "max": max(done) if done else None}})
    return out



def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--rate", type=int, default=120, help="rate limit, requests per minute per key")
    ap.add_argument("--duration", type=float, default=30.0, help="seconds of overload per rate-limit run")
    ap.add_argument("--reloads", type=int, default=10)
    ap.add_argument("--watch-s", type=float, default=1.0)
    ap.add_argument("--clients", type=int, default=4, help="concurrent clients during the reloads")
    ap.add_argument("--parts", default="ratelimit,reload")
    a = ap.parse_args(argv)
    out: dict = {"loadavg_start": os.getloadavg()}
    router_dir, _ = fitted_router_dir(None)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if "ratelimit" in a.parts:
            from route_switch.testing.redis_server import redis_server

            (tmp / "redis").mkdir()
            with redis_server(tmp / "redis") as url:
                out["ratelimit"] = [rate_limit_run(router_dir, a, url, tmp), rate_limit_run(router_dir, a, None, tmp)]
        if "reload" in a.parts:
            (tmp / "reload").mkdir()
            out["reload"] = reload_run(a, tmp / "reload")
    out["loadavg_end"] = os.getloadavg()
    print(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()
