"""The job lock: one run of a job at a time (``fcntl.flock``; a dead run's lock is stale and taken over)."""
from __future__ import annotations

import json
import logging
import os
import socket
import time
from pathlib import Path

from ..errors import RouteSwitchError

log = logging.getLogger("route_switch")


class JobLockedError(RouteSwitchError, RuntimeError):
    """Another run holds the job lock."""


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class JobLock:
    """``fcntl.flock`` on a file recording the holder's pid (the kernel drops it if the holder dies).

    A file naming a pid whose lock is gone is stale and taken over (``stale_from``); the file is
    never deleted, which would re-open the classic lock-file race.
    """

    def __init__(self, path):
        self.path, self.fd, self.stale_from = Path(path), None, None

    def _read(self) -> dict:
        try:
            return json.loads(self.path.read_text(encoding="utf-8") or "{}")
        except (OSError, ValueError):
            return {}

    def acquire(self) -> "JobLock":
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            info = self._read()
            raise JobLockedError(f"{self.path} is held by pid {info.get('pid', '?')} on {info.get('host', '?')} "
                                 f"since {info.get('started', '?')}: another run is in progress") from None
        prev = self._read()
        if isinstance(prev.get("pid"), int):
            self.stale_from = dict(prev, pid_alive=prev.get("host") == socket.gethostname() and pid_alive(prev["pid"]))
            log.warning("taking over a stale job lock %s left by pid %s", self.path, prev["pid"])
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                  "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}).encode(), 0)
        self.fd = fd
        return self

    def release(self) -> None:
        import fcntl

        if self.fd is not None:
            try:
                os.ftruncate(self.fd, 0)  # empty: nobody holds it
                fcntl.flock(self.fd, fcntl.LOCK_UN)
            finally:
                os.close(self.fd)
                self.fd = None

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()

