"""Real servers on loopback for tests and benchmarks: llama.cpp, a misbehaving upstream, the proxy.

Use from a test module with ``from servers import llama_upstream, fitted_router_dir, run_app, FakeUpstream``
(``tests/`` is on ``sys.path`` under pytest). Also runnable: ``python tests/servers.py fake-upstream --port P``.
"""
from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

LOOPBACK = "127.0.0.1"


def free_port() -> int:
    """A loopback port nobody listens on (also the 'connection refused' upstream)."""
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout_s: float = 120, proc: subprocess.Popen | None = None) -> None:
    import httpx

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before answering {url}")
        try:
            if httpx.get(url, timeout=2).status_code < 500:
                return
        except Exception:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{url} did not answer within {timeout_s}s")


# ------------------------------------------------------------------ a small misbehaving upstream
def completion(text: str = "ok", model: str = "fake") -> dict:
    return {"id": "chatcmpl-fake", "object": "chat.completion", "created": int(time.time()), "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}


class QuietHandler(BaseHTTPRequestHandler):
    """HTTP/1.1 handler without access logs, with a one-call JSON response helper."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def _send(self, status, body: bytes, ctype="application/json"):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class LoopbackServer:
    """A real ThreadingHTTPServer on 127.0.0.1 in a daemon thread; use as a context manager."""

    def _serve(self, handler, port: int = 0):
        self.httpd = ThreadingHTTPServer((LOOPBACK, port), handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.url = f"http://{LOOPBACK}:{self.port}/v1"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


class FakeUpstream(LoopbackServer):
    """An OpenAI-ish HTTP server on a real socket. ``mode``: ok | 500 | malformed | slow | hang_stream.

    ``ok`` answers instantly (streams 3 chunks when asked); ``slow`` sleeps ``delay`` s first;
    ``malformed`` sends a 200 that is not JSON / not SSE. ``hits`` counts requests.
    """

    def __init__(self, mode: str = "ok", delay: float = 5.0, port: int = 0, text: str = "ok"):
        self.mode, self.delay, self.text, self.hits = mode, delay, text, 0
        outer = self

        class Handler(QuietHandler):
            def do_GET(self):
                self._send(200, json.dumps({"object": "list", "data": [{"id": "fake", "object": "model"}]}).encode())

            def do_POST(self):
                outer.hits += 1
                req = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                mode = outer.mode
                if mode == "slow":
                    time.sleep(outer.delay)
                if mode == "500":
                    return self._send(500, b'{"error": {"message": "boom"}}')
                if mode == "malformed":
                    return self._send(200, b"<html>this is not json", "text/event-stream" if req.get("stream")
                                      else "application/json")
                if not req.get("stream"):
                    return self._send(200, json.dumps(completion(outer.text, req.get("model", "fake"))).encode())
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Connection", "close")
                self.end_headers()
                for i, part in enumerate([outer.text, " from", " fake"]):
                    chunk = {"id": "c", "object": "chat.completion.chunk", "model": req.get("model"),
                             "choices": [{"index": 0, "delta": {"content": part}, "finish_reason": None}]}
                    self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                    self.wfile.flush()
                    if mode == "hang_stream" and i == 0:
                        time.sleep(outer.delay)
                self.wfile.write(b"data: [DONE]\n\n")
                self.close_connection = True

        self._serve(Handler, port)


# ------------------------------------------------------------------ the proxy in a background thread
@contextlib.contextmanager
def run_app(app, port: int | None = None):
    """Serve an ASGI app with uvicorn on a free loopback port in a thread; yields ``http://127.0.0.1:PORT``."""
    import uvicorn

    port = port or free_port()
    server = uvicorn.Server(uvicorn.Config(app, host=LOOPBACK, port=port, log_level="warning", access_log=False,
                                          lifespan="on"))
    th = threading.Thread(target=server.run, daemon=True)
    th.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not th.is_alive():
            raise RuntimeError("proxy did not start")
        time.sleep(0.02)
    try:
        yield f"http://{LOOPBACK}:{port}"
    finally:
        server.should_exit = True
        th.join(10)


# ------------------------------------------------------------------ a real llama.cpp upstream
@contextlib.contextmanager
def llama_server(model_path: str | os.PathLike | None = None, n_ctx: int = 2048, threads: int = 1):
    """``python -m llama_cpp.server`` with the router GGUF on a free port; yields its ``/v1`` base URL."""
    if model_path is None:
        from route_switch.llm.model_files import ensure_local_model

        model_path = ensure_local_model()
    port = free_port()
    cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(model_path), "--host", LOOPBACK, "--port", str(port),
           "--n_ctx", str(n_ctx), "--n_threads", str(threads), "--model_alias", "qwen-0.5b", "--verbose", "False"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_http(f"http://{LOOPBACK}:{port}/v1/models", 180, proc)
        yield f"http://{LOOPBACK}:{port}/v1"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="session")
def llama_upstream():
    """Session-wide llama.cpp server (Qwen2.5-Coder-0.5B GGUF); the base URL of its ``/v1``."""
    pytest.importorskip("llama_cpp")
    with llama_server() as url:
        yield url


@pytest.fixture(scope="session")
def fitted_router_dir(synthetic, tmp_path_factory) -> Path:
    """A router fitted on the synthetic evalset (tiers small/medium/large, no endpoints)."""
    from route_switch.fitting import fit

    out = tmp_path_factory.mktemp("router")
    fit(synthetic, out)
    return out


def router_with_upstreams(router_dir, urls: list[str], **kw):
    """A ``Router`` over the fitted estimator whose tiers small/medium/large are served at ``urls``."""
    from route_switch.controller import Router
    from route_switch.spec import Tier

    base = Router.from_config(router_dir)
    tiers = [Tier(name=t.name, model=t.model, api_base=u, upstream_model="qwen-0.5b") for t, u in zip(base.tiers, urls)]
    return Router(tiers=tiers, estimator=base.estimator, tau=base.tau, **kw)


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser()
    ap.add_argument("what", choices=["fake-upstream"])
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--mode", default="ok")
    a = ap.parse_args()
    with FakeUpstream(a.mode, port=a.port) as up:
        print(up.url, flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
