"""Where route-switch finds data and keeps caches (overridable by environment variables)."""
from __future__ import annotations

import os
from pathlib import Path

DATA_ENV = "ROUTE_SWITCH_DATA"
CACHE_ENV = "ROUTE_SWITCH_CACHE"


def data_dir() -> Path:
    """Directory of routing outcome data: $ROUTE_SWITCH_DATA, else ../shared/data beside the checkout."""
    env = os.environ.get(DATA_ENV)
    if env:
        return Path(env).expanduser()
    here = Path(__file__).resolve().parent.parent
    for candidate in (Path.cwd() / ".." / "shared" / "data", here / ".." / "shared" / "data"):
        if candidate.is_dir():
            return candidate.resolve()
    return (Path.cwd() / ".." / "shared" / "data").resolve()


def cache_dir() -> Path:
    """Root of route-switch's caches: $ROUTE_SWITCH_CACHE, else ~/.cache/route-switch."""
    return Path(os.environ.get(CACHE_ENV) or "~/.cache/route-switch").expanduser()


def resolve_data_path(path: str | os.PathLike) -> Path:
    """Resolve a data file: absolute or existing paths as given, bare names against data_dir()."""
    p = Path(os.path.expandvars(str(path))).expanduser()
    if p.is_absolute() or p.exists():
        return p
    return data_dir() / p


SHIPPED_KINDS = ("programs", "evalsets")


def packaged_dir(kind: str) -> Path:
    """The folder of files shipped inside the package: ``programs`` (routing programs, the judge
    program, the demo pool) or ``evalsets`` (evalset specs)."""
    if kind not in SHIPPED_KINDS:
        raise ValueError(f"kind must be one of {SHIPPED_KINDS}, got {kind!r}")
    from importlib.resources import files

    return Path(str(files("route_switch") / "data" / kind))


def find_shipped(path: str | os.PathLike, kind: str) -> Path:
    """A program or evalset spec: the path as given if it exists; else, for a bare name (``default``,
    ``default.yaml``) or ``<kind>/<name>``, the user's ``<kind>/<name>.yaml`` under the current folder,
    then the packaged copy. Anything else is returned unchanged (the caller reports it missing)."""
    p = Path(os.path.expandvars(str(path))).expanduser()
    if p.exists() or p.is_absolute() or p.parent not in (Path("."), Path(kind)):
        return p
    name = p.name if p.suffix in (".yaml", ".yml") else p.name + ".yaml"
    for cand in (Path(kind) / name, packaged_dir(kind) / name):
        if cand.is_file():
            return cand
    return p


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

    from .errors import ConfigError

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


def read_yaml(path: str | os.PathLike, error=None):
    """``yaml.safe_load`` a file; unreadable, non-UTF-8 or invalid YAML raises ``error`` with file and line."""
    import yaml

    from .errors import ConfigError

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
