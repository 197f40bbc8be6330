"""Telemedicine consent: versioned texts in both languages, grants that prove what was read, declines that are
audited, and a check-in that refuses a patient who has not consented (invite-link patients included)."""

from __future__ import annotations

import hashlib
import re
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

from aiohttp.test_utils import TestClient
from sqlalchemy import select

from clinic.db.clinical import Consent, ConsentKind, Patient
from clinic.db.encounters import Encounter
from clinic.db.models import AuditEvent, OutboxMessage
from clinic.db.scheduling import Appointment, AppointmentKind, AppointmentStatus, VisitMode, VisitType
from clinic.encounters.state import EncounterStatus
from clinic.services import patients as svc
from tests.conftest import Db
from tests.encounters.conftest import checkin_body, make_visit
from tests.world import World, hdr, login

TM = ConsentKind.TELEMEDICINE

#: The English source of each consent text, pinned per version: changing a text without giving it a new
#: version (so that patients are asked again) fails here.
PINNED = {
    ConsentKind.TELEMEDICINE: ("2026-01", "336575d1e6a7"),
    ConsentKind.RECORDING: ("2026-01", "8e378a8c3e15"),
    ConsentKind.DATA_SHARING: ("2026-01", "3cbd8fb0d3ad"),
    ConsentKind.CHECKIN_PHOTO: ("2026-01", "56aa1ff70814"),
}


async def _audit(db: Db, action: str, patient_id: uuid.UUID) -> list[AuditEvent]:
    async with db.uow() as uow:
        return list((await uow.session.execute(
            select(AuditEvent).where(AuditEvent.action == action, AuditEvent.patient_id == str(patient_id))
            .order_by(AuditEvent.seq))).scalars())


async def _consents(db: Db, patient_id: uuid.UUID) -> list[Consent]:
    async with db.uow() as uow:
        return list((await uow.session.execute(
            select(Consent).where(Consent.patient_id == patient_id).order_by(Consent.granted_at))).scalars())


def test_each_text_is_pinned_to_its_version() -> None:
    for kind in ConsentKind:
        text = svc.consent_text(kind, "en")
        assert (text.version, text.sha256[:12]) == PINNED[kind], (
            f"the {kind.value} consent text changed: give it a new version in CONSENT_VERSIONS, then pin it here")


def test_texts_are_translated_and_hashed_as_shown() -> None:
    ko, en = svc.consent_text(TM, "ko"), svc.consent_text(TM, "en")
    assert ko.version == en.version == svc.CONSENT_VERSIONS[TM]
    assert ko.title == "비대면진료 동의" and en.title == "Consent to telemedicine consultations"
    assert len(ko.paragraphs) == len(en.paragraphs) >= 4
    assert all(re.search(r"[가-힣]", p) for p in ko.paragraphs)
    assert any("119" in p for p in ko.paragraphs)  # what to do in an emergency
    assert ko.sha256 == hashlib.sha256("\n\n".join((ko.title, *ko.paragraphs)).encode()).hexdigest()
    assert ko.sha256 != en.sha256


async def test_consent_texts_api_is_public_and_in_the_asked_language(client: TestClient) -> None:
    r = await client.get("/api/v1/consent-texts?lang=ko")
    body = await r.json()
    assert r.status == 200, body
    assert [i["kind"] for i in body["items"]] == [k.value for k in ConsentKind]
    tm = body["items"][0]
    assert tm["locale"] == "ko" and tm["title"] == "비대면진료 동의" and tm["version"] == "2026-01"
    assert tm["sha256"] == svc.consent_text(TM, "ko").sha256
    r = await client.get("/api/v1/consent-texts", headers={"Accept-Language": "en-US"})
    assert (await r.json())["items"][0]["title"] == "Consent to telemedicine consultations"
    r = await client.get("/api/v1/consent-texts?lang=fr")
    assert r.status == 422 and (await r.json())["error"]["code"] == "validation_failed"


async def test_check_in_needs_telemedicine_consent(client: TestClient, world: World, db: Db) -> None:
    pat = world.a.patient
    assert pat is not None
    eid = await make_visit(db, world, consent=False)
    csrf = await login(client, world.a.users["patient"].email)
    r = await client.post(f"/api/v1/encounters/{eid}/check-in", json=checkin_body(world), headers=hdr(csrf))
    err = (await r.json())["error"]
    assert r.status == 409 and err["code"] == "consent_required" and "telemedicine" in err["fields"]
    async with db.uow() as uow:
        e = await uow.session.get(Encounter, eid)
        assert e is not None and e.status is EncounterStatus.BOOKED and e.checked_in_at is None
    refused = [a for a in await _all_audit(db, "encounter.checkin") if a.object_id == str(eid)]
    assert any(a.outcome == "failure" and a.detail.get("refused") == "consent_required" for a in refused)

    # consent given at the visit, naming it, in the language the patient reads (English in this world)
    r = await client.post(f"/api/v1/patients/{pat.id}/consents",
                          json={"kind": "telemedicine", "version": "2026-01", "encounter_id": str(eid)},
                          headers=hdr(csrf, accept_language="ko-KR"))
    c = await r.json()
    assert r.status == 201, c
    assert c["version"] == "2026-01" and c["current"] is True and c["encounter_id"] == str(eid)
    assert c["text_sha256"] == svc.consent_text(TM, "en").sha256  # the world's users read English
    granted = await _audit(db, "consent.grant", pat.id)
    assert len(granted) == 1 and granted[0].object_id == c["id"] and granted[0].actor_id == str(
        world.a.users["patient"].id)
    assert granted[0].detail == {"kind": "telemedicine", "version": "2026-01", "locale": "en",
                                 "text_sha256": c["text_sha256"], "encounter_id": str(eid)}

    # granting again (a second tab, a double tap) records nothing new
    r = await client.post(f"/api/v1/patients/{pat.id}/consents", json={"kind": "telemedicine"}, headers=hdr(csrf))
    assert r.status == 201 and (await r.json())["id"] == c["id"]
    assert len(await _consents(db, pat.id)) == 1 and len(await _audit(db, "consent.grant", pat.id)) == 1

    r = await client.post(f"/api/v1/encounters/{eid}/check-in", json=checkin_body(world), headers=hdr(csrf))
    assert r.status == 200 and (await r.json())["status"] == "checked_in"

    # withdrawn: the next visit asks again
    r = await client.post(f"/api/v1/consents/{c['id']}/revoke", headers=hdr(csrf))
    assert r.status == 200 and (await r.json())["revoked_at"]
    eid2 = await make_visit(db, world, consent=False)
    r = await client.post(f"/api/v1/encounters/{eid2}/check-in", json=checkin_body(world), headers=hdr(csrf))
    assert r.status == 409 and (await r.json())["error"]["code"] == "consent_required"


async def _all_audit(db: Db, action: str) -> list[AuditEvent]:
    async with db.uow() as uow:
        return list((await uow.session.execute(
            select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.seq))).scalars())


async def test_consent_to_an_earlier_version_does_not_count(client: TestClient, world: World, db: Db) -> None:
    pat = world.a.patient
    assert pat is not None
    async with db.uow() as uow:
        uow.add(Consent(patient_id=pat.id, kind=TM, version="2025-06"))
        await uow.commit()
    eid = await make_visit(db, world, consent=False)
    csrf = await login(client, world.a.users["patient"].email)
    r = await client.post(f"/api/v1/encounters/{eid}/check-in", json=checkin_body(world), headers=hdr(csrf))
    assert r.status == 409 and (await r.json())["error"]["code"] == "consent_required"
    listed = (await (await client.get(f"/api/v1/patients/{pat.id}/consents")).json())["items"]
    assert [(i["version"], i["current"]) for i in listed] == [("2025-06", False)]
    # the page read an outdated text: refused, nothing recorded
    r = await client.post(f"/api/v1/patients/{pat.id}/consents", json={"kind": "telemedicine", "version": "2025-06"},
                          headers=hdr(csrf))
    err = (await r.json())["error"]
    assert r.status == 409 and err["code"] == "consent_version_changed" and "version" in err["fields"]
    assert len(await _consents(db, pat.id)) == 1


async def test_bad_consent_requests_are_4xx(client: TestClient, world: World, db: Db) -> None:
    pat, other = world.a.patient, world.a.other_patient
    assert pat is not None and other is not None
    csrf = await login(client, world.a.users["patient"].email)
    base = f"/api/v1/patients/{pat.id}/consents"
    for body in ({"kind": "marketing"}, {"kind": "telemedicine", "version": "x" * 40},
                 {"kind": "telemedicine", "encounter_id": "not-a-uuid"}, {"kind": "telemedicine", "text": "mine"}):
        r = await client.post(base, json=body, headers=hdr(csrf))
        assert r.status == 422 and (await r.json())["error"]["code"] == "validation_failed", body
    # a visit of another patient cannot be named
    theirs = await make_visit(db, world, patient="other", consent=False)
    for path in (base, base + "/decline"):
        r = await client.post(path, json={"kind": "telemedicine", "encounter_id": str(theirs)}, headers=hdr(csrf))
        err = (await r.json())["error"]
        assert r.status == 422 and "encounter_id" in err["fields"], err
    # nor someone else's record
    r = await client.post(f"/api/v1/patients/{other.id}/consents/decline", json={"kind": "telemedicine"},
                          headers=hdr(csrf))
    assert r.status in (403, 404)
    assert await _consents(db, pat.id) == []


async def test_declining_is_audited_and_grants_nothing(client: TestClient, world: World, db: Db) -> None:
    pat = world.a.patient
    assert pat is not None
    eid = await make_visit(db, world, consent=False)
    csrf = await login(client, world.a.users["patient"].email)
    r = await client.post(f"/api/v1/patients/{pat.id}/consents/decline",
                          json={"kind": "telemedicine", "version": "2026-01", "encounter_id": str(eid)},
                          headers=hdr(csrf))
    body = await r.json()
    assert r.status == 200, body
    assert body["kind"] == "telemedicine" and body["version"] == "2026-01" and body["encounter_id"] == str(eid)
    assert datetime.fromisoformat(body["declined_at"]) > datetime.now(UTC) - timedelta(minutes=1)
    declined = await _audit(db, "consent.decline", pat.id)
    assert len(declined) == 1 and declined[0].detail["encounter_id"] == str(eid)
    assert await _consents(db, pat.id) == []
    r = await client.post(f"/api/v1/encounters/{eid}/check-in", json=checkin_body(world), headers=hdr(csrf))
    assert r.status == 409 and (await r.json())["error"]["code"] == "consent_required"


async def test_clinic_staff_may_record_consent_for_the_patient(client: TestClient, world: World, db: Db) -> None:
    # e.g. given on the telephone; the grant names who recorded it
    pat = world.a.patient
    assert pat is not None
    eid = await make_visit(db, world, consent=False)
    csrf = await login(client, world.a.users["clinician"].email)
    r = await client.post(f"/api/v1/patients/{pat.id}/consents", json={"kind": "telemedicine"}, headers=hdr(csrf))
    assert r.status == 201
    [c] = await _consents(db, pat.id)
    assert c.granted_by_id == world.a.users["clinician"].id
    r = await client.post(f"/api/v1/encounters/{eid}/check-in", json=checkin_body(world), headers=hdr(csrf))
    assert r.status == 200, await r.text()


async def _invite_only_visit(db: Db, world: World) -> tuple[uuid.UUID, uuid.UUID]:
    """A patient registered by the clinic (no account) with a visit starting soon."""
    t = world.a
    async with db.uow() as uow:
        p = Patient(organization_id=t.clinic.id, family_name="이", given_name="순자", birth_date=date(1941, 3, 5),
                    phone="+821055512345", jurisdiction="KR", locale="ko")
        vt = VisitType(organization_id=t.clinic.id, code=f"inv{uuid.uuid4().hex[:6]}", name="Video visit",
                       duration_minutes=15, modes=["video"], fee_amount=0, currency="KRW")
        uow.add(p)
        uow.add(vt)
        await uow.session.flush()
        start = datetime.now(UTC) + timedelta(minutes=10)
        a = Appointment(organization_id=t.clinic.id, practitioner_user_id=t.users["clinician"].id, patient_id=p.id,
                        visit_type_id=vt.id, start=start, end=start + timedelta(minutes=15),
                        status=AppointmentStatus.BOOKED, kind=AppointmentKind.SCHEDULED, mode=VisitMode.VIDEO)
        uow.add(a)
        await uow.session.flush()
        e = Encounter(organization_id=t.clinic.id, patient_id=p.id, appointment_id=a.id,
                      assigned_practitioner_id=t.users["clinician"].id, status=EncounterStatus.BOOKED,
                      kind="scheduled", mode="video", scheduled_start=start)
        uow.add(e)
        await uow.commit()
        return p.id, e.id


async def test_invite_link_patient_consents_on_the_visit_page_and_checks_in(client: TestClient, world: World,
                                                                              db: Db) -> None:
    pid, eid = await _invite_only_visit(db, world)
    csrf = await login(client, world.a.users["clinician"].email)
    r = await client.post(f"/api/v1/encounters/{eid}/invites", json={"channel": "sms"}, headers=hdr(csrf))
    assert r.status == 201, await r.text()
    async with db.uow() as uow:
        sms = (await uow.session.execute(select(OutboxMessage).where(OutboxMessage.channel == "sms")
                                         .order_by(OutboxMessage.created_at.desc()))).scalars().first()
    assert sms is not None
    link = re.search(r"(/m/[\w-]+)", sms.body)
    assert link
    client.session.cookie_jar.clear()
    r = await client.get(link.group(1), allow_redirects=False)
    assert r.status == 302 and r.headers["Location"] == f"/visit/{eid}"

    # the visit page knows consent is still needed, and carries the text and version to show
    page = await (await client.get(f"/visit/{eid}")).text()
    cfg = _visit_config(page)
    assert cfg["patient_id"] == str(pid) and cfg["consent"]["needed"] is True
    assert cfg["consent"]["version"] == "2026-01" and cfg["consent"]["title"] == "비대면진료 동의"  # patient locale
    assert cfg["clinic"]["name"] == world.a.clinic.name
    assert 'data-testid="tm-consent"' in page and "비대면진료에는 한계가 있습니다" in page

    token = re.search(r'name="csrf-token" content="([^"]+)"', page)
    assert token
    csrf = token.group(1)
    r = await client.post(f"/api/v1/patients/{pid}/consents",
                          json={"kind": "telemedicine", "version": cfg["consent"]["version"], "encounter_id": str(eid)},
                          headers=hdr(csrf))
    assert r.status == 201, await r.text()
    assert (await r.json())["text_sha256"] == svc.consent_text(TM, "ko").sha256
    body: dict[str, Any] = {"family_name": "이", "given_name": "순자", "birth_date": "1941-03-05",
                            "chief_complaint": "혈압약이 떨어졌어요", "symptoms": []}
    r = await client.post(f"/api/v1/encounters/{eid}/check-in", json=body, headers=hdr(csrf))
    assert r.status == 200, await r.text()
    cfg = _visit_config(await (await client.get(f"/visit/{eid}")).text())
    assert cfg["consent"]["needed"] is False  # asked once


def _visit_config(page: str) -> dict[str, Any]:
    import json

    m = re.search(r'<script type="application/json" id="visit-config">(.*?)</script>', page, re.S)
    assert m, page[:500]
    cfg: dict[str, Any] = json.loads(m.group(1))
    return cfg
