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
