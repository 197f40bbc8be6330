"""Patient records (FHIR Patient) with allergies, legal attributes, guardians and consents.

Every read and write of a record is audited here, in the caller's transaction.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import phonenumbers
from sqlalchemy import ColumnElement, func, or_, select

from clinic.db.base import utcnow
from clinic.db.clinical import (
    Allergy,
    AttributeKind,
    Consent,
    ConsentKind,
    Guardian,
    Patient,
    PatientAttribute,
    Sex,
)
from clinic.db.models import Organization
from clinic.db.uow import UnitOfWork
from clinic.errors import Conflict, Invalid, NotFound
from clinic.security.authz import Principal, Resource, authorize, orgs_for, patients_for
from clinic.web.i18n import N_, get_locale, gettext


def resource(p: Patient) -> Resource:
    return Resource("Patient", organization_id=p.organization_id, id=p.id, patient_id=p.id)


def normalize_phone(raw: str, region: str = "KR") -> str:
    """E.164, or raise Invalid. National numbers are read in the patient's jurisdiction."""
    if not raw:
        return ""
    try:
        num = phonenumbers.parse(raw, region.split("-")[0])
    except phonenumbers.NumberParseException:
        raise Invalid("phone number is not valid", fields={"phone": "not a phone number"}) from None
    if not phonenumbers.is_valid_number(num):
        raise Invalid("phone number is not valid", fields={"phone": "not a valid number"})
    return phonenumbers.format_number(num, phonenumbers.PhoneNumberFormat.E164)


def _check_birth_date(d: date) -> None:
    today = utcnow().date()
    if d > today or d.year < today.year - 130:
        raise Invalid("birth date is out of range", fields={"birth_date": "must be in the past 130 years"})


@dataclass(frozen=True)
class PatientInput:
    family_name: str
    given_name: str
    birth_date: date
    sex: Sex = Sex.UNKNOWN
    phone: str = ""
    email: str = ""
    address: str = ""
    postal_code: str = ""
    jurisdiction: str = "KR"
    locale: str | None = None


async def create_patient(
    uow: UnitOfWork, principal: Principal, organization_id: uuid.UUID, data: PatientInput,
    *, user_id: uuid.UUID | None = None,
) -> Patient:
    authorize(principal, "patient.create", Resource("Organization", organization_id=organization_id))
    if await uow.session.get(Organization, organization_id) is None:
        raise NotFound("organization not found")
    _check_birth_date(data.birth_date)
    p = Patient(
        organization_id=organization_id,
        user_id=user_id,
        family_name=data.family_name,
        given_name=data.given_name,
        birth_date=data.birth_date,
        sex=data.sex,
        phone=normalize_phone(data.phone, data.jurisdiction),
        email=data.email.strip().lower(),
        address=data.address,
        postal_code=data.postal_code,
        jurisdiction=data.jurisdiction.upper(),
        locale=data.locale,
    )
    uow.add(p)
    await uow.session.flush()
    uow.audit.record(principal, "patient.create", object_type="Patient", object_id=p.id,
                     organization_id=organization_id, patient_id=p.id)
    return p


async def load(uow: UnitOfWork, principal: Principal, patient_id: uuid.UUID, action: str = "patient.read") -> Patient:
    p = await uow.session.get(Patient, patient_id)
    if p is None or p.erased_at is not None:
        raise NotFound("patient not found")
    authorize(principal, action, resource(p))
    return p


async def get_patient(uow: UnitOfWork, principal: Principal, patient_id: uuid.UUID) -> Patient:
    p = await load(uow, principal, patient_id)
    uow.audit.record(principal, "patient.read", object_type="Patient", object_id=p.id,
                     organization_id=p.organization_id, patient_id=p.id)
    return p


async def update_patient(uow: UnitOfWork, principal: Principal, patient_id: uuid.UUID,
                         changes: dict[str, Any]) -> Patient:
    p = await load(uow, principal, patient_id, "patient.update")
    allowed = {"family_name", "given_name", "birth_date", "sex", "phone", "email", "address", "postal_code",
               "jurisdiction", "locale"}
    unknown = set(changes) - allowed
    if unknown:
        raise Invalid("unknown fields", fields={k: "not updatable" for k in unknown})
    if "birth_date" in changes:
        _check_birth_date(changes["birth_date"])
    if "phone" in changes:
        changes["phone"] = normalize_phone(changes["phone"], changes.get("jurisdiction", p.jurisdiction))
    if "jurisdiction" in changes:
        changes["jurisdiction"] = str(changes["jurisdiction"]).upper()
    for k, v in changes.items():
        setattr(p, k, v)
    uow.audit.record(principal, "patient.update", object_type="Patient", object_id=p.id,
                     organization_id=p.organization_id, patient_id=p.id, detail={"fields": sorted(changes)})
    return p


async def list_patients(
    uow: UnitOfWork, principal: Principal, *, organization_id: uuid.UUID | None = None, q: str = "",
    limit: int = 50, offset: int = 0,
) -> list[Patient]:
    orgs = orgs_for(principal, "patient.list")
    own = patients_for(principal, "patient.read")
    if organization_id is not None:
        orgs &= {organization_id}
    cond: list[ColumnElement[bool]] = [Patient.erased_at.is_(None)]
    scope: list[ColumnElement[bool]] = []
    if orgs:
        scope.append(Patient.organization_id.in_(orgs))
    if own:
        scope.append(Patient.id.in_(own))
    if not scope:
        return []
    cond.append(or_(*scope))
    if q:
        like = f"%{q.lower()}%"
        cond.append(or_(func.lower(Patient.family_name).like(like), func.lower(Patient.given_name).like(like),
                        func.lower(Patient.email).like(like), Patient.phone.like(f"%{q}%")))
    rows = (await uow.session.execute(
        select(Patient).where(*cond).order_by(Patient.family_name, Patient.given_name).limit(limit).offset(offset)
    )).scalars().all()
    uow.audit.record(principal, "patient.list", object_type="Patient", organization_id=organization_id,
                     detail={"count": len(rows), "q": bool(q)})
    return list(rows)


async def add_allergy(uow: UnitOfWork, principal: Principal, patient_id: uuid.UUID, *, substance: str,
                      atc_code: str = "", reaction: str = "", severity: str = "moderate") -> Allergy:
    p = await load(uow, principal, patient_id, "patient.update")
    if severity not in ("mild", "moderate", "severe"):
        raise Invalid("bad severity", fields={"severity": "mild, moderate or severe"})
    a = Allergy(patient_id=p.id, substance=substance, atc_code=atc_code.upper(), reaction=reaction,
                severity=severity, recorded_by_id=principal.user_id)
    uow.add(a)
    await uow.session.flush()
    uow.audit.record(principal, "allergy.create", object_type="AllergyIntolerance", object_id=a.id,
                     organization_id=p.organization_id, patient_id=p.id)
    return a


async def add_attribute(uow: UnitOfWork, principal: Principal, patient_id: uuid.UUID, *, kind: AttributeKind,
                        source: str, source_date: date, value: str = "",
                        valid_until: date | None = None) -> PatientAttribute:
    p = await load(uow, principal, patient_id, "patient.update")
    if source_date > utcnow().date():
        raise Invalid("source date is in the future", fields={"source_date": "must not be in the future"})
    a = PatientAttribute(patient_id=p.id, kind=kind, value=value, source=source, source_date=source_date,
                         valid_until=valid_until, recorded_by_id=principal.user_id)
    uow.add(a)
    await uow.session.flush()
    uow.audit.record(principal, "patient_attribute.create", object_type="PatientAttribute", object_id=a.id,
                     organization_id=p.organization_id, patient_id=p.id, detail={"kind": kind.value})
    return a


async def add_guardian(uow: UnitOfWork, principal: Principal, patient_id: uuid.UUID, *, name: str,
                       relationship_code: str = "guardian", phone: str = "", email: str = "",
                       user_id: uuid.UUID | None = None) -> Guardian:
    p = await load(uow, principal, patient_id, "patient.update")
    g = Guardian(patient_id=p.id, name=name, relationship_code=relationship_code,
                 phone=normalize_phone(phone, p.jurisdiction), email=email.strip().lower(), user_id=user_id)
    uow.add(g)
    await uow.session.flush()
    uow.audit.record(principal, "guardian.create", object_type="RelatedPerson", object_id=g.id,
                     organization_id=p.organization_id, patient_id=p.id)
    return g


def active_groups(p: Patient, on: date) -> list[str]:
    """Policy-engine patient groups that hold on ``on`` (expired attributes are ignored)."""
    out = []
    for a in p.attributes:
        if a.kind is AttributeKind.CHRONIC:
            continue
        if a.valid_until is not None and a.valid_until < on:
            continue
        if a.source_date > on:
            continue
        out.append(a.kind.value)
    return sorted(set(out))


def is_chronic(p: Patient, on: date) -> bool:
    return any(a.kind is AttributeKind.CHRONIC and (a.valid_until is None or a.valid_until >= on)
               for a in p.attributes)


# --- consents --------------------------------------------------------------------------------------------------
#
# Each kind has one current version of its text. A grant records that version and the SHA-256 of the text as
# it was shown (title and paragraphs, in the page's language), so the exact wording agreed to can be proven
# later. Change a text only together with its version: patients are then asked again.


CONSENT_VERSIONS = {
    ConsentKind.TELEMEDICINE: "2026-01",
    ConsentKind.RECORDING: "2026-01",
    ConsentKind.DATA_SHARING: "2026-01",
    ConsentKind.CHECKIN_PHOTO: "2026-01",
}

_WITHDRAW = N_("You can withdraw this consent at any time under “My visits”. Withdrawing does not affect "
               "what happened before.")

#: kind → (title, paragraphs) of the current version, in English (the source language).
CONSENT_TEXTS: dict[ConsentKind, tuple[str, tuple[str, ...]]] = {
    ConsentKind.TELEMEDICINE: (N_("Consent to telemedicine consultations"), (
        N_("You are about to see a doctor of this clinic remotely — by video, by telephone or in a chat — "
           "instead of face to face."),
        N_("A remote consultation has limits. The doctor cannot examine you in person and may miss signs that an "
           "examination would show. If the doctor thinks you need to be seen in person, they will ask you to come "
           "to the clinic or go to a hospital. Some medicines cannot be prescribed remotely."),
        N_("The consultation becomes part of your medical record, like a visit at the clinic. It is not recorded "
           "unless everyone in the call agrees at that moment."),
        N_("In an emergency, do not wait for a telemedicine visit: call 119 (abroad, the local emergency number)."),
        _WITHDRAW,
    )),
    ConsentKind.RECORDING: (N_("Consent to recording consultations"), (
        N_("With your consent, a consultation may be recorded when the doctor asks and everyone in the call agrees "
           "at that moment. You are asked again in every call and can always say no."),
        N_("Recordings are stored encrypted, used only for your care, and deleted automatically when the "
           "retention period ends."),
        _WITHDRAW,
    )),
    ConsentKind.DATA_SHARING: (N_("Consent to sharing records with other providers"), (
        N_("With your consent, the clinic may send your visit summaries, prescriptions and test results to other "
           "doctors, hospitals and pharmacies that treat you, so that they know your history."),
        N_("Without it, records are shared only where the law requires or allows it without consent, for example "
           "a prescription sent to the pharmacy you choose."),
        _WITHDRAW,
    )),
    ConsentKind.CHECKIN_PHOTO: (N_("Consent to photos at check-in"), (
        N_("With your consent, you can send the doctor photos when you check in (for example of a rash or a "
           "wound). Photos are stored encrypted with your medical record."),
        _WITHDRAW,
    )),
}


@dataclass(frozen=True)
class ConsentText:
    """The current text of a consent in one language, as a patient reads it before agreeing."""

    kind: ConsentKind
    version: str
    locale: str
    title: str
    paragraphs: tuple[str, ...]

    @property
    def text(self) -> str:
        return "\n\n".join((self.title, *self.paragraphs))

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()


def consent_text(kind: ConsentKind, locale: str | None = None) -> ConsentText:
    """The current version of a consent text, in ``locale`` (default: the request's language)."""
    loc = locale or get_locale()
    title, paragraphs = CONSENT_TEXTS[kind]
    return ConsentText(kind=kind, version=CONSENT_VERSIONS[kind], locale=loc, title=gettext(title, loc),
                       paragraphs=tuple(gettext(p, loc) for p in paragraphs))


def _check_version(kind: ConsentKind, version: str | None) -> None:
    """The patient must have read the current text: a page open since the text changed is refused."""
    if version is not None and version != CONSENT_VERSIONS[kind]:
        raise Conflict(f"the {kind.value} consent text has changed (now version {CONSENT_VERSIONS[kind]}); "
                       "read it again", code="consent_version_changed",
                       fields={"version": f"current version is {CONSENT_VERSIONS[kind]}"})


async def _check_encounter(uow: UnitOfWork, p: Patient, encounter_id: uuid.UUID | None) -> None:
    if encounter_id is None:
        return
    from clinic.db.encounters import Encounter

    e = await uow.session.get(Encounter, encounter_id)
    if e is None or e.patient_id != p.id:
        raise Invalid("the visit is not this patient's", fields={"encounter_id": "not a visit of this patient"})


async def current_consent(uow: UnitOfWork, patient_id: uuid.UUID, kind: ConsentKind) -> Consent | None:
    """The patient's active grant of the current version of ``kind``, if any (older versions do not count)."""
    return (await uow.session.execute(
        select(Consent).where(Consent.patient_id == patient_id, Consent.kind == kind,
                              Consent.version == CONSENT_VERSIONS[kind], Consent.revoked_at.is_(None))
        .order_by(Consent.granted_at.desc()).limit(1)
    )).scalar_one_or_none()


async def grant_consent(uow: UnitOfWork, principal: Principal, patient_id: uuid.UUID, kind: ConsentKind, *,
                        version: str | None = None, encounter_id: uuid.UUID | None = None,
                        locale: str | None = None) -> Consent:
    """Record the patient's consent to the current text of ``kind``, as shown in ``locale``.

    ``version`` (the one the patient read) must be the current one. Granting again while a grant of the current
    version is active returns that grant and records nothing new (a second tab, a double tap).
    """
    p = await load(uow, principal, patient_id, "consent.manage")
    _check_version(kind, version)
    await _check_encounter(uow, p, encounter_id)
    existing = await current_consent(uow, p.id, kind)
    if existing is not None:
        return existing
    shown = consent_text(kind, locale)
    c = Consent(patient_id=p.id, kind=kind, version=shown.version, text_sha256=shown.sha256,
                granted_by_id=principal.user_id, encounter_id=encounter_id)
    uow.add(c)
    await uow.session.flush()
    uow.audit.record(principal, "consent.grant", object_type="Consent", object_id=c.id,
                     organization_id=p.organization_id, patient_id=p.id, detail=_answered(shown, encounter_id))
    return c


def _answered(shown: ConsentText, encounter_id: uuid.UUID | None) -> dict[str, Any]:
    """What the audit trail keeps of an answer to a consent: exactly which text, in which language, where."""
    return {"kind": shown.kind.value, "version": shown.version, "locale": shown.locale, "text_sha256": shown.sha256,
            **({"encounter_id": str(encounter_id)} if encounter_id else {})}


@dataclass(frozen=True)
class ConsentDecline:
    kind: ConsentKind
    version: str
    declined_at: datetime
    encounter_id: uuid.UUID | None


async def decline_consent(uow: UnitOfWork, principal: Principal, patient_id: uuid.UUID, kind: ConsentKind, *,
                          version: str | None = None, encounter_id: uuid.UUID | None = None,
                          locale: str | None = None) -> ConsentDecline:
    """The patient read the text and said no. Nothing is granted; the decision is audited so the clinic can
    see why a visit did not go ahead."""
    p = await load(uow, principal, patient_id, "consent.manage")
    _check_version(kind, version)
    await _check_encounter(uow, p, encounter_id)
    shown = consent_text(kind, locale)
    d = ConsentDecline(kind=kind, version=shown.version, declined_at=utcnow(), encounter_id=encounter_id)
    uow.audit.record(principal, "consent.decline", object_type="Consent", organization_id=p.organization_id,
                     patient_id=p.id, detail=_answered(shown, encounter_id))
    return d


async def revoke_consent(uow: UnitOfWork, principal: Principal, consent_id: uuid.UUID) -> Consent:
    c = await uow.session.get(Consent, consent_id)
    if c is None:
        raise NotFound("consent not found")
    p = await load(uow, principal, c.patient_id, "consent.manage")
    if c.revoked_at is not None:
        raise Conflict("consent already revoked", code="already_revoked")
    c.revoked_at = utcnow()
    uow.audit.record(principal, "consent.revoke", object_type="Consent", object_id=c.id,
                     organization_id=p.organization_id, patient_id=p.id, detail={"kind": c.kind.value})
    return c


async def list_consents(uow: UnitOfWork, principal: Principal, patient_id: uuid.UUID) -> list[Consent]:
    p = await load(uow, principal, patient_id, "patient.read")
    rows = (await uow.session.execute(
        select(Consent).where(Consent.patient_id == p.id).order_by(Consent.granted_at.desc())
    )).scalars().all()
    uow.audit.record(principal, "consent.read", object_type="Consent", organization_id=p.organization_id,
                     patient_id=p.id)
    return list(rows)


async def has_consent(uow: UnitOfWork, patient_id: uuid.UUID, kind: ConsentKind) -> bool:
    row = (await uow.session.execute(
        select(Consent.id).where(Consent.patient_id == patient_id, Consent.kind == kind,
                                 Consent.revoked_at.is_(None)).limit(1)
    )).scalar_one_or_none()
    return row is not None
