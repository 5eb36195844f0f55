"""Files on disk, in one place: atomic writes, capped reads, atomic folder swaps and the run lock.

Every writer of the package goes through here: ``fit`` (router folders), ``optimize`` (artifacts),
the weekly job's promotion and the budgets' state file (the route log, an append-only file, keeps
its own shared append lock in :mod:`route_switch.core.routelog`). Readers see the old or the new
version of a file or folder, never a torn or mixed one, and a failed or killed writer leaves the
previous version in place.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import time
from pathlib import Path

from route_switch.core.errors import RouteSwitchError

log = logging.getLogger("route_switch")


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write a file so readers see the old or the new content, never a torn one."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)  # disk full, read-only folder, interrupted: no stray temp file
        raise


MAX_TEXT_BYTES = 50 * 2**20  # router.yaml, estimator.json, fusion.json, programs: far larger is no config


def read_capped(path: str | os.PathLike, error=None, limit: int | None = None) -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes; a device, pipe or folder (a symlink to
    /dev/zero) or a larger file raises ``error`` naming the file, before anything is read."""
    import stat

    from route_switch.core.errors import ConfigError

    error, limit = error or ConfigError, MAX_TEXT_BYTES if limit is None else limit
    p = Path(path)
    try:
        fd = os.open(p, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError as e:
        raise error(f"cannot read: {e.strerror or e}", file=str(p)) from None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise error("not a regular file (a device, pipe or folder?)", file=str(p))
        if st.st_size > limit:
            raise error(f"is {st.st_size:,} bytes, more than the {limit:,} bytes allowed", file=str(p))
        data = f.read(limit + 1)
    if len(data) > limit:  # grew while being read
        raise error(f"is more than the {limit:,} bytes allowed", file=str(p))
    return data


def read_artifact_json(path: str | os.PathLike, kind: str, error) -> dict:
    """A JSON file the package wrote (``{"format": "route-switch-<kind>", ...}``), read capped; not JSON
    or another format raises ``error`` naming the file."""
    try:
        doc = json.loads(read_capped(path, error).decode("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise error(f"not valid JSON: {e}", file=str(path)) from None
    if not isinstance(doc, dict) or doc.get("format") != f"route-switch-{kind}":
        raise error(f"not a route-switch {kind} file", file=str(path), field="format")
    return doc


def read_yaml(path: str | os.PathLike, error=None):
    """``yaml.safe_load`` a file; unreadable, non-UTF-8 or invalid YAML raises ``error`` with file and line."""
    import yaml

    from route_switch.core.errors import ConfigError

    error = error or ConfigError
    p = Path(path)
    data = read_capped(p, error)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise error("not valid UTF-8 text", file=str(p), line=data[: e.start].count(b"\n") + 1) from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        raise error(f"invalid YAML: {getattr(e, 'problem', None) or e}", file=str(p),
                    line=None if mark is None else mark.line + 1) from None


def exchange_paths(a: Path, b: Path) -> bool:
    """Atomically swap two paths (Linux ``renameat2``); False where the system cannot."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    at_fdcwd, rename_exchange = -100, 2
    if fn(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (22, 38, 95):  # EINVAL / ENOSYS / EOPNOTSUPP: the file system cannot exchange
        return False
    raise OSError(err, os.strerror(err), str(b))


def swap_dir(new: Path, dst: Path, keep_previous: bool = True) -> None:
    """Make folder ``new`` become ``dst`` in one step; the old ``dst`` is kept as ``.<name>.prev``
    (or removed with ``keep_previous=False``). Synced to disk before it returns."""
    new, dst = Path(new), Path(dst)
    prev = dst.with_name(f".{dst.name}.prev")
    if not dst.exists():
        os.rename(new, dst)
    elif exchange_paths(new, dst):  # readers see the old folder or the new one, never a mix
        shutil.rmtree(prev, ignore_errors=True)
        os.rename(new, prev)
    else:  # fallback: two renames (a short window where dst is missing, never a mixed folder)
        shutil.rmtree(prev, ignore_errors=True)
        os.rename(dst, prev)
        os.rename(new, dst)
    fsync_dir(dst.parent)
    if not keep_previous:
        shutil.rmtree(prev, ignore_errors=True)


def fsync_dir(d: Path) -> None:
    """Make a folder's renames durable (best effort: some file systems refuse)."""
    try:
        fd = os.open(d, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def copy_into(src: Path, dst: Path) -> None:
    """Replace folder ``dst`` by a copy of ``src``: copied into a sibling first, then :func:`swap_dir`."""
    src, dst = Path(src), Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.new-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        shutil.copytree(src, tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    swap_dir(tmp, dst)


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

    def __init__(self, path, what: str = ""):
        """``what`` starts the error a held lock raises (``"cannot fit into router/"``)."""
        self.path, self.what, self.fd, self.stale_from = Path(path), what, None, None

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
            raise JobLockedError(f"{self.what + ': ' if self.what else ''}{self.path} is held by pid "
                                 f"{info.get('pid', '?')} on {info.get('host', '?')} since {info.get('started', '?')}: "
                                 "another run is in progress") from None
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
