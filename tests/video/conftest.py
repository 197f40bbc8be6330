"""Fixtures for the video-visit tests: the real app (signaling socket, relay, services) on SQLite.

Media tests run aiortc encoders and decoders, so they use one database backend; the authorization and
token logic they exercise is backend-neutral and also covered by the authorization matrix.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientWebSocketResponse, WSMsgType
from aiohttp.test_utils import TestClient
from sqlalchemy import update

from clinic.config import Settings
from clinic.db.base import utcnow
from clinic.db.clinical import InPersonVisit
from clinic.db.encounters import Encounter
from clinic.encounters.state import EncounterStatus
from clinic.web.app import create_app
from tests.conftest import Db, make_settings
from tests.encounters.conftest import make_visit
from tests.world import World, build_world, hdr, login


@pytest.fixture
async def vdb(sqlite_url: str) -> AsyncIterator[Db]:
    d = Db(sqlite_url)
    yield d
    await d.engine.dispose()


@pytest.fixture
def vsettings(sqlite_url: str, tmp_path: Path) -> Settings:
    return make_settings(sqlite_url, tmp_path, stun_urls=["stun:stun.example.org:3478"],
                         turn_urls=["turn:turn.example.org:3478"], turn_secret="turn-secret")


@pytest.fixture
async def vworld(vdb: Db) -> World:
    async with vdb.uow() as uow:
        w = await build_world(uow)
        await uow.commit()
    return w


@pytest.fixture
async def vclient(aiohttp_client: Any, vsettings: Settings, vworld: World) -> AsyncIterator[TestClient]:
    app = create_app(vsettings, overrides={"video_quality_interval": 3600.0, "video_resume_grace": 2.0})
    yield await aiohttp_client(app)


async def claimed_visit(db: Db, world: World, *, tenant: str = "a") -> uuid.UUID:
    """A visit whose patient has checked in and that the tenant's first clinician has claimed."""
    eid = await make_visit(db, world, tenant=tenant)
    doc = world.user(tenant, "clinician")
    async with db.uow() as uow:
        # Face-to-face visits keep the clinic under the KR 30 % telemedicine cap, which the mode-change
        # check applies (counting this visit) — the law, not what these tests are about.
        t = getattr(world, tenant)
        for _ in range(6):
            uow.add(InPersonVisit(patient_id=t.patient.id, organization_id=t.clinic.id, visit_date=utcnow().date(),
                                  condition_code="I10"))
        await uow.session.execute(update(Encounter).where(Encounter.id == eid).values(
            status=EncounterStatus.CHECKED_IN, checked_in_at=utcnow(), claimed_by_id=doc.id, claimed_at=utcnow()))
        await uow.commit()
    return eid


async def room_token(client: TestClient, email: str, eid: uuid.UUID) -> str:
    client.session.cookie_jar.clear()
    csrf = await login(client, email)
    r = await client.post(f"/api/v1/encounters/{eid}/room-token", headers=hdr(csrf))
    body = await r.json()
    assert r.status == 200, body
    client.session.cookie_jar.clear()
    return str(body["token"])


class Sock:
    """A signaling connection that keeps every server message it received."""

    def __init__(self, ws: ClientWebSocketResponse) -> None:
        self.ws = ws
        self.messages: list[dict[str, Any]] = []
        self._reader = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        async for msg in self.ws:
            if msg.type == WSMsgType.TEXT:
                self.messages.append(json.loads(msg.data))

    async def send(self, **fields: Any) -> None:
        await self.ws.send_str(json.dumps({"v": 1, **fields}))

    def of(self, type_: str) -> list[dict[str, Any]]:
        return [m for m in self.messages if m["type"] == type_]

    async def wait_for(self, type_: str, within: float = 10.0, count: int = 1) -> dict[str, Any]:
        deadline = asyncio.get_running_loop().time() + within
        while len(self.of(type_)) < count:
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"no {type_!r} in {[m['type'] for m in self.messages]}")
            if self._reader.done() and len(self.of(type_)) < count:
                raise AssertionError(f"socket closed without {type_!r}: {[m['type'] for m in self.messages]}")
            await asyncio.sleep(0.02)
        return self.of(type_)[count - 1]

    async def close(self) -> None:
        await self.ws.close()
        await asyncio.gather(self._reader, return_exceptions=True)


async def connect(client: TestClient, eid: uuid.UUID, token: str, *, query: bool = True,
                  resume: str | None = None) -> Sock:
    path = f"/ws/signal/{eid}" + (f"?token={token}" if query else "")
    sock = Sock(await client.ws_connect(path))
    join: dict[str, Any] = {"type": "join", "room": str(eid), "token": token}
    if resume:
        join["resume_token"] = resume
    await sock.send(**join)
    return sock
