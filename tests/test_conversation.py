"""Multi-turn routing: the routed text of a conversation, route() on messages, session floors."""
from __future__ import annotations

import pytest

from route_switch.routing.config import dump_config, load_config
from route_switch.routing.controller import Router, route
from route_switch.core.conversation import ConversationConfig, SessionFloors, flatten_turns, routing_text
from route_switch.core.errors import ConfigError
from route_switch.core.estimator import QualityEstimator
from route_switch.core.tiers import Tier
from servers import fitted_router_dir  # noqa: F401  (fixture)

TIERS = [Tier("small", "small"), Tier("medium", "medium"), Tier("large", "large")]
HARD = "Prove that the sum of the first 9 odd numbers is a perfect square, step by step."


def conv(*user_turns, answer="Sure, here it is."):
    msgs = [{"role": "system", "content": "You are helpful."}]
    for i, t in enumerate(user_turns):
        if i:
            msgs.append({"role": "assistant", "content": answer})
        msgs.append({"role": "user", "content": t})
    return msgs


@pytest.fixture(scope="module")
def estimator(synthetic):
    return QualityEstimator().fit(synthetic.prompts, synthetic.scores, synthetic.models, synthetic.costs)


def test_flatten_keeps_last_turn_and_fills_budget_most_recent_first():
    turns = [("system", "sys"), ("user", "first " * 40), ("assistant", "answer"), ("user", "second"),
             ("assistant", "answer 2"), ("user", "now shorter")]
    assert flatten_turns(turns, context_tokens=0) == "now shorter"
    # ~4 chars per token: "second" (2 tokens) fits whole, "first ..." (60 tokens) is cut to the rest, tail kept
    text = flatten_turns(turns, context_tokens=10)
    parts = text.split("\n\n")
    assert parts[-1] == "now shorter" and parts[-2] == "second"
    assert len(parts[0]) == (10 - 2) * 4 and "first ".endswith(parts[0][-6:])
    assert "answer" not in text and "sys" not in text  # user turns only by default
    assert "answer 2" in flatten_turns(turns, context_tokens=100, roles=("user", "assistant"))
    assert flatten_turns([("assistant", "hi")]) == ""  # no user message: nothing to route on


def test_routing_text_reads_parts_and_rejects_non_messages():
    msgs = [{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "image_url", "image_url": {}}]},
            {"role": "user", "content": None}]
    assert routing_text(msgs) == "a\n\n"
    for bad in ([1, 2], [{"content": "x"}], [{"role": "user", "content": 5}], "x", None):
        with pytest.raises(TypeError):
            routing_text(bad)


def test_one_message_parser_strict_for_the_proxy_lenient_for_route():
    """The proxy (strict: a 400 naming the item) and route() (odd parts skipped) read messages with one parser."""
    from route_switch.core.conversation import MessagesError, turns_of

    odd = [{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": 5}, "x"]}]
    assert turns_of(odd) == [("user", "a")]
    with pytest.raises(MessagesError, match=r"messages\[0\]\.content\[1\]\.text must be a string"):
        turns_of(odd, strict=True)
    with pytest.raises(MessagesError, match="non-empty"):
        turns_of([], strict=True)
    assert turns_of([]) == []
    with pytest.raises(MessagesError, match=r"messages\[1\] must be an object with a string 'role'"):
        turns_of([{"role": "user", "content": "a"}, {"content": "b"}], strict=True)


def test_route_accepts_messages_and_routes_follow_up_on_context(estimator):
    r = Router(TIERS, estimator, tau=0.15, cache_size=0)
    alone = r.route("shorter, please")
    follow = r.route(conv(HARD, "shorter, please"))
    assert follow.tier > alone.tier  # the hard first turn is in the context
    assert r.route(conv("shorter, please")).tier == alone.tier  # one turn = the plain query
    no_ctx = Router(TIERS, estimator, tau=0.15, cache_size=0, conversation=ConversationConfig(context_tokens=0))
    assert no_ctx.route(conv(HARD, "shorter, please")).tier == alone.tier
    assert route(conv(HARD, "shorter, please"), router=r).tier == follow.tier  # module-level route()


def test_route_type_errors_and_never_raises_on_str(estimator):
    r = Router(TIERS, estimator, tau=0.15)
    for bad in (None, 3, b"bytes", {"role": "user"}, [1], [{"role": "user", "content": 5}]):
        with pytest.raises(TypeError):
            r.route(bad)
        with pytest.raises(TypeError):
            route(bad, router=r)
    for s in ("", "\ud800", "a" * 200_000):
        assert r.route(s, session="s").tier in (1, 2, 3)


def test_session_floor_keeps_follow_ups_at_the_conversation_tier(estimator):
    r = Router(TIERS, estimator, tau=0.15, cache_size=0, conversation=ConversationConfig(context_tokens=0))
    first = r.route(HARD, session="a")
    assert first.tier == 3
    d = r.route("thanks, and a short one: 2+2?", session="a")
    assert d.tier == 3 and "session floor" in d.reason
    assert r.route("thanks, and a short one: 2+2?", session="b").tier < 3  # another session: no floor
    assert r.route("thanks, and a short one: 2+2?").tier < 3  # no session key: no floor
    drop1 = Router(TIERS, estimator, tau=0.15, cache_size=0,
                   conversation=ConversationConfig(context_tokens=0, sticky_drop=1))
    drop1.route(HARD, session="a")
    assert drop1.route("2+2?", session="a").tier == 2
    off = Router(TIERS, estimator, tau=0.15, cache_size=0, conversation=ConversationConfig(sticky=False))
    off.route(HARD, session="a")
    assert off.route("2+2?", session="a").tier < 3


def test_session_floors_expire_and_are_bounded():
    now = [0.0]
    f = SessionFloors(ttl_s=10, max_sessions=2, clock=lambda: now[0])
    f.set("a", 3)
    f.set("b", 2)
    f.set("c", 1)
    assert f.get("a") is None and f.get("b") == 2  # LRU bound
    now[0] = 11
    assert f.get("b") is None  # expired


def test_conversation_config_round_trip_and_errors(tmp_path):
    p = tmp_path / "router.yaml"
    p.write_text("tiers: [{name: s, model: s}]\nconversation: {context_tokens: 64, sticky: false, roles: [user, assistant]}\n")
    cfg = load_config(p)
    assert cfg.conversation.context_tokens == 64 and cfg.conversation.sticky is False
    dump_config(cfg, tmp_path / "again.yaml")
    assert load_config(tmp_path / "again.yaml").conversation == cfg.conversation
    for bad, field in (("{context_tokens: -1}", "conversation.context_tokens"), ("{sticky: 1}", "conversation.sticky"),
                       ("{roles: [robot]}", "conversation.roles"), ("{bogus: 1}", "conversation"), ("[1]", "conversation")):
        p.write_text(f"tiers: [{{name: s, model: s}}]\nconversation: {bad}\n")
        with pytest.raises(ConfigError) as e:
            load_config(p)
        assert field in str(e.value) and "router.yaml" in str(e.value)


# ------------------------------------------------------------------ through the real proxy and the real openai client
def test_proxy_routes_follow_ups_on_the_conversation_and_session(fitted_router_dir):
    pytest.importorskip("starlette")
    openai = pytest.importorskip("openai")
    from chat_upstream import ChatUpstream, tiers_at
    from servers import run_app

    from route_switch.server import create_app

    with ChatUpstream() as up:
        base = Router.from_config(fitted_router_dir)
        router = Router(tiers=tiers_at(up.url), estimator=base.estimator, tau=base.tau, cache_size=0)
        with run_app(create_app(router, api_keys={"k"}, rate_limit_per_min=0)) as url:
            c = openai.OpenAI(base_url=f"{url}/v1", api_key="k", max_retries=0, timeout=30)

            def tier(messages, **kw):
                r = c.chat.completions.create(model="router", messages=messages, **kw)
                return r.model_extra["route_switch"]["routed_tier"]

            alone = tier([{"role": "user", "content": "shorter, please"}])
            assert tier(conv(HARD, "shorter, please")) > alone  # earlier turn in the routed text
            sess = {"X-Route-Switch-Session": "conv-1"}
            assert tier([{"role": "user", "content": HARD}], extra_headers=sess) == 3
            assert tier([{"role": "user", "content": "2+2?"}], extra_headers=sess) == 3  # the session floor
            assert tier([{"role": "user", "content": "2+2?"}], extra_headers={"X-Route-Switch-Session": "conv-2"}) < 3
            import httpx  # /v1/route honours the session too

            r = httpx.post(f"{url}/v1/route", json={"messages": [{"role": "user", "content": "2+2?"}]},
                           headers={"Authorization": "Bearer k", **sess})
            assert r.json()["tier"] == 3
            r = httpx.post(f"{url}/v1/route", json={"messages": [{"role": "user", "content": "2+2?"}]},
                           headers={"Authorization": "Bearer k", "X-Route-Switch-Session": "x" * 201})
            assert r.status_code == 400 and "X-Route-Switch-Session" in r.json()["error"]["message"]
