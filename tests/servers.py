"""Real servers on loopback for tests and benchmarks: llama.cpp, a misbehaving upstream, the proxy.

Use from a test module with ``from servers import llama_upstream, fitted_router_dir, run_app, FakeUpstream``
(``tests/`` is on ``sys.path`` under pytest). The fake upstreams live in :mod:`route_switch.testing.upstreams`.
"""
from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from route_switch.testing.processes import stop
from route_switch.testing.upstreams import (LOOPBACK, FakeUpstream, FaultyUpstream, LoopbackServer,  # noqa: F401
                                            QuietHandler, completion, free_port)


def wait_http(url: str, timeout_s: float = 120, proc: subprocess.Popen | None = None) -> None:
    import httpx

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before answering {url}")
        try:
            if httpx.get(url, timeout=2).status_code < 500:
                return
        except Exception:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{url} did not answer within {timeout_s}s")


# ------------------------------------------------------------------ the proxy in a background thread
@contextlib.contextmanager
def run_app(app, port: int | None = None):
    """Serve an ASGI app with uvicorn on a free loopback port in a thread; yields ``http://127.0.0.1:PORT``."""
    import uvicorn

    port = port or free_port()
    server = uvicorn.Server(uvicorn.Config(app, host=LOOPBACK, port=port, log_level="warning", access_log=False,
                                          lifespan="on"))
    th = threading.Thread(target=server.run, daemon=True)
    th.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not th.is_alive():
            raise RuntimeError("proxy did not start")
        time.sleep(0.02)
    try:
        yield f"http://{LOOPBACK}:{port}"
    finally:
        server.should_exit = True
        th.join(10)


# ------------------------------------------------------------------ a real llama.cpp upstream
@contextlib.contextmanager
def llama_server(model_path: str | os.PathLike | None = None, n_ctx: int = 2048, threads: int = 1):
    """``python -m llama_cpp.server`` with the router GGUF on a free port; yields its ``/v1`` base URL."""
    if model_path is None:
        from route_switch.llm.model_files import ensure_local_model

        model_path = ensure_local_model()
    port = free_port()
    cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(model_path), "--host", LOOPBACK, "--port", str(port),
           "--n_ctx", str(n_ctx), "--n_threads", str(threads), "--model_alias", "qwen-0.5b", "--verbose", "False"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_http(f"http://{LOOPBACK}:{port}/v1/models", 180, proc)
        yield f"http://{LOOPBACK}:{port}/v1"
    finally:
        stop(proc)


@pytest.fixture(scope="session")
def llama_upstream():
    """Session-wide llama.cpp server (Qwen2.5-Coder-0.5B GGUF); the base URL of its ``/v1``."""
    pytest.importorskip("llama_cpp")
    with llama_server() as url:
        yield url


@pytest.fixture(scope="session")
def fitted_router_dir(synthetic, tmp_path_factory) -> Path:
    """A router fitted on the synthetic evalset (tiers small/medium/large, no endpoints)."""
    from route_switch.routing.fitting import fit

    out = tmp_path_factory.mktemp("router")
    # fixed hyper-parameters (no cross-validated choice): the proxy tests rely on which tier the
    # synthetic hard and easy queries get, not on what the search would pick
    fit(synthetic, out, estimator_params={"cv": 0})
    return out


def router_with_upstreams(router_dir, urls: list[str], **kw):
    """A ``Router`` over the fitted estimator whose tiers small/medium/large are served at ``urls``."""
    from route_switch.routing.controller import Router
    from route_switch.core.spec import Tier

    base = Router.from_config(router_dir)
    tiers = [Tier(name=t.name, model=t.model, api_base=u, upstream_model="qwen-0.5b") for t, u in zip(base.tiers, urls)]
    return Router(tiers=tiers, estimator=base.estimator, tau=base.tau, **kw)


# ------------------------------------------------------------------ a real redis-server
@pytest.fixture(scope="session")
def redis_url(tmp_path_factory):
    """A session-wide real redis-server on loopback."""
    from route_switch.testing.redis_server import RedisNotInstalled, redis_server

    pytest.importorskip("redis")
    try:
        server = redis_server(tmp_path_factory.mktemp("redis"))
        url = server.__enter__()
    except RedisNotInstalled as e:
        pytest.skip(str(e))
    try:
        yield url
    finally:
        server.__exit__(None, None, None)
