"""Booking, rescheduling and on-demand requests ask the installed engine and obey it."""

from __future__ import annotations

import hashlib
from typing import Any

from aiohttp.test_utils import TestClient
from sqlalchemy import select

from clinic.db.models import AuditEvent
from clinic.policy import RULESET_DIR
from clinic.policy_web import SERVICE_KEY
from clinic.policy_web.booking import AUDIT_ACTION, EngineBookingPolicy
from clinic.services.booking import POLICY_KEY
from clinic.services.policy import PolicyService
from clinic.web.context import services
from tests.conftest import Db
from tests.policy_integration.conftest import Slots, make_hospital, set_locale
from tests.world import World, hdr, login, uid


def _book(world: World, slots: Slots, hh: int = 10, mode: str = "video") -> dict[str, Any]:
    assert world.a.patient is not None
    return {"patient_id": str(world.a.patient.id), "practitioner_id": str(slots.doc),
            "visit_type_id": str(slots.visit_type), "start": slots.at(hh).isoformat(), "mode": mode}


async def _decisions(db: Db, world: World) -> list[AuditEvent]:
    assert world.a.patient is not None
    async with db.uow() as uow:
        rows = (await uow.session.execute(
            select(AuditEvent).where(AuditEvent.action == AUDIT_ACTION).order_by(AuditEvent.seq))).scalars().all()
    return list(rows)


async def test_one_engine_installed_for_booking_and_prescriptions(client: TestClient) -> None:
    extra = services(client.app).extra
    assert isinstance(extra[SERVICE_KEY], PolicyService)
    assert isinstance(extra[POLICY_KEY], EngineBookingPolicy)
    assert extra[POLICY_KEY].service is extra[SERVICE_KEY]


async def test_allowed_booking_is_created_and_its_decision_recorded(client: TestClient, db: Db, world: World,
                                                                   slots: Slots) -> None:
    csrf = await login(client, world.a.users["patient"].email)
    r = await client.post("/api/v1/appointments", json=_book(world, slots), headers=hdr(csrf, Idempotency_Key=uid()))
    body = await r.json()
    assert r.status == 201, body
    [event] = await _decisions(db, world)
    assert event.outcome == "success" and event.patient_id == str(world.a.patient.id)  # type: ignore[union-attr]
    assert event.organization_id == str(world.a.clinic.id)
    record = event.detail["policy"]
    assert record["allowed"] is True and record["point"] == "booking"
    assert record["rule_set_id"].startswith("kr-")
    digest = hashlib.sha256((RULESET_DIR / f"{record['rule_set_id']}.toml").read_bytes()).hexdigest()
    assert record["rule_set_hash"] == digest
    assert event.detail["start"] == slots.at(10).isoformat() and event.detail["mode"] == "video"
    # The booking check presumed a follow-up of the last in-person visit (tests/world.py: hypertension).
    assert event.detail["presumed_condition"] == "I10"


async def test_audio_booking_carries_the_video_exception_obligation(client: TestClient, db: Db, world: World,
                                                                    slots: Slots) -> None:
    csrf = await login(client, world.a.users["clinician"].email)
    r = await client.post("/api/v1/appointments", json=_book(world, slots, mode="audio"), headers=hdr(csrf))
    assert r.status == 201, await r.json()
    [event] = await _decisions(db, world)
    assert event.detail["policy"]["allowed"] is True and event.detail["mode"] == "audio"


async def test_denied_booking_is_403_with_reasons_and_audited(client: TestClient, db: Db, world: World,
                                                              slots: Slots) -> None:
    # KR law in force (late 2026 and the amended act from 2027) keeps hospitals to rare-disease and
    # post-surgery patients; tenant A's patient is neither.
    await make_hospital(db, world.a.clinic.id)
    csrf = await login(client, world.a.users["patient"].email)
    r = await client.post("/api/v1/appointments", json=_book(world, slots), headers=hdr(csrf, Idempotency_Key=uid()))
    body = await r.json()
    assert r.status == 403, body
    err = body["error"]
    assert err["code"] == "policy_denied"
    decision = err["decision"]
    assert decision["allowed"] is False and decision["rule_set"].startswith("kr-")
    rules = [reason["rule"] for reason in decision["reasons"]]
    assert any(rule.endswith("hospital-level") for rule in rules), rules
    assert all(reason["message"] and reason["message_ko"] for reason in decision["reasons"])
    assert err["message"] == "; ".join(reason["message"] for reason in decision["reasons"])  # the user's language
    assert decision["obligations"] == []
    r = await client.get("/api/v1/appointments", headers=hdr(csrf))
    assert (await r.json())["items"] == []
    [event] = await _decisions(db, world)
    assert event.outcome == "denied" and event.object_id == str(world.a.patient.id)  # type: ignore[union-attr]
    assert event.detail["policy"]["allowed"] is False and event.detail["point"] == "booking"


async def test_reschedule_and_on_demand_ask_the_engine(client: TestClient, db: Db, world: World,
                                                       slots: Slots) -> None:
    csrf = await login(client, world.a.users["clinician"].email)
    r = await client.post("/api/v1/appointments", json=_book(world, slots), headers=hdr(csrf))
    appt = await r.json()
    assert r.status == 201, appt
    await make_hospital(db, world.a.clinic.id)
    r = await client.post(f"/api/v1/appointments/{appt['id']}/reschedule", json={"start": slots.at(11).isoformat()},
                          headers=hdr(csrf))
    body = await r.json()
    assert r.status == 403 and body["error"]["code"] == "policy_denied", body
    assert (await (await client.get(f"/api/v1/appointments/{appt['id']}")).json())["start"] == appt["start"]
    r = await client.post(f"/api/v1/organizations/{world.a.clinic.id}/on-demand", headers=hdr(csrf), json={
        "patient_id": str(world.a.patient.id), "visit_type_id": str(slots.visit_type),  # type: ignore[union-attr]
        "mode": "video"})
    body = await r.json()
    assert r.status == 403 and body["error"]["code"] == "policy_denied", body
    points = [(e.outcome, e.detail["point"], e.detail["practitioner"]) for e in await _decisions(db, world)]
    assert points == [("success", "booking", str(slots.doc)), ("denied", "booking", str(slots.doc)),
                      ("denied", "booking", None)]


async def test_on_demand_allowed_when_the_law_allows(client: TestClient, db: Db, world: World,
                                                     slots: Slots) -> None:
    csrf = await login(client, world.a.users["patient"].email)
    r = await client.post(f"/api/v1/organizations/{world.a.clinic.id}/on-demand", headers=hdr(csrf), json={
        "patient_id": str(world.a.patient.id), "visit_type_id": str(slots.visit_type),  # type: ignore[union-attr]
        "mode": "video"})
    assert r.status == 201, await r.json()
    [event] = await _decisions(db, world)
    assert event.detail["policy"]["allowed"] is True and event.detail["practitioner"] is None


async def test_denial_message_follows_the_users_language(client: TestClient, db: Db, world: World,
                                                         slots: Slots) -> None:
    await make_hospital(db, world.a.clinic.id)
    await set_locale(db, world.a.users["patient"], "ko")
    csrf = await login(client, world.a.users["patient"].email)
    r = await client.post("/api/v1/appointments", json=_book(world, slots), headers=hdr(csrf))
    err = (await r.json())["error"]
    assert r.status == 403 and err["code"] == "policy_denied"
    assert err["message"] == "; ".join(reason["message_ko"] for reason in err["decision"]["reasons"])
    assert "병원급" in err["message"]
