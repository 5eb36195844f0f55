"""State that several proxy processes must share: per-key rate limits and, optionally, routing decisions.

Without ``state:`` in the router config each process keeps its own (:class:`LocalState`): behind
N workers or replicas a 60 req/min limit becomes N×60. With ``state: {redis_url_env: REDIS_URL}``
(or ``redis_url``), :class:`RedisState` keeps one token bucket per key in Redis, updated by one Lua
script so concurrent workers cannot both spend the last token, timed by the Redis server's clock
so machines with skewed clocks agree. ``share_cache: true`` also shares the decision cache
(:class:`route_switch.routing.shared_cache.RedisDecisionCache`).

If Redis is unreachable the proxy keeps answering: limits fall back to the in-process bucket (and
the shared cache is skipped) until Redis answers again; a warning is logged at most every 30 s.
"""
from __future__ import annotations

import logging

from route_switch.routing.shared_cache import RedisWarning
from route_switch.server.ratelimit import RateLimiter

log = logging.getLogger("route_switch.server")

# KEYS[1] = bucket; ARGV = capacity, refill tokens per second. Returns the seconds to wait ("0" = go).
TOKEN_BUCKET = """
local capacity = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local b = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(b[1]) or capacity
local ts = tonumber(b[2]) or now
tokens = math.min(capacity, tokens + math.max(0, now - ts) * rate)
local wait = 0
if tokens >= 1 then tokens = tokens - 1 else wait = (1 - tokens) / rate end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(capacity / rate * 1000) + 1000)
return tostring(wait)
"""


class LocalState:
    """Per-process rate limits (the behaviour without ``state:``)."""

    shared = False

    def __init__(self, per_minute: float | None):
        self.limiter = RateLimiter(per_minute)
        self.per_minute = self.limiter.per_minute

    async def rate_check(self, key: str) -> float:
        """0.0 when the request may go, else the seconds to wait."""
        return self.limiter.check(key)

    async def close(self):
        pass


class RedisState(LocalState):
    """Rate limits shared by every process that uses the same Redis (and ``prefix``)."""

    shared = True

    def __init__(self, url: str, per_minute: float | None, prefix: str = "route-switch", timeout_s: float = 0.5):
        super().__init__(per_minute)  # the fallback while Redis is down
        self.url, self.prefix, self.timeout_s = url, prefix, timeout_s
        self._client = self._script = self._pool = None
        self._warn = RedisWarning()

    def _redis(self):
        if self._client is None:  # created in the event loop that uses it (one per worker)
            import redis.asyncio as aioredis

            # A bounded pool: a burst waits briefly for a connection instead of opening hundreds.
            pool = aioredis.BlockingConnectionPool.from_url(self.url, max_connections=32, timeout=self.timeout_s,
                                                            socket_timeout=self.timeout_s,
                                                            socket_connect_timeout=self.timeout_s)
            self._client, self._pool = aioredis.Redis(connection_pool=pool), pool
            self._script = self._client.register_script(TOKEN_BUCKET)
        return self._script

    async def rate_check(self, key: str) -> float:
        if not self.per_minute:
            return 0.0
        import redis

        try:
            script = self._redis()
            wait = await script(keys=[f"{self.prefix}:ratelimit:{key}"],
                                args=[self.limiter.capacity, self.limiter.rate])
            return float(wait)
        except (redis.RedisError, OSError) as e:
            self._warn("rate limits", e)
            return self.limiter.check(key)

    async def close(self):
        if self._client is not None:
            try:
                await self._client.aclose()
                await self._pool.disconnect()
            except Exception:  # closing a broken connection must not fail the shutdown
                pass
            self._client = None


def make_state(config: dict | None, per_minute: float | None) -> LocalState:
    """The state store for a router config's ``state:`` mapping (``None``: in-process)."""
    from route_switch.routing.config import redis_url

    url = redis_url(config)
    if not url:
        return LocalState(per_minute)
    return RedisState(url, per_minute, prefix=config.get("prefix", "route-switch"))
