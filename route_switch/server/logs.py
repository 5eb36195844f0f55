"""The proxy's logs: one JSON object per stderr line, with credentials redacted from every line.

Redaction covers ``scheme://user:password@host`` and ``scheme://token@host`` URLs (httpx logs
request URLs), ``Bearer`` tokens, ``api_key=...``-style parameters and, literally, every secret the process knows (the API
keys and the tiers' upstream keys read from the environment).
"""
from __future__ import annotations

import json
import logging
import re
import time

_PATTERNS = [
    (re.compile(r"(\b[a-z][a-z0-9+.-]*://)[^/\s:@]+:[^/\s@]+@", re.I), r"\1***:***@"),
    (re.compile(r"(\b[a-z][a-z0-9+.-]*://)[^/\s:@*]+@", re.I), r"\1***@"),  # a token as the user name
    (re.compile(r"(\bbearer\s+)[A-Za-z0-9._~+/=-]+", re.I), r"\1***"),
    (re.compile(r"((?:api[_-]?key|token|secret|password|passwd)[\"']?\s*[=:]\s*[\"']?)[^\s&\"',}]+", re.I), r"\1***"),
]


class Redactor(logging.Filter):
    """A handler filter that rewrites each record's message with credentials replaced by ``***``."""

    def __init__(self, secrets=()):
        super().__init__()
        self.secrets = sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True)

    def redact(self, text: str) -> str:
        for s in self.secrets:
            text = text.replace(s, "***")
        for rx, repl in _PATTERNS:
            text = rx.sub(repl, text)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        msg = self.redact(record.getMessage())
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        record.msg, record.args = msg, None
        return True


class JsonFormatter(logging.Formatter):
    """``{"ts", "level", "logger", "msg"}``; a message that already is a JSON object passes as is."""

    def format(self, record: logging.LogRecord) -> str:
        msg = record.getMessage()
        if msg.startswith("{") and record.name.endswith(".access"):
            return msg
        rec = {"ts": round(time.time(), 3), "level": record.levelname.lower(), "logger": record.name, "msg": msg}
        if record.exc_text or record.exc_info:
            rec["exc"] = record.exc_text or self.formatException(record.exc_info)
        return json.dumps(rec, ensure_ascii=False)


def setup(level: str, secrets=()) -> None:
    """Route every logger (the proxy's, uvicorn's, httpx's) to one redacting JSON handler on stderr."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    handler.addFilter(Redactor(secrets))
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    root.addHandler(handler)
    root.setLevel(level.upper())
    for name in ("route_switch.server.access", "uvicorn", "uvicorn.error", "uvicorn.access", "httpx", "httpcore"):
        lg = logging.getLogger(name)
        lg.handlers.clear()
        lg.propagate = True
    logging.getLogger("route_switch.server.access").setLevel(logging.INFO)
    logging.getLogger("httpcore").setLevel(max(logging.INFO, root.level))  # its DEBUG lines are wire dumps
