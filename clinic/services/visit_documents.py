"""Printable documents of one visit: the visit summary and the medical certificate (진단서 / 소견서).

Both show signed note content only. A visit summary without a signed note still lists the visit's facts
and prescriptions (a patient may need proof of the visit before the clinician has finished writing);
a certificate is a clinician's attestation and therefore requires a signed note.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from datetime import date, datetime
from typing import Literal
from zoneinfo import ZoneInfo

from sqlalchemy import select

from clinic.db.base import utcnow
from clinic.db.clinical import License, Patient, Practitioner
from clinic.db.encounters import Encounter
from clinic.db.models import Organization, User
from clinic.db.notes import ClinicalNote, NoteStatus, NoteVersion
from clinic.db.uow import UnitOfWork
from clinic.documents import (
    CertificateDoc,
    ClinicianInfo,
    Diagnosis,
    OrgInfo,
    PatientInfo,
    PrescriptionItem,
    VisitSummaryDoc,
    render_document_async,
)
from clinic.errors import Conflict, Forbidden, Invalid, NotFound
from clinic.security.authz import Principal, Resource, allowed, authorize
from clinic.services.notes import latest_version, note_for_encounter
from prescriptions.dosing import FREQUENCIES
from prescriptions.models import MedicationRequest
from prescriptions.state import RxStatus

_MODES: dict[str, Literal["video", "phone", "in_person", "chat"]] = {
    "video": "video", "audio": "phone", "chat": "chat", "photo": "chat"}
_SEX: dict[str, Literal["female", "male", "other", "unknown"]] = {
    "male": "male", "female": "female", "other": "other", "unknown": "unknown"}


@dataclass(frozen=True)
class RenderedDocument:
    filename: str
    pdf: bytes


@dataclass(frozen=True)
class CertificateRequest:
    purpose: str = ""
    opinion: str | None = None
    period_start: date | None = None
    period_end: date | None = None
    onset_on: date | None = None
    kind: Literal["certificate", "opinion"] = "certificate"

    @property
    def clinician_fields(self) -> list[str]:
        """Fields that state a medical judgement, which only the examining clinician may write."""
        return [f for f in ("opinion", "period_start", "period_end", "onset_on")
                if getattr(self, f) not in (None, "")] + (["kind"] if self.kind != "certificate" else [])


@dataclass
class _Visit:
    encounter: Encounter
    patient: Patient
    org: Organization
    note: ClinicalNote | None
    version: NoteVersion | None


async def _load(uow: UnitOfWork, principal: Principal, encounter_id: uuid.UUID) -> _Visit:
    e = await uow.session.get(Encounter, encounter_id)
    if e is None:
        raise NotFound("encounter not found")
    authorize(principal, "document.read",
              Resource("Encounter", organization_id=e.organization_id, id=e.id, patient_id=e.patient_id))
    patient = await uow.session.get(Patient, e.patient_id)
    org = await uow.session.get(Organization, e.organization_id)
    if patient is None or org is None or patient.erased_at is not None:
        raise NotFound("encounter not found")
    note = await note_for_encounter(uow, e.id)
    version = latest_version(note) if note is not None and note.status is not NoteStatus.DRAFT else None
    return _Visit(e, patient, org, note, version)


async def _clinician(uow: UnitOfWork, user_id: uuid.UUID | None, jurisdiction: str) -> ClinicianInfo:
    if user_id is None:
        return ClinicianInfo(name="")
    user = await uow.session.get(User, user_id)
    prac = (await uow.session.execute(select(Practitioner).where(Practitioner.user_id == user_id))
            ).scalar_one_or_none()
    number = ""
    if prac is not None:
        lic: list[License] = sorted(prac.licenses, key=lambda x: x.jurisdiction != jurisdiction)
        # The license of the organization's jurisdiction; a country-level one ("KR") covers "KR-11".
        for x in lic:
            if x.jurisdiction in (jurisdiction, jurisdiction.split("-")[0]):
                number = x.number
                break
    return ClinicianInfo(name=user.display_name if user else "", license_number=number,
                         specialty=prac.specialty if prac else "")


def _patient_info(p: Patient) -> PatientInfo:
    sex: Literal["female", "male", "other", "unknown", ""] = _SEX.get(p.sex.value, "")
    return PatientInfo(name=p.full_name, birth_date=p.birth_date, sex=sex,
                       identifier=f"P-{p.id.hex[:8].upper()}")


def _org_info(o: Organization) -> OrgInfo:
    return OrgInfo(name=o.name, address=o.address, phone=o.phone, timezone=o.timezone)


def _diagnoses(v: NoteVersion | None) -> tuple[Diagnosis, ...]:
    return tuple(Diagnosis(d.code, d.display, d.primary) for d in v.diagnoses) if v is not None else ()


async def _prescription_items(uow: UnitOfWork, encounter_id: uuid.UUID) -> tuple[PrescriptionItem, ...]:
    rows = (await uow.session.execute(
        select(MedicationRequest).where(MedicationRequest.encounter_id == encounter_id,
                                        MedicationRequest.status.not_in([RxStatus.DRAFT, RxStatus.CANCELLED]))
        .order_by(MedicationRequest.created_at)
    )).scalars().all()
    out: list[PrescriptionItem] = []
    for rx in rows:
        for i in rx.items:
            f = FREQUENCIES.get(i.frequency)
            out.append(PrescriptionItem(name=i.medication_name, dose=f"{i.dose} {i.dose_unit}",
                                        frequency=f.text_en if f else i.frequency, days=i.duration_days,
                                        quantity=i.quantity, route=i.route, code=i.medication_code))
    return tuple(out)


def _visit_at(e: Encounter) -> datetime:
    return e.started_at or e.admitted_at or e.checked_in_at or e.scheduled_start or e.created_at


def _audit(uow: UnitOfWork, principal: Principal, v: _Visit, kind: str, pdf: bytes, **detail: object) -> None:
    uow.audit.record(principal, "document.read", object_type="DocumentReference", object_id=v.encounter.id,
                     organization_id=v.encounter.organization_id, patient_id=v.encounter.patient_id,
                     detail={"kind": kind, "note_version": v.version.version if v.version else None,
                             "sha256": hashlib.sha256(pdf).hexdigest(), "bytes": len(pdf), **detail})


async def visit_summary(uow: UnitOfWork, principal: Principal, encounter_id: uuid.UUID, *,
                        locale: str) -> RenderedDocument:
    v = await _load(uow, principal, encounter_id)
    e, ver = v.encounter, v.version
    signer = v.note.signed_by_id if v.note is not None and v.note.signed_by_id else e.claimed_by_id
    doc = VisitSummaryDoc(
        document_id=f"VS-{e.id.hex[:8].upper()}" + (f"-v{ver.version}" if ver else ""),
        organization=_org_info(v.org), patient=_patient_info(v.patient),
        clinician=await _clinician(uow, signer, v.org.jurisdiction), visit_at=_visit_at(e),
        mode=_MODES.get(e.mode, "video"), chief_complaint=e.chief_complaint,
        subjective=ver.subjective if ver else "", objective=ver.objective if ver else "",
        assessment=ver.assessment if ver else "", plan=ver.plan if ver else "",
        diagnoses=_diagnoses(ver), prescriptions=await _prescription_items(uow, e.id),
    )
    pdf = await render_document_async(doc, locale=locale)
    _audit(uow, principal, v, "visit-summary", pdf, locale=locale)
    return RenderedDocument(f"visit-summary-{e.id.hex[:8]}.pdf", pdf)


async def medical_certificate(uow: UnitOfWork, principal: Principal, encounter_id: uuid.UUID,
                              req: CertificateRequest, *, locale: str) -> RenderedDocument:
    v = await _load(uow, principal, encounter_id)
    if v.note is None or v.version is None:
        raise Conflict("a certificate needs a signed note", code="note_not_signed")
    e, ver = v.encounter, v.version
    examining = {v.note.signed_by_id, v.note.author_id, e.claimed_by_id} - {None}
    custom = req.clinician_fields
    if custom and (principal.user_id not in examining or not allowed(
            principal, "note.write", Resource("Encounter", organization_id=e.organization_id, id=e.id,
                                              patient_id=e.patient_id))):
        raise Forbidden("only the examining clinician may state an opinion or a period", code="clinician_only",
                        fields={f: "set by the examining clinician" for f in custom})
    if req.period_start and req.period_end and req.period_start > req.period_end:
        raise Invalid("the period ends before it starts", fields={"period_end": "must not be before period_start"})
    doc = CertificateDoc(
        document_id=f"MC-{e.id.hex[:8].upper()}-v{ver.version}", organization=_org_info(v.org),
        patient=_patient_info(v.patient), clinician=await _clinician(uow, v.note.signed_by_id, v.org.jurisdiction),
        diagnoses=_diagnoses(ver),
        # Without an explicit opinion the certificate repeats the signed assessment, never a draft.
        opinion=req.opinion if req.opinion else (ver.assessment or ver.plan),
        issued_on=utcnow().astimezone(ZoneInfo(v.org.timezone)).date(), kind=req.kind, onset_on=req.onset_on,
        period_start=req.period_start, period_end=req.period_end, purpose=req.purpose,
    )
    pdf = await render_document_async(doc, locale=locale)
    _audit(uow, principal, v, "medical-certificate", pdf, locale=locale, certificate_kind=req.kind,
           purpose=req.purpose, period=[str(req.period_start or ""), str(req.period_end or "")])
    return RenderedDocument(f"medical-certificate-{e.id.hex[:8]}.pdf", pdf)
