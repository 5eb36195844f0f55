"""Hot reload: a promoted estimator or config is picked up by a running Router and proxy, atomically."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from servers import FakeUpstream, free_port, run_app, wait_http  # noqa: F401

from route_switch.routing.config import dump_config, load_config
from route_switch.routing.fitting import fit
from route_switch.core.files import copy_into
from route_switch.core.files import atomic_write_text
from route_switch.routing.reload import RouterReloader
from route_switch.routing.version import config_version

ROOT = Path(__file__).resolve().parents[1]
KEY = "reload-key"
AUTH = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture(scope="module")
def estimators(synthetic, tmp_path_factory):
    """Two different fitted estimators (as the weekly job would promote), and their tiers."""
    base = tmp_path_factory.mktemp("estimators")
    half, _ = synthetic.split(0.5, 3)
    fit(synthetic, base / "a")
    fit(half, base / "b")
    return base / "a", base / "b"


def deploy(estimators, where: Path, upstream: str | None = None) -> Path:
    """A production folder: ``router.yaml`` + ``estimator/`` (a copy of estimator a)."""
    a, _ = estimators
    copy_into(a, where / "estimator")
    cfg = load_config(a)
    cfg.estimator = str(where / "estimator")
    for t in cfg.tiers:
        t.api_base = upstream
    dump_config(cfg, where / "router.yaml")
    return where


def set_tau(where: Path, tau: float) -> None:
    cfg = load_config(where)
    cfg.tau = tau
    dump_config(cfg, where / "router.yaml")  # atomic write: readers see the old or the new file


def test_reload_swaps_on_change_and_keeps_the_old_router_on_bad_files(estimators, tmp_path):
    prod = deploy(estimators, tmp_path / "prod")
    r = RouterReloader(prod)
    v0, first = r.version, r.current
    assert v0 == config_version(prod) and r.route("Say hello to Peru.").tier >= 1
    assert r.reload() == {"reloaded": False, "version": v0, "previous": v0}  # nothing changed
    copy_into(estimators[1], prod / "estimator")  # the weekly job's promotion
    res = r.reload()
    assert res["reloaded"] and res["version"] != v0 and r.current is not first and r.version == res["version"]
    v1 = r.version
    good = (prod / "router.yaml").read_text()
    atomic_write_text(prod / "router.yaml", good.replace("tau:", "tau: [broken"))
    bad = r.reload()
    assert not bad["reloaded"] and "error" in bad and r.version == v1  # still serving v1
    assert r.route("Say hello to Peru.").tier >= 1
    (prod / "estimator" / "arrays.npz").write_bytes(b"not an npz")  # a half-copied estimator
    atomic_write_text(prod / "router.yaml", good)
    assert "error" in r.reload() and r.version == v1
    copy_into(estimators[0], prod / "estimator")
    assert r.reload()["reloaded"] and r.version == v0  # same files as at the start: same version


def test_proxy_serves_through_ten_reloads_without_a_failure(estimators, tmp_path):
    """Clients hammer the proxy while the estimator and τ are promoted 10 times (file watch and
    POST /admin/reload alternately): every request succeeds, and the version header moves on."""
    from route_switch.server import create_app

    with FakeUpstream("ok") as up:
        prod = deploy(estimators, tmp_path / "prod", up.url)
        reloader = RouterReloader(prod).watch(0.05)
        app = create_app(reloader, api_keys={KEY}, rate_limit_per_min=0, upstream_timeout_s=5)
        stop, seen, failures, count = threading.Event(), [], [], [0]

        def client(cid: int):
            with httpx.Client(trust_env=False, timeout=30) as c:
                i = 0
                while not stop.is_set():
                    i += 1
                    try:
                        r = c.post(f"{base}/v1/chat/completions", headers=AUTH, json={
                            "model": "router", "messages": [{"role": "user", "content": f"Spell the word tiger {cid}-{i}"}]})
                        if r.status_code != 200 or not r.json()["choices"]:
                            failures.append((r.status_code, r.text[:200]))
                        seen.append(r.headers.get("x-route-switch-version"))
                        assert r.json()["route_switch"]["router_version"] == r.headers["x-route-switch-version"]
                    except Exception as e:  # any exception is a failed request
                        failures.append(repr(e))
                    count[0] += 1

        with run_app(app) as base:
            threads = [threading.Thread(target=client, args=(k,)) for k in range(4)]
            for t in threads:
                t.start()
            versions = [reloader.version]
            try:
                for k in range(10):
                    copy_into(estimators[(k + 1) % 2], prod / "estimator")
                    set_tau(prod, round(0.05 + 0.02 * k, 2))
                    if k % 2:  # the other half is left to the file watch
                        r = httpx.post(f"{base}/admin/reload", headers=AUTH, timeout=30)
                        assert r.status_code == 200 and r.json()["version"] == r.headers["x-route-switch-version"]
                    target = config_version(prod)
                    deadline = time.monotonic() + 20
                    while not seen or seen[-1] != target:
                        assert time.monotonic() < deadline, f"version {target} never served"
                        time.sleep(0.01)
                    versions.append(target)
            finally:
                stop.set()
                for t in threads:
                    t.join(30)
    assert failures == [] and count[0] > 50
    assert len(set(versions)) == 11  # every promotion was a new version, and each was served
    assert reloader.reloads >= 10


def test_sighup_reloads_a_running_serve(estimators, tmp_path):
    prod = deploy(estimators, tmp_path / "prod", "http://127.0.0.1:9/v1")  # serve needs an endpoint; none is called
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "route_switch.cli", "serve", "--router", str(prod), "--port",
                             str(port), "--watch-s", "0", "--log-level", "warning"],
                            env=os.environ | {"ROUTE_SWITCH_API_KEYS": KEY}, cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_http(f"{url}/health", 120, proc)
        v0 = httpx.get(f"{url}/health").json()["version"]
        set_tau(prod, 0.33)
        time.sleep(0.5)
        assert httpx.get(f"{url}/health").json()["version"] == v0  # no watch: nothing happens by itself
        proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 20
        while httpx.get(f"{url}/health").json()["version"] == v0:
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.05)
        r = httpx.post(f"{url}/v1/route", json={"query": "Spell the word glass."}, headers=AUTH)
        assert r.headers["x-route-switch-version"] == config_version(prod) != v0
        assert httpx.post(f"{url}/admin/reload").status_code == 401  # behind the key
    finally:
        proc.terminate()
        proc.wait(30)


def test_a_log_written_into_the_router_folder_is_no_reload(estimators, tmp_path):
    """``fit`` puts router.yaml and the estimator in one folder; a route log there must not reload the router."""
    import shutil

    from route_switch.routing.version import config_files, fingerprint

    prod = tmp_path / "prod"
    shutil.copytree(estimators[0], prod)
    r = RouterReloader(prod)
    fp, v0 = fingerprint(prod), r.version
    (prod / "routes.jsonl").write_text('{"tier": 1}\n')
    (prod / "logs").mkdir()
    (prod / "logs" / "routes.jsonl").write_text('{"tier": 2}\n')
    (prod / "router.yaml.bak").write_text("backup")
    assert fingerprint(prod) == fp and config_version(prod) == v0
    assert r.reload() == {"reloaded": False, "version": v0, "previous": v0}
    names = {f.name for f in config_files(prod)}
    assert names == {"router.yaml", "estimator.json", "arrays.npz"}
    (prod / "arrays.npz").touch()  # a file the router reads still counts
    assert fingerprint(prod) != fp


def test_fingerprint_covers_the_fusion_and_the_program_files(estimators, tmp_path):
    import shutil

    from route_switch.routing.version import config_files

    prod = tmp_path / "prod"
    shutil.copytree(estimators[0], prod)
    art = tmp_path / "art"
    art.mkdir()
    for n in ("instruction.txt", "tiers.yaml", "demos.yaml", "metrics.json", "notes.md"):
        (art / n).write_text("x")
    text = (prod / "router.yaml").read_text() + f"llm: {{program: {art}, fusion: fusion.json}}\n"
    (prod / "router.yaml").write_text(text)
    names = [f.name for f in config_files(prod)]
    assert "fusion.json" in names and {"instruction.txt", "tiers.yaml", "demos.yaml"} <= set(names)
    assert "notes.md" not in names and "metrics.json" not in names
