"""Routing decisions shared by several processes through Redis (``state: {share_cache: true}``).

Keyed by the router's config version, so a reload never serves a decision of the previous
estimator. If Redis is unreachable every lookup is a miss and a warning is logged at most every 30 s.
"""
from __future__ import annotations

import json
import logging
import time

log = logging.getLogger("route_switch.server")


class RedisWarning:
    """Log a Redis failure at most every ``every_s`` seconds (a Redis outage must not flood the log)."""

    def __init__(self, every_s: float = 30.0):
        self.every_s, self.last = every_s, -1e9

    def __call__(self, what: str, e: BaseException):
        now = time.monotonic()
        if now - self.last >= self.every_s:
            self.last = now
            log.warning("redis unavailable for %s (%s: %s): using in-process state until it answers",
                        what, type(e).__name__, str(e)[:200])


class RedisDecisionCache:
    """Routing decisions shared through Redis (sync: the router runs in a worker thread).

    ``get``/``put`` never raise: a Redis failure is a cache miss.
    """

    def __init__(self, url: str, namespace: str, prefix: str = "route-switch", ttl_s: int = 3600,
                 timeout_s: float = 0.2):
        import redis

        self._redis = redis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
        self.prefix, self.namespace, self.ttl_s = prefix, namespace, ttl_s
        self._warn = RedisWarning()

    def _key(self, key: tuple) -> str:
        digest, tau, lam = key
        return f"{self.prefix}:decision:{self.namespace}:{digest.hex()}:{tau}:{lam}"

    def get(self, key: tuple):
        from route_switch.core.decision import Decision

        try:
            raw = self._redis.get(self._key(key))
            return None if raw is None else Decision(**json.loads(raw))
        except Exception as e:  # redis errors, or an entry written by another version: a miss
            self._warn("the decision cache", e)
            return None

    def put(self, key: tuple, decision) -> None:
        try:
            self._redis.set(self._key(key), json.dumps(decision.to_dict()), ex=self.ttl_s)
        except Exception as e:
            self._warn("the decision cache", e)
