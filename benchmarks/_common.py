"""Shared helpers of the benchmarks: a fitted router and queries (shared data or the synthetic set)."""
from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def synthetic_evalset():
    """The tests' synthetic evalset (small/medium/large), written by the project itself."""
    from route_switch.testing.synthetic import synthetic_evalset as make

    return make()


def fitted_router_dir(evalset_name: str | None, out: Path | None = None) -> tuple[Path, list[str]]:
    """(router directory, held-out queries): fit on ``evalset_name``'s train split (``None``: synthetic).

    The fit is cached under the route-switch cache dir, so repeated runs start at once.
    """
    from route_switch.routing.fitting import fit
    from route_switch.core.paths import cache_dir

    if evalset_name is None:
        ev = synthetic_evalset()
        train, test = ev.split(0.3, 0)
    else:
        from route_switch.core.spec import load_spec

        spec = load_spec(evalset_name)
        train, test = spec.train_test()
    out = out or cache_dir() / "bench" / f"router-{evalset_name or 'synthetic'}"
    if not (out / "router.yaml").exists():
        fit(train, out)
    else:
        from route_switch.routing.controller import Router

        try:
            Router.from_config(out)
        except Exception:  # stale artifact from another version: refit
            fit(train, out)
    return out, list(dict.fromkeys(test.prompts))


def percentile(values, q: float) -> float | None:
    if not values:
        return None
    v = sorted(values)
    return v[min(len(v) - 1, int(round(q / 100 * (len(v) - 1))))]


def rss_mb(pid: int | str = "self") -> float:
    """Resident set size in MB from /proc (Linux)."""
    import os

    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def free_port() -> int:
    from route_switch.testing.upstreams import free_port as port

    return port()


def wait_http(url: str, proc, timeout_s: float = 60) -> None:
    """Poll ``url`` until it answers; raise if ``proc`` exits or ``timeout_s`` passes."""
    import time

    import httpx

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args} exited with {proc.returncode}")
        try:
            httpx.get(url, timeout=1, trust_env=False)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise TimeoutError(url)


def read_corpus_yaml(path: str | Path):
    """A corpus YAML file, parsed with ``safe_load``; a character outside the BMP written as a UTF-16
    surrogate pair of escapes (``"\\ud835\\udc14"``, which YAML would read as two lone surrogates) is read
    as the one character it stands for."""
    import re

    import yaml

    def one(m):
        hi, lo = int(m.group(1), 16), int(m.group(2), 16)
        return "\\U%08x" % (0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00))
    text = Path(path).read_text(encoding="utf-8")
    return yaml.safe_load(re.sub(r"\\u(d[89ab][0-9a-f]{2})\\u(d[c-f][0-9a-f]{2})", one, text, flags=re.I))
