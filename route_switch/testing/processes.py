"""Stopping the server processes the tests and benchmarks start."""
from __future__ import annotations

import os
import signal
import subprocess


def stop(proc: subprocess.Popen, wait_s: float = 10, *, group: bool = False) -> None:
    """SIGTERM, then SIGKILL (the whole process group with ``group``, for a supervisor's workers)
    when the process has not ended within ``wait_s``."""
    proc.terminate()
    try:
        proc.wait(wait_s)
    except subprocess.TimeoutExpired:
        if group:
            os.killpg(proc.pid, signal.SIGKILL)
        else:
            proc.kill()
        proc.wait()
