"""A real ``redis-server`` (the OS package) on a free loopback port, without persistence, for tests and benchmarks."""
from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time

from route_switch.testing.processes import stop
from route_switch.testing.upstreams import LOOPBACK, free_port


class RedisNotInstalled(RuntimeError):
    """``redis-server`` is not on PATH (``apt-get install redis-server``)."""


@contextlib.contextmanager
def redis_server(workdir: str | os.PathLike):
    """Start ``redis-server`` in ``workdir``; yields its ``redis://127.0.0.1:PORT/0`` URL; stops it after."""
    exe = shutil.which("redis-server")
    if exe is None:
        raise RedisNotInstalled("redis-server is not installed (apt-get install redis-server; .ci/run installs it)")
    port = free_port()
    proc = subprocess.Popen([exe, "--port", str(port), "--bind", LOOPBACK, "--save", "", "--appendonly", "no",
                             "--dir", str(workdir)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"redis://{LOOPBACK}:{port}/0"
    try:
        import redis

        deadline = time.monotonic() + 20
        while True:
            try:
                redis.Redis.from_url(url, socket_timeout=1).ping()
                break
            except redis.ConnectionError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server did not start: {proc.stderr.read()[:500]!r}") from None
                time.sleep(0.05)
        yield url
    finally:
        stop(proc)
