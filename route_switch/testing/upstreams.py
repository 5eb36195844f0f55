"""FAKE OpenAI-compatible upstreams on real loopback sockets (stdlib HTTP servers in a daemon thread).

* :class:`FakeUpstream` answers, fails with 500, sends garbage, sleeps or hangs mid-stream on demand;
* :class:`FaultyUpstream` fails at random with fixed shares (HTTP 500, hangs past the caller's
  timeout, streams or bodies cut mid-way, malformed JSON) for soak runs; ``GET /stats`` counts what
  it did. Answers carry ``x_upstream_ms`` (time spent in the upstream) so a caller can subtract it.

Run one as a process: ``python -m route_switch.testing.upstreams {fake,faulty} --port P``.
"""
from __future__ import annotations

import json
import random
import socket
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LOOPBACK = "127.0.0.1"


def free_port() -> int:
    """A loopback port nobody listens on (also the 'connection refused' upstream)."""
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def completion(text: str = "ok", model: str = "fake") -> dict:
    return {"id": "chatcmpl-fake", "object": "chat.completion", "created": int(time.time()), "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}


def chunk(text: str, model) -> bytes:
    c = {"id": "c", "object": "chat.completion.chunk", "model": model,
         "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}]}
    return f"data: {json.dumps(c)}\n\n".encode()


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


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):  # a caller that hung up is expected here
        pass


class LoopbackServer:
    """A real ThreadingHTTPServer on 127.0.0.1 in a daemon thread; use as a context manager."""

    def _serve(self, handler, port: int = 0):
        self.httpd = _QuietServer((LOOPBACK, port), handler)
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
                    self.wfile.write(chunk(part, req.get("model")))
                    self.wfile.flush()
                    if mode == "hang_stream" and i == 0:
                        time.sleep(outer.delay)
                self.wfile.write(b"data: [DONE]\n\n")
                self.close_connection = True

        self._serve(Handler, port)


FAULTS = {"http_500": 0.10, "hang": 0.05, "cut": 0.05, "malformed_json": 0.02}


class FaultyUpstream(LoopbackServer):
    """Fails at random: shares ``faults`` of the requests (default :data:`FAULTS`), the rest answer.

    * ``http_500``: HTTP 500 with a JSON error;
    * ``hang``: sleeps ``hang_s`` (set it past the caller's timeout) before answering;
    * ``cut``: a stream stops after its first chunk, a body after half its bytes (connection closed);
    * ``malformed_json``: HTTP 200 whose body (or first event) is truncated JSON.

    Draws come from ``random.Random(seed)``; ``stats`` counts outcomes (also ``GET /stats``).
    """

    def __init__(self, faults: dict | None = None, hang_s: float = 3.0, seed: int = 0, port: int = 0,
                 chunks: int = 4, chunk_delay_s: float = 0.002):
        self.faults, self.hang_s = dict(FAULTS if faults is None else faults), hang_s
        self.chunks, self.chunk_delay_s = chunks, chunk_delay_s
        self.stats: Counter = Counter()
        self._rng, self._lock = random.Random(seed), threading.Lock()
        outer = self

        class Handler(QuietHandler):
            def do_GET(self):
                if self.path.endswith("/stats"):
                    with outer._lock:
                        return self._send(200, json.dumps(dict(outer.stats)).encode())
                self._send(200, json.dumps({"object": "list", "data": [{"id": "fake", "object": "model"}]}).encode())

            def do_POST(self):
                t0 = time.perf_counter()
                req = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                kind = outer._draw()
                stream = bool(req.get("stream"))
                try:
                    outer._answer(self, kind, stream, req.get("model", "fake"), t0)
                except (BrokenPipeError, ConnectionResetError):  # the caller gave up (e.g. after a hang)
                    with outer._lock:
                        outer.stats["caller_hung_up"] += 1

        self._serve(Handler, port)

    def _draw(self) -> str:
        with self._lock:
            r, acc = self._rng.random(), 0.0
            kind = "ok"
            for k, share in self.faults.items():
                acc += share
                if r < acc:
                    kind = k
                    break
            self.stats[kind] += 1
            self.stats["requests"] += 1
        return kind

    def _answer(self, h: QuietHandler, kind: str, stream: bool, model, t0: float):
        if kind == "hang":
            time.sleep(self.hang_s)
        if kind == "http_500":
            return h._send(500, b'{"error": {"message": "injected failure"}}')
        if not stream:
            body = completion("fine answer from the faulty upstream", model)
            body["x_upstream_ms"] = round((time.perf_counter() - t0) * 1000, 3)
            raw = json.dumps(body).encode()
            if kind == "malformed_json":
                return h._send(200, raw[: len(raw) // 2])
            if kind == "cut":  # promise the whole body, send half, hang up
                h.send_response(200)
                h.send_header("Content-Type", "application/json")
                h.send_header("Content-Length", str(len(raw)))
                h.end_headers()
                h.wfile.write(raw[: len(raw) // 2])
                h.wfile.flush()
                h.close_connection = True
                h.connection.shutdown(socket.SHUT_RDWR)
                return
            return h._send(200, raw)
        # Streams use chunked transfer encoding, as real upstreams do: a cut is then visible to the
        # caller as an incomplete body, not as a stream that merely ended early.
        h.send_response(200)
        h.send_header("Content-Type", "text/event-stream")
        h.send_header("Transfer-Encoding", "chunked")
        h.end_headers()

        def send(data: bytes):
            h.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            h.wfile.flush()

        if kind == "malformed_json":
            send(b'data: {"id": "c", "choices": [{"delta": {"content": "tru\n\n')
        for i in range(self.chunks):
            send(chunk(f"part{i} ", model))
            if kind == "cut":
                h.close_connection = True
                h.connection.shutdown(socket.SHUT_RDWR)  # mid-way: no [DONE], no final chunk
                return
            time.sleep(self.chunk_delay_s)
        send(b"data: [DONE]\n\n")
        h.wfile.write(b"0\r\n\r\n")
        h.wfile.flush()


def main(argv=None) -> None:
    import argparse

    ap = argparse.ArgumentParser(description="run a FAKE upstream on loopback until interrupted")
    ap.add_argument("kind", choices=["fake", "faulty"])
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--mode", default="ok", help="fake: ok | 500 | malformed | slow | hang_stream")
    ap.add_argument("--hang-s", type=float, default=3.0, help="faulty: how long a hang lasts")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    server = FakeUpstream(a.mode, port=a.port) if a.kind == "fake" else FaultyUpstream(hang_s=a.hang_s, seed=a.seed,
                                                                                       port=a.port)
    with server as up:
        print(up.url, flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
