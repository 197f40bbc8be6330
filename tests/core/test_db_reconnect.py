"""Connections are not pinged before use; a database restart costs one 503 "retry", never a stream of 500s."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import text

from tests.world import login


# A server-side disconnect has no SQLite counterpart (the database is a file in this process).
@pytest.mark.parametrize("db_url", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True)
async def test_killed_connections_answer_retry_once_then_recover(client: Any, world: Any, db: Any) -> None:
    await login(client, world.a.users["clinician"].email)
    me = await client.get("/api/v1/me")
    assert me.status == 200
    async with db.engine.connect() as conn:
        killed = (await conn.execute(text(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"))).scalar_one()
    assert killed >= 1  # the app's pooled connections
    statuses = []
    for _ in range(3):
        resp = await client.get(f"/api/v1/organizations/{world.a.clinic.id}/queue")
        body = await resp.json()
        statuses.append(resp.status)
        if resp.status == 503:
            assert body["error"]["code"] == "database_reconnecting"
            assert resp.headers["Retry-After"] == "1"
    assert statuses == [503, 200, 200], statuses
