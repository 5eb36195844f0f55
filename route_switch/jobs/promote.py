"""Promotion: replace a deployed folder (artifact, estimator) by a candidate with an atomic swap."""
from __future__ import annotations

import os
import shutil
from pathlib import Path


def swap_in(src: Path, dst: Path) -> None:
    """Replace folder ``dst`` by a copy of ``src`` with renames; the old one is kept as ``.<name>.prev``."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.new-{os.getpid()}")
    prev = dst.with_name(f".{dst.name}.prev")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(src, tmp)
    shutil.rmtree(prev, ignore_errors=True)
    if dst.exists():
        dst.rename(prev)
    tmp.rename(dst)

