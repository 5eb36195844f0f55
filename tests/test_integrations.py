"""Integrations end to end with the real libraries: the ``openai`` client in-process (``route_switch.OpenAI``),
DSPy (``RoutedLM``), OpenTelemetry (the SDK's in-memory exporter) and ``litellm.Router``.

Every upstream is a FAKE OpenAI-compatible server on a real loopback socket
(:class:`route_switch.testing.upstreams.FakeUpstream`); each tier answers its own text, so the
answer shows which tier was called.
"""
from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import pytest

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

openai = pytest.importorskip("openai")

from servers import FakeUpstream, fitted_router_dir, free_port  # noqa: E402,F401

from route_switch.routing.controller import Router  # noqa: E402
from route_switch.core.tiers import Tier  # noqa: E402

EASY = [{"role": "user", "content": "Say hello to Peru 4."}]
HARD = [{"role": "user", "content": "Prove that the sum of the first 7 odd numbers is a perfect square, step by step."}]


def tiered_router(router_dir, urls, **kw) -> Router:
    """The fitted synthetic router with tiers small/medium/large served at ``urls`` (upstream models up-1..3)."""
    base = Router.from_config(router_dir)
    tiers = [Tier(name=t.name, model=t.model, api_base=u, upstream_model=f"up-{i + 1}", price_in=p, price_out=2 * p)
             for i, (t, u, p) in enumerate(zip(base.tiers, urls, (0.1, 1.0, 10.0)))]
    return Router(tiers=tiers, estimator=base.estimator, tau=base.tau, **kw)


@pytest.fixture(scope="module")
def ups():
    with FakeUpstream(text="small-answer") as a, FakeUpstream(text="medium-answer") as b, \
            FakeUpstream(text="large-answer") as c:
        yield [a, b, c]


@pytest.fixture()
def router(fitted_router_dir, ups):
    return tiered_router(fitted_router_dir, [u.url for u in ups])


TEXT = {1: "small-answer", 2: "medium-answer", 3: "large-answer"}


# ------------------------------------------------------------------ the openai drop-in
def test_openai_dropin_routes_and_returns_sdk_types(router):
    import route_switch
    from openai.types.chat import ChatCompletion

    client = route_switch.OpenAI(router=router)
    for model, messages in (("router-tau-1", EASY), ("router", HARD), ("router-tau-0", HARD), ("router-lambda-0", EASY)):
        tau, lam = route_switch.core.knobs.parse_router_model(model)
        expected = router.route(messages, tau=tau, lam=lam)
        out = client.chat.completions.create(model=model, messages=messages, max_tokens=20)
        assert isinstance(out, ChatCompletion)
        d = out.route_switch_decision
        assert d.tier == expected.tier and d.model == expected.model
        assert out.choices[0].message.content == TEXT[d.tier]
        assert out.model == f"up-{d.tier}"  # the tier's upstream_model was sent
        rs = out.model_extra["route_switch"]  # the proxy's object, where the proxy puts it
        assert (rs["tier"], rs["routed_tier"], rs["retried_from"]) == (d.tier, d.tier, [])
        assert rs["path"] == d.path and rs["reason"] == d.reason and rs["cost_usd"] > 0
        assert "route_switch_decision" not in out.model_dump()
    assert client.chat.completions.create(model="router-tau-0", messages=HARD).route_switch_decision.tier == 3
    assert client.chat.completions.create(model="router-tau-1", messages=HARD).route_switch_decision.tier == 1


def test_openai_dropin_from_directory_and_bad_model(fitted_router_dir, ups, tmp_path):
    import yaml

    import route_switch
    from route_switch.core.errors import ConfigError
    from route_switch.core.knobs import UnknownRouterModel

    with pytest.raises(ConfigError, match="api_base"):  # the fitted directory names no endpoints
        route_switch.OpenAI(router=fitted_router_dir)
    cfg = yaml.safe_load((fitted_router_dir / "router.yaml").read_text())
    for t, u in zip(cfg["tiers"], ups):
        t["api_base"] = u.url
    cfg["estimator"] = str(fitted_router_dir / cfg["estimator"]) if not os.path.isabs(cfg["estimator"]) else cfg["estimator"]
    (tmp_path / "router.yaml").write_text(yaml.safe_dump(cfg))
    client = route_switch.OpenAI(router=tmp_path)
    out = client.chat.completions.create(model="router-tau-1", messages=EASY)
    assert out.choices[0].message.content == "small-answer"
    with pytest.raises(UnknownRouterModel, match="router-tau"):
        client.chat.completions.create(model="gpt-4o", messages=EASY)
    with pytest.raises(ValueError, match="tau must be"):
        client.chat.completions.create(model="router-tau-7", messages=EASY)


def test_openai_dropin_streams_sdk_chunks(router, ups):
    import route_switch
    from openai import Stream
    from openai.types.chat import ChatCompletionChunk

    client = route_switch.OpenAI(router=router)
    s = client.chat.completions.create(model="router-tau-0", messages=HARD, stream=True)
    assert isinstance(s, Stream) and s.route_switch_decision.tier == 3 and s.route_switch["tier"] == 3
    chunks = list(s)
    assert all(isinstance(c, ChatCompletionChunk) for c in chunks)
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "large-answer from fake"


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("mode", ["500", "refused", "malformed"])
def test_openai_dropin_falls_back_to_next_tier(fitted_router_dir, ups, mode, stream):
    import contextlib

    import route_switch

    with contextlib.ExitStack() as stack:
        bad = f"http://127.0.0.1:{free_port()}/v1" if mode == "refused" else \
            stack.enter_context(FakeUpstream(mode)).url
        router = tiered_router(fitted_router_dir, [bad, ups[1].url, ups[2].url])
        client = route_switch.OpenAI(router=router, timeout=5)
        out = client.chat.completions.create(model="router-tau-1", messages=EASY, stream=stream)
        rs = out.route_switch
        assert (rs["routed_tier"], rs["tier"], rs["tier_name"]) == (1, 2, "medium")
        error = {"500": "HTTP 500", "refused": "connection", "malformed": "malformed"}[mode]
        assert rs["retried_from"][0]["tier"] == 1 and error in rs["retried_from"][0]["error"], rs
        if stream:
            assert "".join(c.choices[0].delta.content or "" for c in out) == "medium-answer from fake"
        else:
            assert out.choices[0].message.content == "medium-answer"


def test_openai_dropin_all_tiers_failing_raises_api_error(fitted_router_dir):
    import route_switch
    from route_switch.integrations.openai_client import AllTiersFailed

    with FakeUpstream("500") as bad:
        router = tiered_router(fitted_router_dir, [bad.url, bad.url, f"http://127.0.0.1:{free_port()}/v1"])
        with pytest.raises(openai.APIError) as e:
            route_switch.OpenAI(router=router).chat.completions.create(model="router-tau-1", messages=EASY)
    assert isinstance(e.value, AllTiersFailed)
    assert "tier 1" in str(e.value) and "tier 3" in str(e.value) and "HTTP 500" in str(e.value)
    assert [f["tier"] for f in e.value.failures] == [1, 2, 3]


def test_openai_dropin_session_floor(router):
    import route_switch

    client = route_switch.OpenAI(router=router)
    first = client.chat.completions.create(model="router-tau-0", messages=HARD,
                                           extra_headers={"X-Route-Switch-Session": "s1"})
    assert first.route_switch_decision.tier == 3
    follow = HARD + [{"role": "assistant", "content": first.choices[0].message.content},
                     {"role": "user", "content": "Thanks!"}]
    out = client.chat.completions.create(model="router-tau-1", messages=follow, session="s1")
    assert out.route_switch_decision.tier == 3 and "session floor" in out.route_switch_decision.reason
    # the SDK's own message object (a previous answer) is accepted in the history
    out = client.chat.completions.create(model="router-tau-1", messages=HARD + [first.choices[0].message, EASY[0]])
    assert out.route_switch_decision.tier == 1


def test_async_openai_dropin(router, fitted_router_dir, ups):
    import route_switch
    from openai import AsyncStream
    from openai.types.chat import ChatCompletion

    async def run():
        client = route_switch.AsyncOpenAI(router=router)
        out = await client.chat.completions.create(model="router-tau-0", messages=HARD)
        assert isinstance(out, ChatCompletion) and out.choices[0].message.content == "large-answer"
        s = await client.chat.completions.create(model="router-tau-1", messages=EASY, stream=True)
        assert isinstance(s, AsyncStream) and s.route_switch_decision.tier == 1
        text = "".join([c.choices[0].delta.content or "" async for c in s])
        assert text == "small-answer from fake"
        await client.close()
        with FakeUpstream("500") as bad:
            client = route_switch.AsyncOpenAI(router=tiered_router(fitted_router_dir, [bad.url, ups[1].url, ups[2].url]))
            for stream in (False, True):
                out = await client.chat.completions.create(model="router-tau-1", messages=EASY, stream=stream)
                assert out.route_switch["tier"] == 2 and out.route_switch["retried_from"][0]["error"] == "HTTP 500"
                if stream:
                    assert "".join([c.choices[0].delta.content or "" async for c in out]).startswith("medium-answer")
            await client.close()

    asyncio.run(run())


def test_import_route_switch_imports_no_integration_library():
    code = ("import sys, route_switch\n"
            "from route_switch.routing.controller import Router\n"
            "from route_switch.routing import telemetry\n"
            "bad = [m for m in ('openai', 'dspy', 'litellm', 'opentelemetry') if m in sys.modules]\n"
            "assert not bad, bad\n"
            "assert callable(route_switch.OpenAI) and 'openai' in sys.modules\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr


# ------------------------------------------------------------------ DSPy
def dspy_answer(text: str) -> str:
    """What a tier answers, in the layout dspy.ChatAdapter parses."""
    return f"[[ ## answer ## ]]\n{text}\n\n[[ ## completed ## ]]"


@pytest.fixture(scope="module")
def dspy_ups():
    with FakeUpstream(text=dspy_answer("small says Lima")) as a, FakeUpstream(text=dspy_answer("medium says")) as b, \
            FakeUpstream(text=dspy_answer("large proves it")) as c:
        yield [a, b, c]


def test_dspy_routed_lm_routes_each_call_and_reports_per_program(fitted_router_dir, dspy_ups):
    dspy = pytest.importorskip("dspy")
    from route_switch import RoutedLM
    from route_switch.integrations.dspy import query_of

    router = tiered_router(fitted_router_dir, [u.url for u in dspy_ups])
    lm = RoutedLM(router=router)
    assert isinstance(lm, dspy.LM)
    docs = {"Peru": "Lima is the capital of Peru.", "odd": "The sum of the first n odd numbers is n^2."}

    class QA(dspy.Module):  # a tiny RAG: look the context up, then answer
        def __init__(self):
            super().__init__()
            self.answer = dspy.Predict("context, question -> answer")

        def forward(self, question):
            context = next((v for k, v in docs.items() if k in question), "")
            return self.answer(context=context, question=question)

    qa = QA()
    with dspy.context(lm=lm):
        easy = qa(question="What is the capital of Peru?")
        hard = qa(question=HARD[0]["content"])
        assert easy.answer == "small says Lima"
        assert hard.answer == "large proves it"
        solo = dspy.Predict("question -> answer")
        with RoutedLM.program("solo"):
            solo(question="Say hello to Peru 4.")
    # routed on the call's inputs, not on DSPy's markup
    msgs = [{"role": "user", "content": "[[ ## question ## ]]\nWhat is 2+2?\n\nRespond with the corresponding output "
                                        "fields, starting with the field `[[ ## answer ## ]]`."}]
    assert query_of(msgs) == "What is 2+2?"
    rep = lm.report()
    assert rep["calls"] == 3 and set(rep["programs"]) == {"QA", "solo"}
    qa_rep = rep["programs"]["QA"]
    assert qa_rep["tiers"] == {"small": {"calls": 1, "share": 0.5, "cost_usd": pytest.approx(qa_rep["tiers"]["small"]["cost_usd"])},
                               "large": {"calls": 1, "share": 0.5, "cost_usd": pytest.approx(qa_rep["tiers"]["large"]["cost_usd"])}}
    assert 0 < qa_rep["cost_usd"] < qa_rep["cost_top_tier_usd"]  # the easy call went cheap
    assert rep["programs"]["solo"]["tiers"]["small"]["calls"] == 1
    assert rep["tiers"]["small"]["share"] == pytest.approx(2 / 3, abs=1e-3)
    lm.reset_report()
    assert lm.report()["calls"] == 0


def test_dspy_routed_lm_falls_back(fitted_router_dir, dspy_ups):
    dspy = pytest.importorskip("dspy")
    from route_switch import RoutedLM

    with FakeUpstream("500") as bad:
        lm = RoutedLM(router=tiered_router(fitted_router_dir, [bad.url, dspy_ups[1].url, dspy_ups[2].url]))
        with dspy.context(lm=lm):
            out = dspy.Predict("question -> answer")(question="Say hello to Peru 4.")
    assert out.answer == "medium says"
    rep = lm.report()
    assert rep["fallbacks"] == 1 and rep["tiers"] == {"medium": {"calls": 1, "share": 1.0, "cost_usd": rep["tiers"]["medium"]["cost_usd"]}}


# ------------------------------------------------------------------ OpenTelemetry
@pytest.fixture()
def spans():
    pytest.importorskip("opentelemetry.sdk")
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from route_switch.routing import telemetry

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    telemetry.enable(provider)
    try:
        yield exporter
    finally:
        telemetry.disable()
        provider.shutdown()


def test_otel_span_per_route_decision(router, spans):
    d = router.route(HARD, tau=0.0)
    router.route("What is the capital of France?")
    s1, s2 = spans.get_finished_spans()
    assert s1.name == s2.name == "route_switch.route"
    a = dict(s1.attributes)
    assert (a["route_switch.tier"], a["route_switch.tier_name"], a["route_switch.path"]) == (d.tier, d.tier_name, d.path)
    assert a["route_switch.tau"] == 0.0 and a["route_switch.reason"] == d.reason
    assert a["route_switch.predicted_quality"] == d.predicted_quality[d.model]
    assert a["route_switch.latency_ms"] == d.latency_ms and s1.end_time >= s1.start_time
    assert "route_switch.fallback_from" not in a  # set only when the router LLM could not decide


def test_otel_spans_of_the_dropin_with_fallback(fitted_router_dir, ups, spans):
    import route_switch

    with FakeUpstream("500") as bad:
        client = route_switch.OpenAI(router=tiered_router(fitted_router_dir, [bad.url, ups[1].url, ups[2].url]))
        client.chat.completions.create(model="router-tau-1", messages=EASY)
    route_span, chat = spans.get_finished_spans()
    assert chat.name == "chat router-tau-1" and route_span.parent.span_id == chat.context.span_id
    a = dict(chat.attributes)
    assert a["gen_ai.operation.name"] == "chat" and a["gen_ai.request.model"] == "router-tau-1"
    assert a["gen_ai.response.model"] == "up-2" and a["gen_ai.usage.input_tokens"] == 1
    assert (a["route_switch.tier"], a["route_switch.answered_tier"], a["route_switch.fallback"]) == (1, 2, True)
    assert tuple(a["route_switch.retried_from"]) == (1,)


def test_otel_spans_of_the_proxy(router, spans):
    pytest.importorskip("starlette")
    import httpx
    from servers import run_app

    from route_switch.server import create_app

    with run_app(create_app(router, api_keys=None, insecure_no_auth=True)) as base:
        r = httpx.post(f"{base}/v1/chat/completions", json={"model": "router-tau-0", "messages": HARD}, timeout=30)
        assert r.status_code == 200
    by_name = {s.name: s for s in spans.get_finished_spans()}
    chat, route_span = by_name["chat router-tau-0"], by_name["route_switch.route"]
    assert route_span.parent.span_id == chat.context.span_id
    a = dict(chat.attributes)
    assert a["route_switch.integration"] == "proxy" and a["route_switch.answered_tier"] == 3
    assert a["gen_ai.response.model"] == "up-3" and a["route_switch.fallback"] is False


# ------------------------------------------------------------------ litellm.Router
def test_litellm_router_strategy_picks_the_tier_and_falls_back(fitted_router_dir, ups):
    litellm = pytest.importorskip("litellm")
    from route_switch.integrations.litellm import RouteSwitchStrategy

    router = tiered_router(fitted_router_dir, [u.url for u in ups])
    with FakeUpstream("500") as bad, FakeUpstream(text="plain-answer") as plain:
        def model_list(urls):
            return [{"model_name": "route-switch",
                     "litellm_params": {"model": f"openai/up-{i + 1}", "api_base": u, "api_key": "none"},
                     "model_info": {"id": f"dep-{i + 1}", "route_switch_tier": (i + 1) if i != 1 else "medium"}}
                    for i, u in enumerate(urls)] + [
                {"model_name": "plain", "litellm_params": {"model": "openai/p", "api_base": plain.url, "api_key": "none"}}]

        llm_router = litellm.Router(model_list=model_list([u.url for u in ups]), num_retries=2, retry_after=0)
        RouteSwitchStrategy(router).install(llm_router)
        out = llm_router.completion(model="route-switch", messages=EASY)
        assert out.choices[0].message.content == "small-answer" and out._hidden_params["model_id"] == "dep-1"
        out = asyncio.run(llm_router.acompletion(model="route-switch", messages=HARD))
        assert out.choices[0].message.content == "large-answer"
        meta = {"route_switch": {"tau": 1.0}}  # the knob per request
        out = llm_router.completion(model="route-switch", messages=HARD, metadata=meta)
        assert out.choices[0].message.content == "small-answer"
        assert meta["route_switch"]["tier"] == 1 and meta["route_switch"]["deployment"] == "dep-1"
        # other model groups keep LiteLLM's own strategy
        assert llm_router.completion(model="plain", messages=EASY).choices[0].message.content == "plain-answer"

        # tier 1 answers 500: LiteLLM's retry asks the strategy again, which moves one tier up
        llm_router = litellm.Router(model_list=model_list([bad.url, ups[1].url, ups[2].url]), num_retries=2,
                                    retry_after=0)
        RouteSwitchStrategy(router).install(llm_router)
        for call in (lambda: llm_router.completion(model="route-switch", messages=EASY),
                     lambda: asyncio.run(llm_router.acompletion(model="route-switch", messages=EASY))):
            out = call()
            assert out.choices[0].message.content == "medium-answer" and out._hidden_params["model_id"] == "dep-2"
        assert bad.hits >= 1


# ------------------------------------------------------------------ the LiteLLM proxy
PRICES = {"small": 10.0, "medium": 20.0, "large": 30.0, "broken": 10.0}  # USD / 1M tokens, in and out
KEYS_MODULE = '''\
"""FAKE key store for the test: LiteLLM's custom_auth, so that two keys exist without LiteLLM's database."""
from litellm.proxy._types import UserAPIKeyAuth


async def user_api_key_auth(request, api_key: str) -> UserAPIKeyAuth:
    if api_key in ("sk-capped", "sk-free"):
        return UserAPIKeyAuth(api_key=api_key)
    raise ValueError("invalid key")
'''


def write_router(folder, router_dir, names):
    """A router folder over the fitted estimator whose tiers are ``names`` (model groups of the proxy), priced."""
    import yaml

    folder.mkdir()
    cfg = yaml.safe_load((router_dir / "router.yaml").read_text())
    cfg["tiers"] = [{"name": n, "model": t["model"], "price_in": PRICES[n], "price_out": PRICES[n]}
                    for n, t in zip(names, cfg["tiers"])]
    cfg["estimator"] = str((router_dir / cfg["estimator"]).resolve())
    (folder / "router.yaml").write_text(yaml.safe_dump(cfg))
    return folder


@pytest.fixture(scope="module")
def proxy(fitted_router_dir, ups, tmp_path_factory):
    """The real LiteLLM proxy with the route-switch hook: routers ``prod`` (small/medium/large) and ``flaky``
    (its tier 1 is ``broken``, an upstream answering 500), LiteLLM's fallbacks up the tiers, a budget on sk-capped."""
    import hashlib

    import yaml

    from route_switch.testing.litellm_proxy import litellm_proxy, proxy_missing

    missing = proxy_missing()
    if missing:
        pytest.skip(f"the LiteLLM proxy is not installed (no {', '.join(missing)}): "
                    "pip install 'route-switch[litellm-proxy]'")
    d = tmp_path_factory.mktemp("litellm-proxy")
    write_router(d / "router-prod", fitted_router_dir, ["small", "medium", "large"])
    write_router(d / "router-flaky", fitted_router_dir, ["broken", "medium", "large"])
    capped = hashlib.sha256(b"sk-capped").hexdigest()  # LiteLLM's key hash
    (d / "budgets.yaml").write_text(yaml.safe_dump({"state": "spend.json", "flush_s": 0, "keys": {
        capped: {"limit_usd": 9e-5, "near": 0.5, "policy": "cap", "cap_tier": 1}}}))
    (d / "hook.py").write_text("from route_switch.integrations.litellm_proxy import RouteSwitchHook\n\n"
                               "hook = RouteSwitchHook(routers={'prod': 'router-prod', 'flaky': 'router-flaky'}, "
                               "budgets='budgets.yaml')\n")
    (d / "keys.py").write_text(KEYS_MODULE)
    with FakeUpstream("500") as bad:
        groups = {"small": ups[0], "medium": ups[1], "large": ups[2], "broken": bad}
        (d / "config.yaml").write_text(yaml.safe_dump({
            "model_list": [{"model_name": n, "litellm_params": {"model": f"openai/up-{n}", "api_base": u.url,
                                                                "api_key": "none"}} for n, u in groups.items()],
            "router_settings": {"num_retries": 0, "fallbacks": [{"small": ["medium", "large"]}, {"medium": ["large"]},
                                                                {"broken": ["medium", "large"]}]},
            "litellm_settings": {"callbacks": "hook.hook"},
            "general_settings": {"master_key": "os.environ/LITELLM_MASTER_KEY", "custom_auth": "keys.user_api_key_auth"}}))
        with litellm_proxy(d / "config.yaml", env={"LITELLM_MASTER_KEY": "sk-master-unused"}) as base:
            yield {"base": base, "dir": d, "bad": bad, "capped": f"key:{capped}"}


def proxy_call(proxy, model, messages, key="sk-free", **extra):
    """(model group that answered, answer text) of one chat completion through the proxy, with the real client."""
    client = openai.OpenAI(base_url=proxy["base"] + "/v1", api_key=key, max_retries=0, timeout=60)
    r = client.chat.completions.with_raw_response.create(model=model, messages=messages, extra_body=extra or None)
    return r.headers["x-litellm-model-group"], r.parse().choices[0].message.content, r.headers


def test_litellm_proxy_sends_each_request_to_the_tier_route_chose(proxy):
    router = Router.from_config(proxy["dir"] / "router-prod")
    for messages in (EASY, HARD):
        d = router.route(messages)
        group, text, _ = proxy_call(proxy, "route-switch/prod", messages)
        assert (group, text) == (d.tier_name, TEXT[d.tier])
    assert router.route(EASY).tier == 1 and router.route(HARD).tier == 3  # both ends were exercised
    # τ per request (metadata.route_switch) changes the decision, as it changes route()'s
    assert router.route(HARD, tau=1.0).tier == 1
    assert proxy_call(proxy, "route-switch/prod", HARD, metadata={"route_switch": {"tau": 1.0}})[:2] == \
        ("small", "small-answer")
    assert proxy_call(proxy, "route-switch/prod", EASY, metadata={"route_switch": {"lambda": 0.0}})[0] == \
        router.route(EASY, lam=0.0).tier_name
    client = openai.OpenAI(base_url=proxy["base"] + "/v1", api_key="sk-free", max_retries=0, timeout=60)
    stream = client.chat.completions.create(model="route-switch/prod", messages=HARD, stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == "large-answer from fake"
    # other models are LiteLLM's alone
    assert proxy_call(proxy, "medium", HARD)[:2] == ("medium", "medium-answer")
    for model, extra, status, words in (("route-switch/nope", {}, 400, "route-switch/prod"),
                                        ("route-switch/prod", {"metadata": {"route_switch": {"tau": 7}}}, 400, "tau")):
        with pytest.raises(openai.APIStatusError) as e:
            proxy_call(proxy, model, EASY, **extra)
        assert e.value.status_code == status and words in str(e.value)


def test_litellm_proxy_failing_tier_falls_back_through_litellm_fallbacks(proxy):
    hits = proxy["bad"].hits
    group, text, headers = proxy_call(proxy, "route-switch/flaky", EASY)
    assert (group, text) == ("medium", "medium-answer")
    assert proxy["bad"].hits == hits + 1 and headers["x-litellm-attempted-fallbacks"] == "1"


def spend_of(proxy, subject: str) -> float:
    import json

    f = proxy["dir"] / "spend.json"
    return json.loads(f.read_text())["spend"].get(subject, {}).get("usd", 0.0) if f.exists() else 0.0


def wait_spend(proxy, subject: str, usd: float) -> None:
    """Spend is charged when LiteLLM logs the success, just after the answer: wait for it."""
    import time

    deadline = time.monotonic() + 20
    while spend_of(proxy, subject) < usd * (1 - 1e-9):
        assert time.monotonic() < deadline, (spend_of(proxy, subject), usd)
        time.sleep(0.05)


def test_litellm_proxy_budget_caps_then_refuses_a_key(proxy):
    # limit $9e-5, near 0.5 -> cap at tier 1; usage 1 + 1 tokens: large costs $6e-5, small $2e-5
    assert proxy_call(proxy, "route-switch/prod", HARD, key="sk-capped")[0] == "large"
    wait_spend(proxy, proxy["capped"], 6e-5)
    for spent in (8e-5, 1e-4):  # past `near`: the hard query is capped at tier 1
        assert proxy_call(proxy, "route-switch/prod", HARD, key="sk-capped")[:2] == ("small", "small-answer")
        wait_spend(proxy, proxy["capped"], spent)
    with pytest.raises(openai.RateLimitError) as e:  # at the limit: 429
        proxy_call(proxy, "route-switch/prod", EASY, key="sk-capped")
    assert "has spent $0.0001 of $9e-05" in str(e.value) and "refused" in str(e.value)
    assert proxy_call(proxy, "route-switch/prod", HARD, key="sk-free")[0] == "large"  # other keys are not capped
