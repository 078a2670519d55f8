"""Per-key request pacing: a GCRA token bucket in Redis for workers, or in-process when embedded.

A user's rate limit belongs to their key, not to a worker, so every worker process checks the
same bucket before each call. The bucket spaces calls evenly (one every 60/rpm seconds, no
burst): providers enforce per-minute limits in sub-minute slices, so a burst of a minute's
worth of calls at once would still be refused.
"""

from __future__ import annotations

import hashlib
import threading
import time
from typing import Protocol

import redis

# GCRA: the key holds the "theoretical arrival time" of the next allowed call. Redis' own clock
# keeps every worker on one time line. Floats travel as strings (Lua numbers become integers).
_GCRA = """
local interval = tonumber(ARGV[1])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat > now then
  return tostring(tat - now)
end
local ttl = math.ceil(interval * 1000) + 1000
redis.call('SET', KEYS[1], string.format('%.6f', now + interval), 'PX', ttl)
return '0'
"""


class RateLimiterUnavailable(Exception):
    """The shared bucket cannot be reached (Redis down): the call is retried later."""


class RateLimiter(Protocol):
    def acquire(self, bucket: str, *, per_minute: int) -> float:
        """Take a slot: 0 when a call may go now, else the seconds until the next slot."""
        ...


def bucket_name(*, base_url: str, api_key: str) -> str:
    """Names a key's bucket by a hash, so neither Redis nor its dumps ever hold the key."""
    digest = hashlib.sha256(f"{base_url}\0{api_key}".encode()).hexdigest()[:32]
    return f"triage:rate:{digest}"


class RedisRateLimiter:
    """Shared by every worker on the broker's Redis."""

    def __init__(self, client: redis.Redis[bytes]) -> None:
        self._script = client.register_script(_GCRA)

    @classmethod
    def from_url(cls, url: str) -> RedisRateLimiter:
        return cls(redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5))

    def acquire(self, bucket: str, *, per_minute: int) -> float:
        try:
            wait = self._script(keys=[bucket], args=[f"{60.0 / per_minute:.6f}"])
        except redis.RedisError as exc:
            raise RateLimiterUnavailable(
                f"rate limiter unreachable: {type(exc).__name__}"
            ) from None
        return max(0.0, float(wait.decode() if isinstance(wait, bytes) else wait))


class LocalRateLimiter:
    """The same pacing for the embedded default, where every thread is in one process."""

    def __init__(self) -> None:
        self._next: dict[str, float] = {}
        self._lock = threading.Lock()

    def acquire(self, bucket: str, *, per_minute: int) -> float:
        now = time.monotonic()
        with self._lock:
            allowed_at = self._next.get(bucket, 0.0)
            if allowed_at > now:
                return allowed_at - now
            self._next[bucket] = now + 60.0 / per_minute
            return 0.0


def limiter_for(broker_url: str | None) -> RateLimiter:
    """Redis when the workers share a Redis broker; in-process otherwise."""
    if broker_url and broker_url.startswith(("redis://", "rediss://", "unix://")):
        return RedisRateLimiter.from_url(broker_url)
    return LocalRateLimiter()
