"""Per-key token-bucket rate limit (requests per minute), in memory, for one process."""
from __future__ import annotations

import math
import threading
import time


class RateLimiter:
    """``check(key)`` -> 0.0 when the request may go, else the seconds to wait (for ``Retry-After``)."""

    def __init__(self, per_minute: float | None, max_keys: int = 100_000):
        self.per_minute = per_minute or 0
        self.capacity = float(self.per_minute)
        self.rate = self.per_minute / 60.0
        self.max_keys = max_keys
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, last time)
        self._lock = threading.Lock()

    def _tokens(self, key: str, now: float) -> float:
        """Tokens in ``key``'s bucket at ``now`` (call with the lock held)."""
        tokens, last = self._buckets.get(key, (self.capacity, now))
        return min(self.capacity, tokens + (now - last) * self.rate)

    def check(self, key: str, now: float | None = None) -> float:
        if not self.per_minute:
            return 0.0
        now = time.monotonic() if now is None else now
        with self._lock:
            tokens = self._tokens(key, now)
            spend = 1.0 if tokens >= 1.0 else 0.0
            self._buckets[key] = (tokens - spend, now)
            if len(self._buckets) > self.max_keys:  # bounded memory (e.g. per-IP keys without auth)
                self._buckets.pop(next(iter(self._buckets)))
        return 0.0 if spend else (1.0 - tokens) / self.rate

    def blocked(self, key: str, now: float | None = None) -> float:
        """Seconds until ``key`` may go again (0.0 if it may), without using up a request."""
        if not self.per_minute:
            return 0.0
        now = time.monotonic() if now is None else now
        with self._lock:
            tokens = self._tokens(key, now)
        return 0.0 if tokens >= 1.0 else (1.0 - tokens) / self.rate

    @staticmethod
    def retry_after(wait: float) -> str:
        return str(max(1, math.ceil(wait)))
