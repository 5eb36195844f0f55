"""Several processes: rate limits, failed authentications, /metrics counters and decisions shared
through a real redis-server, 4 uvicorn workers holding one limit, two proxies holding one
failed-authentication limit and summing their counters, and the weekly job's lock across real
processes."""
from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest

from servers import fitted_router_dir, free_port, redis_url, wait_http  # noqa: F401  (fixtures)

from route_switch.routing.config import dump_config, load_config
from route_switch.testing.processes import stop as stop_process
from route_switch.routing.controller import Router

pytest.importorskip("redis")
ROOT = Path(__file__).resolve().parents[1]


def router_copy(src, dst: Path, state: dict | None = None, tau: float | None = None) -> Path:
    """A copy of a router config in ``dst`` (same estimator), optionally with ``state:`` and another τ.

    Its tiers name an endpoint where nothing listens: ``serve`` refuses a router without any."""
    cfg = load_config(src)
    cfg.state = state
    for t in cfg.tiers:
        t.api_base = "http://127.0.0.1:9/v1"
    if tau is not None:
        cfg.tau = tau
    dst.mkdir(parents=True, exist_ok=True)
    dump_config(cfg, dst / "router.yaml")
    return dst


def check_all(state, key: str, n: int) -> int:
    async def run():
        return [await state.rate_check(key) for _ in range(n)]
    return sum(w == 0.0 for w in asyncio.run(run()))


def test_two_processes_worth_of_state_share_one_bucket(redis_url):
    from route_switch.server.state import LocalState, RedisState

    prefix = f"t-{uuid.uuid4().hex}"
    a, b = RedisState(redis_url, 60, prefix=prefix), RedisState(redis_url, 60, prefix=prefix)

    async def alternate():
        waits = []
        for i in range(100):
            waits.append(await (a if i % 2 else b).rate_check("key-1"))
        await a.close(), await b.close()
        return waits
    waits = asyncio.run(alternate())
    allowed = sum(w == 0.0 for w in waits)
    assert 60 <= allowed <= 61  # one bucket of 60 (+ at most one token refilled during the test)
    assert waits[-1] > 0 and waits[-1] <= 1.0  # Retry-After: about one token's refill time
    # the in-process store allows 60 per process: the bug a shared store fixes
    assert check_all(LocalState(60), "k", 50) + check_all(LocalState(60), "k", 50) == 100


def test_redis_down_falls_back_to_the_local_limit(caplog):
    from route_switch.server.metrics import Metrics
    from route_switch.server.state import RedisState, RedisUnavailable

    s = RedisState(f"redis://127.0.0.1:{free_port()}/0", 30, timeout_s=0.2, auth_failures_per_min=5)  # nobody there
    t0 = time.monotonic()
    assert check_all(s, "k", 40) == 30
    assert time.monotonic() - t0 < 20
    assert sum("redis unavailable" in r.message for r in caplog.records) == 1  # logged once, not 40 times

    async def failures():
        return [await s.auth_failed("10.0.0.1") for _ in range(7)], s.auth_blocked("10.0.0.1")
    waits, blocked = asyncio.run(failures())
    assert [w == 0.0 for w in waits] == [True] * 5 + [False] * 2 and blocked > 0  # the in-process bucket of 5
    m = Metrics()
    m.inc("route_switch_upstream_failures_total")
    with pytest.raises(RedisUnavailable):  # /metrics answers 503 rather than one process's counts as the sum
        asyncio.run(s.shared_metrics(m))
    assert m.unpushed()  # kept for when Redis answers again


def test_decision_cache_shared_between_routers(redis_url, fitted_router_dir, tmp_path):
    state = {"redis_url": redis_url, "share_cache": True, "prefix": f"t-{uuid.uuid4().hex}"}
    a = Router.from_config(router_copy(fitted_router_dir, tmp_path / "a", state))
    b = Router.from_config(router_copy(fitted_router_dir, tmp_path / "b", state))
    assert a.version == b.version and a.version
    q = "Prove that the sum of the first 12 odd numbers is a perfect square, step by step."
    first = a.route(q)
    assert first.path == "estimator"
    second = b.route(q)
    assert second.path == "cache" and "another process" in second.reason and second.tier == first.tier
    # another config version never reads the previous version's decisions
    c = Router.from_config(router_copy(fitted_router_dir, tmp_path / "c", state, tau=0.5))
    assert c.version != a.version and c.route(q).path == "estimator"


def test_state_config_errors(tmp_path):
    from route_switch.core.errors import ConfigError

    for text, field in [("state: {redis_url: 'redis://user:secret@h:6379/0'}", "state.redis_url"),
                        ("state: {redis_url: 'http://h'}", "state.redis_url"),
                        ("state: {share_cache: true}", "state"), ("state: {redis_url: 'redis://h', x: 1}", "state.x")]:
        p = tmp_path / "router.yaml"
        p.write_text("tiers: [{model: a}]\n" + text + "\n")
        with pytest.raises(ConfigError) as e:
            load_config(p)
        assert e.value.field == field and "secret" not in str(e.value)


def serve_workers(router_dir: Path, port: int, workers: int, rate: int, env: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "route_switch.cli", "serve", "--router", str(router_dir), "--port",
                             str(port), "--workers", str(workers), "--rate-limit", str(rate), "--log-level", "warning"],
                            env=os.environ | env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)


def stop(proc: subprocess.Popen) -> None:
    """SIGTERM the supervisor (it stops its workers); SIGKILL the whole group if that takes too long."""
    stop_process(proc, 30, group=True)


async def burst(url: str, key: str, n: int, concurrency: int) -> tuple[dict, float]:
    codes: dict = {}
    sem = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(trust_env=False, timeout=30,
                                 limits=httpx.Limits(max_connections=concurrency)) as c:
        async def one(i):
            async with sem:
                r = await c.post(f"{url}/v1/route", json={"query": f"What is {i} + {i}?"},
                                 headers={"Authorization": f"Bearer {key}"})
                codes[r.status_code] = codes.get(r.status_code, 0) + 1
        t0 = time.monotonic()
        await asyncio.gather(*(one(i) for i in range(n)))
        return codes, time.monotonic() - t0


def test_four_workers_hold_one_limit(redis_url, fitted_router_dir, tmp_path):
    """4 uvicorn workers, one key, 120 req/min: within 5% of what one bucket allows in the elapsed time."""
    rdir = router_copy(fitted_router_dir, tmp_path / "r",
                       {"redis_url_env": "TEST_REDIS_URL", "prefix": f"t-{uuid.uuid4().hex}"})
    port, key, rate = free_port(), "replica-key", 120
    proc = serve_workers(rdir, port, 4, rate, {"ROUTE_SWITCH_API_KEYS": key, "TEST_REDIS_URL": redis_url})
    try:
        wait_http(f"http://127.0.0.1:{port}/health", 120, proc)
        time.sleep(1.0)  # let every worker finish starting, so the burst spreads over all of them
        t_start = time.monotonic()
        codes, elapsed = asyncio.run(burst(f"http://127.0.0.1:{port}", key, 480, 32))
        elapsed = time.monotonic() - t_start
    finally:
        stop(proc)
    allowed = codes.get(200, 0)
    bound = rate + rate / 60 * elapsed  # the bucket's capacity plus what refilled meanwhile
    assert set(codes) <= {200, 429}, codes
    assert rate <= allowed <= 1.05 * bound, (codes, elapsed, bound)


@pytest.fixture
def two_proxies(redis_url, fitted_router_dir, tmp_path):
    """Two ``route-switch serve`` processes (two replicas) on their own ports, sharing one Redis."""
    rdir = router_copy(fitted_router_dir, tmp_path / "r",
                       {"redis_url_env": "TEST_REDIS_URL", "prefix": f"t-{uuid.uuid4().hex}"})
    key, ports = "replica-key", [free_port(), free_port()]
    env = {"ROUTE_SWITCH_API_KEYS": key, "TEST_REDIS_URL": redis_url, "ROUTE_SWITCH_KEY_ID_SECRET": "k" * 32}
    procs = [serve_workers(rdir, port, 1, 100_000, env) for port in ports]
    try:
        urls = [f"http://127.0.0.1:{port}" for port in ports]
        for url, proc in zip(urls, procs):
            wait_http(f"{url}/health", 120, proc)
        yield urls, key
    finally:
        for proc in procs:
            stop(proc)


def post_route(url: str, key: str) -> httpx.Response:
    return httpx.post(f"{url}/v1/route", json={"query": "What is 2 + 2?"}, headers={"Authorization": f"Bearer {key}"},
                      timeout=30, trust_env=False)


def scripts_run(redis_url) -> int:
    import redis

    stats = redis.Redis.from_url(redis_url).info("commandstats")
    return sum(stats.get(f"cmdstat_{c}", {}).get("calls", 0) for c in ("eval", "evalsha"))


def test_failed_authentications_count_against_one_limit_across_proxies(two_proxies, redis_url):
    """20 bad guesses spread over two replicas use up one limit of 20 per address: then both answer
    429, to a right key too (else a guess that came back 200 would tell the key)."""
    (a, b), key = two_proxies
    for url in (a, b):  # loads the scripts
        assert post_route(url, key).status_code == 200
    before = scripts_run(redis_url)
    assert [post_route(url, key).status_code for url in (a, b) * 5] == [200] * 10
    assert scripts_run(redis_url) - before == 10  # one script a request: the right key adds no round trip

    assert [post_route(url, f"guess-{i}").status_code for i, url in enumerate((a, b) * 10)] == [401] * 20
    for url in (a, b):  # neither has seen a failure answered 429: the block comes from Redis
        r = post_route(url, key)
        assert r.status_code == 429 and r.json()["error"]["code"] == "auth_rate_limited", r.text
        assert 1 <= int(r.headers["Retry-After"]) <= 3
        assert post_route(url, "guess-x").status_code == 429
    assert httpx.get(f"{b}/metrics", headers={"Authorization": f"Bearer {key}"}, trust_env=False).status_code == 429


def series(text: str, name: str, **labels) -> float:
    """The value of one sample of a /metrics text (0.0 when absent)."""
    from prometheus_client.parser import text_string_to_metric_families

    return sum(s.value for f in text_string_to_metric_families(text) for s in f.samples
               if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()))


def test_metrics_sum_the_requests_of_both_proxies(two_proxies):
    """3 requests to one replica, 5 to the other: /metrics of either shows 8."""
    (a, b), key = two_proxies
    for url, n in ((a, 3), (b, 5)):
        assert [post_route(url, key).status_code for _ in range(n)] == [200] * n
    deadline, seen = time.monotonic() + 20, {}
    while time.monotonic() < deadline:  # the other process pushes its increments every second
        for url in (a, b):
            text = httpx.get(f"{url}/metrics", headers={"Authorization": f"Bearer {key}"}, trust_env=False).text
            seen[url] = (series(text, "route_switch_requests_total", endpoint="route", status="200"),
                         series(text, "route_switch_request_duration_seconds_count", endpoint="route"),
                         series(text, "route_switch_tier_chosen_total"),
                         series(text, "route_switch_request_duration_seconds_bucket", endpoint="route", le="+Inf"))
        if all(v == (8, 8, 8, 8) for v in seen.values()):
            break
        time.sleep(0.3)
    assert seen == {a: (8, 8, 8, 8), b: (8, 8, 8, 8)}, seen


LOCKER = """
import os, sys, time
sys.path.insert(0, sys.argv[1])
from route_switch.core.files import JobLock, JobLockedError

lock_path, journal, until = sys.argv[2], sys.argv[3], time.time() + float(sys.argv[4])
fd = os.open(journal, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
held = refused = 0
while time.time() < until:
    try:
        with JobLock(lock_path):
            os.write(fd, f"enter {os.getpid()}\\n".encode())
            time.sleep(0.02)  # the critical section: a second holder would write in between
            os.write(fd, f"exit {os.getpid()}\\n".encode())
            held += 1
    except JobLockedError:
        refused += 1
    time.sleep(0.001)
print(held, refused, flush=True)
"""


def test_job_lock_holds_across_processes_sharing_the_folder(tmp_path):
    """4 real processes race for the weekly job's lock for 3 s: never two holders at once."""
    lock, journal = tmp_path / "shared" / ".reoptimize.lock", tmp_path / "journal"
    procs = [subprocess.Popen([sys.executable, "-c", LOCKER, str(ROOT), str(lock), str(journal), "3"],
                              stdout=subprocess.PIPE, text=True) for _ in range(4)]
    results = [tuple(map(int, p.communicate(timeout=60)[0].split())) for p in procs]
    assert all(p.returncode == 0 for p in procs)
    lines = journal.read_text().splitlines()
    for enter, leave in zip(lines[::2], lines[1::2]):  # strictly enter/exit pairs of one pid
        assert enter.startswith("enter ") and leave == "exit " + enter.split()[1], (enter, leave)
    assert len(lines) == 2 * sum(h for h, _ in results)
    assert all(h > 0 for h, _ in results) and sum(r for _, r in results) > 0  # all took turns, and were refused
