"""``route-switch serve --demo``: a stand-in OpenAI-compatible upstream on loopback for every tier.

The shipped evalset specs name models, not endpoints, so a router fitted on them cannot forward a
chat. With ``--demo`` the proxy starts :class:`DemoUpstream` (a stdlib HTTP server in a daemon
thread) and points every tier at it: each answer is a canned text that names the model the tier
would have called, so routing, headers, streaming and budgets can be tried before any endpoint is
configured. Nothing leaves the machine.
"""
from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LOOPBACK = "127.0.0.1"


def demo_text(model: str) -> str:
    """The stand-in answer of the tier whose upstream model is ``model``."""
    return (f"[route-switch demo] A stand-in answer instead of {model}'s: set api_base (and api_key_env) "
            "of each tier in router.yaml to get real answers.")


def _completion(model: str) -> dict:
    n = len(demo_text(model).split())
    return {"id": "chatcmpl-demo", "object": "chat.completion", "created": int(time.time()), "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": demo_text(model)},
                         "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 1, "completion_tokens": n, "total_tokens": n + 1}}


def _events(model: str):
    """The answer as server-sent events: one chunk per word, then ``[DONE]``."""
    words = demo_text(model).split(" ")
    for i, w in enumerate(words):
        delta = {"content": w if i == 0 else " " + w}
        yield {"id": "chatcmpl-demo", "object": "chat.completion.chunk", "created": int(time.time()), "model": model,
               "choices": [{"index": 0, "delta": delta, "finish_reason": None}]}
    yield {"id": "chatcmpl-demo", "object": "chat.completion.chunk", "created": int(time.time()), "model": model,
           "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def _send(self, status: int, data: dict):
        body = json.dumps(data).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        self._send(200, {"object": "list", "data": [{"id": "demo", "object": "model"}]})

    def do_POST(self):
        try:
            req = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        except ValueError:
            return self._send(400, {"error": {"message": "body is not JSON", "type": "invalid_request_error"}})
        model = str(req.get("model", "demo"))
        if not self.path.rstrip("/").endswith("/chat/completions"):
            return self._send(404, {"error": {"message": f"no such path {self.path}", "type": "not_found"}})
        if not req.get("stream"):
            return self._send(200, _completion(model))
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Connection", "close")
        self.end_headers()
        for event in _events(model):
            self.wfile.write(f"data: {json.dumps(event)}\n\n".encode())
        self.wfile.write(b"data: [DONE]\n\n")
        self.wfile.flush()
        self.close_connection = True


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):  # a caller that hung up is not our problem
        pass


class DemoUpstream:
    """The stand-in upstream on ``127.0.0.1`` (a free port); ``url`` is its ``/v1`` base.

    ``start()`` runs it in a daemon thread; ``stop()`` (or leaving the ``with`` block) shuts it down.
    """

    def __init__(self, port: int = 0):
        self.httpd = _Server((LOOPBACK, port), _Handler)
        self.url = f"http://{LOOPBACK}:{self.httpd.server_address[1]}/v1"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True, name="route-switch-demo")

    def start(self) -> "DemoUpstream":
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def point_tiers_at(router, api_base: str):
    """Every tier of ``router`` served at ``api_base`` without a key (in place); returns the router."""
    for t in router.tiers:
        t.api_base, t.api_key_env = api_base, None
    return router
