"""The route log: record format, privacy, rotation, thread safety, reading, and the Router hook."""
from __future__ import annotations

import datetime as dt
import json
import threading

import pytest

from route_switch.core.decision import Decision
from route_switch.core.errors import ConfigError
from route_switch.core.routelog import RouteLog, query_sha256, read_route_log, route_log_files

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
    from route_switch.routing.controller import Router

    log = RouteLog(tmp_path / "routes.jsonl", privacy="hash")
    r = Router(route_log=log)
    for q in ("hello", "", "x" * 10_000):
        r.route(q)
    log.close()
    recs = read_route_log(tmp_path / "routes.jsonl")
    assert len(recs) == 3 and recs[0]["path"] == "default" and "query" not in recs[0]


def test_write_failure_never_breaks_route(tmp_path):
    from route_switch.routing.controller import Router

    (tmp_path / "ro").mkdir()
    (tmp_path / "ro" / "routes.jsonl").mkdir()  # a directory where the file should be: every write fails
    r = Router(route_log=RouteLog(tmp_path / "ro" / "routes.jsonl"))
    assert r.route("hello").tier >= 1


def test_from_config_builds_the_log(tmp_path):
    from route_switch.routing.controller import Router

    cfg = tmp_path / "router.yaml"
    cfg.write_text("tiers:\n  - {name: s, model: a}\n  - {name: l, model: b}\n"
                   "route_log: {path: logs/routes.jsonl, privacy: full, max_bytes: 4096, backups: 1}\n")
    r = Router.from_config(cfg)
    assert isinstance(r.route_log, RouteLog) and r.route_log.privacy == "full" and r.route_log.backups == 1
    r.route("What is 2+2?")
    r.route_log.close()
    assert read_route_log(tmp_path / "logs" / "routes.jsonl")[0]["query"] == "What is 2+2?"


WRITER = """
import sys
sys.path.insert(0, sys.argv[1])
from route_switch.core.decision import Decision
from route_switch.core.routelog import RouteLog

log = RouteLog(sys.argv[2], privacy="full", max_bytes=int(sys.argv[4]), backups=1000)
d = Decision(tier=2, tier_name="medium", model="m-2", path="estimator", reason="tau",
             predicted_quality={"m-1": 0.4, "m-2": 0.9})
w = sys.argv[3]
print("ready", flush=True)
sys.stdin.readline()  # start together
for i in range(int(sys.argv[5])):
    log.write(f"writer {w} query {i} " + "\u00e9" * (i % 37), d)
log.close()
"""


def test_several_processes_share_one_rotating_log(tmp_path):
    """4 real processes x 10,000 decisions into one log with rotation on: every line is there exactly once,
    whole, and no file outgrew the rotation size (a writer never appends to a file rotated away)."""
    import subprocess
    import sys
    from pathlib import Path

    p, n, procs, max_bytes = tmp_path / "routes.jsonl", 10_000, [], 100_000
    root = str(Path(__file__).resolve().parents[1])
    for w in range(4):
        procs.append(subprocess.Popen([sys.executable, "-c", WRITER, root, str(p), str(w), str(max_bytes), str(n)],
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True))
    for pr in procs:
        assert pr.stdout.readline().strip() == "ready"
    for pr in procs:
        pr.stdin.write("go\n")
        pr.stdin.flush()
    for pr in procs:
        assert pr.wait(120) == 0
    files = route_log_files(p)
    assert len(files) > 20  # rotation really happened, many times, under contention
    assert all(f.stat().st_size <= max_bytes for f in files)
    seen = {}
    for f in files:
        raw = f.read_bytes()
        assert raw.endswith(b"\n")
        for line in raw.decode("utf-8").split("\n")[:-1]:
            rec = json.loads(line)  # a torn line would not parse
            _, w, _, i = rec["query"].split()[:4]
            assert rec["query"] == f"writer {w} query {i} " + "\u00e9" * (int(i) % 37)
            seen[(w, int(i))] = seen.get((w, int(i)), 0) + 1
    assert len(seen) == 4 * n and set(seen.values()) == {1}  # none lost, none duplicated
    per_writer = {w: sorted(i for ww, i in seen if ww == w) for w in "0123"}
    assert all(v == list(range(n)) for v in per_writer.values())
    recs = read_route_log(p)  # the reader agrees, and keeps each writer's order
    assert len(recs) == 4 * n
    for w in "0123":
        order = [int(r["query"].split()[3]) for r in recs if r["query"].split()[1] == w]
        assert order == list(range(n))
