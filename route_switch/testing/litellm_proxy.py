"""The real LiteLLM proxy (``litellm --config``) as a process on loopback, offline: for tests and benchmarks.

Offline means: LiteLLM's model cost map is the one shipped in its package (never fetched), and no
``DATABASE_URL`` (no Postgres: no virtual keys, no LiteLLM spend tracking). It needs LiteLLM's
``proxy`` extra (``pip install 'route-switch[litellm-proxy]'``); :func:`proxy_missing` says what is absent.
"""
from __future__ import annotations

import contextlib
import importlib.util
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from route_switch.testing.processes import stop
from route_switch.testing.upstreams import LOOPBACK, free_port

OFFLINE_ENV = {"LITELLM_LOCAL_MODEL_COST_MAP": "True"}
# modules the proxy imports at start that litellm without its `proxy` extra lacks
PROXY_MODULES = ("websockets", "backoff", "apscheduler", "litellm_proxy_extras")


def proxy_missing() -> list[str]:
    """The LiteLLM proxy's modules that are not installed (empty: the proxy can start)."""
    return [m for m in PROXY_MODULES if importlib.util.find_spec(m) is None]


@contextlib.contextmanager
def litellm_proxy(config: str | os.PathLike, *, cwd: str | os.PathLike | None = None, env: dict | None = None,
                  program: list[str] | None = None, timeout_s: float = 180):
    """Run ``litellm --config config`` on a free loopback port; yields ``http://127.0.0.1:PORT``.

    ``cwd`` (default: the config's folder) is where relative paths in the callback module resolve.
    ``program``: the command before ``--config`` (default: this Python's ``-m litellm.proxy.proxy_cli``,
    which the ``litellm`` script runs). On a start failure, ``RuntimeError`` carries the end of the proxy's log.
    """
    import httpx

    port = free_port()
    cmd = [*(program or [sys.executable, "-m", "litellm.proxy.proxy_cli"]), "--config", str(config),
           "--host", LOOPBACK, "--port", str(port)]
    full_env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"} | OFFLINE_ENV | (env or {})
    with tempfile.TemporaryFile("w+") as log:
        proc = subprocess.Popen(cmd, cwd=cwd or Path(config).parent, env=full_env, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
        base = f"http://{LOOPBACK}:{port}"
        try:
            deadline = time.monotonic() + timeout_s
            while True:
                if proc.poll() is not None or time.monotonic() > deadline:
                    log.seek(0)
                    why = f"exited with {proc.returncode}" if proc.returncode is not None else \
                        f"did not answer within {timeout_s:g}s"
                    raise RuntimeError(f"LiteLLM proxy {why}: {' '.join(cmd)}\n{log.read()[-4000:]}")
                try:
                    if httpx.get(f"{base}/health/liveliness", timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                time.sleep(0.3)
            yield base
        finally:
            stop(proc, 20)
