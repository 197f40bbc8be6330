"""Sliding-window limits on sign-in attempts and second-factor codes.

Two properties make a limit real:

* An attempt is counted when it starts, in the same atomic step that checks the limit, and uncounted only
  once it has succeeded (:meth:`RateLimiter.succeeded`). Checking first and counting the failure after the
  (deliberately slow) password hash would let a burst of parallel guesses all pass the check.
* Every server process counts the same attempts: with ``TELEMED_WORKERS=4`` and per-process counters an
  attacker would get four times the guesses. With ``TELEMED_REDIS_URL`` set the counters live in Redis,
  shared by the deployment (:class:`RedisRateLimiter`); a single process keeps them in memory
  (:class:`MemoryRateLimiter`).

Keys name who is limited (``ip:…``, ``user:<e-mail>``, ``totp:<user id>``). Redis sees only their SHA-256, so
no e-mail addresses sit in a cache that has no audit trail.
"""

from __future__ import annotations

import hashlib
import logging
import time
import uuid
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from redis.asyncio import Redis

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Attempt:
    """One counted attempt on ``keys``; ``retry_after`` > 0 means it was refused and nothing was counted."""

    keys: tuple[str, ...]
    id: str
    retry_after: float = 0.0
    #: Counted by the process itself because Redis was not answering (see RedisRateLimiter).
    local: bool = False

    @property
    def refused(self) -> bool:
        return self.retry_after > 0


class RateLimiter(Protocol):
    max_events: int
    window: float

    async def begin(self, *keys: str) -> Attempt:
        """Count an attempt on every key, unless one of them is at its limit (then count nothing)."""

    async def succeeded(self, attempt: Attempt) -> None:
        """The attempt did not fail: it no longer counts."""

    async def reset(self, key: str) -> None:
        """Forget every attempt on ``key`` (its owner proved who they are)."""


class MemoryRateLimiter:
    """The attempts seen by this process; ``now`` is for tests (monotonic seconds)."""

    def __init__(self, max_events: int, window_seconds: float, *, max_keys: int = 100_000) -> None:
        self.max_events = max_events
        self.window = window_seconds
        self._events: dict[str, deque[tuple[float, str]]] = {}
        self._max_keys = max_keys

    def _pruned(self, key: str, now: float) -> deque[tuple[float, str]]:
        q = self._events.get(key)
        if q is None:
            if len(self._events) >= self._max_keys:
                self._events.clear()  # bounded memory under a flood of distinct keys
            q = self._events[key] = deque()
        while q and now - q[0][0] >= self.window:
            q.popleft()
        return q

    async def begin(self, *keys: str, now: float | None = None, local: bool = False) -> Attempt:
        now = time.monotonic() if now is None else now
        queues = [self._pruned(k, now) for k in keys]
        wait = max((self.window - (now - q[0][0]) for q in queues if len(q) >= self.max_events), default=0.0)
        attempt = Attempt(keys, uuid.uuid4().hex, wait, local)
        if not attempt.refused:
            for q in queues:
                q.append((now, attempt.id))
        return attempt

    async def succeeded(self, attempt: Attempt) -> None:
        for k in attempt.keys:
            q = self._events.get(k)
            if q is not None:
                self._events[k] = deque(e for e in q if e[1] != attempt.id)

    async def reset(self, key: str) -> None:
        self._events.pop(key, None)


# One round trip, atomic: on every key drop attempts older than the window, refuse with the longest wait if
# one is full, else add this attempt to all. Server time, so processes whose clocks disagree share one window.
_BEGIN = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local window, limit = tonumber(ARGV[1]), tonumber(ARGV[2])
local wait = 0
for _, key in ipairs(KEYS) do
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
  if redis.call('ZCARD', key) >= limit then
    local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
    wait = math.max(wait, tonumber(oldest[2]) + window - now)
  end
end
if wait > 0 then return wait end
for _, key in ipairs(KEYS) do
  redis.call('ZADD', key, now, ARGV[3])
  redis.call('PEXPIRE', key, math.ceil(window / 1000))
end
return 0
"""


class RedisRateLimiter:
    """Attempts kept in Redis (per key, a sorted set of attempt times), shared by every process.

    If Redis stops answering, sign-in must neither lock everyone out nor stop limiting: the process counts
    on its own, as a single process would, until Redis answers again, and says so in the log."""

    def __init__(self, redis: Redis, max_events: int, window_seconds: float, *, namespace: str) -> None:
        self.max_events = max_events
        self.window = window_seconds
        self._redis = redis
        self._namespace = namespace
        self._window_us = int(window_seconds * 1_000_000)
        self._begin: Any = redis.register_script(_BEGIN)
        self.fallback = MemoryRateLimiter(max_events, window_seconds)
        self._degraded = False

    def _key(self, key: str) -> str:
        return f"{self._namespace}:{hashlib.sha256(key.encode()).hexdigest()}"

    def _answered(self, ok: bool, exc: Exception | None = None) -> None:
        if not ok and not self._degraded:
            log.error("rate limits counted per process: Redis is not answering (%s)", exc)
        elif ok and self._degraded:
            log.warning("rate limits shared through Redis again")
        self._degraded = not ok

    async def begin(self, *keys: str) -> Attempt:
        attempt_id = uuid.uuid4().hex
        try:
            wait_us = int(await self._begin(keys=[self._key(k) for k in keys],
                                            args=[self._window_us, self.max_events, attempt_id]))
        except Exception as exc:  # any Redis or connection failure; see the class docstring
            self._answered(False, exc)
            return await self.fallback.begin(*keys, local=True)
        self._answered(True)
        return Attempt(keys, attempt_id, wait_us / 1_000_000)

    async def succeeded(self, attempt: Attempt) -> None:
        if attempt.local:
            await self.fallback.succeeded(attempt)
            return
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                for k in attempt.keys:
                    pipe.zrem(self._key(k), attempt.id)
                await pipe.execute()
        except Exception as exc:
            self._answered(False, exc)

    async def reset(self, key: str) -> None:
        await self.fallback.reset(key)
        try:
            await self._redis.delete(self._key(key))
        except Exception as exc:
            self._answered(False, exc)


def make_limiter(max_events: int, window_seconds: float, *, redis: Redis | None, namespace: str) -> RateLimiter:
    """Shared through ``redis`` when the deployment has one, else in this process's memory."""
    if redis is None:
        return MemoryRateLimiter(max_events, window_seconds)
    return RedisRateLimiter(redis, max_events, window_seconds, namespace=namespace)
