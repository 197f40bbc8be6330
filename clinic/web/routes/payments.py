"""Payments API: a visit's payment, the patient's payment step, staff settlement and refunds, the fee
schedule, receipts, the billing export and the Stripe webhook."""

from __future__ import annotations

import json
import logging
import uuid
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Literal

import stripe
from aiohttp import web
from pydantic import Field, model_validator

from clinic.db.payments import Payment, PaymentStatus
from clinic.errors import DomainError, Invalid
from clinic.payments import service as svc
from clinic.payments.money import MoneyError, format_major, to_minor
from clinic.payments.provider import NoneProvider, PaymentProvider
from clinic.web import i18n
from clinic.web.api import ApiContext, ApiRouter
from clinic.web.context import services
from clinic.web.schemas import Input, Output

log = logging.getLogger(__name__)
router = ApiRouter()
T = ("payments",)
#: Stripe's own default: a signed payload older than this is a replay.
WEBHOOK_TOLERANCE_SECONDS = 300
MAX_WEBHOOK_BYTES = 256 * 1024


def provider_of(app: web.Application) -> PaymentProvider:
    provider: PaymentProvider = services(app).extra.get(svc.PROVIDER_KEY) or NoneProvider()
    return provider


def _coverage_bp(value: Decimal) -> int:
    bp = value * 10000
    if bp != bp.to_integral_value():
        raise ValueError("at most four decimal places")
    return int(bp)


class PaymentOut(Output):
    id: uuid.UUID
    organization_id: uuid.UUID
    appointment_id: uuid.UUID
    patient_id: uuid.UUID
    visit_type_id: uuid.UUID
    provider: str
    status: PaymentStatus
    currency: str
    fee_amount: int = Field(description="Minor units (won, yen, cents)")
    amount: int = Field(description="The patient's share, minor units")
    captured_amount: int
    refunded_amount: int
    fee_display: str = Field(description="Major units, e.g. 15000 or 12.50")
    amount_display: str
    insurance_payer: str
    coverage: Decimal = Field(description="Share paid by insurance, 0–1")
    claim_code: str
    billing_code: str
    method: str
    reference: str
    pending: bool = Field(description="An online operation is being retried (provider unreachable)")
    failure_code: str
    failure_message: str
    paid_at: datetime | None
    client_secret: str = Field(default="", description="For Stripe's Payment Element; only on the pay step")

    @classmethod
    def of(cls, p: Payment, *, with_secret: bool = False) -> PaymentOut:
        return cls(
            id=p.id, organization_id=p.organization_id, appointment_id=p.appointment_id, patient_id=p.patient_id,
            visit_type_id=p.visit_type_id, provider=p.provider, status=p.status, currency=p.currency,
            fee_amount=p.fee_amount, amount=p.amount, captured_amount=p.captured_amount,
            refunded_amount=p.refunded_amount, fee_display=format_major(p.fee_amount, p.currency),
            amount_display=format_major(p.amount, p.currency), insurance_payer=p.insurance_payer,
            coverage=Decimal(p.coverage_bp) / 10000, claim_code=p.claim_code, billing_code=p.billing_code,
            method=p.method, reference=p.reference, pending=bool(p.pending_op), failure_code=p.failure_code,
            failure_message=_failure_text(p), paid_at=p.paid_at,
            client_secret=p.client_secret if with_secret and p.status in svc.OPEN else "",
        )


def _failure_text(p: Payment) -> str:
    if not p.failure_code:
        return ""
    # A clear, translated sentence for the patient; the provider's own wording is kept in the audit trail.
    if p.failure_code in ("card_declined", "generic_decline", "insufficient_funds", "do_not_honor"):
        return i18n.gettext("Your card was declined. Your booking is kept; please try another card.")
    return i18n.gettext("The payment did not go through. Your booking is kept; please try again.")


class PaymentList(Output):
    items: list[PaymentOut]


StatusName = Literal["requires_payment", "authorized", "captured", "partially_refunded", "refunded", "cancelled",
                     "failed", "waived"]


class PaymentQuery(Input):
    organization_id: uuid.UUID | None = None
    patient_id: uuid.UUID | None = None
    # A Literal, not the enum: query parameters are inlined into OpenAPI, where a $ref would dangle.
    status: StatusName | None = None
    limit: int = Field(default=100, ge=1, le=500)
    offset: int = Field(default=0, ge=0)


class PayIn(Input):
    payment_method: str | None = Field(default=None, min_length=3, max_length=255, pattern=r"^[A-Za-z0-9_]+$",
                                       description="Confirm now with this Stripe payment method id")


class MarkPaidIn(Input):
    method: str = Field(pattern=r"^(cash|card_terminal|transfer|other)$")
    reference: str = Field(default="", max_length=200)
    note: str = Field(default="", max_length=500)


class WaiveIn(Input):
    reason: str = Field(min_length=1, max_length=500)


class RefundIn(Input):
    amount: int | None = Field(default=None, ge=1, description="Minor units; the whole remainder if omitted")
    reason: str = Field(default="", max_length=300)


class InsuranceIn(Input):
    payer: str = Field(default="", max_length=200)
    coverage: Decimal = Field(default=Decimal(0), ge=0, le=1)
    claim_code: str = Field(default="", max_length=64)

    @model_validator(mode="after")
    def _precision(self) -> InsuranceIn:
        _coverage_bp(self.coverage)
        return self


@router.route("GET", "/payments", query=PaymentQuery, response=PaymentList, tags=T)
async def list_payments(ctx: ApiContext) -> PaymentList:
    """Payments the caller may see (own visits for patients, the organization's for admins)."""
    q = ctx.query
    rows = await svc.list_payments(ctx.uow, ctx.principal, organization_id=q.organization_id,
                                   patient_id=q.patient_id, status=PaymentStatus(q.status) if q.status else None,
                                   limit=q.limit, offset=q.offset)
    return PaymentList(items=[PaymentOut.of(p) for p in rows])


@router.route("GET", "/payments/{id}", response=PaymentOut, tags=T)
async def get_payment(ctx: ApiContext) -> PaymentOut:
    """One payment."""
    return PaymentOut.of(await svc.get_payment(ctx.uow, ctx.principal, ctx.path_uuid()))


@router.route("GET", "/appointments/{id}/payment", response=PaymentOut, tags=T)
async def appointment_payment(ctx: ApiContext) -> PaymentOut:
    """The payment of a visit (created from the fee schedule on first use)."""
    return PaymentOut.of(await svc.payment_for_appointment(ctx.uow, ctx.principal, ctx.path_uuid()))


@router.route("POST", "/payments/{id}/pay", body=PayIn, response=PaymentOut, tags=T, idempotent=True)
async def pay(ctx: ApiContext) -> PaymentOut:
    """The payment step: returns the client secret for Stripe's Payment Element, or confirms a given
    payment method. A declined card answers 200 with status ``failed`` and a message (the booking stays)."""
    p = await svc.start_payment(ctx.uow, ctx.principal, ctx.path_uuid(), provider_of(ctx.app),
                                payment_method=ctx.body.payment_method)
    return PaymentOut.of(p, with_secret=True)


@router.route("POST", "/payments/{id}/mark-paid", body=MarkPaidIn, response=PaymentOut, tags=T, idempotent=True)
async def mark_paid(ctx: ApiContext) -> PaymentOut:
    """Record that the clinic collected the fee itself (organization admins). 409 if already paid."""
    b = ctx.body
    p = await svc.mark_paid(ctx.uow, ctx.principal, ctx.path_uuid(), method=b.method, reference=b.reference,
                            note=b.note, provider=provider_of(ctx.app))
    return PaymentOut.of(p)


@router.route("POST", "/payments/{id}/waive", body=WaiveIn, response=PaymentOut, tags=T, idempotent=True)
async def waive(ctx: ApiContext) -> PaymentOut:
    """Forgo the fee (organization admins)."""
    p = await svc.waive(ctx.uow, ctx.principal, ctx.path_uuid(), reason=ctx.body.reason,
                        provider=provider_of(ctx.app))
    return PaymentOut.of(p)


@router.route("POST", "/payments/{id}/refund", body=RefundIn, response=PaymentOut, tags=T, idempotent=True)
async def refund(ctx: ApiContext) -> PaymentOut:
    """Refund all or part of a paid visit (organization admins)."""
    p = await svc.refund(ctx.uow, ctx.principal, ctx.path_uuid(), amount=ctx.body.amount, reason=ctx.body.reason,
                         provider=provider_of(ctx.app))
    return PaymentOut.of(p)


@router.route("PUT", "/payments/{id}/insurance", body=InsuranceIn, response=PaymentOut, tags=T)
async def set_insurance(ctx: ApiContext) -> PaymentOut:
    """Insurance payer, coverage share (0–1) and claim code of the visit (organization admins)."""
    b = ctx.body
    p = await svc.set_insurance(ctx.uow, ctx.principal, ctx.path_uuid(), payer=b.payer,
                                coverage_bp=_coverage_bp(b.coverage), claim_code=b.claim_code,
                                provider=provider_of(ctx.app))
    return PaymentOut.of(p)


class ReceiptQuery(Input):
    lang: Literal["ko", "en"] | None = Field(default=None, description="Document language; the caller's by default")


@router.route("GET", "/payments/{id}/receipt.pdf", query=ReceiptQuery, raw_response="application/pdf", tags=T)
async def receipt(ctx: ApiContext) -> web.Response:
    """Receipt (paid) or invoice (unpaid) as PDF, in the caller's language or ``lang``."""
    pid = ctx.path_uuid()
    pdf = await svc.receipt_pdf(ctx.uow, ctx.principal, pid, locale=ctx.query.lang or i18n.get_locale())
    return web.Response(body=pdf, content_type="application/pdf",
                        headers={"Content-Disposition": f'inline; filename="receipt-{pid}.pdf"'})


# --- fee schedule ------------------------------------------------------------------------------------------


class FeeOut(Output):
    visit_type_id: uuid.UUID
    code: str
    name: str
    name_ko: str
    active: bool
    currency: str
    fee_amount: int = Field(description="Minor units")
    fee_display: str = Field(description="Major units")
    billing_code: str
    default_payer: str
    default_coverage: Decimal


class FeeList(Output):
    items: list[FeeOut]


def _fee_out(row: svc.FeeRow) -> FeeOut:
    vt, fs = row.visit_type, row.setting
    return FeeOut(visit_type_id=vt.id, code=vt.code, name=vt.name, name_ko=vt.name_ko, active=vt.active,
                  currency=vt.currency, fee_amount=vt.fee_amount, fee_display=format_major(vt.fee_amount, vt.currency),
                  billing_code=fs.billing_code if fs else "", default_payer=fs.default_payer if fs else "",
                  default_coverage=Decimal(fs.default_coverage_bp if fs else 0) / 10000)


class FeeIn(Input):
    fee: Decimal | None = Field(default=None, ge=0, le=1_000_000_000,
                                description="Major units (15000 KRW, 12.50 USD); converted with the currency's digits")
    currency: str | None = Field(default=None, pattern=r"^[A-Z]{3}$")
    billing_code: str | None = Field(default=None, max_length=32)
    default_payer: str | None = Field(default=None, max_length=200)
    default_coverage: Decimal | None = Field(default=None, ge=0, le=1)

    @model_validator(mode="after")
    def _precision(self) -> FeeIn:
        if self.default_coverage is not None:
            _coverage_bp(self.default_coverage)
        return self


@router.route("GET", "/organizations/{org_id}/fees", response=FeeList, tags=T)
async def list_fees(ctx: ApiContext) -> FeeList:
    """The fee schedule: each visit type's fee, claim coding and default insurance (organization admins)."""
    rows = await svc.list_fees(ctx.uow, ctx.principal, ctx.path_uuid("org_id"))
    return FeeList(items=[_fee_out(r) for r in rows])


@router.route("PUT", "/organizations/{org_id}/fees/{visit_type_id}", body=FeeIn, response=FeeOut, tags=T)
async def set_fee(ctx: ApiContext) -> FeeOut:
    """Set a visit type's fee and billing details (organization admins). New bookings use it."""
    b = ctx.body
    org_id, vt_id = ctx.path_uuid("org_id"), ctx.path_uuid("visit_type_id")
    fee_minor: int | None = None
    if b.fee is not None:
        currency = b.currency
        if currency is None:
            current = {r.visit_type.id: r.visit_type for r in await svc.list_fees(ctx.uow, ctx.principal, org_id)}
            if vt_id not in current:
                raise Invalid("unknown visit type", code="not_found")
            currency = current[vt_id].currency
        try:
            fee_minor = to_minor(b.fee, currency)
        except MoneyError as exc:
            raise Invalid("invalid fee", fields={"fee": str(exc)}) from None
    coverage = None if b.default_coverage is None else _coverage_bp(b.default_coverage)
    row = await svc.set_fee(ctx.uow, ctx.principal, org_id, vt_id, fee_amount=fee_minor, currency=b.currency,
                            billing_code=b.billing_code, default_payer=b.default_payer, default_coverage_bp=coverage)
    return _fee_out(row)


class ExportQuery(Input):
    start: date = Field(alias="from")
    end: date = Field(alias="to")


@router.route("GET", "/organizations/{org_id}/billing/export.csv", query=ExportQuery, raw_response="text/csv",
              tags=T)
async def billing_export(ctx: ApiContext) -> web.Response:
    """Visits, fees, payments and insurance fields for a date range (organization admins), as CSV."""
    org_id = ctx.path_uuid("org_id")
    text = await svc.billing_export_csv(ctx.uow, ctx.principal, org_id, ctx.query.start, ctx.query.end)
    name = f"billing-{ctx.query.start.isoformat()}-{ctx.query.end.isoformat()}.csv"
    # A BOM so spreadsheet programs read the Korean names as UTF-8.
    return web.Response(body=("\ufeff" + text).encode("utf-8"), content_type="text/csv", charset="utf-8",
                        headers={"Content-Disposition": f'attachment; filename="{name}"'})


# --- Stripe webhook ----------------------------------------------------------------------------------------


class WebhookAck(Output):
    received: bool
    outcome: str


@router.route("POST", "/payments/stripe/webhook", response=WebhookAck, tags=T, public=True,
              upload="application/json")
async def stripe_webhook(ctx: ApiContext) -> WebhookAck:
    """Stripe event delivery: signature-checked, each event applied exactly once."""
    secret = services(ctx.app).settings.stripe_webhook_secret
    raw = await ctx.request.content.read(MAX_WEBHOOK_BYTES + 1)
    if len(raw) > MAX_WEBHOOK_BYTES:
        raise DomainError("payload too large", code="payload_too_large")
    if not secret:
        raise DomainError("webhooks are not configured", code="webhooks_disabled")
    sig = ctx.request.headers.get("Stripe-Signature", "")
    try:
        # Checks the HMAC and the timestamp (replays older than the tolerance are refused).
        stripe.Webhook.construct_event(raw, sig, secret, tolerance=WEBHOOK_TOLERANCE_SECONDS)
        event: dict[str, Any] = json.loads(raw)
    except (stripe.SignatureVerificationError, ValueError):
        log.warning("stripe webhook with a bad signature or payload refused")
        raise DomainError("bad signature", code="bad_signature") from None
    try:
        outcome = await svc.handle_stripe_event(ctx.uow, event)
    except svc.DuplicateEvent:
        await ctx.uow.rollback()
        outcome = "duplicate"
    return WebhookAck(received=True, outcome=outcome)
