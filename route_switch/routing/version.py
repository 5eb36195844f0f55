"""Which files a router reads, and a short content hash of them (the router's ``version``).

The proxy answers the version in ``X-Route-Switch-Version``; the hot reloader polls the cheap
:func:`fingerprint` and rebuilds when it changes.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

ESTIMATOR_FILES = ("estimator.json", "arrays.npz")  # what QualityEstimator.load reads from its folder
ARTIFACT_FILES = ("instruction.txt", "tiers.yaml", "demos.yaml")  # what load_artifact reads from its folder


def config_files(path: str | Path) -> list[Path]:
    """Every file a router built from ``path`` reads: the YAML, the estimator's files, the program's,
    the fusion. Nothing else: a route log or a backup written into the same folder is no change."""
    from route_switch.routing.config import load_config

    p = Path(path)
    yaml_path = p / "router.yaml" if p.is_dir() else p
    cfg = load_config(yaml_path)
    llm = cfg.llm or {}
    files = [yaml_path]
    for extra, names in ((cfg.estimator, ESTIMATOR_FILES), (llm.get("program"), ARTIFACT_FILES),
                         (llm.get("fusion"), ())):
        if not extra:
            continue
        e = Path(extra)
        files += [e / n for n in names] if e.is_dir() else [e]
    return files


def fingerprint(path: str | Path) -> tuple:
    """A cheap identity of the files (inode, mtime, size): it changes when any of them is replaced."""
    out = []
    for f in config_files(path):
        try:
            st = f.stat()
            out.append((str(f), st.st_ino, st.st_mtime_ns, st.st_size))
        except FileNotFoundError:
            out.append((str(f), None))
    return tuple(out)


def config_version(path: str | Path) -> str:
    """12 hex digits of the SHA-256 of the files' names and contents."""
    h = hashlib.sha256()
    for f in config_files(path):
        h.update(f.name.encode() + b"\0")
        _hash_file(h, f)
        h.update(b"\0")
    return h.hexdigest()[:12]


def _hash_file(h, f: Path) -> None:
    """Feed a regular file to ``h`` in chunks; a missing file or a device (a symlink to /dev/zero) as a marker."""
    import stat

    try:
        with os.fdopen(os.open(f, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0)), "rb", buffering=0) as fh:
            if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
                h.update(b"<not a regular file>")
                return
            while chunk := fh.read(1 << 20):
                h.update(chunk)
    except FileNotFoundError:
        h.update(b"<missing>")
