"""Several workers (clinic.serve): a worker that does not host call rooms forwards the signaling socket to the
one that does, so participants meet whichever worker their connection landed on."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import WSServerHandshakeError, web
from aiohttp.test_utils import TestClient

from clinic.config import Settings
from clinic.serve import SIGNAL_OWNER, WORKER_INDEX
from clinic.web.app import create_app
from clinic.web.context import services
from signaling.handler import MANAGER_KEY, manager
from tests.conftest import Db
from tests.media.clients import eventually
from tests.video.conftest import claimed_visit, connect, room_token
from tests.world import World, login

VIDEO = {"video_quality_interval": 3600.0, "video_resume_grace": 2.0}


@pytest.fixture
async def host(vsettings: Settings, tmp_path: Path) -> AsyncIterator[tuple[web.Application, str]]:
    """Worker 0: hosts the call rooms, reachable only on its Unix socket here."""
    app = create_app(vsettings, overrides={**VIDEO, WORKER_INDEX: 0})
    runner = web.AppRunner(app)
    await runner.setup()
    path = str(tmp_path / "signal.sock")
    await web.UnixSite(runner, path).start()
    yield app, path
    await runner.cleanup()


@pytest.fixture
async def other(aiohttp_client: Any, vsettings: Settings, vworld: World,
                host: tuple[web.Application, str]) -> TestClient:
    """Worker 1: every request of the test goes here."""
    app = create_app(vsettings, overrides={**VIDEO, WORKER_INDEX: 1, SIGNAL_OWNER: host[1]})
    client: TestClient = await aiohttp_client(app)
    return client


async def test_participants_on_another_worker_meet_in_the_hosting_worker(
        other: TestClient, host: tuple[web.Application, str], vdb: Db, vworld: World) -> None:
    assert MANAGER_KEY not in services(other.app).extra  # no relay runs where rooms are not hosted
    eid = await claimed_visit(vdb, vworld)
    pat_token = await room_token(other, vworld.a.users["patient"].email, eid)
    doc_token = await room_token(other, vworld.a.users["clinician"].email, eid)

    pat = await connect(other, eid, pat_token)
    joined = await pat.wait_for("joined")
    assert joined["role"] == "patient"
    await pat.wait_for("waiting")
    await login(other, vworld.a.users["clinician"].email)  # the cookie is forwarded too
    doc = await connect(other, eid, doc_token, query=False)
    doc_joined = await doc.wait_for("joined")
    assert [(x["peer_id"], x["admitted"]) for x in doc_joined["peers"]] == [("patient", False)]
    room = manager(host[0]).rooms[str(eid)]  # both sit in the hosting worker's room
    assert {peer.peer_id for peer in room.connected} == {"patient", "clinician"}

    await doc.send(type="admit", peer_id="patient")
    await pat.wait_for("admitted")
    await pat.send(type="chat", text="hello", client_id="c1")
    assert (await doc.wait_for("chat"))["text"] == "hello"

    # the host's close code reaches the caller unchanged: a second patient socket replaces the first
    again = await connect(other, eid, await room_token(other, vworld.a.users["patient"].email, eid))
    await again.wait_for("joined")
    await eventually(lambda: pat.ws.closed)
    assert pat.ws.close_code == 4000
    await again.close()
    await doc.close()


async def test_refusals_pass_through_with_their_status(
        other: TestClient, host: tuple[web.Application, str], vdb: Db, vworld: World) -> None:
    eid = await claimed_visit(vdb, vworld)
    with pytest.raises(WSServerHandshakeError) as info:
        await other.ws_connect(f"/ws/signal/{eid}")
    assert info.value.status == 401
    with pytest.raises(WSServerHandshakeError) as info:
        await other.ws_connect(f"/ws/signal/{eid}?token={'x' * 30}")
    assert info.value.status == 403
