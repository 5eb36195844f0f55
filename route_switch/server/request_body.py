"""Reading an OpenAI-style request: the JSON body (bounded in size and time), the router model
name, the text to route, the session header and the knobs of ``POST /v1/route``."""
from __future__ import annotations

import asyncio
import json

from starlette.requests import ClientDisconnect, Request

from route_switch.core.conversation import MessagesError, flatten_turns, turns_of
from route_switch.core.knobs import UnknownRouterModel, check_knob, parse_router_model
from route_switch.server.responses import ApiError

BODY_TIMEOUT_S = 30.0  # the whole request body must arrive within this (slow-loris clients)
_DRAIN_LIMIT = 32 * 1024 * 1024  # read (and drop) oversized bodies up to this, so the client sees the 413
SESSION_HEADER = "x-route-switch-session"


async def _read_body(request: Request, limit: int) -> tuple[bytearray, int]:
    """The body (its first ``limit`` bytes) and its length; a body far beyond ``limit`` raises 413 at once."""
    cl = request.headers.get("content-length", "")
    buf, n = bytearray(), 0
    async for chunk in request.stream():
        n += len(chunk)
        if n <= limit:
            buf += chunk
        elif n > _DRAIN_LIMIT or (cl.isdigit() and int(cl) > _DRAIN_LIMIT):
            raise ApiError(413, f"request body larger than {limit} bytes", code="request_too_large")
    return buf, n


async def read_json(request: Request, limit: int) -> dict:
    """The request body as a JSON object, or ApiError 413 / 400 / 408 with a clear message."""
    try:
        buf, n = await asyncio.wait_for(_read_body(request, limit), BODY_TIMEOUT_S)
    except ClientDisconnect:  # nobody is left to answer: logged as 499 (nginx's "client closed request")
        raise ApiError(499, "the client disconnected before sending the whole body", code="client_closed_request") from None
    except asyncio.TimeoutError:  # a slow-loris client holds a connection and a worker slot no longer
        raise ApiError(408, f"the request body did not arrive within {BODY_TIMEOUT_S:g} s", code="request_timeout",
                       headers={"Connection": "close"}) from None
    if n > limit:
        raise ApiError(413, f"request body larger than {limit} bytes", code="request_too_large")
    if not buf.strip():
        raise ApiError(400, "request body is empty: send a JSON object", code="invalid_json")
    try:
        data = json.loads(bytes(buf))
    except UnicodeDecodeError:
        raise ApiError(400, "request body is not valid UTF-8", code="invalid_json") from None
    except (ValueError, RecursionError) as e:
        raise ApiError(400, f"request body is not valid JSON: {str(e)[:200]}", code="invalid_json") from None
    if not isinstance(data, dict):
        raise ApiError(400, f"request body must be a JSON object, got {type(data).__name__}", code="invalid_json")
    return data


def parse_model(name) -> tuple[float | None, float | None]:
    """``router`` -> router defaults; ``router-tau-0.2`` / ``router-lambda-0.5`` -> that knob
    (:func:`route_switch.core.knobs.parse_router_model`, as an ``ApiError``)."""
    try:
        return parse_router_model(name, who="this proxy")
    except UnknownRouterModel as e:
        raise ApiError(404, str(e), code="model_not_found") from None
    except ValueError as e:
        raise ApiError(400, str(e), code="invalid_model") from None


def query_from_messages(messages, conversation=None, count_tokens=None) -> str:
    """The text to route: the last user message plus earlier context (``conversation``:
    a :class:`~route_switch.core.conversation.ConversationConfig`; None = the last user message only).
    Malformed messages are a 400 naming the item."""
    try:
        turns = turns_of(messages, strict=True)
    except MessagesError as e:
        raise ApiError(400, str(e), code="invalid_messages") from None
    c = conversation
    kw = {"context_tokens": c.context_tokens, "roles": c.roles} if c is not None else {"context_tokens": 0}
    if count_tokens is not None:
        kw["count_tokens"] = count_tokens
    return flatten_turns(turns, **kw)


def messages_query(ctx, messages) -> str:
    """The text to route of a request's messages, read the way its router reads conversations."""
    return query_from_messages(messages, ctx.router.conversation, ctx.router.count_tokens)


def session_key(request: Request, ctx) -> str | None:
    """The conversation's session key from ``X-Route-Switch-Session``, scoped to the API key
    (one client cannot raise another's floor); None without the header."""
    raw = request.headers.get(SESSION_HEADER, "").strip()
    if not raw:
        return None
    if len(raw) > 200:
        raise ApiError(400, "X-Route-Switch-Session must be at most 200 characters", code="invalid_session")
    return f"{ctx.key}:{raw}"


def route_request(body: dict, ctx) -> tuple[str, float | None, float | None]:
    """(text, tau, lambda) of a ``POST /v1/route`` body: ``query`` or ``messages``, the model name,
    then ``tau`` or ``lambda`` (the last one given wins over the model name)."""
    if "query" in body:
        if not isinstance(body["query"], str):
            raise ApiError(400, "'query' must be a string", code="invalid_query")
        text = body["query"]
    elif "messages" in body:
        text = messages_query(ctx, body["messages"])
    else:
        raise ApiError(400, "send {\"query\": \"...\"} or {\"messages\": [...]}", code="invalid_query")
    tau, lam = parse_model(body.get("model", "router"))
    for k in ("tau", "lambda"):
        if body.get(k) is None:
            continue
        try:  # JSON admits NaN and Infinity: the shared check refuses them
            v = check_knob(k, body[k])
        except ValueError as e:
            raise ApiError(400, str(e), code="invalid_knob") from None
        tau, lam = (v, None) if k == "tau" else (None, v)
    return text, tau, lam
