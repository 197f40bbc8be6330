"""Sliding-window rate limiting (login attempts, signaling messages).

In-process by default; a multi-node deployment should front it with Redis, which the limiter's
small interface allows without touching callers.
"""

from __future__ import annotations

import time
from collections import deque


class RateLimiter:
    def __init__(self, max_events: int, window_seconds: float, *, max_keys: int = 100_000) -> None:
        self.max_events = max_events
        self.window = window_seconds
        self._events: dict[str, deque[float]] = {}
        self._max_keys = max_keys

    def _prune(self, key: str, now: float) -> deque[float]:
        q = self._events.setdefault(key, deque())
        while q and now - q[0] > self.window:
            q.popleft()
        return q

    def blocked(self, key: str, now: float | None = None) -> float:
        """Seconds until ``key`` may try again (0 when not blocked)."""
        now = time.monotonic() if now is None else now
        q = self._prune(key, now)
        if len(q) < self.max_events:
            return 0.0
        return max(0.0, self.window - (now - q[0]))

    def hit(self, key: str, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        if len(self._events) > self._max_keys:
            self._events.clear()  # bounded memory under a flood of distinct keys
        self._prune(key, now).append(now)

    def reset(self, key: str) -> None:
        self._events.pop(key, None)
