"""The route log: record format, privacy, rotation, thread safety, reading, and the Router hook."""
from __future__ import annotations

import datetime as dt
import json
import threading

import pytest

from route_switch.decision import Decision
from route_switch.errors import ConfigError
from route_switch.routelog import RouteLog, query_sha256, read_route_log, route_log_files

D = Decision(tier=2, tier_name="medium", model="m-2", path="estimator", reason="tau",
             predicted_quality={"m-1": 0.4, "m-2": 0.9})


def test_record_fields_and_privacy(tmp_path):
    h = RouteLog(tmp_path / "h.jsonl")
    f = RouteLog(tmp_path / "f.jsonl", privacy="full")
    for log in (h, f):
        log.write("What is the capital of Peru?", D)
        log.close()
    rh, rf = read_route_log(tmp_path / "h.jsonl")[0], read_route_log(tmp_path / "f.jsonl")[0]
    assert set(rh) == {"ts", "query_sha256", "tier", "tier_name", "model", "path", "predicted_quality"}
    assert "Peru" not in (tmp_path / "h.jsonl").read_text()
    assert rh["query_sha256"] == query_sha256("What is the capital of Peru?") == rf["query_sha256"]
    assert rf["query"] == "What is the capital of Peru?" and rf["tier"] == 2 and rf["predicted_quality"]["m-2"] == 0.9
    assert dt.datetime.fromisoformat(rh["ts"].replace("Z", "+00:00")).tzinfo is not None


def test_rotation_keeps_backups(tmp_path):
    p = tmp_path / "routes.jsonl"
    log = RouteLog(p, privacy="full", max_bytes=2048, backups=2)
    for i in range(100):
        log.write(f"query number {i} " + "x" * 100, D)
    log.close()
    files = route_log_files(p)
    assert [f.name for f in files] == ["routes.jsonl.2", "routes.jsonl.1", "routes.jsonl"]
    assert all(f.stat().st_size <= 2048 for f in files)
    recs = read_route_log(p)
    nums = [int(r["query"].split()[2]) for r in recs]
    assert nums == sorted(nums) and nums[-1] == 99 and len(nums) < 100  # oldest dropped, order kept


def test_concurrent_writers_never_tear_lines(tmp_path):
    p = tmp_path / "routes.jsonl"
    log = RouteLog(p, privacy="full", max_bytes=20_000, backups=50)

    def writer(k):
        for i in range(200):
            log.write(f"thread {k} query {i} " + "é" * (i % 30), D)

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    log.close()
    lines = [line for f in route_log_files(p) for line in f.read_text(encoding="utf-8").splitlines()]
    assert len(lines) == 1600 and all(json.loads(x)["tier"] == 2 for x in lines)
    assert len(route_log_files(p)) > 2


def test_since_filter_and_torn_lines(tmp_path):
    p = tmp_path / "routes.jsonl"
    old = {"ts": "2020-01-01T00:00:00Z", "query_sha256": "a", "tier": 1}
    new = {"ts": "2030-01-01T00:00:00.5Z", "query_sha256": "b", "tier": 1}
    p.write_text(json.dumps(old) + "\n" + json.dumps(new) + "\nnot json\n" + '{"ts": "2031-01-01T00:00:00Z", "query')
    assert [r["query_sha256"] for r in read_route_log(p)] == ["a", "b"]
    assert [r["query_sha256"] for r in read_route_log(p, since="2025-01-01T00:00:00Z")] == ["b"]
    assert read_route_log(p, since=dt.datetime(2031, 1, 1, tzinfo=dt.timezone.utc)) == []


def test_bad_settings_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="route_log.privacy"):
        RouteLog(tmp_path / "x", privacy="some")
    with pytest.raises(ConfigError, match="route_log.max_bytes"):
        RouteLog(tmp_path / "x", max_bytes=10)
    with pytest.raises(Exception, match="route log not found"):
        read_route_log(tmp_path / "nope.jsonl")


def test_router_writes_through_the_hook(tmp_path):
    from route_switch.controller import Router

    log = RouteLog(tmp_path / "routes.jsonl", privacy="hash")
    r = Router(route_log=log)
    for q in ("hello", "", "x" * 10_000):
        r.route(q)
    log.close()
    recs = read_route_log(tmp_path / "routes.jsonl")
    assert len(recs) == 3 and recs[0]["path"] == "default" and "query" not in recs[0]


def test_write_failure_never_breaks_route(tmp_path):
    from route_switch.controller import Router

    (tmp_path / "ro").mkdir()
    (tmp_path / "ro" / "routes.jsonl").mkdir()  # a directory where the file should be: every write fails
    r = Router(route_log=RouteLog(tmp_path / "ro" / "routes.jsonl"))
    assert r.route("hello").tier >= 1


def test_from_config_builds_the_log(tmp_path):
    from route_switch.controller import Router

    cfg = tmp_path / "router.yaml"
    cfg.write_text("tiers:\n  - {name: s, model: a}\n  - {name: l, model: b}\n"
                   "route_log: {path: logs/routes.jsonl, privacy: full, max_bytes: 4096, backups: 1}\n")
    r = Router.from_config(cfg)
    assert isinstance(r.route_log, RouteLog) and r.route_log.privacy == "full" and r.route_log.backups == 1
    r.route("What is 2+2?")
    r.route_log.close()
    assert read_route_log(tmp_path / "logs" / "routes.jsonl")[0]["query"] == "What is 2+2?"
