"""The routing proxy end to end: the real ``openai`` client -> uvicorn on loopback -> real upstreams.

Upstreams are real sockets: llama.cpp serving the Qwen2.5-Coder-0.5B GGUF (``local_llm`` tests),
and ``FakeUpstream`` (a stdlib HTTP server that answers, fails with 500, sends garbage or sleeps).
"""
from __future__ import annotations

import json
import logging
import time

import httpx
import pytest

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")
openai = pytest.importorskip("openai")

from servers import (FakeUpstream, fitted_router_dir, free_port, llama_upstream, router_with_upstreams,  # noqa: E402,F401
                     run_app)

from route_switch.core.errors import ConfigError  # noqa: E402
from route_switch.server import create_app  # noqa: E402

KEY = "test-key-123"
AUTH = {"Authorization": f"Bearer {KEY}"}
HARD = "Prove that the sum of the first 7 odd numbers is a perfect square, step by step."


def client(base: str, key: str = KEY) -> "openai.OpenAI":
    return openai.OpenAI(base_url=f"{base}/v1", api_key=key, max_retries=0, timeout=120)


def metric(base: str, line_prefix: str) -> float:
    text = httpx.get(f"{base}/metrics", headers=AUTH).text
    return sum(float(l.rsplit(" ", 1)[1]) for l in text.splitlines() if l.startswith(line_prefix))


@pytest.fixture(scope="module")
def fake():
    with FakeUpstream("ok") as up:
        yield up


@pytest.fixture(scope="module")
def fake_proxy(fitted_router_dir, fake):
    """The proxy with every tier on the instant fake upstream."""
    app = create_app(router_with_upstreams(fitted_router_dir, [fake.url] * 3), api_keys={KEY, "other-key"},
                     rate_limit_per_min=10_000, upstream_timeout_s=5)
    with run_app(app) as base:
        yield base


@pytest.fixture(scope="module")
def llm_proxy(fitted_router_dir, llama_upstream):
    """The proxy with every tier served by the real llama.cpp server."""
    app = create_app(router_with_upstreams(fitted_router_dir, [llama_upstream] * 3), api_keys={KEY},
                     rate_limit_per_min=10_000, upstream_timeout_s=120)
    with run_app(app) as base:
        yield base


# ------------------------------------------------------------------ real model upstream
@pytest.mark.local_llm
def test_chat_non_streaming_real_model(llm_proxy):
    before = metric(llm_proxy, 'route_switch_requests_total{endpoint="chat_completions",status="200"}')
    raw = client(llm_proxy).chat.completions.with_raw_response.create(
        model="router", messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hi."}],
        max_tokens=12)
    comp = raw.parse()
    assert comp.choices[0].message.content.strip()
    rs = comp.model_extra["route_switch"]
    assert rs["tier"] in (1, 2, 3) and rs["path"] == "estimator" and rs["reason"] and rs["retried_from"] == []
    assert raw.headers["x-route-switch-tier"] == str(rs["tier"])
    assert raw.headers["x-route-switch-tier-name"] == rs["tier_name"]
    assert raw.headers["x-request-id"] == rs["request_id"]
    after = metric(llm_proxy, 'route_switch_requests_total{endpoint="chat_completions",status="200"}')
    assert after == before + 1
    assert metric(llm_proxy, "route_switch_tier_answered_total") >= 1


@pytest.mark.local_llm
def test_chat_streaming_relays_chunks_as_they_arrive(llm_proxy):
    t0 = time.perf_counter()
    times, text = [], []
    with client(llm_proxy).chat.completions.with_streaming_response.create(
            model="router-tau-1", messages=[{"role": "user", "content": "Write a long story about a lighthouse keeper."}],
            max_tokens=64, stream=True) as resp:
        assert resp.headers["x-route-switch-tier"] == "1"  # tau=1: always the cheapest tier
        assert resp.headers["x-route-switch-path"] == "estimator"
        assert resp.headers["content-type"].startswith("text/event-stream")
        for chunk in resp.parse():
            times.append(time.perf_counter() - t0)
            if chunk.choices and chunk.choices[0].delta.content:
                text.append(chunk.choices[0].delta.content)
    total = time.perf_counter() - t0
    assert len(times) >= 20 and "".join(text).strip()
    # pass-through, not buffering: chunks arrive spread over the generation (a buffering proxy would
    # deliver them all within milliseconds), so the first one came long before the upstream finished
    spread = times[-1] - times[0]
    assert spread > 0.3 and times[0] < total - 0.3, (times[0], spread, total)
    assert len({round(t, 2) for t in times}) > len(times) / 3


@pytest.mark.local_llm
def test_fallback_to_real_model_when_tier1_refuses(fitted_router_dir, llama_upstream):
    dead = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens: connection refused
    app = create_app(router_with_upstreams(fitted_router_dir, [dead, llama_upstream, llama_upstream]),
                     api_keys={KEY}, upstream_timeout_s=120)
    with run_app(app) as base:
        raw = client(base).chat.completions.with_raw_response.create(
            model="router-tau-1", messages=[{"role": "user", "content": "Say hi."}], max_tokens=8)
        rs = raw.parse().model_extra["route_switch"]
        assert (rs["routed_tier"], rs["tier"]) == (1, 2)
        assert rs["retried_from"][0]["tier"] == 1 and "connection" in rs["retried_from"][0]["error"]
        assert raw.headers["x-route-switch-retried-from"].startswith("1:")
        chunks = list(client(base).chat.completions.create(
            model="router-tau-1", messages=[{"role": "user", "content": "Say hi."}], max_tokens=8, stream=True))
        assert len(chunks) >= 2
        assert metric(base, 'route_switch_upstream_retries_total{tier="1"}') == 2


# ------------------------------------------------------------------ API surface (fast fake upstream)
def test_models_route_health_and_knobs(fake_proxy):
    c = client(fake_proxy)
    assert "router" in [m.id for m in c.models.list().data]
    assert httpx.get(f"{fake_proxy}/health").json()["status"] == "ok"  # no key needed
    r = httpx.post(f"{fake_proxy}/v1/route", json={"query": HARD}, headers=AUTH)
    assert r.status_code == 200 and r.json()["path"] in ("estimator", "cache") and r.json()["tier"] in (1, 2, 3)
    msgs = [{"role": "user", "content": [{"type": "text", "text": HARD}]}, {"role": "assistant", "content": "ok"}]
    assert httpx.post(f"{fake_proxy}/v1/route", json={"messages": msgs}, headers=AUTH).json()["tier"] in (1, 2, 3)
    cheap = httpx.post(f"{fake_proxy}/v1/route", json={"query": HARD, "model": "router-tau-1"}, headers=AUTH).json()
    best = httpx.post(f"{fake_proxy}/v1/route", json={"query": HARD, "tau": 0}, headers=AUTH).json()
    assert cheap["tier"] == 1 and best["tier"] == 3, (cheap, best)
    lam = httpx.post(f"{fake_proxy}/v1/route", json={"query": HARD, "model": "router-lambda-100"}, headers=AUTH).json()
    assert lam["tier"] == 1 and "lambda=100" in lam["reason"]
    comp = c.chat.completions.create(model="router-tau-0", messages=[{"role": "user", "content": HARD}])
    assert comp.model_extra["route_switch"]["tier"] == 3
    assert comp.model == "qwen-0.5b"  # the tier's upstream_model went upstream (FakeUpstream echoes it)

def test_metrics_count_requests_tiers_paths(fake_proxy):
    c = client(fake_proxy)
    key = 'route_switch_requests_total{endpoint="chat_completions",status="200"}'
    before, tier1 = metric(fake_proxy, key), metric(fake_proxy, 'route_switch_tier_chosen_total{tier="1"')
    for _ in range(3):
        c.chat.completions.create(model="router-tau-1", messages=[{"role": "user", "content": "hello there"}])
    assert metric(fake_proxy, key) == before + 3
    assert metric(fake_proxy, 'route_switch_tier_chosen_total{tier="1"') == tier1 + 3
    text = httpx.get(f"{fake_proxy}/metrics", headers=AUTH).text
    assert 'route_switch_route_path_total{path="cache"}' in text  # the same query twice hits the cache
    assert "route_switch_request_duration_seconds_bucket" in text and "# TYPE" in text


def test_auth_required(fake_proxy):
    with pytest.raises(openai.AuthenticationError):
        client(fake_proxy, key="wrong").chat.completions.create(model="router", messages=[{"role": "user", "content": "x"}])
    for headers in ({}, {"Authorization": "Basic abc"}, {"Authorization": "Bearer"}):
        r = httpx.post(f"{fake_proxy}/v1/route", json={"query": "x"}, headers=headers)
        assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
    assert httpx.get(f"{fake_proxy}/metrics").status_code == 401
    assert httpx.post(f"{fake_proxy}/v1/route", json={"query": "x"},
                      headers={"Authorization": "Bearer other-key"}).status_code == 200


def test_refuses_to_start_without_keys(fitted_router_dir, monkeypatch):
    from route_switch.routing.controller import Router
    from route_switch.server import serve

    r = Router.from_config(fitted_router_dir)
    with pytest.raises(ConfigError, match="insecure-no-auth"):
        create_app(r, api_keys=set())
    monkeypatch.delenv("ROUTE_SWITCH_API_KEYS", raising=False)
    with pytest.raises(ConfigError, match="ROUTE_SWITCH_API_KEYS"):
        serve(fitted_router_dir)
    app = create_app(r, api_keys=set(), insecure_no_auth=True)
    with run_app(app) as base:
        assert httpx.post(f"{base}/v1/route", json={"query": "x"}).status_code == 200


def test_body_too_large_413(fake_proxy):
    with pytest.raises(openai.APIStatusError) as e:
        client(fake_proxy).chat.completions.create(model="router", messages=[{"role": "user", "content": "x" * 1_100_000}])
    assert e.value.status_code == 413 and "larger than" in e.value.message
    r = httpx.post(f"{fake_proxy}/v1/route", content=b"{" + b" " * 50_000_000 + b"}", headers=AUTH)  # beyond drain
    assert r.status_code == 413


def test_rate_limit_429(fitted_router_dir, fake):
    app = create_app(router_with_upstreams(fitted_router_dir, [fake.url] * 3), api_keys={KEY, "k2"}, rate_limit_per_min=3)
    with run_app(app) as base:
        codes = [httpx.post(f"{base}/v1/route", json={"query": "x"}, headers=AUTH) for _ in range(4)]
        assert [r.status_code for r in codes] == [200, 200, 200, 429]
        assert int(codes[-1].headers["retry-after"]) >= 1 and codes[-1].json()["error"]["type"] == "rate_limit_error"
        with pytest.raises(openai.RateLimitError):
            client(base).chat.completions.create(model="router", messages=[{"role": "user", "content": "x"}])
        # per key: another key still passes
        assert httpx.post(f"{base}/v1/route", json={"query": "x"}, headers={"Authorization": "Bearer k2"}).status_code == 200


@pytest.mark.parametrize("body, code", [
    (b"{not json", "invalid_json"), (b"", "invalid_json"), (b"[1, 2]", "invalid_json"),
    (b'{"model": "router"}', "invalid_messages"), (b'{"model": "router", "messages": []}', "invalid_messages"),
    (b'{"messages": [{"role": "user", "content": "x"}]}', "invalid_model"),
    (b'{"model": "router", "messages": [{"content": "x"}]}', "invalid_messages"),
    (b'{"model": "router", "messages": [{"role": "user", "content": 5}]}', "invalid_messages"),
    (b'{"model": "router", "messages": [{"role": "user", "content": [{"type": "text"}]}]}', "invalid_messages"),
    (b'{"model": "router", "stream": "yes", "messages": [{"role": "user", "content": "x"}]}', "invalid_stream"),
    (b'{"model": "router-tau-7", "messages": [{"role": "user", "content": "x"}]}', "invalid_model"),
])
def test_malformed_requests_400(fake_proxy, body, code):
    r = httpx.post(f"{fake_proxy}/v1/chat/completions", content=body, headers=AUTH)
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["code"] == code and err["message"] and err["type"] == "invalid_request_error"


def test_unknown_model_404_and_unknown_path(fake_proxy):
    with pytest.raises(openai.NotFoundError) as e:
        client(fake_proxy).chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}])
    assert "router-tau" in e.value.message
    r = httpx.get(f"{fake_proxy}/v1/nope", headers=AUTH)
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    r = httpx.get(f"{fake_proxy}/v1/chat/completions", headers=AUTH)
    assert r.status_code == 405 and "error" in r.json()


def test_access_log_one_json_line_without_prompt(fitted_router_dir, fake, caplog):
    secret = "my secret prompt 4711"
    for log_prompts in (False, True):
        app = create_app(router_with_upstreams(fitted_router_dir, [fake.url] * 3), api_keys={KEY}, log_prompts=log_prompts)
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="route_switch.server.access"), run_app(app) as base:
            client(base).chat.completions.create(model="router", messages=[{"role": "user", "content": secret}])
        lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "route_switch.server.access"]
        assert len(lines) == 1
        rec = lines[0]
        assert rec["status"] == 200 and rec["tier"] in (1, 2, 3) and rec["path"] and rec["latency_ms"] >= 0
        assert rec["key"] != KEY and len(rec["key"]) == 12 and rec["id"]
        assert (secret in json.dumps(rec)) == log_prompts


# ------------------------------------------------------------------ upstream faults on real sockets
@pytest.mark.parametrize("mode, error", [("refused", "connection"), ("slow", "timeout"), ("malformed", "malformed"),
                                         ("500", "HTTP 500")])
@pytest.mark.parametrize("stream", [False, True])
def test_upstream_fault_retries_next_tier(fitted_router_dir, fake, mode, error, stream):
    import contextlib

    with contextlib.ExitStack() as stack:
        if mode == "refused":
            bad_url = f"http://127.0.0.1:{free_port()}/v1"
        else:
            bad_url = stack.enter_context(FakeUpstream(mode, delay=3)).url
        app = create_app(router_with_upstreams(fitted_router_dir, [bad_url, fake.url, fake.url]), api_keys={KEY},
                         upstream_timeout_s=1.0)
        base = stack.enter_context(run_app(app))
        t0 = time.perf_counter()
        if stream:
            with client(base).chat.completions.with_streaming_response.create(
                    model="router-tau-1", messages=[{"role": "user", "content": "hi"}], stream=True) as resp:
                headers = resp.headers
                text = "".join(c.choices[0].delta.content or "" for c in resp.parse() if c.choices)
            assert text == "ok from fake"
        else:
            raw = client(base).chat.completions.with_raw_response.create(
                model="router-tau-1", messages=[{"role": "user", "content": "hi"}])
            headers, rs = raw.headers, raw.parse().model_extra["route_switch"]
            assert (rs["routed_tier"], rs["tier"], rs["tier_name"]) == (1, 2, "medium")
            assert rs["retried_from"][0]["tier"] == 1 and error in rs["retried_from"][0]["error"]
        assert time.perf_counter() - t0 < 2.5  # the timeout bounds a slow tier
        assert headers["x-route-switch-tier"] == "2" and headers["x-route-switch-routed-tier"] == "1"
        assert headers["x-route-switch-retried-from"].startswith("1:") and error in headers["x-route-switch-retried-from"]
        assert metric(base, 'route_switch_upstream_retries_total{tier="1"}') == 1


def test_all_tiers_failing_is_a_clear_502(fitted_router_dir):
    with FakeUpstream("500") as bad:
        app = create_app(router_with_upstreams(fitted_router_dir, [bad.url, bad.url, f"http://127.0.0.1:{free_port()}/v1"]),
                         api_keys={KEY})
        with run_app(app) as base:
            r = httpx.post(f"{base}/v1/chat/completions", headers=AUTH,
                           json={"model": "router-tau-1", "messages": [{"role": "user", "content": "hi"}]})
            assert r.status_code == 502
            msg = r.json()["error"]["message"]
            assert "tier 1" in msg and "tier 3" in msg and "HTTP 500" in msg and "connection" in msg
            assert r.headers["x-route-switch-retried-from"].count(":") >= 3
            assert metric(base, "route_switch_upstream_failures_total") == 1


def test_stream_broken_mid_way_ends_with_error_event(fitted_router_dir):
    with FakeUpstream("hang_stream", delay=3) as hang:
        app = create_app(router_with_upstreams(fitted_router_dir, [hang.url] * 3), api_keys={KEY}, upstream_timeout_s=1)
        with run_app(app) as base:
            with httpx.stream("POST", f"{base}/v1/chat/completions", headers=AUTH, timeout=10,
                              json={"model": "router", "stream": True, "messages": [{"role": "user", "content": "hi"}]}) as r:
                assert r.status_code == 200
                body = b"".join(r.iter_raw()).decode()
            assert body.startswith("data: ") and '"upstream_stream_error"' in body


@pytest.mark.parametrize("raw", ["1" + "0" * 400, "-" + "9" * 400, "1e400", '"1e400"', '"' + "9" * 400 + '"'])
def test_huge_max_cost_is_400_not_500(fake_proxy, raw):
    body = '{"model": "router", "messages": [{"role": "user", "content": "hi"}], "max_cost": %s}' % raw
    r = httpx.post(f"{fake_proxy}/v1/chat/completions", content=body,
                   headers=AUTH | {"Content-Type": "application/json"}, timeout=30)
    assert r.status_code == 400 and "max_cost must be" in r.json()["error"]["message"], r.text
    r = httpx.post(f"{fake_proxy}/v1/chat/completions", json={"model": "router", "messages": [{"role": "user",
                   "content": "hi"}]}, headers=AUTH | {"X-Route-Switch-Max-Cost": "9" * 400}, timeout=30)
    assert r.status_code == 400, r.text  # a header is text: float() gives inf there


def test_client_disconnect_mid_body_is_no_internal_error(fake_proxy, caplog):
    """A client that closes its connection half-way through the body: a 499 access line, no traceback."""
    import socket
    from urllib.parse import urlparse

    u = urlparse(fake_proxy)
    caplog.clear()
    with caplog.at_level(logging.INFO):
        with socket.create_connection((u.hostname, u.port), timeout=10) as s:
            s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                      b"Authorization: Bearer " + KEY.encode() + b"\r\nContent-Length: 5000\r\n\r\n"
                      b'{"model": "router", "messages": [')
            time.sleep(0.2)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not any('"status": 499' in r.getMessage() for r in caplog.records):
            time.sleep(0.05)
    assert any('"status": 499' in r.getMessage() for r in caplog.records), [r.getMessage() for r in caplog.records]
    assert not [r for r in caplog.records if "internal error" in r.getMessage() or r.exc_info]
    assert httpx.get(f"{fake_proxy}/health").status_code == 200


def test_slow_body_gets_408_and_the_connection_back(fake_proxy, monkeypatch):
    """Slow loris: a client that sends its body a byte now and then is cut off after BODY_TIMEOUT_S."""
    import socket
    from urllib.parse import urlparse

    from route_switch.server import request_body

    monkeypatch.setattr(request_body, "BODY_TIMEOUT_S", 0.5)
    u = urlparse(fake_proxy)
    t0 = time.monotonic()
    with socket.create_connection((u.hostname, u.port), timeout=10) as s:
        s.sendall(b"POST /v1/route HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Authorization: Bearer " + KEY.encode() + b"\r\nContent-Length: 5000\r\n\r\n{")
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = s.recv(4096)
            if not chunk:
                break
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert time.monotonic() - t0 < 5
    assert httpx.post(f"{fake_proxy}/v1/route", json={"query": "hi"}, headers=AUTH).status_code == 200
