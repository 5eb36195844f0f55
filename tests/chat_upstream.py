"""A FAKE OpenAI-compatible chat server on a real loopback socket, with canned answers per model.

``ChatUpstream(answer=fn)`` answers ``fn(model, messages) -> str`` with a ``usage`` block
(prompt tokens = words in the messages, completion tokens = words in the answer).
``fail_next`` answers that many requests with HTTP 500 first, ``limit_next`` that many with HTTP 429
and ``Retry-After: 1`` (``times`` records when each request came); ``mode`` as in
``servers.FakeUpstream``: ok | 500 | malformed | slow (sleeps ``delay`` s). ``hits`` counts
requests, ``seen`` keeps (model, last user message) of each.
"""
from __future__ import annotations

import json
import threading
import time

from servers import LoopbackServer, QuietHandler


def echo_answer(model: str, messages: list[dict]) -> str:
    """Default canned answer: small models drop the last words of the big model's answer."""
    q = messages[-1]["content"]
    full = f"The answer to '{q}' is forty two because of reasons."
    cut = {"small": 3, "medium": 1}.get(model.split("-")[0], 0)
    words = full.split()
    return " ".join(words[: len(words) - cut]) if cut else full


class ChatUpstream(LoopbackServer):
    def __init__(self, answer=echo_answer, mode: str = "ok", delay: float = 5.0, fail_next: int = 0,
                 limit_next: int = 0):
        self.answer, self.mode, self.delay, self.fail_next, self.limit_next = answer, mode, delay, fail_next, limit_next
        self.hits, self.seen, self.times = 0, [], []
        self._lock = threading.Lock()
        outer = self

        class Handler(QuietHandler):
            def do_POST(self):
                req = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                with outer._lock:
                    outer.hits += 1
                    outer.seen.append((req.get("model"), req["messages"][-1]["content"]))
                    outer.times.append(time.monotonic())
                    fail = outer.fail_next > 0
                    outer.fail_next -= fail
                    limited = outer.limit_next > 0
                    outer.limit_next -= limited
                if limited:
                    body = b'{"error": {"message": "slow down"}}'
                    self.send_response(429)
                    for k, v in (("Content-Type", "application/json"), ("Content-Length", str(len(body))),
                                 ("Retry-After", "1")):
                        self.send_header(k, v)
                    self.end_headers()
                    return self.wfile.write(body)
                if outer.mode == "slow":
                    time.sleep(outer.delay)
                if fail or outer.mode == "500":
                    return self._send(500, b'{"error": {"message": "boom"}}')
                if outer.mode == "malformed":
                    return self._send(200, b"<html>this is not json")
                text = outer.answer(req.get("model", ""), req["messages"])
                n_in = sum(len(str(m.get("content", "")).split()) for m in req["messages"])
                body = {"id": "chatcmpl-fake", "object": "chat.completion", "created": int(time.time()),
                        "model": req.get("model"),
                        "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                     "finish_reason": "stop"}],
                        "usage": {"prompt_tokens": n_in, "completion_tokens": len(text.split()),
                                  "total_tokens": n_in + len(text.split())}}
                self._send(200, json.dumps(body).encode())

        self._serve(Handler)


def tiers_at(url: str, names=("small", "medium", "large"), prices=((0.1, 0.2), (0.5, 1.0), (3.0, 6.0))):
    """Tiers whose models are served at ``url`` (the served name is ``<name>-model``)."""
    from route_switch.core.tiers import Tier

    return [Tier(name=n, model=n, price_in=p[0], price_out=p[1], api_base=url, upstream_model=f"{n}-model")
            for n, p in zip(names, prices)]
