"""Publish/subscribe for live pages (queue, waiting room, pharmacy inbox).

Messages are small JSON-able dicts on named topics (``queue:<org>``, ``encounter:<id>``, ``pharmacy:<org>``).
In one process a :class:`LocalHub` delivers them; with ``TELEMED_REDIS_URL`` set, :class:`RedisHub` also
fans them out across nodes, so a check-in on node A reaches a doctor connected to node B.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import defaultdict
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from clinic.config import Settings

log = logging.getLogger(__name__)

QUEUE_DEPTH = 256


class Subscription:
    def __init__(self, hub: LocalHub, topics: tuple[str, ...]) -> None:
        self._hub = hub
        self.topics = topics
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(QUEUE_DEPTH)

    def deliver(self, message: dict[str, Any]) -> None:
        try:
            self.queue.put_nowait(message)
        except asyncio.QueueFull:
            # A stalled reader must not block publishers; it is told to resynchronise instead.
            with contextlib.suppress(asyncio.QueueEmpty):
                while True:
                    self.queue.get_nowait()
            self.queue.put_nowait({"type": "resync"})

    async def get(self, wait: float | None = None) -> dict[str, Any] | None:
        try:
            return await asyncio.wait_for(self.queue.get(), wait)
        except TimeoutError:
            return None

    def close(self) -> None:
        self._hub._remove(self)

    async def __aiter__(self) -> AsyncIterator[dict[str, Any]]:
        while True:
            yield await self.queue.get()


class LocalHub:
    def __init__(self) -> None:
        self._subs: dict[str, set[Subscription]] = defaultdict(set)

    def subscribe(self, *topics: str) -> Subscription:
        sub = Subscription(self, topics)
        for t in topics:
            self._subs[t].add(sub)
        return sub

    def _remove(self, sub: Subscription) -> None:
        for t in sub.topics:
            self._subs[t].discard(sub)
            if not self._subs[t]:
                del self._subs[t]

    def deliver_local(self, topic: str, message: dict[str, Any]) -> None:
        for sub in list(self._subs.get(topic, ())):
            sub.deliver({**message, "topic": topic})

    async def publish(self, topic: str, message: dict[str, Any]) -> None:
        self.deliver_local(topic, message)

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        self._subs.clear()


class RedisHub(LocalHub):
    """Local delivery plus Redis pub/sub on one channel per deployment; each node ignores its own echoes by
    node id. The Redis client is the caller's (shared with the rate limits) and stays open on close."""

    def __init__(self, redis: Redis, channel: str) -> None:
        super().__init__()
        import os
        import uuid

        self._redis = redis
        self.channel = channel
        self._node = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._task: asyncio.Task[None] | None = None
        self._pubsub: Any = None

    async def start(self) -> None:
        self._pubsub = pubsub = self._redis.pubsub()
        await pubsub.subscribe(self.channel)

        async def listen() -> None:
            async for raw in pubsub.listen():
                if raw.get("type") != "message":
                    continue
                try:
                    env = json.loads(raw["data"])
                except (ValueError, TypeError):
                    continue
                if env.get("node") != self._node:
                    self.deliver_local(env["topic"], env["message"])

        self._task = asyncio.create_task(listen())

    async def publish(self, topic: str, message: dict[str, Any]) -> None:
        self.deliver_local(topic, message)
        try:
            await self._redis.publish(self.channel, json.dumps({"node": self._node, "topic": topic,
                                                                "message": message}, default=str))
        except Exception:  # other nodes miss one update; local delivery already happened
            log.exception("redis publish failed")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._pubsub is not None:
            await self._pubsub.aclose()
        await super().close()


def connect_redis(settings: Settings) -> Redis | None:
    """The deployment's Redis client (connections open on first use), or None without ``redis_url``."""
    if not settings.redis_url:
        return None
    import redis.asyncio as aioredis

    client: Redis = aioredis.from_url(settings.redis_url)
    return client


def make_hub(redis: Redis | None, settings: Settings) -> LocalHub:
    return RedisHub(redis, f"{settings.redis_prefix}:events") if redis is not None else LocalHub()
