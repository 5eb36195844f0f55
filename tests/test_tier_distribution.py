"""The router LLM's tier distribution from OpenAI-compatible endpoints (real openai client, real sockets)."""
from __future__ import annotations

import json
import math

import pytest

from route_switch.llm.artifacts import load_program
from route_switch.llm.openai_engine import probs_from_logprobs
from route_switch.llm.router_llm import RouterLLM, RouterLLMError
from servers import LoopbackServer, QuietHandler, completion

LAYOUT = "[[ ## tier ## ]]\n{}\n\n[[ ## completed ## ]]"


def _tokens(label: str, alts: dict[str, float]) -> list[dict]:
    """logprobs.content of the layout reply, with ``alts`` as the label token's top_logprobs."""
    toks = ["[[", " ##", " tier", " ##", " ]]", "\n", label, "\n\n", "[[", " ##", " completed", " ##", " ]]"]
    out = []
    for t in toks:
        top = [{"token": k, "logprob": math.log(v), "bytes": None} for k, v in alts.items()] if t == label else []
        out.append({"token": t, "logprob": math.log(alts.get(t, 0.9)) if t == label else -0.01, "bytes": None,
                    "top_logprobs": top})
    return out


class ChatServer(LoopbackServer):
    """An OpenAI-compatible chat endpoint. ``mode``: logprobs | none (ignores them) | reject (400) | garbage."""

    def __init__(self, mode: str, label: str = "2", alts: dict[str, float] | None = None):
        self.mode, self.requests = mode, []
        outer = self

        class Handler(QuietHandler):
            def do_POST(self):
                req = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                outer.requests.append(req)
                if outer.mode == "reject" and req.get("logprobs"):
                    return self._send(400, b'{"error": {"message": "logprobs are not supported"}}')
                body = completion("no idea" if outer.mode == "garbage" else LAYOUT.format(label))
                if outer.mode == "logprobs" and req.get("logprobs"):
                    body["choices"][0]["logprobs"] = {"content": _tokens(label, alts or {})}
                self._send(200, json.dumps(body).encode())

        self._serve(Handler)


@pytest.fixture
def program():
    return load_program("programs/default.yaml")


def _router(program, url):
    return RouterLLM(program, {"kind": "openai", "model": "m", "api_base": url, "timeout_s": 5})


def test_logprobs_give_a_distribution(program):
    with ChatServer("logprobs", "2", {"2": 0.6, "3": 0.3, "1": 0.05, " the": 0.05}) as srv:
        v = _router(program, srv.url).vote("Explain recursion.")
    assert v.source == "distribution" and v.index == 1
    assert v.probs == pytest.approx([0.05 / 0.95, 0.6 / 0.95, 0.3 / 0.95])  # renormalised over the labels
    req = srv.requests[0]
    assert req["logprobs"] is True and req["top_logprobs"] >= 3 and req["max_tokens"] == 16


@pytest.mark.parametrize("mode", ["none", "reject"])
def test_endpoints_without_logprobs_degrade_to_the_label(program, mode):
    with ChatServer(mode, "3") as srv:
        r = _router(program, srv.url)
        v = r.vote("Prove Fermat's little theorem.")
        assert v.source == "label" and v.probs == (0.0, 0.0, 1.0)
        r.vote("Another one")
    if mode == "reject":  # asked once with logprobs, then without
        assert [bool(q.get("logprobs")) for q in srv.requests] == [True, False, False]


def test_an_answer_without_a_tier_is_an_error_never_a_guess(program):
    with ChatServer("garbage") as srv:
        with pytest.raises(RouterLLMError, match="allowed"):
            _router(program, srv.url).vote("Hello there")


def test_probs_from_logprobs_edge_cases():
    assert probs_from_logprobs(LAYOUT.format("1"), None, ["1", "2"]) == ([1.0, 0.0], "label")
    with pytest.raises(ValueError):
        probs_from_logprobs("tier 7", None, ["1", "2"])
    # label tokens before the header (e.g. in a preamble) are not the answer
    content = [{"token": "1", "logprob": -0.1, "top_logprobs": [{"token": "1", "logprob": -0.1}]}] + \
        _tokens("2", {"2": 0.7, "1": 0.3})
    assert probs_from_logprobs(LAYOUT.format("2"), content, ["1", "2"])[0] == pytest.approx([0.3, 0.7])
