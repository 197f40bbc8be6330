"""Patient data export (JSON and FHIR R4) and erasure (delete what may go, anonymize what the law keeps)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, timedelta

from aiohttp.test_utils import TestClient
from fhir.resources.R4B.bundle import Bundle
from sqlalchemy import func, select

from clinic.audit import seal_all, verify_chain
from clinic.db.base import utcnow
from clinic.db.clinical import (
    Allergy,
    AttributeKind,
    Consent,
    ConsentKind,
    Guardian,
    Patient,
    PatientAttribute,
)
from clinic.db.encounters import ChatMessage, Encounter, StoredPhoto
from clinic.db.models import AuditEvent, Membership, User, WebSession
from clinic.db.notes import ClinicalNote, ErasureRequest, NoteVersion
from clinic.db.scheduling import Appointment, AppointmentStatus, SlotClaim, VisitMode, VisitType
from clinic.encounters.state import EncounterStatus
from clinic.security.authz import SYSTEM
from clinic.services import notes as notes_svc
from prescriptions.models import Medication, MedicationRequest, MedicationRequestItem
from prescriptions.state import RxStatus
from tests.conftest import Db
from tests.notes.conftest import DRAFT, as_user, make_encounter
from tests.world import PASSWORD, World


@dataclass
class Record:
    signed_encounter: uuid.UUID
    draft_encounter: uuid.UUID
    note_id: uuid.UUID
    draft_note_id: uuid.UUID
    appointment_id: uuid.UUID
    rx_id: uuid.UUID


async def populate(db: Db, world: World) -> Record:
    """Tenant A's patient with a bit of everything: demographics, consents, a signed and a draft note, …"""
    t = world.a
    assert t.patient is not None
    pid, doc = t.patient.id, t.users["clinician"].id
    signed = await make_encounter(db, world, status=EncounterStatus.COMPLETED)
    draft = await make_encounter(db, world, status=EncounterStatus.COMPLETED, chief_complaint="기침")
    now = utcnow()
    async with db.uow() as uow:
        p = await uow.session.get(Patient, pid)
        assert p is not None
        p.family_name, p.given_name, p.birth_date = "김", "민지", date(1985, 4, 12)
        p.address, p.postal_code = "서울특별시 종로구 1", "03000"
        uow.add(Consent(patient_id=pid, kind=ConsentKind.TELEMEDICINE, version="2026-01"))
        uow.add(Allergy(patient_id=pid, substance="penicillin", atc_code="J01C", reaction="두드러기",
                        severity="severe"))
        uow.add(PatientAttribute(patient_id=pid, kind=AttributeKind.ISLAND_REMOTE, source="주민등록등본",
                                 source_date=date(2024, 1, 1)))
        uow.add(Guardian(patient_id=pid, name="김보호", phone="+821098765432"))
        uow.add(ChatMessage(encounter_id=signed, sender_role="patient", sender_name="김민지", text="안녕하세요"))
        uow.add(StoredPhoto(encounter_id=signed, purpose="chat", width=10, height=10, size_bytes=100,
                            sha256="0" * 64))
        vt = VisitType(organization_id=t.clinic.id, code="c", name="Consult", duration_minutes=30, modes=["video"])
        uow.add(vt)
        await uow.session.flush()
        start = now + timedelta(days=3)
        appt = Appointment(organization_id=t.clinic.id, practitioner_user_id=doc, patient_id=pid, visit_type_id=vt.id,
                           start=start, end=start + timedelta(minutes=30), status=AppointmentStatus.BOOKED,
                           mode=VisitMode.VIDEO, reason="머리가 아파요")
        uow.add(appt)
        await uow.session.flush()
        uow.add(SlotClaim(appointment_id=appt.id, practitioner_user_id=doc, slot_start=start))
        med = Medication(code="test-amlodipine-5", name="Amlodipine 5 mg tablet", inn="amlodipine", atc="C08CA01",
                         dose_form="tablet", strength="5 mg", strength_value=5.0, strength_unit="mg", route="oral",
                         unit="tablet")
        uow.add(med)
        await uow.session.flush()
        rx = MedicationRequest(rx_number="RX-TEST-0001", organization_id=t.clinic.id, encounter_id=signed,
                               patient_id=pid, prescriber_id=doc, status=RxStatus.SIGNED, jurisdiction="KR",
                               signed_at=now)
        rx.items.append(MedicationRequestItem(position=0, medication_id=med.id, medication_code=med.code,
                                              medication_name=med.name, atc=med.atc, dose="1", dose_unit="tablet",
                                              route="oral", frequency="QD", duration_days=30, quantity="30"))
        uow.add(rx)
        v = await notes_svc.save_draft(uow, SYSTEM, signed, 0, notes_svc.NoteContent(
            subjective=DRAFT["subjective"], assessment=DRAFT["assessment"], plan=DRAFT["plan"],
            diagnoses=(notes_svc.DiagnosisInput("I10"),)))
        await notes_svc.sign(uow, SYSTEM, v.note.id, v.note.revision)
        d = await notes_svc.save_draft(uow, SYSTEM, draft, 0, notes_svc.NoteContent(assessment="미완성 초안"))
        await uow.commit()
    return Record(signed, draft, v.note.id, d.note.id, appt.id, rx.id)


async def test_export_json_has_everything_but_drafts(client: TestClient, world: World, db: Db) -> None:
    rec = await populate(db, world)
    pid = world.a.patient.id  # type: ignore[union-attr]
    api = await as_user(client, world.a.users["patient"])
    r = await client.get(f"/api/v1/patients/{pid}/export", headers={"X-CSRF-Token": api.csrf})
    assert r.status == 200 and r.content_type == "application/json"
    assert "attachment" in r.headers["Content-Disposition"]
    doc = await r.json()
    assert doc["patient"]["family_name"] == "김" and doc["patient"]["birth_date"] == "1985-04-12"
    assert [c["kind"] for c in doc["consents"]] == ["telemedicine"]
    assert doc["allergies"][0]["substance"] == "penicillin"
    assert doc["attributes"][0]["kind"] == "island_remote"
    assert doc["guardians"][0]["name"] == "김보호"
    assert [a["id"] for a in doc["appointments"]] == [str(rec.appointment_id)]
    assert {e["id"] for e in doc["encounters"]} == {str(rec.signed_encounter), str(rec.draft_encounter)}
    signed = next(e for e in doc["encounters"] if e["id"] == str(rec.signed_encounter))
    assert signed["chat"][0]["text"] == "안녕하세요" and len(signed["photos"]) == 1
    assert [n["id"] for n in doc["notes"]] == [str(rec.note_id)]  # the draft is not part of the record yet
    assert doc["notes"][0]["versions"][0]["diagnoses"][0]["code"] == "I10"
    assert "미완성 초안" not in str(doc)
    assert doc["prescriptions"][0]["items"][0]["medication"] == "Amlodipine 5 mg tablet"

    admin = await as_user(client, world.a.users["org_admin"])
    status, _ = await admin.get(f"/api/v1/patients/{pid}/export")
    assert status == 200
    for who in (world.a.users["clinician"], world.a.users["patient2"], world.b.users["org_admin"]):
        api = await as_user(client, who)
        status, _ = await api.get(f"/api/v1/patients/{pid}/export")
        assert status == 404, who.email
    async with db.uow() as uow:
        n = (await uow.session.execute(select(func.count()).select_from(AuditEvent).where(
            AuditEvent.action == "patient.export", AuditEvent.patient_id == str(pid),
            AuditEvent.outcome == "success"))).scalar_one()
    assert n == 2


async def test_export_fhir_bundle_validates(client: TestClient, world: World, db: Db) -> None:
    rec = await populate(db, world)
    pid = world.a.patient.id  # type: ignore[union-attr]
    api = await as_user(client, world.a.users["patient"])
    r = await client.get(f"/api/v1/patients/{pid}/export?format=fhir", headers={"X-CSRF-Token": api.csrf})
    assert r.status == 200 and r.content_type == "application/fhir+json"
    raw = await r.json()
    bundle = Bundle.model_validate(raw)
    assert bundle.type == "collection"
    kinds: dict[str, list[dict[str, object]]] = {}
    for e in raw["entry"]:
        kinds.setdefault(e["resource"]["resourceType"], []).append(e["resource"])
    assert {"Patient", "Appointment", "Encounter", "Condition", "Composition", "AllergyIntolerance",
            "MedicationRequest", "Medication"} <= set(kinds)
    assert len(kinds["Patient"]) == 1 and kinds["Patient"][0]["birthDate"] == "1985-04-12"
    assert len(kinds["Encounter"]) == 2 and all(e["status"] == "finished" for e in kinds["Encounter"])
    assert kinds["Appointment"][0]["status"] == "booked"
    cond = kinds["Condition"][0]
    assert cond["code"]["coding"][0] == {"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "I10",  # type: ignore[index]
                                          "display": "Essential (primary) hypertension"}
    assert [c["id"] for c in kinds["Composition"]] == [str(rec.note_id)]
    assert len({e["fullUrl"] for e in raw["entry"]}) == len(raw["entry"])


async def test_erasure_by_the_patient(client: TestClient, world: World, db: Db) -> None:
    rec = await populate(db, world)
    pid = world.a.patient.id  # type: ignore[union-attr]
    user = world.a.users["patient"]
    api = await as_user(client, user)
    async with db.uow() as uow:
        v1 = (await uow.session.execute(select(NoteVersion.__table__).where(
            NoteVersion.note_id == rec.note_id))).mappings().one()

    status, _ = await api.post(f"/api/v1/patients/{pid}/erasure-requests", {"confirm": False})
    assert status == 422
    status, out = await api.post(f"/api/v1/patients/{pid}/erasure-requests", {"confirm": True, "reason": "탈퇴"})
    assert status == 201, out
    assert out["status"] == "completed" and out["requested_by_role"] == "patient"
    deleted = out["summary"]["deleted"]
    assert deleted["draft_notes"] == 1 and deleted["chat_messages"] == 1 and deleted["photos"] == 1
    assert deleted["guardians"] == 1 and deleted["attributes"] == 1 and deleted["sessions"] >= 1
    assert deleted["appointments_cancelled"] == 1
    assert out["summary"]["anonymized"]["patient"] == 1 and out["summary"]["anonymized"]["user_account"] == 1
    retained = {r["what"]: r for r in out["summary"]["retained"]}
    notes_kept = retained["signed consultation notes (all versions) and diagnoses"]
    assert notes_kept["count"] == 1 and "Enforcement Rule Art. 15(1)2" in notes_kept["basis"]

    # Signed out everywhere, and the account no longer signs in.
    status, _ = await api.get("/api/v1/me")
    assert status == 401
    r = await client.post("/api/v1/auth/login", json={"email": user.email, "password": PASSWORD})
    assert r.status == 401

    await seal_all(db.factory)
    async with db.uow() as uow:
        s = uow.session
        p = await s.get(Patient, pid)
        assert p is not None and p.erased_at is not None
        assert (p.family_name, p.given_name, p.phone, p.email, p.address, p.postal_code) == ("ERASED", "", "", "",
                                                                                             "", "")
        assert p.birth_date == date(1985, 1, 1) and p.user_id is None
        u = await s.get(User, user.id)
        assert u is not None and not u.is_active and u.password_hash is None and u.email.endswith("@erased.invalid")
        assert u.display_name == "ERASED"
        assert (await s.execute(select(WebSession).where(WebSession.user_id == user.id))).first() is None
        assert (await s.execute(select(Membership).where(Membership.user_id == user.id))).first() is None
        # Deleted
        assert await s.get(ClinicalNote, rec.draft_note_id) is None
        for model, cond in ((ChatMessage, ChatMessage.encounter_id == rec.signed_encounter),
                            (StoredPhoto, StoredPhoto.encounter_id == rec.signed_encounter),
                            (Guardian, Guardian.patient_id == pid),
                            (PatientAttribute, PatientAttribute.patient_id == pid),
                            (SlotClaim, SlotClaim.appointment_id == rec.appointment_id)):
            assert (await s.execute(select(model).where(cond))).first() is None, model
        # Retained, content untouched
        note = await s.get(ClinicalNote, rec.note_id)
        assert note is not None and len(note.versions) == 1
        assert dict((await s.execute(select(NoteVersion.__table__).where(
            NoteVersion.note_id == rec.note_id))).mappings().one()) == dict(v1)
        assert notes_svc.verify_version(note, note.versions[0])
        assert await s.get(MedicationRequest, rec.rx_id) is not None
        assert await s.get(Encounter, rec.signed_encounter) is not None
        assert (await s.execute(select(Consent).where(Consent.patient_id == pid))).first() is not None
        assert (await s.execute(select(Allergy).where(Allergy.patient_id == pid))).first() is not None
        appt = await s.get(Appointment, rec.appointment_id)
        assert appt is not None and appt.status is AppointmentStatus.CANCELLED and appt.reason == ""
        req = (await s.execute(select(ErasureRequest).where(ErasureRequest.patient_id == pid))).scalar_one()
        assert req.summary["deleted"]["draft_notes"] == 1 and req.reason == "탈퇴"
        erased = (await s.execute(select(AuditEvent).where(AuditEvent.action == "patient.erase"))).scalar_one()
        assert erased.detail["erasure_request_id"] == str(req.id)
        chain = await verify_chain(s)
        assert chain.ok and chain.unsealed == 0  # the audit log was not rewritten

    admin = await as_user(client, world.a.users["org_admin"])
    status, _ = await admin.get(f"/api/v1/patients/{pid}/export")
    assert status == 404
    status, _ = await admin.post(f"/api/v1/patients/{pid}/erasure-requests", {"confirm": True})
    assert status == 404
    doc = await as_user(client, world.a.users["clinician"])
    status, hist = await doc.get(f"/api/v1/notes/{rec.note_id}/history")
    assert status == 200 and hist["versions"][0]["assessment"] == DRAFT["assessment"]  # the record survives


async def test_erasure_by_admin_and_who_may_not(client: TestClient, world: World, db: Db) -> None:
    pid = world.a.other_patient.id  # type: ignore[union-attr]
    for who in (world.a.users["clinician"], world.a.users["patient"], world.b.users["org_admin"]):
        api = await as_user(client, who)
        status, _ = await api.post(f"/api/v1/patients/{pid}/erasure-requests", {"confirm": True})
        assert status == 404, who.email
    busy = await make_encounter(db, world, patient_id=pid, status=EncounterStatus.IN_CONSULT)
    admin = await as_user(client, world.a.users["org_admin"])
    status, err = await admin.post(f"/api/v1/patients/{pid}/erasure-requests", {"confirm": True})
    assert status == 409 and err["error"]["code"] == "visit_in_progress"
    async with db.uow() as uow:
        e = await uow.session.get(Encounter, busy)
        assert e is not None
        e.status = EncounterStatus.COMPLETED
        await uow.commit()
    status, out = await admin.post(f"/api/v1/patients/{pid}/erasure-requests", {"confirm": True})
    assert status == 201 and out["requested_by_role"] == "organization"
    # The admin's own account is untouched; the patient's is disabled.
    status, _ = await admin.get("/api/v1/me")
    assert status == 200
    client.session.cookie_jar.clear()
    r = await client.post("/api/v1/auth/login", json={"email": world.a.users["patient2"].email,
                                                      "password": PASSWORD})
    assert r.status == 401
