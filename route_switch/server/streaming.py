"""Relaying an upstream's server-sent events to the client as they arrive."""
from __future__ import annotations

import json
from collections.abc import Callable

import httpx

from route_switch.server.budgets import StreamUsage


async def relay(f, charge: Callable[[dict | None], None], finish: Callable[[int], None]):
    """Pass the upstream SSE bytes of ``f`` (a :class:`~route_switch.server.upstream.Forwarded` stream)
    through; an error mid-stream ends it with an error event.

    When the stream ends: ``charge(usage)`` after a complete one (``usage``: what the stream
    reported, or None), then ``finish(status)`` always (200, 502 upstream broke, 499 client left).
    """
    status = 200
    usage = StreamUsage()
    try:
        usage.feed(f.first)
        yield f.first
        async for chunk in f.chunks:
            usage.feed(chunk)
            yield chunk
    except httpx.HTTPError as e:
        status = 502
        err = {"error": {"message": f"upstream stream broke: {type(e).__name__}", "type": "upstream_error",
                         "code": "upstream_stream_error"}}
        yield f"data: {json.dumps(err)}\n\n".encode()
    except BaseException:
        status = 499  # client went away
        raise
    finally:
        try:
            await f.response.aclose()
            if status == 200:
                charge(usage.usage)
        finally:
            finish(status)
