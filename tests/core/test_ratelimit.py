"""Sign-in rate limits: atomic check-and-count, shared by every process through a real Redis, and still
limiting (per process) while Redis is away."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from clinic.security.ratelimit import MemoryRateLimiter, RedisRateLimiter, make_limiter

REDIS = os.environ.get("TELEMED_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture
async def redis() -> AsyncIterator[aioredis.Redis]:
    client = aioredis.from_url(REDIS)
    try:
        await client.ping()
    except Exception as exc:  # the machine's Redis is part of the test setup, like PostgreSQL
        pytest.fail(f"Redis is not reachable at {REDIS}: {exc}")
    yield client
    await client.aclose()


@pytest.fixture
def namespace() -> str:
    return f"telemed-test-{uuid.uuid4().hex[:8]}:ratelimit:login"


async def test_memory_limit_counts_attempts_and_forgets_successes() -> None:
    limiter = MemoryRateLimiter(3, 60)
    attempts = [await limiter.begin("ip:a", "user:x", now=t) for t in (0, 1, 2)]
    assert not any(a.refused for a in attempts)
    refused = await limiter.begin("user:x", now=10)
    assert refused.refused and refused.retry_after == pytest.approx(50)  # until the first attempt leaves the window
    assert not (await limiter.begin("user:y", now=10)).refused  # other keys are not affected
    await limiter.succeeded(attempts[2])
    assert not (await limiter.begin("user:x", now=11)).refused  # a success frees its place
    assert not (await limiter.begin("ip:a", now=12)).refused  # ip:a held 0 and 1: the user-only attempt skipped it
    assert (await limiter.begin("ip:a", now=13)).refused
    assert not (await limiter.begin("ip:a", now=60)).refused  # the window slid past the first attempt
    await limiter.reset("user:x")
    assert not (await limiter.begin("user:x", now=12)).refused


async def test_a_refused_attempt_counts_on_no_key() -> None:
    limiter = MemoryRateLimiter(1, 60)
    await limiter.begin("user:x", now=0)
    assert (await limiter.begin("ip:a", "user:x", now=1)).refused
    assert not (await limiter.begin("ip:a", now=2)).refused  # the refused attempt did not count against ip:a


async def test_without_redis_the_limit_is_in_memory() -> None:
    assert isinstance(make_limiter(5, 60, redis=None, namespace="x"), MemoryRateLimiter)


async def test_processes_share_one_count(redis: aioredis.Redis, namespace: str) -> None:
    workers = [RedisRateLimiter(redis, 5, 60, namespace=namespace) for _ in range(3)]
    outcomes = [await workers[i % 3].begin("ip:1.2.3.4", "user:kim@example.com") for i in range(8)]
    assert [a.refused for a in outcomes] == [False] * 5 + [True] * 3
    assert 59 < outcomes[-1].retry_after <= 60
    # Someone else on another worker is not limited; the user's own successful sign-in clears their key.
    assert not (await workers[2].begin("user:lee@example.com")).refused
    await workers[1].reset("user:kim@example.com")
    assert (await workers[0].begin("ip:1.2.3.4", "user:kim@example.com")).refused  # the address is still full
    assert not (await workers[0].begin("ip:5.6.7.8", "user:kim@example.com")).refused


async def test_a_parallel_burst_gets_no_more_than_the_limit(redis: aioredis.Redis, namespace: str) -> None:
    workers = [RedisRateLimiter(redis, 5, 60, namespace=namespace) for _ in range(4)]
    burst = await asyncio.gather(*(workers[i % 4].begin("user:kim@example.com") for i in range(40)))
    assert sum(not a.refused for a in burst) == 5


async def test_success_uncounts_only_itself(redis: aioredis.Redis, namespace: str) -> None:
    limiter = RedisRateLimiter(redis, 2, 60, namespace=namespace)
    first = await limiter.begin("ip:a")
    await limiter.begin("ip:a")
    assert (await limiter.begin("ip:a")).refused
    await limiter.succeeded(first)
    assert not (await limiter.begin("ip:a")).refused
    assert (await limiter.begin("ip:a")).refused


async def test_redis_holds_no_e_mail_addresses_and_keys_expire(redis: aioredis.Redis, namespace: str) -> None:
    limiter = RedisRateLimiter(redis, 5, 30, namespace=namespace)
    await limiter.begin("ip:10.0.0.1", "user:kim@example.com")
    keys = [k.decode() async for k in redis.scan_iter(match=f"{namespace}:*")]
    assert len(keys) == 2
    assert not any("kim" in k or "10.0.0.1" in k for k in keys)
    for k in keys:
        assert 0 < await redis.pttl(k) <= 30_000


async def test_while_redis_is_away_each_process_still_limits(namespace: str, caplog: pytest.LogCaptureFixture
                                                             ) -> None:
    gone = aioredis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.5)
    limiter = RedisRateLimiter(gone, 3, 60, namespace=namespace)
    outcomes = [await limiter.begin("user:kim@example.com") for _ in range(4)]
    assert [a.refused for a in outcomes] == [False, False, False, True]
    assert all(a.local for a in outcomes)
    await limiter.succeeded(outcomes[0])
    assert not (await limiter.begin("user:kim@example.com")).refused
    assert sum("counted per process" in r.getMessage() for r in caplog.records) == 1  # said once, not per attempt
    await gone.aclose()
