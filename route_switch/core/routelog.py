"""The route log: one JSON line per routing decision, input of the weekly re-optimisation job.

Each line holds ``ts`` (UTC ISO-8601), ``query_sha256``, ``query`` (only with ``privacy="full"``),
``tier``, ``tier_name``, ``model``, ``path`` and ``predicted_quality``. Files rotate by size:
``routes.jsonl`` → ``routes.jsonl.1`` → … → ``routes.jsonl.<backups>`` (oldest, then dropped).

Several processes (uvicorn workers, replicas on one host) may share one log. Each line is one
``write`` on an ``O_APPEND`` descriptor, under an exclusive ``fcntl.flock`` on a sibling lock file
(``.routes.jsonl.lock``) that also covers the size check and the rotation; a writer whose file was
rotated away by another process notices (inode changed) and reopens. So no line is torn, lost or
written into a file that was already rotated. :func:`read_route_log` reads all rotated files oldest
first and skips torn or malformed lines (e.g. after a crash).
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import logging
import os
import threading
from pathlib import Path

log = logging.getLogger("route_switch")

PRIVACY = ("hash", "full")


def query_sha256(query: str) -> str:
    return hashlib.sha256(query.encode("utf-8", "surrogatepass")).hexdigest()


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class RouteLog:
    """Append-only, size-rotated JSONL log of decisions (``write(query, decision)``)."""

    def __init__(self, path: str | os.PathLike, privacy: str = "hash", max_bytes: int = 10_000_000,
                 backups: int = 5):
        from route_switch.core.errors import ConfigError

        if privacy not in PRIVACY:
            raise ConfigError(f"must be one of {PRIVACY}, got {privacy!r}", field="route_log.privacy")
        if not isinstance(max_bytes, int) or max_bytes < 1024:
            raise ConfigError(f"must be an integer >= 1024, got {max_bytes!r}", field="route_log.max_bytes")
        if not isinstance(backups, int) or backups < 0:
            raise ConfigError(f"must be a non-negative integer, got {backups!r}", field="route_log.backups")
        self.path = Path(path)
        self.privacy, self.max_bytes, self.backups = privacy, max_bytes, backups
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._lock_fd: int | None = None
        self._pid = os.getpid()

    def _open(self) -> int:
        if self._fd is not None:
            try:  # another process may have rotated the file away: follow the path, not the inode
                if os.fstat(self._fd).st_ino != os.stat(self.path).st_ino:
                    os.close(self._fd)
                    self._fd = None
            except FileNotFoundError:
                os.close(self._fd)
                self._fd = None
        if self._fd is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        return self._fd

    def _file_lock(self) -> int:
        """The descriptor of the sibling lock file (its inode never changes: rotation leaves it alone)."""
        if self._pid != os.getpid():  # forked: descriptors are shared with the parent, open our own
            self._fd = self._lock_fd = None
            self._pid = os.getpid()
        if self._lock_fd is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._lock_fd = os.open(self.path.with_name(f".{self.path.name}.lock"), os.O_RDWR | os.O_CREAT, 0o600)
        return self._lock_fd

    def _rotate(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self.backups == 0:
            self.path.unlink(missing_ok=True)
            return
        for i in range(self.backups - 1, 0, -1):
            src = self.path.with_name(f"{self.path.name}.{i}")
            if src.exists():
                os.replace(src, self.path.with_name(f"{self.path.name}.{i + 1}"))
        if self.path.exists():
            os.replace(self.path, self.path.with_name(f"{self.path.name}.1"))

    def record(self, query: str, decision) -> dict:
        """The JSON object logged for one decision."""
        d = decision.to_dict() if hasattr(decision, "to_dict") else dict(decision)
        rec = {"ts": _now(), "query_sha256": query_sha256(query)}
        if self.privacy == "full":
            rec["query"] = query
        for k in ("tier", "tier_name", "model", "path", "predicted_quality"):
            rec[k] = d.get(k)
        return rec

    def write(self, query: str, decision) -> None:
        line = (json.dumps(self.record(query, decision), ensure_ascii=False) + "\n").encode("utf-8", "surrogatepass")
        import fcntl

        with self._lock:
            lock_fd = self._file_lock()
            fcntl.flock(lock_fd, fcntl.LOCK_EX)
            try:
                fd = self._open()
                size = os.fstat(fd).st_size
                if size and size + len(line) > self.max_bytes:
                    self._rotate()
                    fd = self._open()
                view = memoryview(line)
                while view:  # one write in practice; a short write is finished, never left torn
                    view = view[os.write(fd, view):]
            finally:
                fcntl.flock(lock_fd, fcntl.LOCK_UN)

    def close(self) -> None:
        with self._lock:
            for name in ("_fd", "_lock_fd"):
                if getattr(self, name) is not None:
                    os.close(getattr(self, name))
                    setattr(self, name, None)

    def __del__(self):  # best effort
        try:
            for fd in (self._fd, self._lock_fd):
                if fd is not None:
                    os.close(fd)
        except Exception:
            pass


def route_log_files(path: str | os.PathLike) -> list[Path]:
    """The log and its rotated backups, oldest first."""
    p = Path(path)
    backups = []
    for f in p.parent.glob(p.name + ".*"):
        suffix = f.name[len(p.name) + 1:]
        if suffix.isdigit():
            backups.append((int(suffix), f))
    files = [f for _, f in sorted(backups, reverse=True)]
    return files + ([p] if p.exists() else [])


def _parse_ts(value) -> _dt.datetime:
    if isinstance(value, _dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=_dt.timezone.utc)
    if isinstance(value, (int, float)):
        return _dt.datetime.fromtimestamp(value, _dt.timezone.utc)
    s = str(value).replace("Z", "+00:00")
    t = _dt.datetime.fromisoformat(s)
    return t if t.tzinfo else t.replace(tzinfo=_dt.timezone.utc)


def read_route_log(path: str | os.PathLike, since=None) -> list[dict]:
    """All logged decisions (oldest first) at or after ``since`` (datetime, ISO string or epoch seconds)."""
    files = route_log_files(path)
    if not files:
        from route_switch.core.errors import InputError

        raise InputError("route log not found (enable route_log in the router config)", file=str(path))
    cutoff = None if since is None else _parse_ts(since)
    out, bad = [], 0
    for f in files:
        with open(f, "r", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                    if not isinstance(rec, dict) or "query_sha256" not in rec:
                        raise ValueError
                    if cutoff is not None and _parse_ts(rec.get("ts")) < cutoff:
                        continue
                except (ValueError, TypeError):
                    bad += 1
                    continue
                out.append(rec)
    if bad:
        log.warning("route log %s: skipped %d malformed line(s)", path, bad)
    return out
