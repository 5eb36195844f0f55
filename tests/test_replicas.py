"""Several processes: rate limits and decisions shared through a real redis-server, 4 uvicorn workers
holding one limit, and the weekly job's lock across real processes."""
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
    from route_switch.server.state import RedisState

    s = RedisState(f"redis://127.0.0.1:{free_port()}/0", 30, timeout_s=0.2)  # nobody listens there
    t0 = time.monotonic()
    assert check_all(s, "k", 40) == 30
    assert time.monotonic() - t0 < 20
    assert sum("redis unavailable" in r.message for r in caplog.records) == 1  # logged once, not 40 times


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
    import signal

    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


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
