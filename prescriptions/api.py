"""Prescriptions API: prescribe, sign (with step-up), token and QR, routing and claims, pharmacy actions,
delivery, renewals and the FHIR export."""

from __future__ import annotations

import json
import re
import uuid
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Literal

from aiohttp import web
from pydantic import Field
from sqlalchemy import or_, select

from clinic.db.models import User, WebSession
from clinic.errors import Invalid, Unauthenticated
from clinic.policy import PolicyEngine
from clinic.security.authz import pharmacies_for
from clinic.services import accounts
from clinic.services.policy import PolicyService
from clinic.web.api import ApiContext, ApiRouter
from clinic.web.context import services
from clinic.web.schemas import Input, Ok, Output
from prescriptions import delivery as dsvc
from prescriptions import fhir
from prescriptions import service as svc
from prescriptions.models import Medication
from prescriptions.signing import KeyStore, LocalKeyStore
from prescriptions.state import DeliveryStatus, RxStatus

router = ApiRouter()
T = ("prescriptions",)
TD = ("delivery",)

FREQ = Literal["QD", "BID", "TID", "QID", "QHS", "Q4H", "Q6H", "Q8H", "Q12H", "QW", "PRN"]
_TOKEN_RE = re.compile(r"^Task/(?P<id>[0-9.]+)/\$accept\?ac=(?P<ac>[0-9a-fA-F]+)$")


# --------------------------------------------------------------------------- components


def policy_service(ctx: ApiContext) -> PolicyService:
    extra = services(ctx.app).extra
    p = extra.get("policy")
    if p is None:
        # Loaded once per app: parsing every rule set per request would dominate the prescribing time.
        p = extra.setdefault("policy", PolicyService(PolicyEngine.from_directory()))
    return p


def keystore(ctx: ApiContext) -> KeyStore:
    svcs = services(ctx.app)
    ks = svcs.extra.get("rx_keystore")
    if ks is None:
        ks = svcs.extra.setdefault("rx_keystore", LocalKeyStore(svcs.settings.secret_key))
    return ks


def hooks(ctx: ApiContext) -> svc.Hooks:
    extra = services(ctx.app).extra
    return svc.Hooks(events=extra.get("events"), notifier=extra.get("notifier"),
                     validity_days=extra.get("rx_validity_days") or dict(svc.VALIDITY_DAYS))


# --------------------------------------------------------------------------- schemas


class ItemIn(Input):
    medication_code: str = Field(min_length=1, max_length=100)
    dose: Decimal = Field(gt=0, le=10_000, max_digits=12, decimal_places=4)
    dose_unit: str | None = Field(default=None, max_length=64)
    route: str | None = Field(default=None, max_length=64)
    frequency: FREQ
    prn_max_per_day: int | None = Field(default=None, ge=1, le=24)
    duration_days: int = Field(ge=1, le=366)
    quantity: Decimal = Field(gt=0, le=1_000_000, max_digits=14, decimal_places=4)
    refills: int = Field(default=0, ge=0, le=11)
    substitution_allowed: bool = True
    note_to_pharmacist: str = Field(default="", max_length=1000)


class PrescriptionIn(Input):
    items: list[ItemIn] = Field(min_length=1, max_length=20)
    #: Warning key (as returned in the 422 fields, without "overrides.") → reason for overriding it.
    overrides: dict[str, str] = Field(default_factory=dict, max_length=40)
    note: str = Field(default="", max_length=2000)


class ItemOut(Output):
    id: uuid.UUID
    position: int
    medication_code: str
    medication_name: str
    atc: str
    dose: str
    dose_unit: str
    route: str
    frequency: str
    prn_max_per_day: int | None
    duration_days: int
    quantity: str
    refills: int
    substitution_allowed: bool
    note_to_pharmacist: str
    dispensed_quantity: str


class DispenseOut(Output):
    id: uuid.UUID
    item_id: uuid.UUID
    pharmacy_id: uuid.UUID
    quantity: str
    lot_number: str
    expiry: str
    dispensed_at: datetime


class VerificationOut(Output):
    ok: bool
    reason: str


class PrescriptionOut(Output):
    id: uuid.UUID
    rx_number: str
    status: RxStatus
    organization_id: uuid.UUID
    encounter_id: uuid.UUID
    patient_id: uuid.UUID
    prescriber_id: uuid.UUID
    pharmacy_id: uuid.UUID | None
    routing: str
    jurisdiction: str
    note: str
    warnings: list[Any]
    policy_decisions: list[Any]
    signed_at: datetime | None
    signature: str | None
    key_fingerprint: str | None
    signed_content: str | None
    expires_at: datetime | None
    sent_at: datetime | None
    accepted_at: datetime | None
    fulfilment: str
    status_reason: str
    created_at: datetime
    items: list[ItemOut]
    dispenses: list[DispenseOut] = Field(default_factory=list)
    verification: VerificationOut | None = None


class PrescriptionSummary(Output):
    id: uuid.UUID
    rx_number: str
    status: RxStatus
    patient_id: uuid.UUID
    pharmacy_id: uuid.UUID | None
    created_at: datetime
    expires_at: datetime | None


class PrescriptionList(Output):
    items: list[PrescriptionSummary]


class SendIn(Input):
    pharmacy_id: uuid.UUID | None = None
    open: bool = False


class TokenOut(Output):
    rx_number: str
    access_code: str
    token: str
    qr_svg: str


class ClaimIn(Input):
    rx_number: str | None = Field(default=None, max_length=32)
    access_code: str | None = Field(default=None, max_length=128)
    #: Alternatively the scanned QR text "Task/<id>/$accept?ac=<code>".
    token: str | None = Field(default=None, max_length=300)
    pharmacy_id: uuid.UUID | None = None


class ReasonIn(Input):
    reason: str = Field(min_length=1, max_length=500)


class OptionalReasonIn(Input):
    reason: str = Field(default="", max_length=500)


class QuestionIn(Input):
    question: str = Field(min_length=1, max_length=4000)


class AnswerIn(Input):
    answer: str = Field(min_length=1, max_length=4000)


class ClarificationOut(Output):
    id: uuid.UUID
    request_id: uuid.UUID
    pharmacy_id: uuid.UUID
    question: str
    answer: str | None
    asked_at: datetime
    answered_at: datetime | None


class RenewalIn(Input):
    message: str = Field(default="", max_length=2000)


class RenewalDecisionIn(Input):
    approve: bool
    response: str = Field(default="", max_length=2000)


class RenewalOut(Output):
    id: uuid.UUID
    request_id: uuid.UUID
    patient_id: uuid.UUID
    message: str
    status: str
    response: str
    created_at: datetime


class QueueOut(Output):
    clarifications: list[ClarificationOut]
    renewals: list[RenewalOut]


class DispenseLineIn(Input):
    item_id: uuid.UUID
    quantity: Decimal = Field(gt=0, le=1_000_000, max_digits=14, decimal_places=4)
    lot_number: str = Field(min_length=1, max_length=64)
    expiry: date


class DispenseIn(Input):
    lines: list[DispenseLineIn] = Field(min_length=1, max_length=20)


class DispenseList(Output):
    items: list[DispenseOut]


class PharmacyOut(Output):
    id: uuid.UUID
    name: str
    address: str
    postal_code: str
    phone: str


class PharmacyList(Output):
    items: list[PharmacyOut]


class PharmacyQuery(Input):
    q: str = Field(default="", max_length=100)
    limit: int = Field(default=20, ge=1, le=100)


class MedicationOut(Output):
    id: uuid.UUID
    code: str
    name: str
    name_ko: str | None
    inn: str
    atc: str
    dose_form: str
    strength: str
    route: str
    unit: str
    max_days_supply: int | None
    flags: dict[str, Any]


class MedicationList(Output):
    items: list[MedicationOut]


class StepUpIn(Input):
    code: str = Field(min_length=6, max_length=10)


class DeliveryIn(Input):
    recipient_name: str = Field(min_length=1, max_length=200)
    address: str = Field(min_length=1, max_length=500)
    postal_code: str = Field(min_length=1, max_length=20)
    country: str = Field(default="KR", pattern=r"^[A-Za-z]{2}$")
    phone: str = Field(default="", max_length=32)
    courier: str = Field(min_length=1, max_length=100)
    tracking_code: str = Field(default="", max_length=100)


class DeliveryStepIn(Input):
    status: DeliveryStatus
    note: str = Field(default="", max_length=500)
    tracking_code: str | None = Field(default=None, max_length=100)
    proof_recipient: str | None = Field(default=None, max_length=200)
    proof_kind: Literal["signature", "photo"] | None = None
    proof: str | None = Field(default=None, max_length=400_000)


class DeliveryOut(Output):
    id: uuid.UUID
    request_id: uuid.UUID
    pharmacy_id: uuid.UUID
    patient_id: uuid.UUID
    status: DeliveryStatus
    country: str
    recipient_name: str
    address: str
    postal_code: str
    courier: str
    tracking_code: str
    events: list[Any]
    proof_recipient: str | None
    proof_kind: str | None
    proof_sha256: str | None
    delivered_at: datetime | None
    created_at: datetime


# --------------------------------------------------------------------------- helpers


def _items(body: PrescriptionIn) -> list[svc.ItemInput]:
    return [svc.ItemInput(**i.model_dump()) for i in body.items]


def _out(view: svc.PrescriptionView) -> PrescriptionOut:
    out = PrescriptionOut.model_validate(view.rx)
    out.dispenses = [DispenseOut.model_validate(d) for d in view.dispenses]
    if view.verification is not None:
        out.verification = VerificationOut(ok=view.verification.ok, reason=view.verification.reason)
    return out


# --------------------------------------------------------------------------- auth step-up


@router.route("POST", "/auth/step-up", body=StepUpIn, response=Ok, tags=("accounts",))
async def step_up(ctx: ApiContext) -> Ok:
    """Re-verify the second factor for this session (needed before signing prescriptions)."""
    ws0, user0 = ctx.request.get("web_session"), ctx.request.get("user")
    if ws0 is None or user0 is None:
        raise Unauthenticated("step-up needs a browser session", code="session_required")
    ws = await ctx.uow.session.get(WebSession, ws0.id)
    user = await ctx.uow.session.get(User, user0.id)
    assert ws is not None and user is not None
    s = services(ctx.app)
    await accounts.verify_second_factor(ctx.uow, s.settings, s.mfa_limiter, ws, user, ctx.body.code,
                                        ip=ctx.principal.source_ip)
    return Ok()


# --------------------------------------------------------------------------- catalogue


@router.route("GET", "/pharmacies", query=PharmacyQuery, response=PharmacyList, tags=T)
async def list_pharmacies(ctx: ApiContext) -> PharmacyList:
    """Find pharmacies by name, address or postal code (to nominate one or route to it)."""
    rows = await svc.search_pharmacies(ctx.uow, ctx.query.q, ctx.query.limit)
    return PharmacyList(items=[PharmacyOut.model_validate(o) for o in rows])


@router.route("GET", "/medications", query=PharmacyQuery, response=MedicationList, tags=T)
async def list_medications(ctx: ApiContext) -> MedicationList:
    """Search the formulary by name, INN, ATC code or Korean name."""
    like = f"%{ctx.query.q.lower()}%"
    rows = (await ctx.uow.session.execute(
        select(Medication).where(Medication.active.is_(True), or_(
            Medication.name.ilike(like), Medication.inn.ilike(like), Medication.atc.ilike(like),
            Medication.name_ko.ilike(like), Medication.code.ilike(like)))
        .order_by(Medication.name).limit(ctx.query.limit)
    )).scalars()
    return MedicationList(items=[MedicationOut.model_validate(m) for m in rows])


# --------------------------------------------------------------------------- prescriber


@router.route("POST", "/encounters/{id}/prescriptions", body=PrescriptionIn, response=PrescriptionOut, status=201,
              tags=T, idempotent=True)
async def create(ctx: ApiContext) -> PrescriptionOut:
    """Write a draft prescription in an encounter (quantity, allergy, duplicate, days-supply and legal checks)."""
    rx = await svc.create_prescription(ctx.uow, ctx.principal, policy_service(ctx), encounter_id=ctx.path_uuid(),
                                       items=_items(ctx.body), overrides=ctx.body.overrides, note=ctx.body.note)
    return _out(svc.PrescriptionView(rx))


@router.route("PUT", "/prescriptions/{id}", body=PrescriptionIn, response=PrescriptionOut, tags=T)
async def update(ctx: ApiContext) -> PrescriptionOut:
    """Replace a draft's items; signed prescriptions are immutable (409)."""
    rx = await svc.update_draft(ctx.uow, ctx.principal, policy_service(ctx), ctx.path_uuid(), items=_items(ctx.body),
                                overrides=ctx.body.overrides, note=ctx.body.note)
    return _out(svc.PrescriptionView(rx))


@router.route("GET", "/prescriptions/{id}", response=PrescriptionOut, tags=T)
async def get(ctx: ApiContext) -> PrescriptionOut:
    """One prescription with its dispenses and signature check."""
    return _out(await svc.get_prescription(ctx.uow, ctx.principal, ctx.path_uuid()))


@router.route("GET", "/prescriptions/{id}/verify", response=VerificationOut, tags=T)
async def verify(ctx: ApiContext) -> VerificationOut:
    """Check the prescriber's signature against the stored prescription."""
    view = await svc.get_prescription(ctx.uow, ctx.principal, ctx.path_uuid())
    v = view.verification
    return VerificationOut(ok=bool(v and v.ok), reason=v.reason if v else "not signed")


@router.route("POST", "/prescriptions/{id}/sign", response=PrescriptionOut, tags=T, idempotent=True)
async def sign(ctx: ApiContext) -> PrescriptionOut:
    """Sign (needs a fresh step-up unless the organization waived 2FA; always for controlled drugs)."""
    rx = await svc.sign(ctx.uow, ctx.principal, ctx.path_uuid(), keystore(ctx),
                        step_up_minutes=services(ctx.app).settings.step_up_minutes, hooks=hooks(ctx))
    return _out(svc.PrescriptionView(rx))


@router.route("POST", "/prescriptions/{id}/send", body=SendIn, response=PrescriptionOut, tags=T, idempotent=True)
async def send(ctx: ApiContext) -> PrescriptionOut:
    """Route to a pharmacy (default: the patient's nominated one) or open for any pharmacy to claim."""
    rx = await svc.send(ctx.uow, ctx.principal, ctx.path_uuid(), pharmacy_id=ctx.body.pharmacy_id,
                        open_routing=ctx.body.open, hooks=hooks(ctx))
    return _out(svc.PrescriptionView(rx))


@router.route("POST", "/prescriptions/{id}/sign-and-send", body=SendIn, response=PrescriptionOut, tags=T,
              idempotent=True)
async def sign_and_send(ctx: ApiContext) -> PrescriptionOut:
    """Sign and route in one step (one transaction): what the prescriber's "sign and send" button does."""
    h = hooks(ctx)
    await svc.sign(ctx.uow, ctx.principal, ctx.path_uuid(), keystore(ctx),
                   step_up_minutes=services(ctx.app).settings.step_up_minutes, hooks=h)
    rx = await svc.send(ctx.uow, ctx.principal, ctx.path_uuid(), pharmacy_id=ctx.body.pharmacy_id,
                        open_routing=ctx.body.open, hooks=h)
    return _out(svc.PrescriptionView(rx))


@router.route("POST", "/prescriptions/{id}/token", response=TokenOut, tags=T)
async def token(ctx: ApiContext) -> TokenOut:
    """Issue the access code and QR (shown once; a new call replaces the previous code)."""
    t = await svc.issue_token(ctx.uow, ctx.principal, ctx.path_uuid())
    return TokenOut(rx_number=t.rx_number, access_code=t.access_code, token=t.text, qr_svg=svc.qr_svg(t.text))


@router.route("POST", "/prescriptions/{id}/token.pdf", tags=T, raw_response="application/pdf")
async def token_pdf(ctx: ApiContext) -> web.Response:
    """The printable prescription with its QR token (issues a fresh access code, like /token). ``?lang=ko|en``."""
    from prescriptions.document import prescription_pdf

    lang = ctx.request.query.get("lang")
    locale = lang if lang in ("ko", "en") else ctx.request.get("locale", "ko")
    pdf = await prescription_pdf(ctx.uow, ctx.principal, ctx.path_uuid(), locale=locale)
    return web.Response(body=pdf, content_type="application/pdf",
                        headers={"Content-Disposition": "inline; filename=prescription.pdf",
                                 "Cache-Control": "private, no-store"})


@router.route("POST", "/prescriptions/{id}/cancel", body=ReasonIn, response=PrescriptionOut, tags=T)
async def cancel(ctx: ApiContext) -> PrescriptionOut:
    """Cancel (prescriber, until dispensing starts)."""
    rx = await svc.cancel(ctx.uow, ctx.principal, ctx.path_uuid(), ctx.body.reason, hooks(ctx))
    return _out(svc.PrescriptionView(rx))


@router.route("GET", "/patients/{id}/prescriptions", response=PrescriptionList, tags=T)
async def for_patient(ctx: ApiContext) -> PrescriptionList:
    """A patient's prescriptions, newest first."""
    rows = await svc.list_for_patient(ctx.uow, ctx.principal, ctx.path_uuid())
    return PrescriptionList(items=[PrescriptionSummary.model_validate(r) for r in rows])


@router.route("GET", "/prescriber/queue", response=QueueOut, tags=T)
async def queue(ctx: ApiContext) -> QueueOut:
    """Open pharmacy questions and renewal requests addressed to me."""
    qs, rs = await svc.prescriber_queue(ctx.uow, ctx.principal)
    return QueueOut(clarifications=[ClarificationOut.model_validate(q) for q in qs],
                    renewals=[RenewalOut.model_validate(r) for r in rs])


@router.route("POST", "/clarifications/{id}/answer", body=AnswerIn, response=ClarificationOut, tags=T)
async def answer(ctx: ApiContext) -> ClarificationOut:
    """Answer a pharmacy's question."""
    c = await svc.answer_clarification(ctx.uow, ctx.principal, ctx.path_uuid(), ctx.body.answer, hooks(ctx))
    return ClarificationOut.model_validate(c)


@router.route("POST", "/prescriptions/{id}/renewal-requests", body=RenewalIn, response=RenewalOut, status=201,
              tags=T)
async def renewal(ctx: ApiContext) -> RenewalOut:
    """Patient asks the prescriber for a repeat."""
    r = await svc.request_renewal(ctx.uow, ctx.principal, ctx.path_uuid(), ctx.body.message, hooks(ctx))
    return RenewalOut.model_validate(r)


@router.route("POST", "/renewal-requests/{id}/decide", body=RenewalDecisionIn, response=RenewalOut, tags=T)
async def decide(ctx: ApiContext) -> RenewalOut:
    """Approve or decline a renewal request."""
    r = await svc.decide_renewal(ctx.uow, ctx.principal, ctx.path_uuid(), approve=ctx.body.approve,
                                 response=ctx.body.response, hooks=hooks(ctx))
    return RenewalOut.model_validate(r)


# --------------------------------------------------------------------------- pharmacy


@router.route("GET", "/pharmacies/{id}/inbox", response=PrescriptionList, tags=T)
async def inbox(ctx: ApiContext) -> PrescriptionList:
    """Prescriptions routed to this pharmacy and not finished."""
    rows = await svc.pharmacy_inbox(ctx.uow, ctx.principal, ctx.path_uuid())
    return PrescriptionList(items=[PrescriptionSummary.model_validate(r) for r in rows])


@router.route("POST", "/prescriptions/claim", body=ClaimIn, response=PrescriptionOut, tags=T, idempotent=True)
async def claim(ctx: ApiContext) -> PrescriptionOut:
    """Claim an open prescription with its number and access code (or the scanned QR text)."""
    b = ctx.body
    number, code = b.rx_number, b.access_code
    if b.token:
        m = _TOKEN_RE.match(b.token.strip())
        if m is None:
            raise Invalid("not a prescription token", fields={"token": "Task/<id>/$accept?ac=<code>"})
        number, code = m["id"], m["ac"]
    if not number or not code:
        raise Invalid("prescription number and access code are required",
                      fields={"rx_number": "required", "access_code": "required"})
    pharmacy_id = b.pharmacy_id
    if pharmacy_id is None:
        mine = pharmacies_for(ctx.principal, "prescription.dispense")
        if len(mine) != 1:
            raise Invalid("say which pharmacy claims it", fields={"pharmacy_id": "required"})
        pharmacy_id = next(iter(mine))
    rx = await svc.claim(ctx.uow, ctx.principal, rx_number=number, access_code=code, pharmacy_id=pharmacy_id,
                         hooks=hooks(ctx))
    return _out(svc.PrescriptionView(rx))


@router.route("POST", "/prescriptions/{id}/accept", response=PrescriptionOut, tags=T, idempotent=True)
async def accept(ctx: ApiContext) -> PrescriptionOut:
    """Accept a prescription routed to my pharmacy (after checking its signature)."""
    return _out(svc.PrescriptionView(await svc.accept(ctx.uow, ctx.principal, ctx.path_uuid(), hooks(ctx))))


@router.route("POST", "/prescriptions/{id}/reject", body=ReasonIn, response=PrescriptionOut, tags=T)
async def reject(ctx: ApiContext) -> PrescriptionOut:
    """Hand back with a reason; the patient may choose another pharmacy."""
    rx = await svc.reject(ctx.uow, ctx.principal, ctx.path_uuid(), ctx.body.reason, hooks(ctx))
    return _out(svc.PrescriptionView(rx))


@router.route("POST", "/prescriptions/{id}/queries", body=QuestionIn, response=ClarificationOut, status=201,
              tags=T)
async def query(ctx: ApiContext) -> ClarificationOut:
    """Ask the prescriber a question."""
    c = await svc.ask_prescriber(ctx.uow, ctx.principal, ctx.path_uuid(), ctx.body.question)
    return ClarificationOut.model_validate(c)


@router.route("POST", "/prescriptions/{id}/dispense", body=DispenseIn, response=DispenseList, status=201, tags=T,
              idempotent=True)
async def dispense(ctx: ApiContext) -> DispenseList:
    """Dispense all or part of the items (lot number and expiry per line)."""
    lines = [svc.DispenseLine(ln.item_id, ln.quantity, ln.lot_number, ln.expiry.isoformat())
             for ln in ctx.body.lines]
    rows = await svc.dispense(ctx.uow, ctx.principal, ctx.path_uuid(), lines, hooks(ctx))
    return DispenseList(items=[DispenseOut.model_validate(d) for d in rows])


@router.route("POST", "/prescriptions/{id}/ready", response=PrescriptionOut, tags=T)
async def ready(ctx: ApiContext) -> PrescriptionOut:
    """Mark ready for pickup (the patient is notified)."""
    return _out(svc.PrescriptionView(await svc.ready_for_pickup(ctx.uow, ctx.principal, ctx.path_uuid(),
                                                                hooks(ctx))))


@router.route("POST", "/prescriptions/{id}/close", body=OptionalReasonIn, response=PrescriptionOut, tags=T)
async def close(ctx: ApiContext) -> PrescriptionOut:
    """Close: handed over, or nothing more will be dispensed."""
    return _out(svc.PrescriptionView(await svc.close(ctx.uow, ctx.principal, ctx.path_uuid(), ctx.body.reason)))


# --------------------------------------------------------------------------- delivery


@router.route("POST", "/prescriptions/{id}/delivery", body=DeliveryIn, response=DeliveryOut, status=201, tags=TD,
              idempotent=True)
async def create_delivery(ctx: ApiContext) -> DeliveryOut:
    """Hand dispensed medicine to a courier — only where the law allows delivery for this patient."""
    b = ctx.body
    d = await dsvc.create_delivery(
        ctx.uow, ctx.principal, policy_service(ctx), ctx.path_uuid(),
        address=dsvc.Address(b.recipient_name, b.address, b.postal_code, b.country, b.phone),
        courier=b.courier, tracking_code=b.tracking_code, hooks=hooks(ctx),
    )
    return DeliveryOut.model_validate(d)


@router.route("GET", "/deliveries/{id}", response=DeliveryOut, tags=TD)
async def get_delivery(ctx: ApiContext) -> DeliveryOut:
    """A delivery with its time-stamped steps."""
    return DeliveryOut.model_validate(await dsvc.get_delivery(ctx.uow, ctx.principal, ctx.path_uuid()))


@router.route("POST", "/deliveries/{id}/status", body=DeliveryStepIn, response=DeliveryOut, tags=TD)
async def delivery_step(ctx: ApiContext) -> DeliveryOut:
    """Advance the delivery (created → picked_up → in_transit → delivered | failed | returned)."""
    b = ctx.body
    d = await dsvc.advance(ctx.uow, ctx.principal, ctx.path_uuid(), b.status, note=b.note,
                           tracking_code=b.tracking_code, proof_recipient=b.proof_recipient, proof_kind=b.proof_kind,
                           proof=b.proof, hooks=hooks(ctx))
    return DeliveryOut.model_validate(d)


# --------------------------------------------------------------------------- FHIR


@router.route("GET", "/prescriptions/{id}/fhir", tags=T, raw_response="application/fhir+json")
async def export_fhir(ctx: ApiContext) -> web.Response:
    """FHIR R4 Bundle (MedicationRequest, Medication, Patient, Practitioner, Organization, MedicationDispense)."""
    doc = await fhir.export(ctx.uow, ctx.principal, ctx.path_uuid())
    return web.Response(text=json.dumps(doc, ensure_ascii=False), content_type="application/fhir+json")
