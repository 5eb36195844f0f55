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
    return Path(os.environ.get(CACHE_ENV, "~/.cache/route-switch")).expanduser()


def resolve_data_path(path: str | os.PathLike) -> Path:
    """Resolve a data file: absolute or existing paths as given, bare names against data_dir()."""
    p = Path(os.path.expandvars(str(path))).expanduser()
    if p.is_absolute() or p.exists():
        return p
    return data_dir() / p


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


def read_yaml(path: str | os.PathLike, error=None):
    """``yaml.safe_load`` a file; unreadable, non-UTF-8 or invalid YAML raises ``error`` with file and line."""
    import yaml

    from .errors import ConfigError

    error = error or ConfigError
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as e:
        raise error(f"cannot read: {e.strerror or e}", file=str(p)) from None
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
