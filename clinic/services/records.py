"""Patient data export (right of access / portability) and erasure (right to deletion).

Export gives everything held about a patient, as our own JSON or as a FHIR R4 ``collection`` Bundle.
Drafts (notes, prescriptions) are excluded: they are a clinician's unfinished work, not yet part of the
record, and patients are never shown them.

Erasure deletes what we may delete and anonymizes what the law obliges us to keep. In Korea:

* Personal Information Protection Act Art. 21(1): personal data no longer needed is destroyed without
  delay, *unless another law requires it to be kept*; Art. 21(3): data kept for that reason is stored
  and managed separately from other personal data.
* Medical Service Act Art. 22(2) with its Enforcement Rule Art. 15(1): medical records must be kept —
  patient register 5 years, medical records (진료기록부) 10 years, prescriptions 2 years, copies of
  certificates 3 years. Art. 22(2) covers amended records *and* their originals, and Art. 22(3)
  forbids altering them.

So signed notes (all versions), their diagnoses, prescriptions issued, visits that took place,
allergies recorded by clinicians and consent records (evidence of the lawful basis of past processing)
are kept, unaltered in content, while the patient's identifying fields (name, contact details, address,
exact birth date) are replaced, and the login account is anonymized and disabled. Everything else is
deleted: drafts, chat, photos, guardians, legal attributes, sessions, sign-in links, stored API replies
and outgoing messages. The hash-chained audit log is left untouched: it holds identifiers and the
actor's e-mail label, and rewriting any entry would break the chain's tamper evidence.

It all happens in the caller's transaction, with an :class:`ErasureRequest` row stating what was done.
"""

from __future__ import annotations

import html
import json
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import Select, delete, select

from clinic.db.base import utcnow
from clinic.db.clinical import Consent, InPersonVisit, Patient
from clinic.db.encounters import ChatMessage, Encounter, EncounterTransition, StoredPhoto
from clinic.db.models import (
    IdempotencyRecord,
    MagicLink,
    Membership,
    Organization,
    OutboxMessage,
    Role,
    User,
    WebSession,
)
from clinic.db.notes import ClinicalNote, ErasureRequest, ErasureStatus, NoteStatus, NoteVersion
from clinic.db.scheduling import Appointment, AppointmentStatus, SlotClaim
from clinic.db.uow import UnitOfWork
from clinic.encounters.state import EncounterStatus, check_transition
from clinic.errors import Conflict
from clinic.photos import PhotoStore
from clinic.scheduling.states import Event
from clinic.scheduling.states import transition as appointment_transition
from clinic.security.authz import Principal
from clinic.services import patients
from clinic.services.notes import latest_version, version_diagnoses, version_sections
from prescriptions.models import DeliveryOrder, Medication, MedicationDispense, MedicationRequest, RenewalRequest
from prescriptions.state import RxStatus

ICD10CM_SYSTEM = "http://hl7.org/fhir/sid/icd-10-cm"
ERASED = "ERASED"

#: (years, legal basis) per kind of retained record; see the module docstring.
RETENTION: dict[str, tuple[int, str]] = {
    "patient_register": (5, "KR Medical Service Act Art. 22(2); Enforcement Rule Art. 15(1)1 (patient register, "
                            "5 years)"),
    "medical_record": (10, "KR Medical Service Act Art. 22(2); Enforcement Rule Art. 15(1)2 (medical records, "
                           "10 years)"),
    "prescription": (2, "KR Medical Service Act Art. 22(2); Enforcement Rule Art. 15(1)3 (prescriptions, 2 years)"),
    "consent": (5, "PIPA Art. 21(1) proviso: evidence of the lawful basis, kept with the patient register"),
}

#: Other features (payments, …) add a coroutine here to erase or anonymize their own rows in the same
#: transaction; it receives the patient and the summary dict to report into.
ErasureHook = Callable[[UnitOfWork, Patient, dict[str, Any]], Awaitable[None]]
ERASURE_HOOKS: list[ErasureHook] = []


def _iso(v: date | datetime | None) -> str | None:
    return v.isoformat() if v is not None else None


# --- gathering -----------------------------------------------------------------------------------------------


@dataclass
class PatientRecord:
    patient: Patient
    organization: Organization
    consents: list[Consent]
    appointments: list[Appointment]
    encounters: list[Encounter]
    chat: list[ChatMessage]
    photos: list[StoredPhoto]
    notes: list[ClinicalNote]
    prescriptions: list[MedicationRequest]
    in_person_visits: list[InPersonVisit]


async def _all(uow: UnitOfWork, q: Select[Any]) -> list[Any]:
    return list((await uow.session.execute(q)).scalars().all())


async def gather(uow: UnitOfWork, p: Patient) -> PatientRecord:
    org = await uow.session.get(Organization, p.organization_id)
    assert org is not None
    encounters = await _all(uow, select(Encounter).where(Encounter.patient_id == p.id)
                            .order_by(Encounter.created_at))
    eids = [e.id for e in encounters]
    return PatientRecord(
        patient=p, organization=org,
        consents=await _all(uow, select(Consent).where(Consent.patient_id == p.id).order_by(Consent.granted_at)),
        appointments=await _all(uow, select(Appointment).where(Appointment.patient_id == p.id)
                                .order_by(Appointment.start)),
        encounters=encounters,
        chat=await _all(uow, select(ChatMessage).where(ChatMessage.encounter_id.in_(eids))
                        .order_by(ChatMessage.created_at)) if eids else [],
        photos=await _all(uow, select(StoredPhoto).where(StoredPhoto.encounter_id.in_(eids))) if eids else [],
        notes=await _all(uow, select(ClinicalNote).where(ClinicalNote.patient_id == p.id,
                                                         ClinicalNote.status != NoteStatus.DRAFT)
                         .order_by(ClinicalNote.created_at)),
        prescriptions=await _all(uow, select(MedicationRequest).where(MedicationRequest.patient_id == p.id,
                                                                      MedicationRequest.status != RxStatus.DRAFT)
                                 .order_by(MedicationRequest.created_at)),
        in_person_visits=await _all(uow, select(InPersonVisit).where(InPersonVisit.patient_id == p.id)
                                    .order_by(InPersonVisit.visit_date)),
    )


# --- export --------------------------------------------------------------------------------------------------------


def _version_json(v: NoteVersion) -> dict[str, Any]:
    return {"version": v.version, "author_id": str(v.author_id), "signed_at": _iso(v.signed_at),
            "amendment_reason": v.amendment_reason, "content_sha256": v.content_sha256,
            "sections": version_sections(v), "diagnoses": version_diagnoses(v)}


def export_json(r: PatientRecord) -> dict[str, Any]:
    p = r.patient
    chat_by_enc: dict[uuid.UUID, list[dict[str, Any]]] = {}
    for m in r.chat:
        chat_by_enc.setdefault(m.encounter_id, []).append(
            {"at": _iso(m.created_at), "from": m.sender_role, "name": m.sender_name, "text": m.text,
             "photo_id": str(m.photo_id) if m.photo_id else None})
    photos_by_enc: dict[uuid.UUID, list[dict[str, Any]]] = {}
    for ph in r.photos:
        photos_by_enc.setdefault(ph.encounter_id, []).append(
            {"id": str(ph.id), "purpose": ph.purpose, "content_type": ph.content_type, "width": ph.width,
             "height": ph.height, "sha256": ph.sha256, "created_at": _iso(ph.created_at)})
    return {
        "format": "telemed-patient-export/1",
        "generated_at": _iso(utcnow()),
        "organization": {"id": str(r.organization.id), "name": r.organization.name},
        "patient": {
            "id": str(p.id), "family_name": p.family_name, "given_name": p.given_name,
            "birth_date": _iso(p.birth_date), "sex": p.sex.value, "phone": p.phone, "email": p.email,
            "address": p.address, "postal_code": p.postal_code, "jurisdiction": p.jurisdiction,
            "locale": p.locale, "nominated_pharmacy_id": str(p.nominated_pharmacy_id or "") or None,
            "created_at": _iso(p.created_at),
        },
        "guardians": [{"name": g.name, "relationship": g.relationship_code, "phone": g.phone, "email": g.email}
                      for g in p.guardians],
        "allergies": [{"substance": a.substance, "atc_code": a.atc_code, "reaction": a.reaction,
                       "severity": a.severity, "recorded_at": _iso(a.recorded_at)} for a in p.allergies],
        "attributes": [{"kind": a.kind.value, "value": a.value, "source": a.source,
                        "source_date": _iso(a.source_date), "valid_until": _iso(a.valid_until)}
                       for a in p.attributes],
        "consents": [{"id": str(c.id), "kind": c.kind.value, "version": c.version, "granted_at": _iso(c.granted_at),
                      "revoked_at": _iso(c.revoked_at)} for c in r.consents],
        "appointments": [{"id": str(a.id), "status": a.status.value, "kind": a.kind.value, "mode": a.mode.value,
                          "start": _iso(a.start), "end": _iso(a.end), "reason": a.reason,
                          "practitioner_id": str(a.practitioner_user_id or "") or None,
                          "cancellation_reason": a.cancellation_reason} for a in r.appointments],
        "encounters": [{
            "id": str(e.id), "status": e.status.value, "kind": e.kind, "mode": e.mode,
            "appointment_id": str(e.appointment_id or "") or None, "chief_complaint": e.chief_complaint,
            "symptoms": list(e.symptoms), "practitioner_id": str(e.claimed_by_id or "") or None,
            "checked_in_at": _iso(e.checked_in_at), "admitted_at": _iso(e.admitted_at),
            "started_at": _iso(e.started_at), "ended_at": _iso(e.ended_at),
            "transitions": [{"from": t.from_status, "to": t.to_status, "at": _iso(t.at)} for t in e.transitions],
            "chat": chat_by_enc.get(e.id, []), "photos": photos_by_enc.get(e.id, []),
        } for e in r.encounters],
        "notes": [{"id": str(n.id), "encounter_id": str(n.encounter_id), "status": n.status.value,
                   "versions": [_version_json(v) for v in sorted(n.versions, key=lambda v: v.version)]}
                  for n in r.notes],
        "prescriptions": [{
            "id": str(rx.id), "rx_number": rx.rx_number, "encounter_id": str(rx.encounter_id),
            "status": rx.status.value, "signed_at": _iso(rx.signed_at), "note": rx.note,
            "pharmacy_id": str(rx.pharmacy_id or "") or None,
            "items": [{"medication": i.medication_name, "code": i.medication_code, "atc": i.atc, "dose": i.dose,
                       "dose_unit": i.dose_unit, "route": i.route, "frequency": i.frequency,
                       "duration_days": i.duration_days, "quantity": i.quantity, "refills": i.refills}
                      for i in rx.items],
        } for rx in r.prescriptions],
        "in_person_visits": [{"organization_id": str(v.organization_id), "visit_date": _iso(v.visit_date),
                              "condition_code": v.condition_code} for v in r.in_person_visits],
    }


def _ref(kind: str, id_: object) -> dict[str, str]:
    return {"reference": f"{kind}/{id_}"}


def _entry(res: dict[str, Any]) -> dict[str, Any]:
    return {"fullUrl": f"urn:uuid:{res['id']}", "resource": res}


_APPT_FHIR = {AppointmentStatus.CHECKED_IN: "checked-in"}


def _narrative(text: str) -> dict[str, str]:
    body = html.escape(text).replace("\n", "<br/>")
    return {"status": "generated", "div": f'<div xmlns="http://www.w3.org/1999/xhtml"><p>{body}</p></div>'}


async def export_fhir(uow: UnitOfWork, r: PatientRecord) -> dict[str, Any]:
    """FHIR R4 collection Bundle. Only R4-stable elements, so it validates as R4 and R4B."""
    from prescriptions import fhir as rx_fhir

    p = r.patient
    patient: dict[str, Any] = {"resourceType": "Patient", "id": str(p.id),
                               "name": [{"family": p.family_name, "given": [p.given_name]}],
                               "gender": p.sex.value, "birthDate": p.birth_date.isoformat(),
                               "managingOrganization": _ref("Organization", r.organization.id)}
    telecom = [{"system": s, "value": v} for s, v in (("phone", p.phone), ("email", p.email)) if v]
    if telecom:
        patient["telecom"] = telecom
    if p.address or p.postal_code:
        patient["address"] = [{"text": p.address, **({"postalCode": p.postal_code} if p.postal_code else {})}]
    entries = [_entry(patient),
               _entry({"resourceType": "Organization", "id": str(r.organization.id), "name": r.organization.name})]
    for a in p.allergies:
        allergy: dict[str, Any] = {"resourceType": "AllergyIntolerance", "id": str(a.id),
                                   "patient": _ref("Patient", p.id), "code": {"text": a.substance},
                                   "recordedDate": a.recorded_at.isoformat()}
        if a.reaction:
            allergy["reaction"] = [{"manifestation": [{"text": a.reaction}], "severity": a.severity}]
        entries.append(_entry(allergy))
    for ap in r.appointments:
        participants: list[dict[str, Any]] = [{"actor": _ref("Patient", p.id), "status": "accepted"}]
        if ap.practitioner_user_id:
            participants.append({"actor": _ref("Practitioner", ap.practitioner_user_id), "status": "accepted"})
        appt: dict[str, Any] = {"resourceType": "Appointment", "id": str(ap.id),
                                "status": _APPT_FHIR.get(ap.status, ap.status.value),
                                "start": ap.start.isoformat(), "end": ap.end.isoformat(), "participant": participants}
        if ap.reason:
            appt["description"] = ap.reason
        entries.append(_entry(appt))
    for e in r.encounters:
        enc: dict[str, Any] = {
            "resourceType": "Encounter", "id": str(e.id), "status": e.status.fhir,
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "VR",
                      "display": "virtual"},
            "subject": _ref("Patient", p.id), "serviceProvider": _ref("Organization", e.organization_id),
        }
        start = e.started_at or e.admitted_at or e.checked_in_at
        if start:
            enc["period"] = {"start": start.isoformat(), **({"end": e.ended_at.isoformat()} if e.ended_at else {})}
        if e.appointment_id:
            enc["appointment"] = [_ref("Appointment", e.appointment_id)]
        if e.claimed_by_id:
            enc["participant"] = [{"individual": _ref("Practitioner", e.claimed_by_id)}]
        if e.chief_complaint:
            enc["reasonCode"] = [{"text": e.chief_complaint}]
        entries.append(_entry(enc))
    for n in r.notes:
        v = latest_version(n)
        if v is None:
            continue
        sections: list[dict[str, Any]] = [{"title": title, "text": _narrative(getattr(v, attr))}
                    for attr, title in (("subjective", "Subjective"), ("objective", "Objective"),
                                        ("assessment", "Assessment"), ("plan", "Plan"), ("text", "Note"))
                    if getattr(v, attr)]
        condition_ids: list[str] = []
        for d in v.diagnoses:
            cid = str(d.id)
            condition_ids.append(cid)
            entries.append(_entry({
                "resourceType": "Condition", "id": cid,
                "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-category",
                                          "code": "encounter-diagnosis"}]}],
                "code": {"coding": [{"system": ICD10CM_SYSTEM, "code": d.code, "display": d.display}],
                         "text": d.display},
                "subject": _ref("Patient", p.id), "encounter": _ref("Encounter", n.encounter_id),
                "recordedDate": v.signed_at.isoformat(), "recorder": _ref("Practitioner", v.author_id),
            }))
        if condition_ids:
            sections.append({"title": "Diagnoses", "entry": [_ref("Condition", c) for c in condition_ids]})
        entries.append(_entry({
            "resourceType": "Composition", "id": str(n.id), "status": n.status.fhir,
            "type": {"coding": [{"system": "http://loinc.org", "code": "11488-4", "display": "Consult note"}]},
            "subject": _ref("Patient", p.id), "encounter": _ref("Encounter", n.encounter_id),
            "date": v.signed_at.isoformat(), "author": [_ref("Practitioner", v.author_id)],
            "title": "Consultation note", "section": sections or [{"title": "Note", "text": _narrative("")}],
        }))
    seen = {en["fullUrl"] for en in entries}
    for rx in r.prescriptions:
        prescriber = await uow.session.get(User, rx.prescriber_id)
        meds = {m.id: m for m in (await uow.session.execute(
            select(Medication).where(Medication.id.in_([i.medication_id for i in rx.items])))).scalars()}
        dispenses = list((await uow.session.execute(
            select(MedicationDispense).where(MedicationDispense.request_id == rx.id))).scalars())
        assert prescriber is not None
        part = rx_fhir.bundle(rx, p, prescriber, r.organization, None, meds, dispenses)
        for en in part["entry"]:
            # Patient and Organization are already in; keep the prescription's own resources once each.
            if en["resource"]["resourceType"] in ("Patient", "Organization") or en["fullUrl"] in seen:
                continue
            seen.add(en["fullUrl"])
            entries.append(en)
    return {"resourceType": "Bundle", "id": str(uuid.uuid4()), "type": "collection",
            "timestamp": utcnow().isoformat(), "entry": entries}


async def export_patient(uow: UnitOfWork, principal: Principal, patient_id: uuid.UUID,
                         fmt: str) -> dict[str, Any]:
    p = await patients.load(uow, principal, patient_id, "patient.export")
    record = await gather(uow, p)
    doc = export_json(record) if fmt == "json" else await export_fhir(uow, record)
    uow.audit.record(principal, "patient.export", object_type="Patient", object_id=p.id,
                     organization_id=p.organization_id, patient_id=p.id,
                     detail={"format": fmt, "bytes": len(json.dumps(doc, default=str))})
    return doc


# --- erasure ----------------------------------------------------------------------------------------------------


def _until(kind: str, last: date | datetime | None) -> str | None:
    if last is None:
        return None
    d = last.date() if isinstance(last, datetime) else last
    years = RETENTION[kind][0]
    try:
        return d.replace(year=d.year + years).isoformat()
    except ValueError:  # 29 February
        return d.replace(year=d.year + years, day=28).isoformat()


def _delivered(e: Encounter) -> bool:
    """Care was given (a medical record exists), as opposed to a booking that never became a visit."""
    return e.admitted_at is not None or e.started_at is not None or e.status in (
        EncounterStatus.IN_CONSULT, EncounterStatus.COMPLETED)


async def _count_delete(uow: UnitOfWork, model: Any, *where: Any) -> int:
    ids = list((await uow.session.execute(select(model.id).where(*where))).scalars())
    if ids:
        await uow.session.execute(delete(model).where(model.id.in_(ids)).execution_options(
            synchronize_session=False))
    return len(ids)


async def erase_patient(uow: UnitOfWork, principal: Principal, patient_id: uuid.UUID, *, reason: str = "",
                        photo_store: PhotoStore | None = None) -> ErasureRequest:
    p = await patients.load(uow, principal, patient_id, "patient.erase")
    s = uow.session
    now = utcnow()
    record = await gather(uow, p)
    busy = [e for e in record.encounters if e.status in (EncounterStatus.CHECKED_IN, EncounterStatus.IN_CONSULT)]
    if busy:
        raise Conflict("the patient is in a visit right now; erase after it ends", code="visit_in_progress")
    req = ErasureRequest(organization_id=p.organization_id, patient_id=p.id, requested_by_id=principal.user_id,
                         requested_by_role="patient" if p.id in principal.patient_ids else "organization",
                         reason=reason, status=ErasureStatus.COMPLETED, requested_at=now)
    deleted: dict[str, int] = {}
    anonymized: dict[str, int] = {}
    eids = [e.id for e in record.encounters]

    # Deleted: no law requires keeping these.
    deleted["draft_notes"] = await _count_delete(uow, ClinicalNote, ClinicalNote.patient_id == p.id,
                                                 ClinicalNote.status == NoteStatus.DRAFT)
    drafts = await _all(uow, select(MedicationRequest).where(MedicationRequest.patient_id == p.id,
                                                             MedicationRequest.status == RxStatus.DRAFT))
    for rx in drafts:
        await s.delete(rx)  # ORM delete so its items go with it
    deleted["draft_prescriptions"] = len(drafts)
    deleted["chat_messages"] = await _count_delete(uow, ChatMessage, ChatMessage.encounter_id.in_(eids)) if eids else 0
    photo_ids = [str(ph.id) for ph in record.photos]
    deleted["photos"] = await _count_delete(uow, StoredPhoto, StoredPhoto.encounter_id.in_(eids)) if eids else 0
    deleted["guardians"] = len(p.guardians)
    deleted["attributes"] = len(p.attributes)
    p.guardians.clear()
    p.attributes.clear()

    user = await s.get(User, p.user_id) if p.user_id else None
    contacts = {c for c in (p.email, p.phone, user.email if user else "") if c}
    deleted["outbox_messages"] = await _count_delete(uow, OutboxMessage, OutboxMessage.recipient.in_(contacts)) \
        if contacts else 0
    if user is not None:
        deleted["sessions"] = await _count_delete(uow, WebSession, WebSession.user_id == user.id)
        deleted["magic_links"] = await _count_delete(uow, MagicLink, MagicLink.user_id == user.id)
        # Stored API replies may repeat the patient's data verbatim.
        deleted["idempotency_records"] = await _count_delete(uow, IdempotencyRecord,
                                                             IdempotencyRecord.actor == str(user.id))
        deleted["memberships"] = await _count_delete(uow, Membership, Membership.user_id == user.id,
                                                     Membership.organization_id == p.organization_id,
                                                     Membership.role == Role.PATIENT)

    # Bookings that never became visits: cancel what is pending, and drop the patient's free text.
    cancelled = 0
    for a in record.appointments:
        if a.status in (AppointmentStatus.PROPOSED, AppointmentStatus.BOOKED, AppointmentStatus.ARRIVED):
            a.status = appointment_transition(a.status, Event.CANCEL)
            a.cancelled_at = now
            a.ics_sequence += 1
            await s.execute(delete(SlotClaim).where(SlotClaim.appointment_id == a.id))  # frees the time
            cancelled += 1
        a.reason = ""
        a.cancellation_reason = "patient data erased" if a.status is AppointmentStatus.CANCELLED else ""
    for e in record.encounters:
        if e.status is EncounterStatus.BOOKED:
            check_transition(e.status, EncounterStatus.CANCELLED)
            s.add(EncounterTransition(encounter_id=e.id, from_status=e.status.value,
                                      to_status=EncounterStatus.CANCELLED.value, at=now,
                                      actor_id=principal.actor_id, reason="patient data erased"))
            e.status = EncounterStatus.CANCELLED
        if not _delivered(e):
            e.chief_complaint = ""
            e.symptoms = []
    deleted["appointments_cancelled"] = cancelled
    renewals = await _all(uow, select(RenewalRequest).where(RenewalRequest.patient_id == p.id))
    for rr in renewals:
        rr.message = ""

    # Anonymized: rows kept for retention lose what identifies the person.
    p.family_name, p.given_name = ERASED, ""
    p.phone = p.email = p.address = p.postal_code = ""
    p.birth_date = date(p.birth_date.year, 1, 1)
    p.locale = None
    p.nominated_pharmacy_id = None
    p.user_id = None
    p.erased_at = now
    anonymized["patient"] = 1
    deliveries = await _all(uow, select(DeliveryOrder).where(DeliveryOrder.patient_id == p.id))
    for d in deliveries:
        d.recipient_name, d.address, d.postal_code, d.phone = ERASED, "", "", ""
        if d.proof_recipient:
            d.proof_recipient = ERASED
        d.proof_data = None  # a signature image identifies; its hash stays as evidence of delivery
    anonymized["delivery_orders"] = len(deliveries)
    if user is not None:
        staff = (await s.execute(select(Membership.id).where(Membership.user_id == user.id,
                                                             Membership.role != Role.PATIENT).limit(1))).first()
        others = (await s.execute(select(Patient.id).where(Patient.user_id == user.id, Patient.id != p.id,
                                                           Patient.erased_at.is_(None)).limit(1))).first()
        if staff is None and others is None and not user.is_platform_admin:
            # The account exists only for this patient: it can no longer sign in and names no one.
            user.email = f"erased-{user.id.hex}@erased.invalid"
            user.display_name = ERASED
            user.password_hash = None
            user.totp_secret_enc = None
            user.totp_enabled_at = None
            user.locale = None
            user.is_active = False
            anonymized["user_account"] = 1

    summary: dict[str, Any] = {"deleted": deleted, "anonymized": anonymized}
    for hook in ERASURE_HOOKS:
        await hook(uow, p, summary)
    delivered = [e for e in record.encounters if _delivered(e)]
    last_visit = max((e.ended_at or e.started_at or e.admitted_at or e.created_at for e in delivered), default=None)
    last_rx = max((rx.signed_at or rx.created_at for rx in record.prescriptions), default=None)
    summary["retained"] = [
        {"what": "signed consultation notes (all versions) and diagnoses", "count": len(record.notes),
         "basis": RETENTION["medical_record"][1], "until": _until("medical_record", last_visit)},
        {"what": "visits that took place, allergies recorded", "count": len(delivered) + len(p.allergies),
         "basis": RETENTION["medical_record"][1], "until": _until("medical_record", last_visit)},
        {"what": "prescriptions issued and dispensing records", "count": len(record.prescriptions),
         "basis": RETENTION["prescription"][1], "until": _until("prescription", last_rx)},
        {"what": "pseudonymized patient register entry", "count": 1, "basis": RETENTION["patient_register"][1],
         "until": _until("patient_register", last_visit or p.created_at)},
        {"what": "consent records", "count": len(record.consents), "basis": RETENTION["consent"][1]},
        {"what": "audit log entries (unaltered: hash-chained tamper evidence)",
         "basis": "KR Medical Service Act Art. 23 (electronic medical records kept secure, with access logs)"},
    ]
    req.summary = summary
    req.completed_at = now
    s.add(req)
    await s.flush()
    uow.audit.record(principal, "patient.erase", object_type="Patient", object_id=p.id,
                     organization_id=p.organization_id, patient_id=p.id,
                     detail={"erasure_request_id": str(req.id), "deleted": deleted, "anonymized": anonymized})
    if photo_store is not None and photo_ids:
        async def purge() -> None:
            for pid in photo_ids:
                photo_store.delete(pid)

        uow.after_commit(purge)  # files go only once the rows are gone for good
    return req
