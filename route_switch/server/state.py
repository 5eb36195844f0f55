"""State that several proxy processes must share: per-key rate limits, failed authentications per
client address, the ``/metrics`` counters and, optionally, routing decisions.

Without ``state:`` in the router config each process keeps its own (:class:`LocalState`): behind
N workers or replicas a 60 req/min limit becomes N×60, 20 failed authentications per minute
become N×20, and each process's ``/metrics`` counts only its own requests. With ``state:
{redis_url_env: REDIS_URL}`` (or ``redis_url``), :class:`RedisState` keeps one token bucket per key
and one per client address's failed authentications in Redis, each updated by one Lua script so
concurrent workers cannot both spend the last token, timed by the Redis server's clock so
machines with skewed clocks agree; the counters of ``/metrics`` are summed there too.
``share_cache: true`` also shares the decision cache
(:class:`route_switch.routing.shared_cache.RedisDecisionCache`).

A request with a right key costs no Redis round trip for the failed-authentication limit: its
check rides in the rate limit's script (:meth:`RedisState.admit`). Only a failed authentication
runs a script of its own.

If Redis is unreachable the proxy keeps answering: limits fall back to the in-process buckets (and
the shared cache is skipped) until Redis answers again; a warning is logged at most every 30 s.
``/metrics`` answers 503 meanwhile (its counters are kept and pushed when Redis is back).
"""
from __future__ import annotations

import asyncio
import logging
import time

from route_switch.routing.shared_cache import RedisWarning
from route_switch.server.ratelimit import RateLimiter

log = logging.getLogger("route_switch.server")

# The token bucket in Redis: tokens_at(key, capacity, rate) reads a bucket at the server's time,
# spend(key, capacity, rate) takes a token and returns the seconds to wait (0 = go).
_BUCKETS = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local function tokens_at(key, capacity, rate)
  local b = redis.call('HMGET', key, 'tokens', 'ts')
  local tokens = tonumber(b[1]) or capacity
  local ts = tonumber(b[2]) or now
  return math.min(capacity, tokens + math.max(0, now - ts) * rate)
end
local function spend(key, capacity, rate)
  local tokens = tokens_at(key, capacity, rate)
  local wait = 0
  if tokens >= 1 then tokens = tokens - 1 else wait = (1 - tokens) / rate end
  redis.call('HSET', key, 'tokens', tostring(tokens), 'ts', tostring(now))
  redis.call('PEXPIRE', key, math.ceil(capacity / rate * 1000) + 1000)
  return wait
end
"""
# KEYS[1] = bucket; ARGV = capacity, refill tokens per second. Returns the seconds to wait ("0" = go).
TOKEN_BUCKET = _BUCKETS + "return tostring(spend(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2])))"
# KEYS = a key's rate bucket, a client address's failed-authentication bucket; ARGV = the capacity
# and rate of each (capacity 0: that limit is off). The address is checked without spending (its
# request had a right key), then the key spends. Returns "auth:<wait>" or "rate:<wait>".
ADMIT = _BUCKETS + """
local rate_cap, rate_rate = tonumber(ARGV[1]), tonumber(ARGV[2])
local auth_cap, auth_rate = tonumber(ARGV[3]), tonumber(ARGV[4])
if auth_cap > 0 then
  local tokens = tokens_at(KEYS[2], auth_cap, auth_rate)
  if tokens < 1 then return 'auth:' .. tostring((1 - tokens) / auth_rate) end
end
if rate_cap > 0 then return 'rate:' .. tostring(spend(KEYS[1], rate_cap, rate_rate)) end
return 'rate:0'
"""


class LocalState:
    """Per-process limits and metrics (the behaviour without ``state:``)."""

    shared = False

    def __init__(self, per_minute: float | None, auth_failures_per_min: float | None = None):
        self.limiter = RateLimiter(per_minute)
        self.per_minute = self.limiter.per_minute
        self.auth_failures = RateLimiter(auth_failures_per_min)

    async def rate_check(self, key: str) -> float:
        """0.0 when the request may go, else the seconds to wait."""
        return self.limiter.check(key)

    def auth_blocked(self, addr: str) -> float:
        """Seconds ``addr`` must wait after too many failed authentications, as far as this process
        knows (no I/O: every request asks)."""
        return self.auth_failures.blocked(addr)

    async def auth_failed(self, addr: str) -> float:
        """Count a failed authentication from ``addr``: 0.0, or the seconds to wait if over the limit."""
        return self.auth_failures.check(addr)

    async def admit(self, key: str | None, addr: str | None) -> tuple[str, float]:
        """Before a request whose key is right: ``("auth", wait)`` while ``addr`` is blocked for failed
        authentications, else ``("rate", wait)`` of ``key``'s rate limit (``None``: not limited)."""
        wait = self.auth_blocked(addr) if addr is not None else 0.0
        if wait:
            return "auth", wait
        return "rate", self.limiter.check(key) if key is not None else 0.0

    async def shared_metrics(self, metrics) -> dict[str, float] | None:
        """Every process's counters summed (``None``: only this process's exist)."""
        return None

    async def push_metrics_forever(self, metrics, every_s: float = 1.0):
        """Push this process's counter increments every ``every_s`` seconds (only with a shared store)."""

    async def close(self, metrics=None):
        pass


class RedisUnavailable(RuntimeError):
    """Redis did not answer, where no in-process fallback makes sense (summed metrics)."""


class RedisState(LocalState):
    """Limits and counters shared by every process that uses the same Redis (and ``prefix``)."""

    shared = True
    MAX_BLOCKED = 100_000  # addresses this process remembers as blocked (bounded: per-IP keys)

    def __init__(self, url: str, per_minute: float | None, prefix: str = "route-switch", timeout_s: float = 0.5,
                 auth_failures_per_min: float | None = None):
        super().__init__(per_minute, auth_failures_per_min)  # the fallback while Redis is down
        self.url, self.prefix, self.timeout_s = url, prefix, timeout_s
        self._client = self._pool = None
        self._scripts: dict = {}
        self._blocked: dict[str, float] = {}  # address -> monotonic time its block (learnt from Redis) ends
        self._warn = RedisWarning()

    def _redis(self):
        if self._client is None:  # created in the event loop that uses it (one per worker)
            import redis.asyncio as aioredis

            # A bounded pool: a burst waits briefly for a connection instead of opening hundreds.
            pool = aioredis.BlockingConnectionPool.from_url(self.url, max_connections=32, timeout=self.timeout_s,
                                                            socket_timeout=self.timeout_s,
                                                            socket_connect_timeout=self.timeout_s)
            self._client, self._pool = aioredis.Redis(connection_pool=pool), pool
            self._scripts = {"bucket": self._client.register_script(TOKEN_BUCKET),
                             "admit": self._client.register_script(ADMIT)}
        return self._client

    def _script(self, name: str):
        self._redis()
        return self._scripts[name]

    def _key(self, kind: str, name: str) -> str:
        return f"{self.prefix}:{kind}:{name}"

    async def rate_check(self, key: str) -> float:
        if not self.per_minute:
            return 0.0
        import redis

        try:
            wait = await self._script("bucket")(keys=[self._key("ratelimit", key)],
                                                args=[self.limiter.capacity, self.limiter.rate])
            return float(wait)
        except (redis.RedisError, OSError) as e:
            self._warn("rate limits", e)
            return self.limiter.check(key)

    def _remember_blocked(self, addr: str, wait: float) -> None:
        """Answer ``addr`` 429 here for ``wait`` seconds without asking Redis again."""
        self._blocked.pop(addr, None)
        self._blocked[addr] = time.monotonic() + wait
        if len(self._blocked) > self.MAX_BLOCKED:
            self._blocked.pop(next(iter(self._blocked)))

    def auth_blocked(self, addr: str) -> float:
        until = self._blocked.get(addr)
        known = 0.0 if until is None else until - time.monotonic()
        if until is not None and known <= 0:
            del self._blocked[addr]
        return max(known, self.auth_failures.blocked(addr))  # the fallback bucket counts while Redis is down

    async def auth_failed(self, addr: str) -> float:
        if not self.auth_failures.per_minute:
            return 0.0
        import redis

        try:
            wait = float(await self._script("bucket")(keys=[self._key("authfail", addr)],
                                                      args=[self.auth_failures.capacity, self.auth_failures.rate]))
        except (redis.RedisError, OSError) as e:
            self._warn("failed-authentication limits", e)
            return self.auth_failures.check(addr)
        if wait:
            self._remember_blocked(addr, wait)
        return wait

    async def admit(self, key: str | None, addr: str | None) -> tuple[str, float]:
        rate_on = key is not None and self.per_minute
        auth_on = addr is not None and self.auth_failures.per_minute
        if not (rate_on or auth_on):
            return "rate", 0.0
        wait = self.auth_blocked(addr) if auth_on else 0.0
        if wait:
            return "auth", wait
        import redis

        try:  # one round trip for both limits: a right key adds none for the failed-authentication one
            kind, _, wait = (await self._script("admit")(
                keys=[self._key("ratelimit", key or "-"), self._key("authfail", addr or "-")],
                args=[self.limiter.capacity if rate_on else 0, self.limiter.rate,
                      self.auth_failures.capacity if auth_on else 0, self.auth_failures.rate])).decode().partition(":")
        except (redis.RedisError, OSError) as e:
            self._warn("rate limits", e)
            return await super().admit(key, addr)
        if kind == "auth" and float(wait):
            self._remember_blocked(addr, float(wait))
        return kind, float(wait)

    # -- /metrics: each process adds its increments to one hash; a scrape of any process reads the sums.
    # Chosen over prometheus_client's multiprocess mode, which sums files of the processes on one host
    # only: replicas on several machines, the case ``state:`` exists for, share nothing but Redis.
    async def push_metrics(self, metrics) -> None:
        """Add this process's counter increments since the last push to Redis (all or none: MULTI)."""
        deltas = metrics.unpushed()
        if not deltas:
            return
        pipe = self._redis().pipeline(transaction=True)
        for field, delta in deltas.items():
            pipe.hincrbyfloat(self._key("metrics", "counters"), field, delta)
        await pipe.execute()
        metrics.mark_pushed(deltas)

    async def shared_metrics(self, metrics) -> dict[str, float]:
        import redis

        try:
            await self.push_metrics(metrics)  # this process's latest requests count in its own scrape
            raw = await self._redis().hgetall(self._key("metrics", "counters"))
        except (redis.RedisError, OSError) as e:
            self._warn("metrics", e)
            raise RedisUnavailable(f"{type(e).__name__}: {str(e)[:200]}") from None
        return {k.decode(): float(v) for k, v in raw.items()}

    async def push_metrics_forever(self, metrics, every_s: float = 1.0):
        """Push every ``every_s`` seconds, so a process that is never scraped still counts (a kill -9
        loses at most its last ``every_s`` seconds of increments)."""
        import redis

        while True:
            await asyncio.sleep(every_s)
            try:
                await self.push_metrics(metrics)
            except (redis.RedisError, OSError) as e:
                self._warn("metrics", e)  # kept: pushed when Redis answers again

    async def close(self, metrics=None):
        if metrics is not None:
            try:
                await self.push_metrics(metrics)  # the last increments of a process that stops
            except Exception:  # Redis down at shutdown: they are lost, the shutdown goes on
                pass
        if self._client is not None:
            try:
                await self._client.aclose()
                await self._pool.disconnect()
            except Exception:  # closing a broken connection must not fail the shutdown
                pass
            self._client = None


def make_state(config: dict | None, per_minute: float | None, auth_failures_per_min: float | None = None) -> LocalState:
    """The state store for a router config's ``state:`` mapping (``None``: in-process)."""
    from route_switch.routing.config import redis_url

    url = redis_url(config)
    if not url:
        return LocalState(per_minute, auth_failures_per_min)
    return RedisState(url, per_minute, prefix=config.get("prefix", "route-switch"),
                      auth_failures_per_min=auth_failures_per_min)
