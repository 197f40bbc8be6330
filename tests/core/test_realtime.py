"""Live-page fan-out across server processes through a real Redis, kept apart per deployment."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from clinic.realtime import LocalHub, RedisHub, make_hub
from tests.conftest import make_settings
from tests.core.test_ratelimit import REDIS


@pytest.fixture
async def redis() -> AsyncIterator[aioredis.Redis]:
    client = aioredis.from_url(REDIS)
    yield client
    await client.aclose()


async def _started(redis: aioredis.Redis, channel: str) -> RedisHub:
    hub = RedisHub(redis, channel)
    await hub.start()
    return hub


async def test_events_reach_the_other_processes_of_one_deployment_only(redis: aioredis.Redis) -> None:
    ours, theirs = f"telemed-test-{uuid.uuid4().hex[:8]}:events", f"telemed-test-{uuid.uuid4().hex[:8]}:events"
    a, b, other = await _started(redis, ours), await _started(redis, ours), await _started(redis, theirs)
    subs = {name: hub.subscribe("queue:org-1") for name, hub in (("a", a), ("b", b), ("other", other))}
    await asyncio.sleep(0.1)  # subscriptions reach Redis
    try:
        await a.publish("queue:org-1", {"type": "checked_in", "encounter": "e-1"})
        assert await subs["a"].get(2) == {"type": "checked_in", "encounter": "e-1", "topic": "queue:org-1"}
        assert await subs["b"].get(2) == {"type": "checked_in", "encounter": "e-1", "topic": "queue:org-1"}
        assert await subs["a"].get(0.3) is None  # its own echo from Redis is not delivered twice
        assert await subs["other"].get(0.3) is None  # another deployment sharing the Redis sees nothing
    finally:
        for hub in (a, b, other):
            await hub.close()
    assert await redis.ping()  # closing a hub leaves the shared client usable


def test_the_hub_follows_the_deployment(tmp_path: Path, sqlite_url: str, redis: aioredis.Redis) -> None:
    settings = make_settings(sqlite_url, tmp_path, redis_url=REDIS, redis_prefix="clinic-b")
    hub = make_hub(redis, settings)
    assert isinstance(hub, RedisHub) and hub.channel == "clinic-b:events"
    assert type(make_hub(None, settings)) is LocalHub
