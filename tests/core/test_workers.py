"""``TELEMED_WORKERS``: several server processes on one port behave as one server."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.conftest import TEST_SECRET
from tests.world import PASSWORD

REDIS = os.environ.get("TELEMED_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def _env(db_url: str, data: Path, port: int, **extra: str) -> dict[str, str]:
    return {**os.environ, "TELEMED_DATABASE_URL": db_url, "TELEMED_DATA_DIR": str(data), "TELEMED_PORT": str(port),
            "TELEMED_SECRET_KEY": TEST_SECRET, "TELEMED_RUN_JOBS": "false", "TELEMED_LOG_LEVEL": "WARNING",
            # Its own keys and channel in the shared Redis: no other run's events or counters.
            "TELEMED_REDIS_PREFIX": f"telemed-test-{uuid.uuid4().hex[:8]}", **extra}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def two_workers(db_url: str, world: Any, tmp_path: Path) -> Iterator[str]:
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "clinic.cli", "serve"],
                            env=_env(db_url, tmp_path, port, TELEMED_WORKERS="2", TELEMED_REDIS_URL=REDIS))
    yield f"http://127.0.0.1:{port}"
    proc.terminate()
    assert proc.wait(timeout=30) == 0


async def _fresh(method: str, url: str, cookie: str | None = None, **kw: Any) -> tuple[int, Any]:
    """One request on a new connection: the kernel picks the worker anew each time."""
    headers = {"Cookie": f"tm_session={cookie}"} if cookie else {}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as http:
        async with http.request(method, url, headers={**headers, **kw.pop("headers", {})}, **kw) as r:
            return r.status, await r.json(content_type=None)


async def _workers_seen(root: str, tries: int = 40) -> set[int]:
    seen: set[int] = set()
    for _ in range(tries):
        try:
            status, body = await _fresh("GET", f"{root}/healthz")
        except aiohttp.ClientError:
            await asyncio.sleep(0.25)
            continue
        assert status == 200
        seen.add(body["worker"])
    return seen


async def _both_up(root: str) -> None:
    for _ in range(120):
        if await _workers_seen(root, tries=10) == {0, 1}:
            return
        await asyncio.sleep(0.25)


async def test_requests_spread_over_workers_and_a_sign_out_reaches_all(two_workers: str, world: Any) -> None:
    root = two_workers
    for _ in range(120):  # both workers come up
        if await _workers_seen(root, tries=10) == {0, 1}:
            break
        await asyncio.sleep(0.25)
    assert await _workers_seen(root) == {0, 1}

    async with aiohttp.ClientSession() as http:
        async with http.post(f"{root}/api/v1/auth/login",
                             json={"email": world.a.users["patient"].email, "password": PASSWORD}) as r:
            assert r.status == 200
            csrf = (await r.json())["csrf_token"]
            cookie = r.cookies["tm_session"].value
    # Every worker resolves (and caches) the sign-in.
    for _ in range(12):
        status, body = await _fresh("GET", f"{root}/api/v1/me", cookie)
        assert status == 200 and body["email"] == world.a.users["patient"].email
    status, _ = await _fresh("POST", f"{root}/api/v1/auth/logout", cookie, headers={"X-CSRF-Token": csrf})
    assert status == 200
    await asyncio.sleep(0.3)  # the eviction crosses Redis
    statuses = [(await _fresh("GET", f"{root}/api/v1/me", cookie))[0] for _ in range(12)]
    assert statuses == [401] * 12


async def test_sign_in_attempts_are_limited_across_workers(two_workers: str, world: Any) -> None:
    root = two_workers
    await _both_up(root)
    email = world.a.users["patient"].email
    # Sequential guesses, each on a new connection (so spread over both workers), then a parallel burst.
    statuses = [(await _fresh("POST", f"{root}/api/v1/auth/login", json={"email": email, "password": "guess-1"}))[0]
                for _ in range(3)]
    burst = await asyncio.gather(*(_fresh("POST", f"{root}/api/v1/auth/login",
                                          json={"email": email, "password": f"guess-{i}"}) for i in range(12)))
    statuses += [status for status, _ in burst]
    assert statuses.count(401) == 5  # TELEMED_LOGIN_MAX_ATTEMPTS, counted once for the whole server
    assert statuses.count(429) == 10
    status, body = await _fresh("POST", f"{root}/api/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert status == 429 and body["error"]["code"] == "rate_limited"


async def test_any_worker_answers_metrics_for_all(two_workers: str, world: Any) -> None:
    root = two_workers
    await _both_up(root)
    for _ in range(20):
        await _fresh("GET", f"{root}/healthz")
    totals = []
    for _ in range(6):  # new connections: the scrapes land on both workers
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as http:
            async with http.get(f"{root}/metrics") as r:
                assert r.status == 200
                body = await r.text()
        assert 'telemed_worker_up{worker="0"} 1.0' in body and 'telemed_worker_up{worker="1"} 1.0' in body
        served = [line for line in body.splitlines()
                  if line.startswith("telemed_http_requests_total{") and 'route="/healthz"' in line]
        assert {('worker="0"' in line) for line in served} == {True, False}  # both workers' series
        totals.append(sum(float(line.rsplit(" ", 1)[1]) for line in served))
    assert min(totals) >= 20 + 10  # every /healthz answered so far, whichever worker took it
    # A worker's own figures are for its siblings only, over their Unix sockets.
    for _ in range(4):
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as http:
            async with http.get(f"{root}/metrics/worker") as r:
                assert r.status == 404


def test_more_than_one_worker_needs_redis(tmp_path: Path, sqlite_url: str) -> None:
    r = subprocess.run([sys.executable, "-m", "clinic.cli", "serve"], capture_output=True, text=True, timeout=60,
                       env=_env(sqlite_url, tmp_path, _free_port(), TELEMED_WORKERS="2", TELEMED_REDIS_URL=""),
                       check=False)
    assert r.returncode == 2
    assert "TELEMED_REDIS_URL" in r.stderr
