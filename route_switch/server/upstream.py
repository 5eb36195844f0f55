"""Forward a chat completion to a tier's OpenAI-compatible upstream; on failure retry the next tier up.

A failure is anything that says "this upstream cannot answer now": connection error, timeout,
HTTP 5xx / 429 / 401 / 403 / 404 (an upstream misconfiguration), a body that is not JSON or not a
chat completion, a stream that is not an event stream. Other 4xx (e.g. 400 context too long) are
the client's problem and are passed through unchanged.
"""
from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Sequence

import httpx

from route_switch.core.tiers import Tier, api_key_from_env, to_tier

RETRY_STATUS = {401, 403, 404, 408, 409, 429}
SSE_PREFIXES = (b"data:", b":", b"event:", b"id:", b"retry:")
FIRST_EVENT_LIMIT = 1 << 20  # bytes read while looking for the end of the first event


class UpstreamFailure(Exception):
    """This tier's upstream could not answer (the message says why, without secrets)."""


class AllTiersFailed(Exception):
    def __init__(self, failures: list[dict]):
        self.failures = failures
        super().__init__("; ".join(f"tier {f['tier']} ({f['tier_name']}): {f['error']}" for f in failures))


@dataclass
class Forwarded:
    index: int                      # 0-based tier that answered
    status: int
    failures: list[dict] = field(default_factory=list)
    data: Any = None                # non-streaming: the parsed JSON body
    response: httpx.Response | None = None   # streaming: the open upstream response
    chunks: AsyncIterator[bytes] | None = None
    first: bytes = b""              # streaming: the first chunk, already read


def _request(tier: Tier, body: dict, stream: bool) -> tuple[str, dict, bytes]:
    if not tier.api_base:
        raise UpstreamFailure("tier has no api_base configured")
    headers = {"content-type": "application/json", "accept": "text/event-stream" if stream else "application/json"}
    key = api_key_from_env(tier.api_key_env, f"tier '{tier.name}'", UpstreamFailure)
    if key:
        headers["authorization"] = f"Bearer {key}"
    payload = dict(body, model=tier.upstream_model or tier.model)
    return tier.api_base.rstrip("/") + "/chat/completions", headers, json.dumps(payload).encode()


def describe(e: BaseException, timeout_s: float) -> str:
    """A short, secret-free reason for a failed attempt."""
    if isinstance(e, UpstreamFailure):
        return str(e)
    if isinstance(e, (httpx.TimeoutException, asyncio.TimeoutError)):
        return f"timeout after {timeout_s:g}s"
    if isinstance(e, httpx.ConnectError):
        return "connection error (refused or unreachable)"
    if isinstance(e, httpx.HTTPError):
        return f"upstream protocol error: {type(e).__name__}"
    return f"{type(e).__name__}"


async def _call(client: httpx.AsyncClient, tier: Tier, body: dict, timeout_s: float) -> tuple[int, dict]:
    url, headers, content = _request(tier, body, stream=False)
    r = await client.post(url, content=content, headers=headers, timeout=timeout_s)
    if r.status_code >= 500 or r.status_code in RETRY_STATUS:
        raise UpstreamFailure(f"HTTP {r.status_code}")
    try:
        data = r.json()
    except ValueError:
        raise UpstreamFailure(f"malformed JSON from upstream (HTTP {r.status_code})") from None
    if not isinstance(data, dict) or (r.status_code == 200 and not isinstance(data.get("choices"), list)):
        raise UpstreamFailure("malformed response: not a chat completion")
    return r.status_code, data


async def _open_stream(client: httpx.AsyncClient, tier: Tier, body: dict, timeout_s: float) -> Forwarded:
    url, headers, content = _request(tier, body, stream=True)
    req = client.build_request("POST", url, content=content, headers=headers, timeout=timeout_s)
    r = await client.send(req, stream=True)
    try:
        if r.status_code >= 500 or r.status_code in RETRY_STATUS:
            raise UpstreamFailure(f"HTTP {r.status_code}")
        if r.status_code != 200:  # a client error: pass it through as JSON
            await r.aread()
            try:
                data = r.json()
            except ValueError:
                data = {"error": {"message": r.text[:500], "type": "upstream_error", "code": r.status_code}}
            await r.aclose()
            return Forwarded(index=-1, status=r.status_code, data=data)
        ctype = r.headers.get("content-type", "")
        if "text/event-stream" not in ctype:
            raise UpstreamFailure(f"malformed stream: content-type {ctype[:60]!r}, not text/event-stream")
        chunks = r.aiter_raw()
        first = b""
        # Read up to the end of the first event: nothing has reached the client yet, so an upstream
        # whose stream starts wrong (not SSE, or an event that is not JSON) can still be retried.
        while b"\n\n" not in first.replace(b"\r\n", b"\n") and len(first) < FIRST_EVENT_LIMIT:
            try:
                first += await chunks.__anext__()
            except StopAsyncIteration:
                if not first.strip():
                    raise UpstreamFailure("empty event stream") from None
                break
        if not first.lstrip().startswith(SSE_PREFIXES) or not _first_event_ok(first):
            raise UpstreamFailure("malformed event stream")
        return Forwarded(index=-1, status=200, response=r, chunks=chunks, first=first)
    except BaseException:
        await r.aclose()
        raise


def _first_event_ok(raw: bytes) -> bool:
    """The first SSE event's ``data:`` is ``[DONE]`` or JSON (comments and other fields pass)."""
    event = raw.replace(b"\r\n", b"\n").split(b"\n\n", 1)[0]
    data = b"\n".join(line[5:].strip() for line in event.split(b"\n") if line.startswith(b"data:"))
    if not data or data == b"[DONE]":
        return True
    try:
        json.loads(data)
    except ValueError:
        return False
    return True


async def forward(client: httpx.AsyncClient, tiers: Sequence[Tier], start: int, body: dict, *,
                  stream: bool, timeout_s: float) -> Forwarded:
    """Try ``tiers[start]``, then each tier above it, until one answers; ``AllTiersFailed`` otherwise.

    The whole attempt (non-streaming), or the wait for the first chunk (streaming), is bounded by
    ``timeout_s`` per tier.
    """
    failures: list[dict] = []
    for i in range(start, len(tiers)):
        try:
            if stream:
                f = await asyncio.wait_for(_open_stream(client, tiers[i], body, timeout_s), timeout_s)
            else:
                status, data = await asyncio.wait_for(_call(client, tiers[i], body, timeout_s), timeout_s)
                f = Forwarded(index=i, status=status, data=data)
            f.index, f.failures = i, failures
            return f
        except (UpstreamFailure, httpx.HTTPError, asyncio.TimeoutError, OSError) as e:
            failures.append({"tier": to_tier(i), "tier_name": tiers[i].name, "error": describe(e, timeout_s)})
    raise AllTiersFailed(failures)
