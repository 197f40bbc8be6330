"""E-prescribing: write inside an encounter, check safety and law, sign, route, claim, dispense.

Every state change is one transaction with its audit entry; every read is audited. Authorization is
always :func:`clinic.security.authz.authorize`; the extra rule that only the clinician who claimed the
encounter may prescribe in it (and only its author may sign or cancel) is checked here on top.
"""

from __future__ import annotations

import base64
import hashlib
import inspect
import json
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any, cast
from zoneinfo import ZoneInfo

import segno
from sqlalchemy import CursorResult, or_, select, update

from clinic.db.base import utcnow
from clinic.db.clinical import Patient
from clinic.db.encounters import Encounter
from clinic.db.models import Organization, OrgKind, User
from clinic.db.uow import UnitOfWork
from clinic.encounters.state import EncounterStatus
from clinic.errors import Conflict, Forbidden, Gone, Invalid, NotFound
from clinic.policy import DrugFacts
from clinic.security.authz import Principal, Resource, authorize, orgs_for, pharmacies_for
from clinic.services.policy import PolicyService, Subject
from prescriptions import dosing, ids
from prescriptions.models import (
    ClarificationRequest,
    Medication,
    MedicationDispense,
    MedicationRequest,
    MedicationRequestItem,
    RenewalRequest,
    SigningKey,
)
from prescriptions.signing import (
    CANONICAL_VERSION,
    KeyStore,
    VerificationResult,
    canonical_bytes,
    verify_bytes,
)
from prescriptions.state import ACTIVE, CANCELLABLE, RxStatus, check_rx

#: How long after the encounter ends its clinician may still prescribe (late paperwork, not new care).
PRESCRIBE_GRACE = timedelta(hours=24)

#: Days a prescription may be presented at a pharmacy, counting the day of issue, per jurisdiction.
#: KR: 3 days is what most prescriptions print under 의료법 시행규칙 별지 제9호서식 "사용기간" (the
#: prescriber may write another period; the default was not verified against the statute).
#: DE: 28 days for a Kassenrezept (E-Rezept). GB: 6 months (NHS prescriptions; controlled drugs 28 days,
#: not modelled). Others: 28 days as a conservative default.
VALIDITY_DAYS: dict[str, int] = {"KR": 3, "DE": 28, "GB": 182, "US": 365, "JP": 4}
DEFAULT_VALIDITY_DAYS = 28

EventSink = Callable[..., Any]


@dataclass
class Hooks:
    """Optional after-commit callbacks: live inbox events and patient notifications."""

    events: EventSink | None = None
    notifier: EventSink | None = None
    validity_days: dict[str, int] = field(default_factory=lambda: dict(VALIDITY_DAYS))

    def emit(self, uow: UnitOfWork, name: str, target_id: object, object_id: object) -> None:
        if self.events is not None:
            uow.after_commit(_call_later(self.events, name, target_id, object_id))

    def notify(self, uow: UnitOfWork, patient_id: uuid.UUID, kind: str, detail: dict[str, Any]) -> None:
        if self.notifier is not None:
            uow.after_commit(_call_later(self.notifier, patient_id, kind, detail))


def _call_later(fn: EventSink, *args: Any) -> Callable[[], Any]:
    async def run() -> None:
        result = fn(*args)
        if inspect.isawaitable(result):
            await result

    return run


NO_HOOKS = Hooks()


# --------------------------------------------------------------------------- input shapes


@dataclass(frozen=True)
class ItemInput:
    medication_code: str
    dose: Decimal
    frequency: str
    duration_days: int
    quantity: Decimal
    dose_unit: str | None = None
    route: str | None = None
    prn_max_per_day: int | None = None
    refills: int = 0
    substitution_allowed: bool = True
    note_to_pharmacist: str = ""


@dataclass(frozen=True)
class SafetyFinding:
    key: str  # stable id the prescriber quotes to override, e.g. "allergy:amoxicillin-500mg-cap"
    kind: str  # allergy | duplicate_therapy | max_days_supply
    severity: str  # warning | hard_stop
    field: str
    message: str


@dataclass
class PrescriptionView:
    rx: MedicationRequest
    verification: VerificationResult | None = None
    dispenses: list[MedicationDispense] = field(default_factory=list)


def resource(rx: MedicationRequest) -> Resource:
    return Resource("MedicationRequest", organization_id=rx.organization_id, id=rx.id, patient_id=rx.patient_id,
                    pharmacy_id=rx.pharmacy_id)


def _audit(uow: UnitOfWork, p: Principal, action: str, rx: MedicationRequest, **detail: Any) -> None:
    uow.audit.record(p, action, object_type="MedicationRequest", object_id=rx.id,
                     organization_id=rx.organization_id, patient_id=rx.patient_id, detail=detail or None)


# --------------------------------------------------------------------------- loading


async def _get(uow: UnitOfWork, rx_id: uuid.UUID, *, lock: bool = False) -> MedicationRequest:
    stmt = select(MedicationRequest).where(MedicationRequest.id == rx_id)
    if lock:
        stmt = stmt.with_for_update()
    rx = (await uow.session.execute(stmt)).scalar_one_or_none()
    if rx is None:
        raise NotFound("prescription not found")
    return rx


async def load(uow: UnitOfWork, principal: Principal, rx_id: uuid.UUID, action: str = "prescription.read",
               *, lock: bool = False) -> MedicationRequest:
    rx = await _get(uow, rx_id, lock=lock)
    authorize(principal, action, resource(rx))
    return rx


def _require_author(principal: Principal, rx: MedicationRequest) -> None:
    if rx.prescriber_id != principal.user_id:
        raise Forbidden("only the prescriber may do this", code="not_prescriber")


def _transition(rx: MedicationRequest, target: RxStatus, reason: str = "") -> None:
    check_rx(rx.status, target)
    rx.status = target
    rx.updated_at = utcnow()
    if reason:
        rx.status_reason = reason[:500]


# --------------------------------------------------------------------------- safety checks


def _parse_decimal(raw: object, field_name: str) -> Decimal:
    try:
        d = Decimal(str(raw))
    except (InvalidOperation, ValueError):
        raise Invalid("not a number", fields={field_name: "must be a decimal number"}) from None
    if not d.is_finite():
        raise Invalid("not a number", fields={field_name: "must be finite"})
    return d


def _allergy_findings(patient: Patient, med: Medication, pos: int) -> list[SafetyFinding]:
    out = []
    for a in patient.allergies:
        by_class = bool(a.atc_code) and med.atc.startswith(a.atc_code.upper())
        by_name = a.substance.strip().lower() in {med.inn.lower(), med.name.lower()}
        if not (by_class or by_name):
            continue
        severe = a.severity == "severe"
        out.append(SafetyFinding(
            key=f"allergy:{med.code}", kind="allergy", severity="hard_stop" if severe else "warning",
            field=f"items.{pos}.medication_code",
            message=f"patient has a {a.severity} allergy to {a.substance}"
                    f"{' (' + a.atc_code + ')' if a.atc_code else ''}; {med.inn} ({med.atc}) matches",
        ))
    return out


async def _active_classes(uow: UnitOfWork, patient_id: uuid.UUID, exclude: uuid.UUID | None) -> dict[str, str]:
    """ATC level-4 class → medication name, over the patient's other active prescriptions."""
    stmt = (select(MedicationRequestItem.atc, MedicationRequestItem.medication_name)
            .join(MedicationRequest, MedicationRequest.id == MedicationRequestItem.request_id)
            .where(MedicationRequest.patient_id == patient_id, MedicationRequest.status.in_(list(ACTIVE))))
    if exclude is not None:
        stmt = stmt.where(MedicationRequest.id != exclude)
    return {atc[:5]: name for atc, name in (await uow.session.execute(stmt)).all()}


def _validity_end(signed_at: datetime, jurisdiction: str, tz: str, days_map: dict[str, int]) -> datetime:
    days = days_map.get(jurisdiction.upper(), days_map.get(jurisdiction.split("-")[0].upper(),
                                                              DEFAULT_VALIDITY_DAYS))
    zone = ZoneInfo(tz)
    local_day = signed_at.astimezone(zone).date()
    # The day of issue counts as day one; the prescription lapses at local midnight after the last day.
    end = datetime.combine(local_day + timedelta(days=days), time(0, 0), tzinfo=zone)
    return end.astimezone(signed_at.tzinfo)


# --------------------------------------------------------------------------- prescribing


async def _prescribing_encounter(uow: UnitOfWork, principal: Principal, encounter_id: uuid.UUID,
                                 now: datetime) -> Encounter:
    enc = await uow.session.get(Encounter, encounter_id)
    if enc is None:
        raise NotFound("encounter not found")
    authorize(principal, "prescription.write", Resource("Encounter", organization_id=enc.organization_id,
                                                         id=enc.id, patient_id=enc.patient_id))
    if enc.claimed_by_id is None or enc.claimed_by_id != principal.user_id:
        raise Forbidden("only the clinician who claimed this encounter may prescribe in it",
                        code="not_encounter_clinician")
    if enc.status is EncounterStatus.IN_CONSULT:
        return enc
    if enc.status is EncounterStatus.COMPLETED and enc.ended_at is not None and now - enc.ended_at <= PRESCRIBE_GRACE:
        return enc
    raise Conflict(f"cannot prescribe in an encounter that is {enc.status.value}", code="encounter_not_open")


async def _build_items(
    uow: UnitOfWork, principal: Principal, policy: PolicyService, *, enc: Encounter, patient: Patient,
    org: Organization, items: Sequence[ItemInput], overrides: dict[str, str], now: datetime,
    exclude_rx: uuid.UUID | None,
) -> tuple[list[MedicationRequestItem], list[dict[str, Any]], list[dict[str, Any]]]:
    if not items:
        raise Invalid("a prescription needs at least one item", fields={"items": "at least one item"})
    if len(items) > 20:
        raise Invalid("too many items", fields={"items": "at most 20"})
    codes = [i.medication_code for i in items]
    meds = {m.code: m for m in (await uow.session.execute(
        select(Medication).where(Medication.code.in_(codes), Medication.active.is_(True))
    )).scalars()}
    errors: dict[str, str] = {}
    findings: list[SafetyFinding] = []
    rows: list[MedicationRequestItem] = []
    active_classes = await _active_classes(uow, patient.id, exclude_rx)
    seen_classes: dict[str, str] = {}
    for pos, it in enumerate(items):
        med = meds.get(it.medication_code)
        if med is None:
            errors[f"items.{pos}.medication_code"] = "unknown or withdrawn medication"
            continue
        try:
            expected = dosing.expected_quantity(it.dose, it.frequency, it.duration_days, it.prn_max_per_day)
        except Invalid as exc:
            errors.update({f"items.{pos}.{k}": v for k, v in exc.fields.items()})
            continue
        if dosing.normalize(it.quantity) != expected:
            errors[f"items.{pos}.quantity"] = (
                f"must equal dose × frequency × days = {dosing.dec_str(expected)} {med.unit}"
            )
        if not 0 <= it.refills <= 11:
            errors[f"items.{pos}.refills"] = "0–11"
        if med.max_days_supply is not None and it.duration_days > med.max_days_supply:
            findings.append(SafetyFinding(
                key=f"max_days_supply:{med.code}", kind="max_days_supply", severity="hard_stop",
                field=f"items.{pos}.duration_days",
                message=f"{med.name} may be prescribed for at most {med.max_days_supply} days",
            ))
        findings.extend(_allergy_findings(patient, med, pos))
        cls = med.atc[:5]
        other = seen_classes.get(cls) or active_classes.get(cls)
        if other is not None:
            findings.append(SafetyFinding(
                key=f"duplicate_therapy:{med.code}", kind="duplicate_therapy", severity="warning",
                field=f"items.{pos}.medication_code",
                message=f"{med.name} is in the same class ({cls}) as {other}",
            ))
        seen_classes.setdefault(cls, med.name)
        rows.append(MedicationRequestItem(
            position=pos, medication_id=med.id, medication_code=med.code, medication_name=med.name, atc=med.atc,
            dose=dosing.dec_str(it.dose), dose_unit=(it.dose_unit or med.unit)[:64],
            route=(it.route or med.route)[:64], frequency=it.frequency,
            prn_max_per_day=it.prn_max_per_day if it.frequency == "PRN" else None,
            duration_days=it.duration_days, quantity=dosing.dec_str(expected), refills=it.refills,
            substitution_allowed=it.substitution_allowed, note_to_pharmacist=it.note_to_pharmacist[:1000],
        ))
    if errors:
        raise Invalid("some items are not valid", fields=errors)
    hard = [f for f in findings if f.severity == "hard_stop"]
    if hard:
        raise Invalid("prescribing hard stop: " + "; ".join(f.message for f in hard), code="hard_stop",
                      fields={f.field: f.message for f in hard})
    unacknowledged = [f for f in findings if not overrides.get(f.key, "").strip()]
    if unacknowledged:
        raise Invalid("safety warnings need an override reason: " + "; ".join(f.message for f in unacknowledged),
                      code="safety_warning", fields={f"overrides.{f.key}": f.message for f in unacknowledged})
    unknown = set(overrides) - {f.key for f in findings}
    if unknown:
        raise Invalid("override for a warning that was not raised",
                      fields={f"overrides.{k}": "no such warning" for k in sorted(unknown)})
    warnings = [{"key": f.key, "kind": f.kind, "message": f.message, "override_reason": overrides[f.key].strip(),
                 "overridden_by": str(principal.user_id), "at": now.isoformat()} for f in findings]
    subject = Subject(patient=patient, organization=org, practitioner_user_id=principal.user_id, at=now)
    decisions = []
    for row in rows:
        med = meds[row.medication_code]
        facts = DrugFacts(atc=med.atc, categories=med.categories_for(patient.jurisdiction),
                          days_supply=row.duration_days)
        record = await policy.require(uow, subject, "prescribe", point="prescribe", drug=facts)
        decisions.append({**record, "item": row.position, "medication_code": med.code})
    return rows, warnings, decisions


async def create_prescription(
    uow: UnitOfWork, principal: Principal, policy: PolicyService, *, encounter_id: uuid.UUID,
    items: Sequence[ItemInput], overrides: dict[str, str] | None = None, note: str = "",
    at: datetime | None = None,
) -> MedicationRequest:
    """Write a draft prescription in an encounter; refuses with field errors, hard stops or the law's reasons."""
    now = at or utcnow()
    enc = await _prescribing_encounter(uow, principal, encounter_id, now)
    patient = await uow.session.get(Patient, enc.patient_id)
    org = await uow.session.get(Organization, enc.organization_id)
    if patient is None or org is None or patient.erased_at is not None:
        raise NotFound("patient not found")
    rows, warnings, decisions = await _build_items(
        uow, principal, policy, enc=enc, patient=patient, org=org, items=items, overrides=overrides or {},
        now=now, exclude_rx=None,
    )
    rx = MedicationRequest(
        rx_number=ids.new_rx_number(), organization_id=enc.organization_id, encounter_id=enc.id,
        patient_id=patient.id, prescriber_id=principal.user_id, status=RxStatus.DRAFT,
        jurisdiction=patient.jurisdiction, note=note[:2000], warnings=warnings, policy_decisions=decisions,
        items=rows,
    )
    uow.add(rx)
    await uow.session.flush()
    _audit(uow, principal, "prescription.create", rx, rx_number=rx.rx_number, items=[r.medication_code for r in rows])
    for w in warnings:
        # Overrides are audited one by one so a reviewer can find every overridden warning by action.
        _audit(uow, principal, "prescription.warning_override", rx, key=w["key"], reason=w["override_reason"])
    return rx


async def update_draft(
    uow: UnitOfWork, principal: Principal, policy: PolicyService, rx_id: uuid.UUID, *,
    items: Sequence[ItemInput], overrides: dict[str, str] | None = None, note: str | None = None,
    at: datetime | None = None,
) -> MedicationRequest:
    now = at or utcnow()
    rx = await load(uow, principal, rx_id, "prescription.write", lock=True)
    _require_author(principal, rx)
    if rx.status is not RxStatus.DRAFT:
        raise Conflict("a signed prescription cannot be changed; cancel it and issue a new one", code="immutable")
    enc = await _prescribing_encounter(uow, principal, rx.encounter_id, now)
    patient = await uow.session.get(Patient, rx.patient_id)
    org = await uow.session.get(Organization, rx.organization_id)
    assert patient is not None and org is not None
    rows, warnings, decisions = await _build_items(
        uow, principal, policy, enc=enc, patient=patient, org=org, items=items, overrides=overrides or {},
        now=now, exclude_rx=rx.id,
    )
    rx.items.clear()
    await uow.session.flush()
    rx.items.extend(rows)
    rx.warnings, rx.policy_decisions = warnings, decisions
    if note is not None:
        rx.note = note[:2000]
    rx.updated_at = now
    await uow.session.flush()
    _audit(uow, principal, "prescription.update", rx, items=[r.medication_code for r in rows])
    return rx


# --------------------------------------------------------------------------- signing


async def canonical_document(uow: UnitOfWork, rx: MedicationRequest) -> dict[str, Any]:
    # Column selects, not entity loads: Patient and User eagerly load their collections, which would
    # triple the queries on the signing path for data the document does not contain.
    patient = (await uow.session.execute(
        select(Patient.id, Patient.family_name, Patient.given_name, Patient.birth_date)
        .where(Patient.id == rx.patient_id)
    )).one()
    prescriber = (await uow.session.execute(
        select(User.id, User.display_name).where(User.id == rx.prescriber_id)
    )).one()
    return {
        "v": CANONICAL_VERSION,
        "id": str(rx.id),
        "rx_number": rx.rx_number,
        "organization_id": str(rx.organization_id),
        "encounter_id": str(rx.encounter_id),
        "patient": {"id": str(patient.id), "family_name": patient.family_name, "given_name": patient.given_name,
                    "birth_date": patient.birth_date.isoformat(), "jurisdiction": rx.jurisdiction},
        "prescriber": {"id": str(prescriber.id), "name": prescriber.display_name},
        "signed_at": rx.signed_at.isoformat() if rx.signed_at else None,
        "note": rx.note,
        "items": [_item_doc(i) for i in sorted(rx.items, key=lambda i: i.position)],
    }


def _item_doc(i: MedicationRequestItem) -> dict[str, Any]:
    return {
        "position": i.position, "medication_code": i.medication_code, "medication_name": i.medication_name,
        "atc": i.atc, "dose": i.dose, "dose_unit": i.dose_unit, "route": i.route, "frequency": i.frequency,
        "prn_max_per_day": i.prn_max_per_day, "duration_days": i.duration_days, "quantity": i.quantity,
        "refills": i.refills, "substitution_allowed": i.substitution_allowed,
        "note_to_pharmacist": i.note_to_pharmacist,
    }


async def _signing_key(uow: UnitOfWork, keystore: KeyStore, user_id: uuid.UUID) -> SigningKey:
    key = (await uow.session.execute(
        select(SigningKey).where(SigningKey.user_id == user_id, SigningKey.revoked_at.is_(None))
        .order_by(SigningKey.created_at.desc()).limit(1)
    )).scalar_one_or_none()
    if key is None:
        mat = keystore.generate()
        key = SigningKey(user_id=user_id, public_key=mat.public_hex, fingerprint=mat.fingerprint,
                         private_key_enc=mat.private_enc)
        uow.add(key)
        await uow.session.flush()
    return key


async def _controlled(uow: UnitOfWork, rx: MedicationRequest) -> list[str]:
    meds = (await uow.session.execute(
        select(Medication).where(Medication.id.in_([i.medication_id for i in rx.items]))
    )).scalars().all()
    return sorted({m.code for m in meds if m.categories_for(rx.jurisdiction)})


async def sign(uow: UnitOfWork, principal: Principal, rx_id: uuid.UUID, keystore: KeyStore, *,
               step_up_minutes: int, hooks: Hooks = NO_HOOKS, at: datetime | None = None) -> MedicationRequest:
    """Sign with the prescriber's Ed25519 key after a fresh second-factor step-up."""
    now = at or utcnow()
    rx = await load(uow, principal, rx_id, "prescription.write", lock=True)
    _require_author(principal, rx)
    if rx.status is not RxStatus.DRAFT:
        raise Conflict(f"prescription is already {rx.status.value}", code="immutable")
    org = await uow.session.get(Organization, rx.organization_id)
    assert org is not None
    controlled = await _controlled(uow, rx)
    fresh = principal.mfa_fresh(timedelta(minutes=step_up_minutes))
    step_up = "fresh"
    if not fresh:
        if controlled:
            # Like US EPCS: controlled substances always need two factors at signing, whatever the org says.
            raise Forbidden("signing a controlled-substance prescription needs a fresh second factor",
                            code="step_up_required", fields={"code": "POST /api/v1/auth/step-up first"})
        if org.require_2fa:
            raise Forbidden("signing needs a fresh second factor", code="step_up_required",
                            fields={"code": "POST /api/v1/auth/step-up first"})
        step_up = "waived_by_org_policy"
    key = await _signing_key(uow, keystore, principal.user_id)  # type: ignore[arg-type]
    rx.signed_at = now
    content = canonical_bytes(await canonical_document(uow, rx))
    rx.signature = base64.b64encode(keystore.sign(key.private_key_enc, content)).decode()
    rx.key_fingerprint = key.fingerprint
    rx.signed_content = content.decode()
    rx.signed_sha256 = hashlib.sha256(content).hexdigest()
    rx.expires_at = _validity_end(now, rx.jurisdiction, org.timezone, hooks.validity_days)
    _transition(rx, RxStatus.SIGNED)
    _audit(uow, principal, "prescription.sign", rx, key_fingerprint=key.fingerprint, sha256=rx.signed_sha256,
           step_up=step_up, controlled=controlled)
    return rx


def verify_document(rx: MedicationRequest, public_hex: str | None,
                    current: dict[str, Any] | None = None) -> VerificationResult:
    """Pure check: the signature covers ``signed_content``, and (given ``current``, rebuilt from the rows)
    the rows still say what was signed."""
    if rx.signed_content is None:
        return VerificationResult(False, "not signed")
    result = verify_bytes(rx.signed_content.encode(), rx.signature, public_hex, rx.key_fingerprint)
    if not result.ok or current is None:
        return result
    signed = json.loads(rx.signed_content)
    # Patient and prescriber names may legitimately change later; the signed snapshot is authoritative for them.
    for k in ("patient", "prescriber"):
        current[k] = signed.get(k)
    if canonical_bytes(current) != rx.signed_content.encode():
        return VerificationResult(False, "stored prescription differs from what was signed")
    return result


async def verify(uow: UnitOfWork, rx: MedicationRequest) -> VerificationResult:
    key = None
    if rx.key_fingerprint:
        key = (await uow.session.execute(
            select(SigningKey).where(SigningKey.fingerprint == rx.key_fingerprint)
        )).scalar_one_or_none()
    current = await canonical_document(uow, rx) if rx.signed_content else None
    return verify_document(rx, key.public_key if key else None, current)


# --------------------------------------------------------------------------- token


@dataclass(frozen=True)
class Token:
    rx_number: str
    access_code: str

    @property
    def text(self) -> str:
        return f"Task/{self.rx_number}/$accept?ac={self.access_code}"


def qr_svg(prescription_token: str) -> str:
    """An SVG QR code of ``Task/<id>/$accept?ac=<code>`` for the patient to show at any pharmacy."""
    return str(segno.make(prescription_token, error="m").svg_inline(scale=4))


async def issue_token(uow: UnitOfWork, principal: Principal, rx_id: uuid.UUID) -> Token:
    """A fresh access code, shown this once; any earlier code stops working."""
    rx = await load(uow, principal, rx_id)
    is_patient = rx.patient_id in principal.patient_ids
    if not is_patient and rx.prescriber_id != principal.user_id:
        raise Forbidden("only the patient or the prescriber may get the prescription token")
    if rx.status not in (RxStatus.SIGNED, RxStatus.SENT, RxStatus.REJECTED):
        raise Conflict(f"no token for a prescription that is {rx.status.value}", code="bad_state")
    code = ids.new_access_code()
    rx.access_code_hash = ids.hash_access_code(code)
    rx.token_shown_at = utcnow()
    _audit(uow, principal, "prescription.token", rx)
    return Token(rx.rx_number, code)


# --------------------------------------------------------------------------- routing


async def search_pharmacies(uow: UnitOfWork, q: str, limit: int = 20) -> list[Organization]:
    stmt = select(Organization).where(Organization.kind == OrgKind.PHARMACY)
    q = q.strip()
    if q:
        like = f"%{q.lower()}%"
        stmt = stmt.where(or_(Organization.name.ilike(like), Organization.address.ilike(like),
                              Organization.postal_code.like(f"{q}%")))
    return list((await uow.session.execute(stmt.order_by(Organization.name).limit(limit))).scalars())


def _check_not_expired(rx: MedicationRequest, now: datetime) -> None:
    if rx.expires_at is not None and now >= rx.expires_at:
        raise Gone("the prescription has expired", code="expired")


async def send(uow: UnitOfWork, principal: Principal, rx_id: uuid.UUID, *, pharmacy_id: uuid.UUID | None = None,
               open_routing: bool = False, hooks: Hooks = NO_HOOKS) -> MedicationRequest:
    """Route a signed (or handed-back) prescription: to a pharmacy, or open for any pharmacy to claim."""
    now = utcnow()
    rx = await load(uow, principal, rx_id, "prescription.route", lock=True)
    if rx.status not in (RxStatus.SIGNED, RxStatus.REJECTED):
        raise Conflict(f"cannot send a prescription that is {rx.status.value}", code="illegal_transition")
    _check_not_expired(rx, now)
    if open_routing:
        if pharmacy_id is not None:
            raise Invalid("choose a pharmacy or open routing, not both", fields={"pharmacy_id": "omit for open"})
        rx.pharmacy_id, rx.routing = None, "open"
    else:
        if pharmacy_id is None:
            pharmacy_id = (await uow.session.execute(
                select(Patient.nominated_pharmacy_id).where(Patient.id == rx.patient_id)
            )).scalar_one_or_none()
        if pharmacy_id is None:
            raise Invalid("no pharmacy chosen and none nominated", fields={"pharmacy_id": "required"})
        ph = await uow.session.get(Organization, pharmacy_id)
        if ph is None or ph.kind is not OrgKind.PHARMACY:
            raise Invalid("not a pharmacy", fields={"pharmacy_id": "unknown pharmacy"})
        rx.pharmacy_id, rx.routing = ph.id, "nominated"
    _transition(rx, RxStatus.SENT)
    rx.sent_at = now
    _audit(uow, principal, "prescription.send", rx, routing=rx.routing,
           pharmacy_id=str(rx.pharmacy_id) if rx.pharmacy_id else None)
    if rx.pharmacy_id is not None:
        hooks.emit(uow, "prescription.routed", rx.pharmacy_id, rx.id)
    return rx


async def claim(uow: UnitOfWork, principal: Principal, *, rx_number: str, access_code: str,
                pharmacy_id: uuid.UUID, hooks: Hooks = NO_HOOKS) -> MedicationRequest:
    """A pharmacy takes an open prescription with its number and access code; exactly one claim can win."""
    number = ids.parse_rx_number(rx_number)
    authorize(principal, "pharmacy.inbox", Resource("Organization", organization_id=pharmacy_id))
    ph = await uow.session.get(Organization, pharmacy_id)
    if ph is None or ph.kind is not OrgKind.PHARMACY:
        raise Invalid("not a pharmacy", fields={"pharmacy_id": "unknown pharmacy"})
    rx = (await uow.session.execute(
        select(MedicationRequest).where(MedicationRequest.rx_number == number)
    )).scalar_one_or_none()
    if rx is None or rx.access_code_hash is None or not ids.access_code_matches(access_code, rx.access_code_hash):
        # Same answer for an unknown number and a wrong code, so numbers cannot be probed.
        raise NotFound("no prescription with this number and access code", fields={"access_code": "not valid"})
    now = utcnow()
    _check_not_expired(rx, now)
    # The conditional UPDATE is the lock: concurrent claims all run it, the database lets exactly one match.
    result = cast(CursorResult[Any], await uow.session.execute(
        update(MedicationRequest)
        .where(MedicationRequest.id == rx.id, MedicationRequest.status == RxStatus.SENT,
               MedicationRequest.pharmacy_id.is_(None), MedicationRequest.routing == "open")
        .values(pharmacy_id=pharmacy_id, status=RxStatus.ACCEPTED, accepted_at=now, updated_at=now)
        .execution_options(synchronize_session=False)
    ))
    if result.rowcount != 1:
        raise Conflict("this prescription has already been claimed or is not open", code="already_claimed")
    await uow.session.refresh(rx)
    _audit(uow, principal, "prescription.claim", rx, pharmacy_id=str(pharmacy_id))
    hooks.emit(uow, "prescription.claimed", pharmacy_id, rx.id)
    hooks.notify(uow, rx.patient_id, "prescription.accepted", {"rx_number": rx.rx_number, "pharmacy": ph.name})
    return rx


# --------------------------------------------------------------------------- reading


async def get_prescription(uow: UnitOfWork, principal: Principal, rx_id: uuid.UUID) -> PrescriptionView:
    rx = await load(uow, principal, rx_id)
    _audit(uow, principal, "prescription.read", rx)
    dispenses = list((await uow.session.execute(
        select(MedicationDispense).where(MedicationDispense.request_id == rx.id)
        .order_by(MedicationDispense.dispensed_at)
    )).scalars())
    verification = await verify(uow, rx) if rx.signed_content else None
    return PrescriptionView(rx, verification, dispenses)


async def list_for_patient(uow: UnitOfWork, principal: Principal, patient_id: uuid.UUID) -> list[MedicationRequest]:
    patient = await uow.session.get(Patient, patient_id)
    if patient is None:
        raise NotFound("patient not found")
    authorize(principal, "prescription.read", Resource("Patient", organization_id=patient.organization_id,
                                                        id=patient.id, patient_id=patient.id))
    rows = list((await uow.session.execute(
        select(MedicationRequest).where(MedicationRequest.patient_id == patient_id)
        .order_by(MedicationRequest.created_at.desc()).limit(200)
    )).scalars())
    uow.audit.record(principal, "prescription.list", object_type="MedicationRequest",
                     organization_id=patient.organization_id, patient_id=patient.id, detail={"count": len(rows)})
    return rows


async def pharmacy_inbox(uow: UnitOfWork, principal: Principal, pharmacy_id: uuid.UUID) -> list[MedicationRequest]:
    authorize(principal, "pharmacy.inbox", Resource("Organization", organization_id=pharmacy_id))
    if pharmacy_id not in pharmacies_for(principal, "prescription.dispense"):
        raise Forbidden("not a pharmacist of this pharmacy")
    rows = list((await uow.session.execute(
        select(MedicationRequest).where(
            MedicationRequest.pharmacy_id == pharmacy_id,
            MedicationRequest.status.in_([RxStatus.SENT, RxStatus.ACCEPTED, RxStatus.DISPENSED_PARTIAL,
                                          RxStatus.DISPENSED]),
        ).order_by(MedicationRequest.sent_at).limit(500)
    )).scalars())
    uow.audit.record(principal, "pharmacy.inbox", object_type="MedicationRequest", organization_id=pharmacy_id,
                     detail={"count": len(rows)})
    return rows


# --------------------------------------------------------------------------- prescriber actions


async def cancel(uow: UnitOfWork, principal: Principal, rx_id: uuid.UUID, reason: str,
                 hooks: Hooks = NO_HOOKS) -> MedicationRequest:
    rx = await load(uow, principal, rx_id, "prescription.write", lock=True)
    _require_author(principal, rx)
    if rx.status not in CANCELLABLE:
        raise Conflict(f"cannot cancel a prescription that is {rx.status.value}", code="illegal_transition")
    pharmacy = rx.pharmacy_id
    _transition(rx, RxStatus.CANCELLED, reason)
    rx.closed_at = utcnow()
    _audit(uow, principal, "prescription.cancel", rx, reason=reason)
    if pharmacy is not None:
        hooks.emit(uow, "prescription.cancelled", pharmacy, rx.id)
    hooks.notify(uow, rx.patient_id, "prescription.cancelled", {"rx_number": rx.rx_number, "reason": reason})
    return rx


async def expire_due(uow: UnitOfWork, now: datetime | None = None) -> int:
    """Sweep: mark prescriptions past their validity as expired (run periodically)."""
    from clinic.security.authz import SYSTEM

    now = now or utcnow()
    rows = (await uow.session.execute(
        select(MedicationRequest).where(
            MedicationRequest.status.in_([RxStatus.SIGNED, RxStatus.SENT, RxStatus.ACCEPTED, RxStatus.REJECTED]),
            MedicationRequest.expires_at <= now,
        )
    )).scalars().all()
    for rx in rows:
        _transition(rx, RxStatus.EXPIRED, "validity period ended")
        rx.closed_at = now
        _audit(uow, SYSTEM, "prescription.expire", rx)
    return len(rows)


# --------------------------------------------------------------------------- pharmacy actions


async def _pharmacy_rx(uow: UnitOfWork, principal: Principal, rx_id: uuid.UUID) -> MedicationRequest:
    return await load(uow, principal, rx_id, "prescription.dispense", lock=True)


async def accept(uow: UnitOfWork, principal: Principal, rx_id: uuid.UUID, hooks: Hooks = NO_HOOKS) -> MedicationRequest:
    rx = await _pharmacy_rx(uow, principal, rx_id)
    _check_not_expired(rx, utcnow())
    result = await verify(uow, rx)
    if not result.ok:
        raise Conflict(f"signature check failed: {result.reason}", code="bad_signature")
    _transition(rx, RxStatus.ACCEPTED)
    rx.accepted_at = utcnow()
    _audit(uow, principal, "prescription.accept", rx)
    hooks.notify(uow, rx.patient_id, "prescription.accepted", {"rx_number": rx.rx_number})
    return rx


async def reject(uow: UnitOfWork, principal: Principal, rx_id: uuid.UUID, reason: str,
                 hooks: Hooks = NO_HOOKS) -> MedicationRequest:
    """Hand the prescription back; the patient may route it to another pharmacy."""
    rx = await _pharmacy_rx(uow, principal, rx_id)
    if not reason.strip():
        raise Invalid("a reason is required", fields={"reason": "required"})
    pharmacy = rx.pharmacy_id
    _transition(rx, RxStatus.REJECTED, reason)
    rx.rejections = [*rx.rejections, {"pharmacy_id": str(pharmacy), "reason": reason, "at": utcnow().isoformat()}]
    rx.pharmacy_id, rx.routing = None, ""
    _audit(uow, principal, "prescription.reject", rx, reason=reason, pharmacy_id=str(pharmacy))
    hooks.notify(uow, rx.patient_id, "prescription.rejected", {"rx_number": rx.rx_number, "reason": reason})
    return rx


async def ask_prescriber(uow: UnitOfWork, principal: Principal, rx_id: uuid.UUID,
                         question: str) -> ClarificationRequest:
    rx = await _pharmacy_rx(uow, principal, rx_id)
    if rx.status not in (RxStatus.SENT, RxStatus.ACCEPTED, RxStatus.DISPENSED_PARTIAL):
        raise Conflict(f"cannot query a prescription that is {rx.status.value}", code="bad_state")
    assert rx.pharmacy_id is not None
    c = ClarificationRequest(request_id=rx.id, prescriber_id=rx.prescriber_id, pharmacy_id=rx.pharmacy_id,
                             asked_by_id=principal.user_id, question=question)
    uow.add(c)
    await uow.session.flush()
    _audit(uow, principal, "prescription.query", rx, clarification_id=str(c.id))
    return c


async def prescriber_queue(uow: UnitOfWork, principal: Principal) -> tuple[list[ClarificationRequest],
                                                                             list[RenewalRequest]]:
    """Open questions from pharmacies and renewal requests from patients addressed to the caller."""
    if not orgs_for(principal, "prescription.write"):
        raise Forbidden("prescribers only")
    qs = list((await uow.session.execute(
        select(ClarificationRequest).where(ClarificationRequest.prescriber_id == principal.user_id,
                                           ClarificationRequest.answered_at.is_(None))
        .order_by(ClarificationRequest.asked_at)
    )).scalars())
    rs = list((await uow.session.execute(
        select(RenewalRequest).where(RenewalRequest.prescriber_id == principal.user_id,
                                     RenewalRequest.status == "open").order_by(RenewalRequest.created_at)
    )).scalars())
    uow.audit.record(principal, "prescription.queue", object_type="MedicationRequest",
                     detail={"clarifications": len(qs), "renewals": len(rs)})
    return qs, rs


async def answer_clarification(uow: UnitOfWork, principal: Principal, clarification_id: uuid.UUID,
                               answer: str, hooks: Hooks = NO_HOOKS) -> ClarificationRequest:
    c = await uow.session.get(ClarificationRequest, clarification_id)
    if c is None:
        raise NotFound("question not found")
    rx = await load(uow, principal, c.request_id, "prescription.write")
    if c.prescriber_id != principal.user_id:
        raise NotFound("question not found")
    if c.answered_at is not None:
        raise Conflict("already answered", code="already_answered")
    c.answer, c.answered_at = answer, utcnow()
    _audit(uow, principal, "prescription.answer", rx, clarification_id=str(c.id))
    hooks.emit(uow, "prescription.answered", c.pharmacy_id, rx.id)
    return c


@dataclass(frozen=True)
class DispenseLine:
    item_id: uuid.UUID
    quantity: Decimal
    lot_number: str
    expiry: str  # ISO date


async def dispense(uow: UnitOfWork, principal: Principal, rx_id: uuid.UUID, lines: Sequence[DispenseLine],
                   hooks: Hooks = NO_HOOKS) -> list[MedicationDispense]:
    rx = await _pharmacy_rx(uow, principal, rx_id)
    if rx.status not in (RxStatus.ACCEPTED, RxStatus.DISPENSED_PARTIAL):
        raise Conflict(f"cannot dispense a prescription that is {rx.status.value}", code="illegal_transition")
    if not lines:
        raise Invalid("nothing to dispense", fields={"lines": "at least one line"})
    items = {i.id: i for i in rx.items}
    errors: dict[str, str] = {}
    today = utcnow().date().isoformat()
    for n, ln in enumerate(lines):
        item = items.get(ln.item_id)
        if item is None:
            errors[f"lines.{n}.item_id"] = "not an item of this prescription"
            continue
        remaining = Decimal(item.quantity) - Decimal(item.dispensed_quantity)
        if ln.quantity <= 0 or ln.quantity > remaining:
            errors[f"lines.{n}.quantity"] = f"must be > 0 and ≤ the remaining {dosing.dec_str(remaining)}"
        if ln.expiry <= today:
            errors[f"lines.{n}.expiry"] = "the batch has expired"
    if len({ln.item_id for ln in lines}) != len(lines):
        errors["lines"] = "one line per item"
    if errors:
        raise Invalid("dispense lines are not valid", fields=errors)
    assert rx.pharmacy_id is not None
    out = []
    for ln in lines:
        item = items[ln.item_id]
        item.dispensed_quantity = dosing.dec_str(Decimal(item.dispensed_quantity) + ln.quantity)
        d = MedicationDispense(request_id=rx.id, item_id=item.id, pharmacy_id=rx.pharmacy_id,
                               pharmacist_id=principal.user_id, quantity=dosing.dec_str(ln.quantity),
                               lot_number=ln.lot_number, expiry=ln.expiry)
        uow.add(d)
        out.append(d)
    complete = all(Decimal(i.dispensed_quantity) >= Decimal(i.quantity) for i in rx.items)
    _transition(rx, RxStatus.DISPENSED if complete else RxStatus.DISPENSED_PARTIAL)
    await uow.session.flush()
    for d in out:
        uow.audit.record(principal, "prescription.dispense", object_type="MedicationDispense", object_id=d.id,
                         organization_id=rx.organization_id, patient_id=rx.patient_id,
                         detail={"request_id": str(rx.id), "quantity": d.quantity, "lot": d.lot_number})
    _audit(uow, principal, "prescription.status", rx, status=rx.status.value)
    hooks.notify(uow, rx.patient_id, "prescription." + rx.status.value, {"rx_number": rx.rx_number})
    return out


async def ready_for_pickup(uow: UnitOfWork, principal: Principal, rx_id: uuid.UUID,
                           hooks: Hooks = NO_HOOKS) -> MedicationRequest:
    rx = await _pharmacy_rx(uow, principal, rx_id)
    if rx.status not in (RxStatus.DISPENSED_PARTIAL, RxStatus.DISPENSED):
        raise Conflict("dispense before marking ready for pickup", code="bad_state")
    if rx.fulfilment == "delivery":
        raise Conflict("this prescription is out for delivery", code="bad_state")
    rx.fulfilment, rx.ready_at = "pickup", utcnow()
    _audit(uow, principal, "prescription.ready", rx)
    hooks.notify(uow, rx.patient_id, "prescription.ready", {"rx_number": rx.rx_number})
    return rx


async def close(uow: UnitOfWork, principal: Principal, rx_id: uuid.UUID, reason: str = "") -> MedicationRequest:
    """Finish: handed over, or no more will be dispensed of a partial."""
    rx = await _pharmacy_rx(uow, principal, rx_id)
    _transition(rx, RxStatus.CLOSED, reason)
    rx.closed_at = utcnow()
    _audit(uow, principal, "prescription.close", rx, reason=reason)
    return rx


# --------------------------------------------------------------------------- renewals


async def request_renewal(uow: UnitOfWork, principal: Principal, rx_id: uuid.UUID, message: str,
                          hooks: Hooks = NO_HOOKS) -> RenewalRequest:
    rx = await load(uow, principal, rx_id, "prescription.renew")
    if rx.status in (RxStatus.DRAFT, RxStatus.CANCELLED):
        raise Conflict("only issued prescriptions can be renewed", code="bad_state")
    r = RenewalRequest(request_id=rx.id, prescriber_id=rx.prescriber_id, patient_id=rx.patient_id,
                       message=message)
    uow.add(r)
    await uow.session.flush()
    _audit(uow, principal, "prescription.renewal_request", rx, renewal_id=str(r.id))
    hooks.emit(uow, "prescription.renewal_requested", rx.prescriber_id, rx.id)
    return r


async def decide_renewal(uow: UnitOfWork, principal: Principal, renewal_id: uuid.UUID, *, approve: bool,
                         response: str, hooks: Hooks = NO_HOOKS) -> RenewalRequest:
    r = await uow.session.get(RenewalRequest, renewal_id)
    if r is None or r.prescriber_id != principal.user_id:
        raise NotFound("renewal request not found")
    rx = await load(uow, principal, r.request_id, "prescription.write")
    if r.status != "open":
        raise Conflict("already decided", code="already_decided")
    r.status, r.response, r.decided_at = ("approved" if approve else "declined"), response, utcnow()
    _audit(uow, principal, "prescription.renewal_decide", rx, renewal_id=str(r.id), status=r.status)
    hooks.notify(uow, rx.patient_id, "prescription.renewal_" + r.status, {"rx_number": rx.rx_number})
    return r
