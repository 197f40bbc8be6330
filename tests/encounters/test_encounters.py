"""Check-in, the waiting room, the live queue, exclusive claims, admission and the visit state machine."""

from __future__ import annotations

import asyncio
import io
import json

from aiohttp import FormData
from aiohttp.test_utils import TestClient
from PIL import Image
from sqlalchemy import select

from clinic.db.encounters import Encounter, EncounterTransition, StoredPhoto
from clinic.db.models import AuditEvent, User
from clinic.db.scheduling import Appointment
from clinic.services import accounts
from clinic.services import encounters as svc
from tests.conftest import Db
from tests.encounters.conftest import checkin_body, make_visit
from tests.world import World, hdr, login


async def _principal(db: Db, user: User):  # type: ignore[no-untyped-def]
    async with db.uow() as uow:
        u = await uow.session.get(User, user.id)
        assert u is not None
        return await accounts.build_principal(uow, u)


async def test_check_in_confirms_identity_and_enters_queue(client: TestClient, world: World, db: Db) -> None:
    eid = await make_visit(db, world)
    csrf = await login(client, world.a.users["patient"].email)
    bad = {**checkin_body(world), "birth_date": "1999-09-09"}
    r = await client.post(f"/api/v1/encounters/{eid}/check-in", json=bad, headers=hdr(csrf))
    assert r.status == 422 and (await r.json())["error"]["code"] == "identity_mismatch"
    r = await client.post(f"/api/v1/encounters/{eid}/check-in", json=checkin_body(world, symptoms=["chest_pain"]),
                          headers=hdr(csrf))
    body = await r.json()
    assert r.status == 200, body
    assert body["status"] == "checked_in" and body["priority"] == 1 and body["fhir_status"] == "arrived"
    assert [t["to_status"] for t in body["transitions"]] == ["checked_in"]
    r = await client.get(f"/api/v1/encounters/{eid}/waiting")
    w = await r.json()
    assert w["position"] == 1 and w["estimated_wait_minutes"] == 0 and w["admitted"] is False
    # checking in twice is refused with the reason
    r = await client.post(f"/api/v1/encounters/{eid}/check-in", json=checkin_body(world), headers=hdr(csrf))
    assert r.status == 409 and (await r.json())["error"]["code"] == "illegal_transition"
    async with db.uow() as uow:
        a = (await uow.session.execute(select(Appointment).join(Encounter, Encounter.appointment_id == Appointment.id)
                                       .where(Encounter.id == eid))).scalar_one()
        assert a.status.value == "checked_in"


async def test_check_in_window(client: TestClient, world: World, db: Db) -> None:
    eid = await make_visit(db, world, minutes_from_now=120)
    csrf = await login(client, world.a.users["patient"].email)
    r = await client.post(f"/api/v1/encounters/{eid}/check-in", json=checkin_body(world), headers=hdr(csrf))
    assert r.status == 409 and (await r.json())["error"]["code"] == "too_early"


async def test_queue_order_priority_then_time(db: Db, world: World) -> None:
    doc = await _principal(db, world.a.users["clinician"])
    first = await make_visit(db, world, minutes_from_now=5)
    second = await make_visit(db, world, patient="other", minutes_from_now=10)
    for eid, who, symptoms in ((first, "patient", ("cough",)), (second, "patient2", ("high_fever",))):
        p = await _principal(db, world.a.users[who])
        async with db.uow() as uow:
            e = await uow.session.get(Encounter, eid)
            assert e is not None
            pat = world.a.patient if who == "patient" else world.a.other_patient
            await svc.check_in(uow, p, eid, svc.CheckIn(pat.family_name, pat.given_name, pat.birth_date,  # type: ignore[union-attr]
                                                        "x", symptoms))
            await uow.commit()
    async with db.uow() as uow:
        q = await svc.queue(uow, doc, world.a.clinic.id)
    # the later appointment comes first because its triage priority is higher
    assert [x.encounter_id for x in q] == [second, first]
    assert q[0].priority == 2 and q[0].queue == "personal"


async def test_claim_is_exclusive_under_concurrency(db: Db, world: World) -> None:
    eid = await make_visit(db, world, personal=False)
    pat = await _principal(db, world.a.users["patient"])
    async with db.uow() as uow:
        p = world.a.patient
        await svc.check_in(uow, pat, eid, svc.CheckIn(p.family_name, p.given_name, p.birth_date, "x"))  # type: ignore[union-attr]
        await uow.commit()
    docs = [await _principal(db, world.a.users[r]) for r in ("clinician", "clinician2")] * 10

    async def attempt(principal) -> tuple[object, str]:  # type: ignore[no-untyped-def]
        try:
            async with db.uow() as uow:
                await svc.claim(uow, principal, eid)
                await uow.commit()
                return principal.user_id, "won"
        except Exception as exc:
            return principal.user_id, getattr(exc, "code", repr(exc))

    results = await asyncio.gather(*(attempt(d) for d in docs))
    winners = {who for who, outcome in results if outcome == "won"}
    # One clinician gets the patient (their own repeated clicks just return it); the other is refused every time.
    assert len(winners) == 1, results
    assert {outcome for who, outcome in results if who not in winners} == {"already_claimed"}, results
    async with db.uow() as uow:
        e = await uow.session.get(Encounter, eid)
        assert e is not None and e.claimed_by_id in winners
        claims = (await uow.session.execute(select(AuditEvent).where(
            AuditEvent.action == "encounter.claim", AuditEvent.object_id == str(eid)))).scalars().all()
        assert len(claims) == 1  # one claim happened, so one audit entry


async def test_second_doctor_cannot_claim_over_http(client: TestClient, world: World, db: Db) -> None:
    from aiohttp.test_utils import TestClient as TC

    cp, c1, c2 = client, TC(client.server), TC(client.server)
    eid = await make_visit(db, world, personal=False)
    await cp.post(f"/api/v1/encounters/{eid}/check-in", json=checkin_body(world),
                  headers=hdr(await login(cp, world.a.users["patient"].email)))
    h1 = hdr(await login(c1, world.a.users["clinician"].email))
    h2 = hdr(await login(c2, world.a.users["clinician2"].email))
    r1, r2 = await asyncio.gather(c1.post(f"/api/v1/encounters/{eid}/claim", headers=h1),
                                  c2.post(f"/api/v1/encounters/{eid}/claim", headers=h2))
    assert sorted([r1.status, r2.status]) == [200, 409]
    loser = r2 if r2.status == 409 else r1
    assert (await loser.json())["error"]["code"] == "already_claimed"
    await c1.session.close()
    await c2.session.close()


async def test_admit_complete_and_illegal_transitions(client: TestClient, world: World, db: Db) -> None:
    eid = await make_visit(db, world)
    csrf = await login(client, world.a.users["clinician"].email)
    # completing a visit that never started is refused with the reason
    r = await client.post(f"/api/v1/encounters/{eid}/claim", headers=hdr(csrf))
    assert r.status == 409
    client.session.cookie_jar.clear()
    pc = await login(client, world.a.users["patient"].email)
    await client.post(f"/api/v1/encounters/{eid}/check-in", json=checkin_body(world), headers=hdr(pc))
    client.session.cookie_jar.clear()
    csrf = await login(client, world.a.users["clinician"].email)
    r = await client.post(f"/api/v1/encounters/{eid}/admit", headers=hdr(csrf))
    assert r.status == 409 and (await r.json())["error"]["code"] == "not_claimed"
    assert (await client.post(f"/api/v1/encounters/{eid}/claim", headers=hdr(csrf))).status == 200
    r = await client.post(f"/api/v1/encounters/{eid}/admit", headers=hdr(csrf))
    assert r.status == 200 and (await r.json())["status"] == "in_consult"
    r = await client.post(f"/api/v1/encounters/{eid}/release", headers=hdr(csrf))
    assert r.status == 409
    r = await client.post(f"/api/v1/encounters/{eid}/complete", headers=hdr(csrf))
    body = await r.json()
    assert r.status == 200 and body["status"] == "completed"
    assert [t["to_status"] for t in body["transitions"]] == ["checked_in", "in_consult", "completed"]
    r = await client.post(f"/api/v1/encounters/{eid}/complete", headers=hdr(csrf))
    err = (await r.json())["error"]
    assert r.status == 409 and err["code"] == "illegal_transition" and "completed" in err["message"]
    async with db.uow() as uow:
        rows = (await uow.session.execute(select(EncounterTransition).where(
            EncounterTransition.encounter_id == eid))).scalars().all()
        assert all(t.at.tzinfo is not None for t in rows) and len(rows) == 3


async def test_transfer_to_colleague_and_release(db: Db, world: World) -> None:
    eid = await make_visit(db, world)
    pat = await _principal(db, world.a.users["patient"])
    doc = await _principal(db, world.a.users["clinician"])
    doc2 = await _principal(db, world.a.users["clinician2"])
    p = world.a.patient
    async with db.uow() as uow:
        await svc.check_in(uow, pat, eid, svc.CheckIn(p.family_name, p.given_name, p.birth_date, "x"))  # type: ignore[union-attr]
        await uow.commit()
    async with db.uow() as uow:
        try:
            await svc.claim(uow, doc2, eid)
            raise AssertionError("claimed another doctor's personal patient")
        except Exception as exc:
            assert getattr(exc, "code", "") == "assigned_to_other"
    async with db.uow() as uow:
        await svc.transfer(uow, doc, eid, world.a.users["clinician2"].id)
        await uow.commit()
    async with db.uow() as uow:
        mine = await svc.queue(uow, doc2, world.a.clinic.id, scope="mine")
        assert [x.encounter_id for x in mine] == [eid]
        await svc.claim(uow, doc2, eid)
        await svc.release(uow, doc2, eid)
        await uow.commit()
    async with db.uow() as uow:
        e = await uow.session.get(Encounter, eid)
        assert e is not None and e.claimed_by_id is None
        assert e.assigned_practitioner_id == world.a.users["clinician2"].id


async def test_chat_and_photo(client: TestClient, world: World, db: Db) -> None:
    eid = await make_visit(db, world)
    csrf = await login(client, world.a.users["patient"].email)
    await client.post(f"/api/v1/encounters/{eid}/check-in", json=checkin_body(world), headers=hdr(csrf))
    r = await client.post(f"/api/v1/encounters/{eid}/chat", json={"text": "안녕하세요, 기다리고 있어요"},
                          headers=hdr(csrf))
    assert r.status == 201
    img = Image.new("RGB", (3000, 2000), (200, 10, 10))
    buf = io.BytesIO()
    exif = Image.Exif()
    exif[0x010F] = "SecretCam"  # camera make: must not survive re-encoding
    img.save(buf, "PNG", exif=exif)
    form = FormData()
    form.add_field("purpose", "chat")
    form.add_field("photo", buf.getvalue(), filename="rash.png", content_type="image/png")
    r = await client.post(f"/api/v1/encounters/{eid}/photos", data=form, headers=hdr(csrf))
    body = await r.json()
    assert r.status == 201, body
    assert max(body["width"], body["height"]) == 1600
    r = await client.get(body["url"])
    data = await r.read()
    assert r.status == 200 and data[:2] == b"\xff\xd8" and b"SecretCam" not in data
    async with db.uow() as uow:
        row = await uow.session.get(StoredPhoto, __import__("uuid").UUID(body["id"]))
        assert row is not None
    store_dir = client.app  # stored encrypted: the JPEG magic is not on disk
    from clinic.web.context import services

    path = services(store_dir).settings.data_dir / "photos" / body["id"][:2] / f"{body['id']}.bin"
    assert path.exists() and b"\xff\xd8" not in path.read_bytes()
    # a check-in photo needs the patient's consent
    form = FormData()
    form.add_field("purpose", "checkin")
    form.add_field("photo", buf.getvalue(), filename="me.png", content_type="image/png")
    r = await client.post(f"/api/v1/encounters/{eid}/photos", data=form, headers=hdr(csrf))
    assert r.status == 409 and (await r.json())["error"]["code"] == "consent_required"
    # not an image
    form = FormData()
    form.add_field("photo", b"%PDF-1.4 not an image", filename="x.png", content_type="image/png")
    r = await client.post(f"/api/v1/encounters/{eid}/photos", data=form, headers=hdr(csrf))
    assert r.status == 422
    r = await client.get(f"/api/v1/encounters/{eid}/chat")
    items = (await r.json())["items"]
    assert items[0]["text"].startswith("안녕하세요") and items[1]["photo_id"] == body["id"]


async def test_queue_socket_pushes_check_in(client: TestClient, world: World, db: Db) -> None:
    eid = await make_visit(db, world)
    await login(client, world.a.users["clinician"].email)
    ws = await client.ws_connect(f"/ws/queue?organization_id={world.a.clinic.id}")
    first = json.loads((await ws.receive(timeout=10)).data)
    assert first["type"] == "snapshot" and first["items"] == []
    # the patient checks in from another session
    from clinic.web.app import create_app  # noqa: F401

    pat = await _principal(db, world.a.users["patient"])
    hub = __import__("clinic.web.live", fromlist=["hub_of"]).hub_of(client.app)
    p = world.a.patient
    async with db.uow() as uow:
        await svc.check_in(uow, pat, eid, svc.CheckIn(p.family_name, p.given_name, p.birth_date, "cough"),  # type: ignore[union-attr]
                           hub=hub)
        await uow.commit()
    msg = json.loads((await ws.receive(timeout=10)).data)
    assert msg["event"]["type"] == "queue.arrival"
    assert [i["encounter_id"] for i in msg["items"]] == [str(eid)]
    await ws.close()


async def test_queue_socket_refuses_other_tenant_and_cross_origin(client: TestClient, world: World) -> None:
    await login(client, world.a.users["clinician"].email)
    r = await client.get(f"/ws/queue?organization_id={world.b.clinic.id}",
                         headers={"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13",
                                  "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="})
    assert r.status in (403, 404)
    r = await client.get("/ws/queue", headers={"Origin": "https://evil.example", "Upgrade": "websocket",
                                               "Connection": "Upgrade", "Sec-WebSocket-Version": "13",
                                               "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="})
    assert r.status == 403


async def test_booking_creates_and_cancel_ends_encounter(db: Db, world: World) -> None:
    from datetime import UTC, datetime, time, timedelta

    from clinic.db.scheduling import VisitMode
    from clinic.services import booking

    admin = await _principal(db, world.a.users["org_admin"])
    pat = await _principal(db, world.a.users["patient"])
    org, doc = world.a.clinic.id, world.a.users["clinician"].id
    async with db.uow() as uow:
        vt = await booking.create_visit_type(uow, admin, org, booking.VisitTypeInput(
            code="c", name="C", duration_minutes=15, modes=(VisitMode.VIDEO,), fee_amount=0))
        await booking.upsert_schedule(uow, admin, org, doc, timezone="Asia/Seoul", observe_public_holidays=False)
        for wd in range(7):
            await booking.add_rule(uow, admin, org, doc, weekday=wd, start=time(9), end=time(17))
        await uow.commit()
    day = datetime.now(UTC).date() + timedelta(days=5)
    start = datetime.combine(day, time(10), tzinfo=UTC) - timedelta(hours=9)
    async with db.uow() as uow:
        a = await booking.book(uow, pat, patient_id=world.a.patient.id, practitioner_user_id=doc,  # type: ignore[union-attr]
                               visit_type_id=vt.id, start=start, mode=VisitMode.VIDEO, reason="follow-up")
        await uow.commit()
    async with db.uow() as uow:
        e = (await uow.session.execute(select(Encounter).where(Encounter.appointment_id == a.id))).scalar_one()
        assert e.status.value == "booked" and e.scheduled_start == start and e.assigned_practitioner_id == doc
    async with db.uow() as uow:
        await booking.cancel(uow, pat, a.id, reason="better")
        await uow.commit()
    async with db.uow() as uow:
        e = (await uow.session.execute(select(Encounter).where(Encounter.appointment_id == a.id))).scalar_one()
        assert e.status.value == "cancelled"
