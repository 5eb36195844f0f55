"""Who is asking: API keys from the environment, bearer-token checks, log-safe key ids, and a
limit on failed authentications per client address."""
from __future__ import annotations

import hashlib
import hmac
import os

from starlette.requests import Request

from route_switch.core.errors import ConfigError
from route_switch.server.ratelimit import RateLimiter
from route_switch.server.responses import ApiError

KEYS_ENV = "ROUTE_SWITCH_API_KEYS"
KEY_ID_SECRET_ENV = "ROUTE_SWITCH_KEY_ID_SECRET"
_PROCESS_SECRET = os.urandom(32)


def keys_from_env(env: str = KEYS_ENV) -> set[str]:
    """API keys from ``$ROUTE_SWITCH_API_KEYS`` (comma-separated; blanks ignored)."""
    return {k.strip() for k in os.environ.get(env, "").split(",") if k.strip()}


def key_hash(key: str) -> str:
    """A log-safe id of an API key: HMAC-SHA256 keyed by a per-deployment secret.

    ``$ROUTE_SWITCH_KEY_ID_SECRET`` makes ids stable across restarts and replicas; without it a
    random per-process secret is used. Without the secret, an id cannot be tested against guesses.
    """
    secret = os.environ.get(KEY_ID_SECRET_ENV, "").encode() or _PROCESS_SECRET
    return hmac.new(secret, key.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()[:12]


def too_many_failures(wait: float) -> ApiError:
    """The 429 of a client address over its limit of failed authentications (even with a right key)."""
    after = RateLimiter.retry_after(wait)
    return ApiError(429, f"too many failed authentications from this address; retry after {after}s",
                    "rate_limit_error", "auth_rate_limited", {"Retry-After": after})


def client_address(request: Request) -> str:
    return request.client.host if request.client else "-"


class Authenticator:
    """Checks ``Authorization: Bearer <key>`` against ``api_keys`` and answers the request's key id.

    Without auth (``insecure_no_auth``) the id is the client address's. ``failures`` (the proxy's
    :mod:`~route_switch.server.state` store: in-process, or Redis shared by every worker and
    replica) bounds failed authentications per client address: a brute force gets 429s, not answers.
    """

    def __init__(self, api_keys: set[str] | None, insecure_no_auth: bool, failures):
        self.keys = {k for k in (api_keys or ()) if k}
        self.enabled = not insecure_no_auth
        if self.enabled and not self.keys:
            raise ConfigError(f"no API key configured: set {KEYS_ENV}=key1,key2 (comma-separated), "
                              "or pass --insecure-no-auth to run without authentication")
        self.failures = failures

    async def key_id(self, request: Request) -> str:
        """The request's key id; ApiError 401 (no or a wrong key) or 429 (too many failures).

        A right key is not yet cleared of a block learnt by another process: the caller asks
        ``failures.admit`` next (in the same round trip as the rate limit)."""
        addr = client_address(request)
        if not self.enabled:
            return "anon:" + key_hash(addr)
        wait = self.failures.auth_blocked(addr)  # what this process knows already: no I/O
        if wait:
            raise too_many_failures(wait)
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        given = given.strip()
        ok = False
        for k in self.keys:  # constant-time compare against every key
            ok |= hmac.compare_digest(given.encode("utf-8", "surrogatepass"), k.encode())
        if scheme.lower() == "bearer" and given and ok:
            return key_hash(given)
        wait = await self.failures.auth_failed(addr)
        if wait:  # the limit was reached meanwhile (by this guess, or through another process)
            raise too_many_failures(wait)
        if scheme.lower() != "bearer" or not given:
            raise ApiError(401, "missing API key: send 'Authorization: Bearer <key>'", code="invalid_api_key")
        raise ApiError(401, "invalid API key", code="invalid_api_key")
