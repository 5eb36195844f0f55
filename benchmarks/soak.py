"""Soak the proxy against an upstream that fails at random; loopback only; JSON on stdout.

    python benchmarks/soak.py [--duration 600] [--clients 8] [--upstream-timeout 2] [--out soak.json]

Starts, as subprocesses, a FAKE upstream that fails at random (``route_switch.testing.upstreams
faulty``: 10% HTTP 500, 5% hangs past the proxy's upstream timeout, 5% streams or bodies cut
mid-way, 2% malformed JSON) serving every tier, and the proxy (``route-switch serve``). Clients
send chat completions, half of them streaming, for ``--duration`` seconds.

Every request must end with an answer from some tier (HTTP 200 with a complete body, or a stream
that ends with ``[DONE]`` and whose events all parse) or a clean error after the last tier (HTTP
502 ``upstream_failed``, or a stream that ends with an ``upstream_stream_error`` event). Anything
else is counted in ``bad``. Sampled every ``--sample-s``: the proxy's RSS, open file descriptors
and sockets. The proxy's own overhead is the client's latency minus the time the upstream spent
(``x_upstream_ms`` in its answer), for non-streaming requests answered by the first tier tried.
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




def fds(pid: int) -> tuple[int, int]:
    """(open file descriptors, of which sockets) of a process, from /proc."""
    n = socks = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            n += 1
            socks += os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:")
        except OSError:
            pass
    return n, socks


def _stream_outcome(raw: bytes) -> str:
    """answered | clean_error | bad, for the bytes of one streamed response."""
    events = [e for e in raw.replace(b"\r\n", b"\n").split(b"\n\n") if e.strip()]
    done = False
    for e in events:
        data = b"\n".join(line[5:].strip() for line in e.split(b"\n") if line.startswith(b"data:"))
        if data == b"[DONE]":
            done = True
            continue
        try:
            obj = json.loads(data)
        except ValueError:
            return "bad"  # a malformed event reached the client
        if isinstance(obj, dict) and "error" in obj:
            return "clean_error" if obj["error"].get("code") == "upstream_stream_error" else "bad"
    return "answered" if done else "bad"


async def _client(url: str, key: str, stop: float, cid: int, res: dict, client_timeout: float):
    import httpx

    headers = {"Authorization": f"Bearer {key}"}
    i = 0
    async with httpx.AsyncClient(timeout=client_timeout, trust_env=False) as c:
        while time.perf_counter() < stop:
            i += 1
            stream = (cid + i) % 2 == 0
            body = {"model": "router", "stream": stream,
                    "messages": [{"role": "user", "content": f"{res['queries'][(cid * 7919 + i) % len(res['queries'])]} #{cid}-{i}"}]}
            t0 = time.perf_counter()
            kind = "bad"
            try:
                if stream:
                    async with c.stream("POST", url + "/v1/chat/completions", json=body, headers=headers) as r:
                        raw = b"".join([b async for b in r.aiter_raw()])
                    if r.status_code == 200:
                        kind = _stream_outcome(raw)
                    elif r.status_code == 502 and b"upstream_failed" in raw:
                        kind = "clean_error"
                    res["status"][f"stream_{r.status_code}"] += 1
                else:
                    r = await c.post(url + "/v1/chat/completions", json=body, headers=headers)
                    res["status"][str(r.status_code)] += 1
                    data = r.json()
                    dt = time.perf_counter() - t0
                    if r.status_code == 200 and data.get("choices") and "route_switch" in data:
                        kind = "answered"
                        rs = data["route_switch"]
                        res["answered_by_tier"][str(rs["tier"])] += 1
                        if not rs["retried_from"] and "x_upstream_ms" in data:
                            res["overhead_ms"].append(dt * 1000 - data["x_upstream_ms"])
                            res["route_ms"].append(rs["route_latency_ms"])
                    elif r.status_code == 502 and data.get("error", {}).get("code") == "upstream_failed":
                        kind = "clean_error"
            except (httpx.HTTPError, ValueError) as e:
                res["bad_types"][type(e).__name__] += 1
                kind = "bad"
            res["outcome"][("stream_" if stream else "") + kind] += 1
            res["latency_s"].append(time.perf_counter() - t0)


async def _load(url, key, duration, clients, queries, client_timeout, sampler):
    res = {"queries": queries, "status": Counter(), "outcome": Counter(), "bad_types": Counter(),
           "answered_by_tier": Counter(), "overhead_ms": [], "route_ms": [], "latency_s": []}
    stop = time.perf_counter() + duration
    task = asyncio.create_task(sampler(stop))
    await asyncio.gather(*(_client(url, key, stop, i, res, client_timeout) for i in range(clients)))
    await task
    return res


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=600.0, help="seconds of load (>= 600 for the figures of docs/operations.md)")
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--upstream-timeout", type=float, default=2.0, help="the proxy's per-tier timeout; hangs last 1.5x")
    ap.add_argument("--sample-s", type=float, default=30.0, help="seconds between RSS / fd samples")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", help="also write the JSON here")
    a = ap.parse_args(argv)

    _, queries = fitted_router_dir(None)
    procs = []
    out: dict = {"duration_s": a.duration, "clients": a.clients, "upstream_timeout_s": a.upstream_timeout,
                 "faults": None, "loadavg_start": os.getloadavg()}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            from route_switch.routing.config import dump_config, load_config
            from route_switch.testing.upstreams import FAULTS

            out["faults"] = FAULTS
            up_port, port, key = free_port(), free_port(), secrets.token_hex(16)
            up = subprocess.Popen([sys.executable, "-m", "route_switch.testing.upstreams", "faulty", "--port", str(up_port),
                                   "--hang-s", str(a.upstream_timeout * 1.5), "--seed", str(a.seed)],
                                  stdout=subprocess.DEVNULL, cwd=ROOT)
            procs.append(up)
            wait_http(f"http://127.0.0.1:{up_port}/v1/models", up)
            rdir, _ = fitted_router_dir(None)
            cfg = load_config(rdir)
            for t in cfg.tiers:
                t.api_base = f"http://127.0.0.1:{up_port}/v1"
            dump_config(cfg, Path(tmp) / "router.yaml")
            log = open(Path(tmp) / "proxy.log", "w")
            proxy = subprocess.Popen([sys.executable, "-m", "route_switch.cli", "serve", "--router", tmp,
                                      "--port", str(port), "--rate-limit", "0", "--log-level", "warning",
                                      "--upstream-timeout", str(a.upstream_timeout)],
                                     env=os.environ | {"ROUTE_SWITCH_API_KEYS": key}, stderr=log, cwd=ROOT)
            procs.append(proxy)
            url = f"http://127.0.0.1:{port}"
            wait_http(f"{url}/health", proxy)
            samples = []

            def sample(label):
                n, s = fds(proxy.pid)
                samples.append({"t_s": round(time.perf_counter() - t_start, 1), "label": label,
                                "rss_mb": round(rss_mb(proxy.pid), 1), "fds": n, "sockets": s})

            async def sampler(stop):
                while time.perf_counter() < stop:
                    await asyncio.sleep(min(a.sample_s, max(0.0, stop - time.perf_counter())))
                    sample("load")

            t_start = time.perf_counter()
            sample("start")
            client_timeout = a.upstream_timeout * 3 + 10  # every tier may time out once, plus slack
            res = asyncio.run(_load(url, key, a.duration, a.clients, queries, client_timeout, sampler))
            sample("end_of_load")
            time.sleep(5)
            sample("idle_5s")
            import httpx

            out["upstream_stats"] = httpx.get(f"http://127.0.0.1:{up_port}/stats", trust_env=False).json()
            log.flush()
            errors_logged = [line for line in open(Path(tmp) / "proxy.log") if "Traceback" in line or " ERROR " in line]
    finally:
        for p in reversed(procs):
            p.terminate()
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
    load = [s for s in samples if s["label"] == "load"]
    mid = load[len(load) // 2] if load else samples[0]
    lat, oh = res["latency_s"], res["overhead_ms"]
    out.update({
        "requests": len(lat), "throughput_rps": round(len(lat) / a.duration, 1),
        "outcome": dict(res["outcome"]), "bad": sum(v for k, v in res["outcome"].items() if k.endswith("bad")),
        "bad_types": dict(res["bad_types"]), "status": dict(res["status"]),
        "answered_by_tier": dict(sorted(res["answered_by_tier"].items())),
        "latency_ms": {"p50": round(percentile(lat, 50) * 1000, 1), "p99": round(percentile(lat, 99) * 1000, 1),
                       "max": round(max(lat) * 1000, 1)},
        "proxy_overhead_ms": {"n": len(oh), "p50": round(percentile(oh, 50), 2), "p99": round(percentile(oh, 99), 2)},
        "route_decision_ms": {"p50": percentile(res["route_ms"], 50), "p99": percentile(res["route_ms"], 99)},
        "rss_mb": {"start": samples[0]["rss_mb"], "middle": mid["rss_mb"], "end": samples[-2]["rss_mb"]},
        "fds": {"start": samples[0]["fds"], "middle": mid["fds"], "end_of_load": samples[-2]["fds"],
                "idle_5s": samples[-1]["fds"], "max": max(s["fds"] for s in samples)},
        "sockets": {"start": samples[0]["sockets"], "middle": mid["sockets"], "end_of_load": samples[-2]["sockets"],
                    "idle_5s": samples[-1]["sockets"], "max": max(s["sockets"] for s in samples)},
        "proxy_errors_logged": len(errors_logged), "samples": samples, "loadavg_end": os.getloadavg(),
    })
    text = json.dumps(out, indent=1)
    print(text)
    if a.out:
        Path(a.out).write_text(text + "\n")
    return out


if __name__ == "__main__":
    main()
