"""The signaling socket end to end in Python: aiortc clients through the real handler and relay."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import pytest
from aiohttp import WSServerHandshakeError
from aiohttp.test_utils import TestClient
from sqlalchemy import select

from clinic.db.base import utcnow
from clinic.db.encounters import ChatMessage, Encounter
from clinic.db.video import CallParticipant, QualitySample, Recording, RoomToken
from clinic.encounters.state import EncounterStatus
from signaling import tokens
from signaling.handler import manager
from tests.conftest import Db
from tests.media.clients import Client, eventually
from tests.video.conftest import Sock, claimed_visit, connect, room_token
from tests.world import World, hdr, login


async def _offer(sock: Sock, client: Client) -> None:
    await sock.send(type="offer", sdp=await client.offer())
    answer = await sock.wait_for("answer")
    await client.accept(answer["sdp"])


def _mid(sock: Sock, remote: str, kind: str) -> str | None:
    mid = None
    for m in sock.of("peer-joined"):
        if m["peer"]["peer_id"] == remote and m.get(f"{kind}_mid"):
            mid = m[f"{kind}_mid"]
    return mid


async def test_patient_waits_then_meets_the_doctor_through_the_relay(
        vclient: TestClient, vdb: Db, vworld: World) -> None:
    eid = await claimed_visit(vdb, vworld)
    pat_token = await room_token(vclient, vworld.a.users["patient"].email, eid)
    doc_token = await room_token(vclient, vworld.a.users["clinician"].email, eid)
    pat_rtc, doc_rtc = Client("patient", slots=3), Client("doctor", slots=3)
    try:
        pat = await connect(vclient, eid, pat_token)
        joined = await pat.wait_for("joined")
        assert joined["role"] == "patient" and joined["capacity"] == 4 and joined["peers"] == []
        # TURN REST credentials from the settings, STUN as configured
        turn = next(s for s in joined["ice_servers"] if s["urls"][0].startswith("turn:"))
        assert turn["username"].endswith(":patient") and turn["credential"]
        await pat.wait_for("waiting")
        await _offer(pat, pat_rtc)

        await login(vclient, vworld.a.users["clinician"].email)  # the doctor uses the session cookie
        doc = await connect(vclient, eid, doc_token, query=False)
        doc_joined = await doc.wait_for("joined")
        assert doc_joined["role"] == "clinician"
        # the clinician learns the patient is waiting; the patient learns nothing and receives no media
        assert [(x["peer_id"], x["admitted"]) for x in doc_joined["peers"]] == [("patient", False)]
        await _offer(doc, doc_rtc)
        await asyncio.sleep(1.5)
        assert pat.of("admitted") == [] and pat.of("peer-joined") == []
        assert pat_rtc.total("video") == 0 and pat_rtc.total("audio") == 0
        assert doc_rtc.total("video") == 0

        await doc.send(type="admit", peer_id="patient")
        await pat.wait_for("admitted")
        await eventually(lambda: _mid(pat, "clinician", "video") is not None and _mid(doc, "patient", "video")
                         is not None)
        pv, dv = _mid(pat, "clinician", "video"), _mid(doc, "patient", "video")
        assert pv and dv
        await eventually(lambda: pat_rtc.frames[pv] > 5 and doc_rtc.frames[dv] > 5, within=15)
        pa = _mid(pat, "clinician", "audio")
        assert pa
        await eventually(lambda: pat_rtc.frames[pa] > 5)
        async with vdb.uow() as uow:
            e = await uow.session.get(Encounter, eid)
            assert e is not None and e.status is EncounterStatus.IN_CONSULT and e.admitted_at is not None

        # chat goes through the encounter service (persisted) and reaches the other side
        await pat.send(type="chat", text="  it hurts here  ", client_id="c1")
        chat = await doc.wait_for("chat")
        assert chat["text"] == "it hurts here" and chat["sender"] == "patient"
        assert (await pat.wait_for("chat"))["client_id"] == "c1"
        async with vdb.uow() as uow:
            rows = (await uow.session.execute(select(ChatMessage).where(ChatMessage.encounter_id == eid))).scalars()
            assert [m.text for m in rows] == ["it hurts here"]

        # audio-only for everyone: video stops, audio continues
        await doc.send(type="mode", mode="audio")
        assert (await pat.wait_for("mode"))["mode"] == "audio"
        await asyncio.sleep(0.5)
        frozen = pat_rtc.frames[pv]
        audio_before = pat_rtc.frames[pa]
        await asyncio.sleep(1.0)
        assert pat_rtc.frames[pv] - frozen <= 2
        assert pat_rtc.frames[pa] > audio_before
        async with vdb.uow() as uow:
            e = await uow.session.get(Encounter, eid)
            assert e is not None and e.mode == "audio"

        # a quality sample per connected peer, and relay gauges on /metrics
        assert await manager(vclient.app).sample_once() == 2
        async with vdb.uow() as uow:
            samples = (await uow.session.execute(select(QualitySample))).scalars().all()
            assert {s.peer_id for s in samples} == {"patient", "clinician"}
        metrics = await (await vclient.get("/metrics")).text()
        assert "telemed_relay_rooms 1.0" in metrics and "telemed_relay_peers 2.0" in metrics

        # screen share is for clinicians only
        await pat.send(type="screenshare", active=True)
        assert (await pat.wait_for("error"))["code"] == "forbidden"
        await pat.close()
        await doc.close()
    finally:
        await pat_rtc.close()
        await doc_rtc.close()


async def test_resume_after_socket_drop_keeps_admission_and_media(
        vclient: TestClient, vdb: Db, vworld: World) -> None:
    eid = await claimed_visit(vdb, vworld)
    pat_token = await room_token(vclient, vworld.a.users["patient"].email, eid)
    doc_token = await room_token(vclient, vworld.a.users["clinician"].email, eid)
    pat_rtc, doc_rtc = Client("patient", slots=3), Client("doctor", slots=3)
    try:
        doc = await connect(vclient, eid, doc_token)
        await doc.wait_for("joined")
        await _offer(doc, doc_rtc)
        pat = await connect(vclient, eid, pat_token)
        first = await pat.wait_for("joined")
        await _offer(pat, pat_rtc)
        await doc.send(type="admit", peer_id="patient")
        await pat.wait_for("admitted")
        await eventually(lambda: _mid(pat, "clinician", "video") is not None)
        async with vdb.uow() as uow:
            admitted_at = (await uow.session.get(Encounter, eid)).admitted_at  # type: ignore[union-attr]

        await pat.ws.close()  # the socket drops; the media connection stays up
        mid = _mid(pat, "clinician", "video")
        assert mid
        before = pat_rtc.frames[mid]
        await asyncio.sleep(0.5)
        again = await connect(vclient, eid, pat_token, resume=first["resume_token"])
        joined = await again.wait_for("joined")
        assert joined["resumed"] is True and joined["peer_id"] == "patient"
        assert joined["resume_token"] != first["resume_token"]
        await again.wait_for("admitted")  # straight back in, nobody admitted them again
        assert again.of("waiting") == []
        await eventually(lambda: pat_rtc.frames[mid] > before + 10)
        async with vdb.uow() as uow:
            e = await uow.session.get(Encounter, eid)
            assert e is not None and e.admitted_at == admitted_at
            part = (await uow.session.execute(select(CallParticipant).where(
                CallParticipant.encounter_id == eid, CallParticipant.peer_id == "patient"))).scalar_one()
            assert part.connected and part.admitted
            # resume tokens are single-use: only the newest one's hash is kept
            from clinic.security.secrets import hash_token

            assert part.resume_hash == hash_token(joined["resume_token"]) != hash_token(first["resume_token"])

        # an ICE restart from a brand-new client connection is answered by relay.renegotiate
        fresh = Client("patient-2", slots=3)
        try:
            await again.send(type="offer", sdp=await fresh.offer(), ice_restart=True)
            answer = await again.wait_for("answer", count=1)
            await fresh.accept(answer["sdp"])
            await eventually(lambda: _mid(again, "clinician", "video") is not None)
            await eventually(lambda: fresh.total("video") > 5, within=15)
        finally:
            await fresh.close()
        await again.close()
        await doc.close()
    finally:
        await pat_rtc.close()
        await doc_rtc.close()


async def test_refusals(vclient: TestClient, vdb: Db, vworld: World) -> None:
    eid = await claimed_visit(vdb, vworld)
    other = await claimed_visit(vdb, vworld)
    pat_token = await room_token(vclient, vworld.a.users["patient"].email, eid)
    # a token for another encounter is refused at the handshake
    with pytest.raises(WSServerHandshakeError) as info:
        await vclient.ws_connect(f"/ws/signal/{other}?token={pat_token}")
    assert info.value.status == 403
    # an expired token likewise
    async with vdb.uow() as uow:
        old, _ = await tokens.issue(uow, eid, "patient", user_id=vworld.a.users["patient"].id,
                                    now=utcnow() - timedelta(minutes=11))
        await uow.commit()
    with pytest.raises(WSServerHandshakeError) as info:
        await vclient.ws_connect(f"/ws/signal/{eid}?token={old}")
    assert info.value.status == 403
    # without a token or a session nobody gets in
    with pytest.raises(WSServerHandshakeError) as info:
        await vclient.ws_connect(f"/ws/signal/{eid}")
    assert info.value.status == 401
    # tokens never last more than ten minutes and are stored hashed
    async with vdb.uow() as uow:
        _, row = await tokens.issue(uow, eid, "patient", ttl=timedelta(hours=5))
        assert row.expires_at - row.created_at <= tokens.MAX_TTL
        hashes = (await uow.session.execute(select(RoomToken.token_hash))).scalars().all()
        assert pat_token not in hashes
    # a join carrying a token for another encounter is refused (session cookie present)
    csrf = await login(vclient, vworld.a.users["patient"].email)
    del csrf
    sock = await connect(vclient, eid, "y" * 24, query=False)
    err = await sock.wait_for("error")
    assert err["code"] == "bad_token" and err["fatal"] is True
    await sock.close()
    assert sock.ws.close_code == 1008

    # malformed, unknown and oversized frames get errors; repeated abuse closes with 1008
    sock = await connect(vclient, eid, pat_token, query=False)
    await sock.wait_for("joined")
    await sock.ws.send_str("{nope")
    await sock.send(type="teleport")
    await sock.send(type="chat", text="x", extra=1)
    await sock.ws.send_str('{"v":1,"type":"chat","text":"' + "x" * 70000 + '"}')
    codes = [m["code"] for m in (await sock.wait_for("error", count=4), sock.of("error"))[1]]
    assert codes[:4] == ["bad_json", "unknown_type", "unknown_field", "too_large"]
    for _ in range(3):
        await sock.send(type="nonsense")
    await eventually(lambda: sock.ws.closed)
    assert sock.ws.close_code == 1008
    # a waiting patient cannot admit themselves
    sock = await connect(vclient, eid, pat_token, query=False)
    await sock.wait_for("waiting")
    await sock.send(type="admit", peer_id="patient")
    assert (await sock.wait_for("error"))["code"] == "forbidden"
    await sock.close()


async def test_room_rules_for_tokens_and_guests(vclient: TestClient, vdb: Db, vworld: World) -> None:
    eid = await claimed_visit(vdb, vworld)
    # another patient of the same clinic cannot even see the visit
    csrf = await login(vclient, vworld.a.users["patient2"].email)
    r = await vclient.post(f"/api/v1/encounters/{eid}/room-token", headers=hdr(csrf))
    assert r.status == 404
    # a colleague who did not take the visit is not a participant and cannot invite
    vclient.session.cookie_jar.clear()
    csrf = await login(vclient, vworld.a.users["clinician2"].email)
    r = await vclient.post(f"/api/v1/encounters/{eid}/room-token", headers=hdr(csrf))
    assert r.status == 403 and (await r.json())["error"]["code"] == "not_a_participant"
    r = await vclient.post(f"/api/v1/encounters/{eid}/guests", headers=hdr(csrf),
                           json={"role": "interpreter", "display_name": "Kim"})
    assert r.status == 403
    # the claiming clinician invites an interpreter, whose link joins them as a guest
    vclient.session.cookie_jar.clear()
    csrf = await login(vclient, vworld.a.users["clinician"].email)
    r = await vclient.post(f"/api/v1/encounters/{eid}/guests", headers=hdr(csrf),
                           json={"role": "interpreter", "display_name": "Interpreter Park"})
    body = await r.json()
    assert r.status == 201, body
    assert body["join_path"] == f"/visit/{eid}/join#token={body['token']}"
    vclient.session.cookie_jar.clear()
    guest = await connect(vclient, eid, body["token"])
    joined = await guest.wait_for("joined")
    assert joined["role"] == "interpreter" and joined["peer_id"].startswith("g-")
    await guest.wait_for("waiting")  # held until the visit is in consult
    await guest.send(type="chat", text="hello from the interpreter")
    chat = await guest.wait_for("chat")
    assert chat["sender_role"] == "guest" and chat["sender_name"] == "Interpreter Park"
    await guest.send(type="mode", mode="audio")
    assert (await guest.wait_for("error"))["code"] == "forbidden"
    await guest.close()
    # the guest page renders without a session (the token stays in the fragment)
    r = await vclient.get(f"/visit/{eid}/join")
    assert r.status == 200 and "visit.js" in await r.text()


async def test_pages_are_only_for_participants(vclient: TestClient, vdb: Db, vworld: World) -> None:
    eid = await claimed_visit(vdb, vworld)
    r = await vclient.get(f"/visit/{eid}", allow_redirects=False)
    assert r.status == 302 and r.headers["Location"].startswith("/login")
    await login(vclient, vworld.a.users["patient"].email)
    r = await vclient.get(f"/visit/{eid}")
    text = await r.text()
    assert r.status == 200 and 'data-testid="join-call"' in text and 'data-testid="remote-video"' in text
    vclient.session.cookie_jar.clear()
    await login(vclient, vworld.a.users["clinician"].email)
    r = await vclient.get(f"/console/visit/{eid}")
    text = await r.text()
    assert r.status == 200 and 'data-testid="admit-patient"' in text
    vclient.session.cookie_jar.clear()
    await login(vclient, vworld.a.users["clinician2"].email)
    r = await vclient.get(f"/console/visit/{eid}")
    assert r.status == 403
    vclient.session.cookie_jar.clear()
    await login(vclient, vworld.b.users["clinician"].email)
    r = await vclient.get(f"/console/visit/{uuid.UUID(str(eid))}")
    assert r.status == 404


async def test_recording_needs_everyones_consent(vclient: TestClient, vdb: Db, vworld: World) -> None:
    eid = await claimed_visit(vdb, vworld)
    pat_token = await room_token(vclient, vworld.a.users["patient"].email, eid)
    doc_token = await room_token(vclient, vworld.a.users["clinician"].email, eid)
    pat_rtc, doc_rtc = Client("patient", slots=3), Client("doctor", slots=3)
    try:
        doc = await connect(vclient, eid, doc_token)
        await doc.wait_for("joined")
        await _offer(doc, doc_rtc)
        pat = await connect(vclient, eid, pat_token)
        await pat.wait_for("joined")
        await _offer(pat, pat_rtc)
        await doc.send(type="admit", peer_id="patient")
        await pat.wait_for("admitted")
        await doc.send(type="record-consent", consent=True)
        first = await pat.wait_for("record-consent")
        assert first == {**first, "peer_id": "clinician", "consent": True, "recording": False}
        await pat.send(type="record-consent", consent=True)
        started = await doc.wait_for("record-consent", count=2)
        assert started["recording"] is True
        await asyncio.sleep(1.5)
        await pat.send(type="record-consent", consent=False)
        stopped = await doc.wait_for("record-consent", count=3)
        assert stopped["recording"] is False
        async with vdb.uow() as uow:
            rec = (await uow.session.execute(select(Recording))).scalar_one()
            assert rec.ended_at is not None and rec.consents == ["clinician", "patient"]
            assert rec.policy_decision.get("allowed") is True
            assert rec.files and all(f.endswith(".webm.enc") for f in rec.files)
        await pat.close()
        await doc.close()
    finally:
        await pat_rtc.close()
        await doc_rtc.close()


async def test_a_patient_who_withdrew_consent_while_waiting_is_not_admitted(
        vclient: TestClient, vdb: Db, vworld: World) -> None:
    from clinic.db.clinical import ConsentKind
    from clinic.security.authz import SYSTEM
    from clinic.services import patients

    eid = await claimed_visit(vdb, vworld)
    doc_token = await room_token(vclient, vworld.a.users["clinician"].email, eid)
    async with vdb.uow() as uow:
        consent = await patients.current_consent(uow, vworld.a.patient.id, ConsentKind.TELEMEDICINE)  # type: ignore[union-attr]
        assert consent is not None
        await patients.revoke_consent(uow, SYSTEM, consent.id)
        await uow.commit()
    await login(vclient, vworld.a.users["clinician"].email)
    doc = await connect(vclient, eid, doc_token, query=False)
    await doc.wait_for("joined")
    await doc.send(type="admit", peer_id="patient")
    err = await doc.wait_for("error")
    assert err["code"] == "consent_required"
    async with vdb.uow() as uow:
        e = await uow.session.get(Encounter, eid)
        assert e is not None and e.status is EncounterStatus.CHECKED_IN and e.admitted_at is None
    await doc.close()
