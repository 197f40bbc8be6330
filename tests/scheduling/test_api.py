"""The scheduling HTTP API: flows, scoping, validation and idempotency."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from aiohttp.test_utils import TestClient

from tests.scheduling.conftest import Booking
from tests.world import World, hdr, login


async def test_admin_visit_types_and_schedule_then_patient_books(client: TestClient, world: World) -> None:
    org = world.a.clinic.id
    doc = world.a.users["clinician"].id
    csrf = await login(client, world.a.users["org_admin"].email)
    r = await client.post(f"/api/v1/organizations/{org}/visit-types", headers=hdr(csrf), json={
        "code": "consult", "name": "Consultation", "name_ko": "진료", "duration_minutes": 20,
        "modes": ["video"], "fee_amount": 15000, "currency": "KRW"})
    assert r.status == 201, await r.text()
    vt = (await r.json())["id"]
    r = await client.post(f"/api/v1/organizations/{org}/visit-types", headers=hdr(csrf), json={
        "code": "bad", "name": "x", "duration_minutes": 7, "modes": [], "fee_amount": -1, "currency": "krw"})
    assert r.status == 422
    assert {"duration_minutes", "modes", "fee_amount", "currency"} <= set((await r.json())["error"]["fields"])
    r = await client.put(f"/api/v1/practitioners/{doc}/schedule", headers=hdr(csrf), json={
        "organization_id": str(org), "timezone": "Asia/Seoul", "observe_public_holidays": False})
    assert r.status == 200, await r.text()
    for wd in range(7):
        r = await client.post(f"/api/v1/practitioners/{doc}/schedule/rules", headers=hdr(csrf), json={
            "organization_id": str(org), "weekday": wd, "start": "09:00", "end": "12:00"})
        assert r.status == 201, await r.text()
    r = await client.post(f"/api/v1/practitioners/{doc}/schedule/rules", headers=hdr(csrf), json={
        "organization_id": str(org), "weekday": 9, "start": "9am", "end": "08:00"})
    assert r.status == 422 and {"weekday", "start"} <= set((await r.json())["error"]["fields"])
    r = await client.put(f"/api/v1/practitioners/{doc}/schedule", headers=hdr(csrf), json={
        "organization_id": str(org), "timezone": "Mars/Olympus"})
    assert r.status == 422 and "timezone" in (await r.json())["error"]["fields"]
    await client.post("/api/v1/auth/logout", headers=hdr(csrf))

    csrf = await login(client, world.a.users["patient"].email)
    from datetime import UTC, datetime

    day = (datetime.now(UTC) + timedelta(days=7)).date()
    one_day = {"visit_type_id": vt, "from": day.isoformat(), "to": (day + timedelta(days=1)).isoformat()}
    r = await client.get(f"/api/v1/organizations/{org}/slots", params=one_day)
    body = await r.json()
    assert r.status == 200, body
    assert body["timezone"] == "Asia/Seoul" and len(body["items"]) == 9
    assert body["items"][0]["local_start"].endswith("09:00:00+09:00")
    slot = body["items"][0]
    assert world.a.patient is not None
    book = {"patient_id": str(world.a.patient.id), "practitioner_id": slot["practitioner_id"],
            "visit_type_id": vt, "start": slot["start"], "mode": "video", "reason": "sore throat"}
    r = await client.post("/api/v1/appointments", json=book, headers=hdr(csrf, Idempotency_Key="book-0001-abcdef"))
    appt = await r.json()
    assert r.status == 201, appt
    assert appt["status"] == "booked" and appt["practitioner_id"] == str(doc)
    # the same key again: the same appointment, not a second one (and not a 409)
    r = await client.post("/api/v1/appointments", json=book, headers=hdr(csrf, Idempotency_Key="book-0001-abcdef"))
    assert r.status == 201 and (await r.json())["id"] == appt["id"]
    assert r.headers.get("Idempotent-Replayed") == "true"
    # a different key for the same slot is a real conflict
    r = await client.post("/api/v1/appointments", json=book, headers=hdr(csrf, Idempotency_Key="book-0002-abcdef"))
    assert r.status == 409 and (await r.json())["error"]["code"] == "slot_taken"
    r = await client.get("/api/v1/appointments", params={"status": "booked"})
    assert [a["id"] for a in (await r.json())["items"]] == [appt["id"]]
    r = await client.get("/api/v1/appointments", params={"status": "nonsense"})
    assert r.status == 422 and "status" in (await r.json())["error"]["fields"]
    r = await client.get(f"/api/v1/organizations/{org}/slots", params=one_day)
    assert slot["start"] not in [s["start"] for s in (await r.json())["items"]]
    r = await client.post(f"/api/v1/appointments/{appt['id']}/no-show", headers=hdr(csrf))
    assert r.status == 403
    r = await client.post(f"/api/v1/appointments/{appt['id']}/cancel", json={"reason": "better"}, headers=hdr(csrf))
    assert r.status == 200 and (await r.json())["status"] == "cancelled"
    r = await client.post(f"/api/v1/appointments/{appt['id']}/cancel", json={}, headers=hdr(csrf))
    assert r.status == 409 and (await r.json())["error"]["code"] == "illegal_transition"


async def test_tenant_and_patient_scoping(client: TestClient, world: World, booking: Booking) -> None:
    org_a = world.a.clinic.id
    assert world.a.patient and world.a.other_patient and world.b.patient
    csrf = await login(client, world.a.users["clinician"].email)
    r = await client.post("/api/v1/appointments", headers=hdr(csrf), json={
        "patient_id": str(world.a.other_patient.id), "practitioner_id": str(booking.doc),
        "visit_type_id": str(booking.consult), "start": booking.at(10).isoformat(), "mode": "video"})
    assert r.status == 201, await r.text()
    theirs = (await r.json())["id"]
    await client.post("/api/v1/auth/logout", headers=hdr(csrf))

    csrf = await login(client, world.b.users["patient"].email)
    params = {"visit_type_id": str(booking.consult), "from": booking.day.isoformat(),
              "to": (booking.day + timedelta(days=1)).isoformat()}
    r = await client.get(f"/api/v1/organizations/{org_a}/slots", params=params)
    assert r.status == 403
    r = await client.post("/api/v1/appointments", headers=hdr(csrf), json={
        "patient_id": str(world.b.patient.id), "practitioner_id": str(booking.doc),
        "visit_type_id": str(booking.consult), "start": booking.at(11).isoformat(), "mode": "video"})
    assert r.status == 403
    r = await client.get(f"/api/v1/appointments/{theirs}")
    assert r.status == 404
    r = await client.get("/api/v1/appointments", params={"organization_id": str(org_a)})
    assert (await r.json())["items"] == []
    await client.post("/api/v1/auth/logout", headers=hdr(csrf))

    csrf = await login(client, world.a.users["patient"].email)
    r = await client.get(f"/api/v1/appointments/{theirs}")
    assert r.status == 404
    r = await client.get("/api/v1/appointments", params={"patient_id": str(world.a.other_patient.id)})
    assert (await r.json())["items"] == []
    r = await client.post(f"/api/v1/appointments/{theirs}/cancel", json={}, headers=hdr(csrf))
    assert r.status == 404
    r = await client.get(f"/api/v1/organizations/{org_a}/slots", params={**params, "to": booking.day.isoformat()})
    assert r.status == 422
    far = (booking.day + timedelta(days=40)).isoformat()
    r = await client.get(f"/api/v1/organizations/{org_a}/slots", params={**params, "to": far})
    assert r.status == 422 and "to" in (await r.json())["error"]["fields"]
    r = await client.get(f"/api/v1/organizations/{org_a}/slots", params={**params, "tz": "Nowhere/Land"})
    assert r.status == 422 and "tz" in (await r.json())["error"]["fields"]
    r = await client.post("/api/v1/appointments", headers=hdr(csrf), json={
        "patient_id": str(world.a.patient.id), "practitioner_id": str(booking.doc),
        "visit_type_id": str(booking.consult), "start": "2030-01-01T10:00:00", "mode": "video"})
    assert r.status == 422 and "start" in (await r.json())["error"]["fields"]
    r = await client.post(f"/api/v1/organizations/{org_a}/visit-types", headers=hdr(csrf), json={
        "code": "x", "name": "x", "duration_minutes": 10, "modes": ["chat"]})
    assert r.status == 403


async def test_patient_cancellation_window_and_reschedule(client: TestClient, world: World, booking: Booking,
                                                          db: object) -> None:
    from datetime import UTC, datetime

    from clinic.db.models import Organization
    from tests.conftest import Db

    assert isinstance(db, Db) and world.a.patient
    # Make "soon" mean the whole ten days up to the booking, without waiting for the clock.
    async with db.uow() as uow:
        org = await uow.session.get(Organization, world.a.clinic.id)
        assert org is not None
        org.cancellation_window_hours = 24 * 30
        await uow.commit()
    csrf = await login(client, world.a.users["patient"].email)
    r = await client.post("/api/v1/appointments", headers=hdr(csrf), json={
        "patient_id": str(world.a.patient.id), "practitioner_id": str(booking.doc),
        "visit_type_id": str(booking.consult), "start": booking.at(14).isoformat(), "mode": "audio"})
    assert r.status == 201, await r.text()
    appt = (await r.json())["id"]
    r = await client.post(f"/api/v1/appointments/{appt}/cancel", json={}, headers=hdr(csrf))
    assert r.status == 409 and (await r.json())["error"]["code"] == "cancellation_window"
    r = await client.post(f"/api/v1/appointments/{appt}/reschedule", json={"start": booking.at(15).isoformat()},
                          headers=hdr(csrf))
    assert r.status == 409 and (await r.json())["error"]["code"] == "cancellation_window"
    await client.post("/api/v1/auth/logout", headers=hdr(csrf))
    csrf = await login(client, world.a.users["clinician"].email)
    r = await client.post(f"/api/v1/appointments/{appt}/reschedule", json={"start": booking.at(15).isoformat()},
                          headers=hdr(csrf))
    body = await r.json()
    assert r.status == 200 and body["ics_sequence"] == 1
    assert datetime.fromisoformat(body["start"]) == booking.at(15)
    r = await client.post(f"/api/v1/appointments/{appt}/no-show", headers=hdr(csrf))
    assert r.status == 409 and (await r.json())["error"]["code"] == "not_started"
    r = await client.post(f"/api/v1/appointments/{appt}/cancel", json={"reason": "clinic closed"}, headers=hdr(csrf))
    assert r.status == 200 and (await r.json())["cancellation_reason"] == "clinic closed"
    assert datetime.now(UTC) < booking.at(15)


async def test_on_demand_request(client: TestClient, world: World, booking: Booking) -> None:
    assert world.a.patient
    csrf = await login(client, world.a.users["patient"].email)
    url = f"/api/v1/organizations/{world.a.clinic.id}/on-demand"
    body = {"patient_id": str(world.a.patient.id), "visit_type_id": str(booking.quick), "mode": "video",
            "reason": "fever"}
    r = await client.post(url, json=body, headers=hdr(csrf))
    out = await r.json()
    assert r.status == 201 and out["kind"] == "on_demand" and out["status"] == "proposed"
    assert out["practitioner_id"] is None
    r = await client.post(url, json=body, headers=hdr(csrf))
    assert r.status == 409 and (await r.json())["error"]["code"] == "already_waiting"
    r = await client.post(f"/api/v1/organizations/{world.b.clinic.id}/on-demand", json=body, headers=hdr(csrf))
    assert r.status in (403, 404)


async def test_concurrent_http_bookings_one_winner(client: TestClient, world: World, booking: Booking) -> None:
    csrf = await login(client, world.a.users["clinician"].email)
    assert world.a.patient and world.a.other_patient
    pats = [world.a.patient.id, world.a.other_patient.id]

    async def attempt(i: int) -> tuple[int, str]:
        r = await client.post("/api/v1/appointments", headers=hdr(csrf), json={
            "patient_id": str(pats[i % 2]), "practitioner_id": str(booking.doc),
            "visit_type_id": str(booking.consult), "start": booking.at(16).isoformat(), "mode": "video"})
        body = await r.json()
        return r.status, body.get("error", {}).get("code", "")

    results = await asyncio.gather(*(attempt(i) for i in range(50)))
    assert sorted(set(results)) == [(201, ""), (409, "slot_taken")]
    assert [s for s, _ in results].count(201) == 1
