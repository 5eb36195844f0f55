"""Spend budgets and max_cost through the real proxy (uvicorn on loopback) with the real ``openai`` client.

The upstream is ``ChatUpstream``, a FAKE chat server on a real socket that reports ``usage``
(tokens = words); spend is that usage × the tier prices of ``tiers_at`` (USD per 1M tokens).
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

import httpx
import pytest

pytest.importorskip("starlette")
openai = pytest.importorskip("openai")

from chat_upstream import ChatUpstream, tiers_at  # noqa: E402
from servers import FakeUpstream, fitted_router_dir, run_app  # noqa: E402,F401

from route_switch.routing.controller import Router  # noqa: E402
from route_switch.core.errors import ConfigError  # noqa: E402
from route_switch.server import create_app  # noqa: E402
from route_switch.server.auth import key_hash  # noqa: E402
from route_switch.server.budgets import (Budgets, JsonSpendStore, StreamUsage, period_id,  # noqa: E402
                                         period_reset)

ROOT = Path(__file__).resolve().parents[1]
KEY = "budget-key-1"
KID = key_hash(KEY)
HARD = "Prove that the sum of the first 7 odd numbers is a perfect square, step by step."
PRICES = {"small": (0.1, 0.2), "medium": (0.5, 1.0), "large": (3.0, 6.0)}


def client(base, key=KEY):
    return openai.OpenAI(base_url=f"{base}/v1", api_key=key, max_retries=0, timeout=30)


def write_budgets(tmp_path, body: str):
    p = tmp_path / "budgets.yaml"
    p.write_text(body)
    return Budgets.from_file(p)


@pytest.fixture
def upstream():
    with ChatUpstream() as up:
        yield up


def make_app(router_dir, upstream, budgets, sanitize: bool = True):
    base = Router.from_config(router_dir)
    router = Router(tiers=tiers_at(upstream.url), estimator=base.estimator, tau=base.tau, sanitize=sanitize)
    assert router.route(HARD).tier == 3
    return create_app(router, api_keys={KEY, "other"}, rate_limit_per_min=0, budgets=budgets)


def sample(text: str, series: str) -> float:
    """The value of one series (name and labels, as rendered) in a /metrics text."""
    values = [float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.rsplit(" ", 1)[0] == series]
    assert len(values) == 1, (series, text)
    return values[0]


def expected(tier: str, usage) -> float:
    pin, pout = PRICES[tier]
    return (usage.prompt_tokens * pin + usage.completion_tokens * pout) / 1e6


def test_spend_is_usage_times_prices_in_body_metrics_log_and_state(fitted_router_dir, upstream, tmp_path, caplog):
    budgets = write_budgets(tmp_path, f"keys: {{{KID}: {{limit_usd: 1.0}}}}\ntags: {{team-a: {{limit_usd: 2.0, period: day}}}}\n")
    with caplog.at_level(logging.INFO, logger="route_switch.server.access"), \
            run_app(make_app(fitted_router_dir, upstream, budgets)) as base:
        raw = client(base).chat.completions.with_raw_response.create(
            model="router", messages=[{"role": "user", "content": HARD}], extra_headers={"X-Route-Switch-Tag": "team-a"})
        comp = raw.parse()
        rs = comp.model_extra["route_switch"]
        cost = expected("large", comp.usage)
        assert rs["tier"] == 3 and rs["cost_usd"] == pytest.approx(cost)
        assert rs["budget_spent_usd"] == {f"key:{KID}": pytest.approx(cost), "tag:team-a": pytest.approx(cost)}
        assert float(raw.headers["x-route-switch-cost-usd"]) == pytest.approx(cost, rel=1e-6)
        text = httpx.get(f"{base}/metrics", headers={"Authorization": f"Bearer {KEY}"}).text
        assert sample(text, f'route_switch_budget_spent_usd{{budget="key:{KID}",period="month"}}') == pytest.approx(cost)
        assert sample(text, 'route_switch_budget_limit_usd{budget="tag:team-a",period="day"}') == 2
        assert 'route_switch_spend_usd_total{tier="3",tier_name="large"}' in text
        assert "route_switch_budget_capped_total{" not in text  # under budget: nothing capped
    line = [json.loads(r.getMessage()) for r in caplog.records if r.name == "route_switch.server.access"
            and '"chat_completions"' in r.getMessage()][-1]
    assert line["cost_usd"] == pytest.approx(cost) and line["budget_spent_usd"][f"key:{KID}"] == pytest.approx(cost)
    state = json.loads((tmp_path / "budgets-state.json").read_text())["spend"]
    assert state[f"key:{KID}"]["usd"] == pytest.approx(cost) and state[f"key:{KID}"]["period"] == period_id("month")


def test_cap_policy_routes_cheaper_near_the_limit_then_refuses(fitted_router_dir, upstream, tmp_path):
    # one large answer costs ~2e-4 USD: after it the key is past half of its limit
    budgets = write_budgets(tmp_path, f"keys: {{{KID}: {{limit_usd: 0.0004, near: 0.5, policy: cap, cap_tier: 1}}}}\n")
    with run_app(make_app(fitted_router_dir, upstream, budgets)) as base:
        c = client(base)
        first = c.chat.completions.create(model="router", messages=[{"role": "user", "content": HARD}])
        assert first.model_extra["route_switch"]["tier"] == 3
        raw = c.chat.completions.with_raw_response.create(model="router", messages=[{"role": "user", "content": HARD}])
        second = raw.parse().model_extra["route_switch"]
        assert second["routed_tier"] == 3 and second["tier"] == 1  # capped: answered by the cheapest tier
        assert "capped at tier 1" in raw.headers["x-route-switch-capped"]
        assert upstream.seen[-1][0] == "small-model"
        text = httpx.get(f"{base}/metrics", headers={"Authorization": f"Bearer {KEY}"}).text
        assert sample(text, 'route_switch_budget_capped_total{reason="budget"}') == 1
        # another key has its own (no) budget
        assert client(base, "other").chat.completions.create(
            model="router", messages=[{"role": "user", "content": HARD}]).model_extra["route_switch"]["tier"] == 3
        while True:  # cheap answers until the limit itself is reached, then 429 with a clear message
            try:
                c.chat.completions.create(model="router", messages=[{"role": "user", "content": HARD}])
            except openai.RateLimitError as exc:
                err = exc
                break
        assert err.status_code == 429 and err.body["code"] == "budget_exceeded"
        msg = err.body["message"]
        assert f"budget key:{KID} has spent" in msg and "resets" in msg and "refused" in msg


def _top_tier_directives() -> list[str]:
    """The held-out corpus's directives that ask for the top tier (English, other languages, Unicode disguises)."""
    import yaml

    corpus = yaml.safe_load((ROOT / "benchmarks" / "injection_heldout.yaml").read_text(encoding="utf-8"))
    return [d["directive"] for d in corpus["directives"] if d["push"] == "top"]


@pytest.mark.parametrize("policy", ["cap", "refuse"])
def test_a_key_that_injects_top_tier_directives_cannot_spend_past_its_cap(fitted_router_dir, upstream, tmp_path, policy):
    """The operator's protection against "send me to the top tier": whatever the sanitiser misses (here it is
    switched off, so every directive reaches the scorer), the key's spend stops at its limit plus one request."""
    limit = 0.002  # about ten top-tier answers
    budgets = write_budgets(tmp_path, f"keys: {{{KID}: {{limit_usd: {limit}, near: 0.8, policy: {policy}, cap_tier: 1}}}}\n")
    directives = _top_tier_directives()
    assert len(directives) >= 40
    answered, refused = [], 0
    with run_app(make_app(fitted_router_dir, upstream, budgets, sanitize=False)) as base:
        c = client(base)
        for i in range(300):
            text = f"{directives[i % len(directives)]} {HARD}" if i % 2 else f"{HARD} {directives[i % len(directives)]}"
            try:
                r = c.chat.completions.create(model="router", messages=[{"role": "user", "content": text}])
            except openai.RateLimitError as exc:
                assert exc.body["code"] == "budget_exceeded" and f"budget key:{KID}" in exc.body["message"]
                refused += 1
                if refused == 10:
                    break
                continue
            assert not refused, "a refused key was answered again"
            answered.append(r.model_extra["route_switch"])
        hits = upstream.hits
        other = client(base, "other").chat.completions.create(model="router", messages=[{"role": "user", "content": HARD}])
    costs = [a["cost_usd"] for a in answered]
    spent = answered[-1]["budget_spent_usd"][f"key:{KID}"]
    assert refused == 10 and hits == len(answered)  # refused requests never reach an upstream
    assert answered[0]["tier"] == 3  # the directives' own effect is not what stops them: the budget is
    assert spent == pytest.approx(sum(costs)) and spent <= limit + max(costs)  # at most one request past the limit
    if policy == "cap":  # past near × limit, only the cheapest tier answers, then 429
        capped = [a for a in answered if "capped" in a]
        assert capped and all(a["tier"] == 1 for a in capped) and spent <= limit + max(a["cost_usd"] for a in capped)
    else:
        assert all(a["tier"] == 3 for a in answered) and spent < limit + max(costs)
    assert other.model_extra["route_switch"]["tier"] == 3  # another key is not limited by this one's budget


def test_refuse_policy_per_tag(fitted_router_dir, upstream, tmp_path):
    budgets = write_budgets(tmp_path, "tags: {team-b: {limit_usd: 0.0001, near: 0.5, policy: refuse}}\n")
    with run_app(make_app(fitted_router_dir, upstream, budgets)) as base:
        c = client(base)
        tag = {"X-Route-Switch-Tag": "team-b"}
        c.chat.completions.create(model="router", messages=[{"role": "user", "content": HARD}], extra_headers=tag)
        with pytest.raises(openai.RateLimitError, match="budget tag:team-b"):
            c.chat.completions.create(model="router", messages=[{"role": "user", "content": HARD}], extra_headers=tag)
        # untagged traffic of the same key is not limited by the tag's budget
        c.chat.completions.create(model="router", messages=[{"role": "user", "content": HARD}])


def test_max_cost_excludes_expensive_tiers(fitted_router_dir, upstream, tmp_path):
    budgets = write_budgets(tmp_path, "keys: {}\n")
    with run_app(make_app(fitted_router_dir, upstream, budgets)) as base:
        c = client(base)
        msgs = [{"role": "user", "content": HARD}]
        # ~20 input tokens + 100 output: large ~6.6e-4, medium ~1.1e-4, small ~2.2e-5 USD
        r = c.chat.completions.create(model="router", messages=msgs, max_tokens=100, extra_body={"max_cost": 2e-4})
        assert r.model_extra["route_switch"]["tier"] == 2 and "max_cost" in r.model_extra["route_switch"]["capped"]
        r = c.chat.completions.create(model="router", messages=msgs, max_tokens=100, extra_body={"max_cost": 1.0})
        assert r.model_extra["route_switch"]["tier"] == 3 and "capped" not in r.model_extra["route_switch"]
        r = c.chat.completions.create(model="router", messages=msgs, max_tokens=100,
                                      extra_headers={"X-Route-Switch-Max-Cost": "0.00005"})
        assert r.model_extra["route_switch"]["tier"] == 1
        with pytest.raises(openai.BadRequestError, match="below the expected cost of every tier"):
            c.chat.completions.create(model="router", messages=msgs, max_tokens=100, extra_body={"max_cost": 1e-9})
        for bad in (-1, "lots", True):
            with pytest.raises(openai.BadRequestError, match="max_cost must be"):
                c.chat.completions.create(model="router", messages=msgs, extra_body={"max_cost": bad})


def test_spend_survives_restart_and_stream_is_charged(fitted_router_dir, tmp_path):
    with FakeUpstream("ok") as up:  # streams without usage: the proxy charges an estimate
        cfg = f"keys: {{{KID}: {{limit_usd: 5}}}}\nexpected_output_tokens: 100\n"
        with run_app(make_app(fitted_router_dir, up, write_budgets(tmp_path, cfg))) as base:
            chunks = list(client(base).chat.completions.create(model="router", stream=True,
                                                               messages=[{"role": "user", "content": HARD}]))
            assert chunks
        spent = json.loads((tmp_path / "budgets-state.json").read_text())["spend"][f"key:{KID}"]["usd"]
        assert spent > 100 * 6.0 / 1e6  # the expected output tokens at the large tier's price
        again = write_budgets(tmp_path, cfg)  # a new process reads the same state file (written on shutdown)
        assert again.store.get(f"key:{KID}", period_id("month")) == pytest.approx(spent)


def test_budget_file_errors_name_the_field(tmp_path):
    for body, field in (("keys: {a: {limit_usd: -1}}", "keys.a"), ("keys: {a: {limit_usd: 1, policy: maybe}}", "keys.a"),
                        ("tags: {t: {limit_usd: 1, period: year}}", "tags.t"), ("keys: [1]", "keys"),
                        ("bogus: 1", "bogus"), ("defaults: {near: 2}", "defaults")):
        with pytest.raises(ConfigError) as e:
            write_budgets(tmp_path, body)
        assert field in str(e.value) and "budgets.yaml" in str(e.value)


def test_store_is_atomic_and_recovers_from_corruption(tmp_path):
    import time

    s = JsonSpendStore(tmp_path / "s.json", flush_s=0.05)
    assert s.add("key:a", "2026-11", 0.5) == 0.5 and s.add("key:a", "2026-11", 0.25) == 0.75
    assert s.add("key:a", "2026-12", 0.1) == pytest.approx(0.1)  # a new period starts from zero
    deadline = time.monotonic() + 5  # the background writer, without close()
    while not (tmp_path / "s.json").exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert JsonSpendStore(tmp_path / "s.json", flush_s=0).get("key:a", "2026-12") == pytest.approx(0.1)
    s.close()
    assert not list(tmp_path.glob("*.tmp*"))
    (tmp_path / "s.json").write_text("{not json")
    fresh = JsonSpendStore(tmp_path / "s.json", flush_s=0)
    assert fresh.get("key:a", "2026-12") == 0.0 and (tmp_path / "s.json.corrupt").exists()


def test_periods_and_stream_usage_parsing():
    t = 1795910400.0 + 3600  # 2026-11-29T01:00:00Z, a Sunday
    assert period_id("day", t) == "2026-11-29" and period_id("month", t) == "2026-11" and period_id("week", t) == "2026-W48"
    assert period_reset("day", t) == "2026-11-30T00:00:00Z" and period_reset("month", t) == "2026-12-01T00:00:00Z"
    assert period_reset("week", t) == "2026-11-30T00:00:00Z"
    u = StreamUsage()
    for part in (b'data: {"choices": []}\n\ndata: {"choices": [], "usa', b'ge": {"prompt_tokens": 3, "completion_tokens": 4}}\n\n',
                 b"data: [DONE]\n\n"):
        u.feed(part)
    assert u.usage == {"prompt_tokens": 3, "completion_tokens": 4}


def test_per_key_budgets_need_a_stable_key_id_secret(fitted_router_dir, tmp_path, monkeypatch):
    """Without the secret key ids change at every restart: a per-key budget would silently reset."""
    import io
    import sys

    from route_switch.cli import main
    from route_switch.server.auth import KEY_ID_SECRET_ENV
    from route_switch.server.run import build_app

    p = tmp_path / "budgets.yaml"
    p.write_text(f"state: spend.json\nkeys:\n  {KID}: {{limit_usd: 1}}\n")
    monkeypatch.setenv("ROUTE_SWITCH_API_KEYS", KEY)
    monkeypatch.delenv(KEY_ID_SECRET_ENV, raising=False)
    with pytest.raises(ConfigError, match=KEY_ID_SECRET_ENV):
        build_app(fitted_router_dir, budgets_path=p, watch_s=0, sighup_reload=False)
    assert main(["key-id"]) == 2  # the CLI refuses too, with a one-line error

    monkeypatch.setenv(KEY_ID_SECRET_ENV, "s3cret")
    monkeypatch.setattr(sys, "stdin", io.StringIO(f"{KEY}\nother\n"))
    out = io.StringIO()
    monkeypatch.setattr(sys, "stdout", out)
    assert main(["key-id"]) == 0
    assert out.getvalue().split() == [key_hash(KEY), key_hash("other")]
    assert key_hash(KEY) != KID  # the id depends on the secret
    app = build_app(fitted_router_dir, budgets_path=p, watch_s=0, sighup_reload=False)
    app.state.proxy.reloader.stop()


def test_reload_during_a_stream_charges_the_router_that_routed_it(fitted_router_dir, tmp_path):
    """One request sees one router: a hot reload while the upstream is still answering must not
    charge the new router's prices or index its (shorter) tier list."""
    import threading

    with FakeUpstream("slow", delay=1.5) as up:
        cfg = f"keys: {{{KID}: {{limit_usd: 5}}}}\nexpected_output_tokens: 100\n"
        app = make_app(fitted_router_dir, up, write_budgets(tmp_path, cfg))
        proxy = app.state.proxy
        old = proxy.router
        cheap = Router(tiers=tiers_at(up.url)[:1], estimator=None, tau=old.tau)  # one tier, other prices
        swap = threading.Timer(0.7, lambda: setattr(proxy, "router", cheap))  # while the upstream sleeps
        with run_app(app) as base:
            swap.start()
            chunks = list(client(base).chat.completions.create(model="router", stream=True,
                                                               messages=[{"role": "user", "content": HARD}]))
            swap.join()
            assert chunks and proxy.router is cheap
            metrics = httpx.get(f"{base}/metrics", headers={"Authorization": f"Bearer {KEY}"}).text
        # charged at the large tier of the router that routed the request (an estimate: no usage streamed)
        assert sample(metrics, 'route_switch_spend_usd_total{tier="3",tier_name="large"}') > 100 * 6.0 / 1e6
        assert 'tier_name="small"' not in metrics.split("route_switch_spend_usd_total", 1)[1].split("# HELP")[0]
