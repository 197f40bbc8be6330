"""Visit fees and their collection: the payment lifecycle, the booking hooks, refunds, webhooks, retries.

Rules that matter for money:

- One payment per appointment (UNIQUE); every change loads the row ``FOR UPDATE`` and goes through the
  transition table in ``clinic.payments.state``, so two concurrent "pay" requests cannot both succeed.
- Every provider call carries an idempotency key built from our payment id, the operation and (for the
  operations a person may legitimately repeat after a definite failure) an attempt or sequence number.
  When the provider is unreachable the operation is left in ``pending_op`` and :func:`retry_pending`
  resends it with the very same key, so the provider can never act on it twice.
- A declined card is a definite answer: the payment becomes ``failed`` (the booking is untouched) and the
  attempt number moves on so the patient's next try is a new request.
"""

from __future__ import annotations

import csv
import io
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, bindparam, func, or_, select
from sqlalchemy.exc import IntegrityError

from clinic.db.base import new_id, utcnow
from clinic.db.clinical import Patient
from clinic.db.encounters import Encounter
from clinic.db.models import Organization
from clinic.db.payments import FeeSetting, Payment, PaymentRefund, PaymentStatus, StripeCustomer, StripeEvent
from clinic.db.scheduling import Appointment, VisitType
from clinic.db.uow import UnitOfWork
from clinic.errors import Conflict, Invalid, NotFound
from clinic.payments.money import format_major, from_minor, share
from clinic.payments.provider import (
    IntentRequest,
    IntentResult,
    PaymentDeclined,
    PaymentProvider,
    ProviderError,
    ProviderUnavailable,
)
from clinic.payments.state import can_transition, refund_status, stripe_intent_status
from clinic.scheduling.slots import can_cancel
from clinic.security.authz import SYSTEM, Principal, Resource, authorize, orgs_for, patients_for

log = logging.getLogger(__name__)
S = PaymentStatus

#: Key of the provider in ``services(app).extra``.
PROVIDER_KEY = "payment_provider"
OPEN = (S.REQUIRES_PAYMENT, S.FAILED)
OFFLINE_METHODS = ("cash", "card_terminal", "transfer", "other")


def payment_resource(p: Payment) -> Resource:
    return Resource("Payment", organization_id=p.organization_id, id=p.id, patient_id=p.patient_id)


def idempotency_key(payment_id: uuid.UUID, op: str, n: int | None = None) -> str:
    """Deterministic: the same payment, operation and attempt always give the same key."""
    return f"tm-pay-{payment_id}-{op}" + ("" if n is None else f"-{n}")


def _metadata(p: Payment) -> dict[str, str]:
    return {"payment_id": str(p.id), "appointment_id": str(p.appointment_id),
            "organization_id": str(p.organization_id)}


def _set_status(p: Payment, target: PaymentStatus, *, strict: bool) -> bool:
    """Move ``p`` to ``target`` if the table allows it. Strict (a person asked): refuse with 409;
    otherwise (a provider answer or webhook, possibly late) ignore the backwards step."""
    if p.status == target and target is not S.PARTIALLY_REFUNDED:
        return False
    if not can_transition(p.status, target):
        if strict:
            if p.status.paid and target in (S.CAPTURED, S.WAIVED):
                raise Conflict("this visit has already been paid", code="already_paid")
            raise Conflict(f"payment is {p.status.value}; cannot become {target.value}", code="illegal_transition")
        log.info("payment %s: ignoring %s -> %s", p.id, p.status.value, target.value)
        return False
    p.status = target
    p.status_changed_at = utcnow()
    return True


def _require_open(p: Payment) -> None:
    """409 unless the visit still awaits payment (the check a second "pay" of a paid visit fails)."""
    if p.status in OPEN:
        return
    if p.status.paid or p.status in (S.AUTHORIZED, S.WAIVED):
        raise Conflict("this visit has already been paid or settled", code="already_paid")
    raise Conflict(f"payment is {p.status.value}", code="illegal_transition")


def _clear_pending(p: Payment) -> None:
    p.pending_op = ""
    p.pending_since = None


def _mark_pending(p: Payment, op: str) -> None:
    if p.pending_op != op:
        p.pending_since = utcnow()
    p.pending_op = op


def _provider_error(exc: ProviderError) -> Conflict:
    return Conflict(exc.message, code=exc.code)


# --- creation ------------------------------------------------------------------------------------------------


async def _fee_setting(uow: UnitOfWork, vt_id: uuid.UUID) -> FeeSetting | None:
    return (await uow.session.execute(
        select(FeeSetting).where(FeeSetting.visit_type_id == vt_id))).scalar_one_or_none()


async def _by_appointment(uow: UnitOfWork, appointment_id: uuid.UUID, *, lock: bool = False) -> Payment | None:
    q = select(Payment).where(Payment.appointment_id == appointment_id)
    if lock:
        q = q.with_for_update()
    return (await uow.session.execute(q)).scalar_one_or_none()


async def ensure_payment(uow: UnitOfWork, a: Appointment) -> Payment:
    """The appointment's payment, created from the visit type's fee on first use."""
    existing = await _by_appointment(uow, a.id, lock=True)
    if existing is not None:
        return existing
    try:
        async with uow.session.begin_nested():
            p = await _new_payment(uow, a)
    except IntegrityError:
        # A concurrent first use created it; the savepoint kept our transaction usable.
        found = await _by_appointment(uow, a.id, lock=True)
        if found is None:
            raise
        return found
    _audit_created(uow, p)
    return p


# Built once: every booking reads it.
_BILLING = select(FeeSetting.default_coverage_bp, FeeSetting.default_payer, FeeSetting.billing_code).where(
    FeeSetting.visit_type_id == bindparam("vt"))


async def _new_payment(uow: UnitOfWork, a: Appointment, *, flush: bool = True) -> Payment:
    """The appointment's payment, added to ``uow``; ``flush=False`` leaves the insert to the next flush (the
    commit's, at booking) when nothing needs it in the database sooner."""
    vt = await uow.session.get(VisitType, a.visit_type_id)
    if vt is None:
        raise NotFound("visit type not found")
    coverage, payer, billing_code = (await uow.read(_BILLING, {"vt": vt.id})).one_or_none() or (0, "", "")
    amount = vt.fee_amount - share(vt.fee_amount, coverage)
    p = Payment(id=new_id(), organization_id=a.organization_id, appointment_id=a.id, patient_id=a.patient_id,
                visit_type_id=vt.id, currency=vt.currency, fee_amount=vt.fee_amount, amount=amount,
                coverage_bp=coverage, insurance_payer=payer, billing_code=billing_code,
                # Nothing to collect (free visit type, or insurance pays all): never ask the patient.
                status=S.WAIVED if amount == 0 else S.REQUIRES_PAYMENT, method="no_charge" if amount == 0 else "",
                status_changed_at=utcnow())
    uow.add(p)
    if flush:
        await uow.session.flush()
    return p


def _audit_created(uow: UnitOfWork, p: Payment) -> None:
    uow.audit.record(SYSTEM, "payment.create", object_type="PaymentReconciliation", object_id=p.id,
                     organization_id=p.organization_id, patient_id=p.patient_id,
                     detail={"amount": p.amount, "currency": p.currency})


# --- provider operations (each records its own outcome; none raises for declines or outages) ---------------


async def _customer_id(uow: UnitOfWork, provider: PaymentProvider, p: Payment) -> str | None:
    row = (await uow.session.execute(
        select(StripeCustomer).where(StripeCustomer.patient_id == p.patient_id))).scalar_one_or_none()
    if row is not None:
        return row.customer_id
    patient = await uow.session.get(Patient, p.patient_id)
    if patient is None:
        raise NotFound("patient not found")
    # Keyed on the patient, not the payment: two first payments of one patient must not make two customers.
    cid = await provider.ensure_customer(email=patient.email, name=patient.full_name,
                                         idempotency_key=f"tm-patient-{patient.id}-customer",
                                         metadata={"patient_id": str(patient.id)})
    if cid is None:
        return None
    try:
        async with uow.session.begin_nested():
            uow.add(StripeCustomer(patient_id=patient.id, customer_id=cid))
            await uow.session.flush()
    except IntegrityError:
        pass  # stored by a concurrent payment of the same patient (same key, so the same customer)
    return cid


def _apply_intent(p: Payment, res: IntentResult) -> bool:
    p.intent_id = res.intent_id
    if res.client_secret:
        p.client_secret = res.client_secret
    target = stripe_intent_status(res.status)
    if target is None:
        return False
    changed = _set_status(p, target, strict=False)
    if changed and target is S.CAPTURED:
        p.captured_amount = res.amount_received or p.amount
        p.paid_at = utcnow()
        p.method = "card"
    return changed


async def _create_intent(uow: UnitOfWork, provider: PaymentProvider, p: Payment) -> None:
    _mark_pending(p, "authorize")
    p.provider = provider.name
    try:
        cid = await _customer_id(uow, provider, p)
        vt = await uow.session.get(VisitType, p.visit_type_id)
        res = await provider.create_intent(IntentRequest(
            amount=p.amount, currency=p.currency, customer_id=cid,
            idempotency_key=idempotency_key(p.id, "intent", p.attempt),
            description=(vt.name if vt else "Visit")[:200], metadata=_metadata(p)))
    except ProviderUnavailable:
        return  # stays pending; retry_pending resends with the same key
    _clear_pending(p)
    _apply_intent(p, res)


def _declined(p: Payment, exc: PaymentDeclined) -> None:
    _clear_pending(p)
    _set_status(p, S.FAILED, strict=False)
    p.failure_code = exc.code[:64]
    p.failure_message = exc.message[:300]
    p.attempt += 1  # the next try is a new request with a new key


async def _confirm(uow: UnitOfWork, provider: PaymentProvider, p: Payment, payment_method: str) -> None:
    assert p.intent_id is not None
    _mark_pending(p, "confirm")
    p.payment_method_ref = payment_method
    try:
        res = await provider.confirm(p.intent_id, payment_method=payment_method,
                                     idempotency_key=idempotency_key(p.id, "confirm", p.attempt))
    except ProviderUnavailable:
        return
    except PaymentDeclined as exc:
        _declined(p, exc)
        uow.audit.record(SYSTEM, "payment.declined", object_type="PaymentReconciliation", object_id=p.id,
                         organization_id=p.organization_id, patient_id=p.patient_id, detail={"code": exc.code})
        return
    _clear_pending(p)
    p.failure_code = p.failure_message = ""
    _apply_intent(p, res)


async def _capture(uow: UnitOfWork, provider: PaymentProvider, p: Payment) -> None:
    assert p.intent_id is not None
    _mark_pending(p, "capture")
    try:
        res = await provider.capture(p.intent_id, amount=None, idempotency_key=idempotency_key(p.id, "capture"))
    except ProviderUnavailable:
        return
    _clear_pending(p)
    _apply_intent(p, res)


async def _cancel_intent(uow: UnitOfWork, provider: PaymentProvider, p: Payment) -> None:
    assert p.intent_id is not None
    _mark_pending(p, "cancel")
    try:
        res = await provider.cancel(p.intent_id, idempotency_key=idempotency_key(p.id, "cancel", p.attempt))
    except ProviderUnavailable:
        return
    except ProviderError as exc:
        # Already captured or cancelled at Stripe: the webhook tells us which; nothing to release here.
        log.warning("payment %s: cancel refused: %s", p.id, exc.message)
        _clear_pending(p)
        return
    _clear_pending(p)
    _apply_intent(p, res)


async def _send_refund(uow: UnitOfWork, provider: PaymentProvider, p: Payment, r: PaymentRefund) -> None:
    assert p.intent_id is not None
    _mark_pending(p, "refund")
    try:
        res = await provider.refund(p.intent_id, amount=r.amount,
                                    idempotency_key=idempotency_key(p.id, "refund", r.seq),
                                    metadata={**_metadata(p), "refund_seq": str(r.seq)})
    except ProviderUnavailable:
        return
    except ProviderError:
        _clear_pending(p)
        r.status = "failed"
        raise
    _clear_pending(p)
    r.status = "succeeded"
    r.provider_ref = res.refund_id
    _book_refund(p, r.amount)


def _book_refund(p: Payment, amount: int) -> None:
    # A webhook may already have reported this refund (it carries the running total): never count twice.
    p.refunded_amount = min(p.captured_amount, p.refunded_amount + amount)
    _set_status(p, refund_status(p.captured_amount, p.refunded_amount), strict=False)


def _online(provider: PaymentProvider | None) -> bool:
    return provider is not None and provider.online


# --- hooks the booking and encounter services call ---------------------------------------------------------


async def on_appointment_booked(uow: UnitOfWork, appointment: Appointment, *,
                                provider: PaymentProvider | None = None) -> Payment:
    """Create the visit's payment; with an online provider, create the (manual-capture) intent at once.

    Never raises because of the provider: an unreachable Stripe leaves the booking standing with the
    payment pending, for :func:`retry_pending`.
    """
    # The appointment was created in this very transaction, so no one else can have made its payment yet,
    # and the payment can wait for the commit's flush.
    p = await _new_payment(uow, appointment, flush=False)
    _audit_created(uow, p)
    if _online(provider) and p.status in OPEN and p.intent_id is None:
        assert provider is not None
        try:
            await _create_intent(uow, provider, p)
        except ProviderError as exc:
            log.error("payment %s: could not create the intent at booking: %s", p.id, exc.message)
            _clear_pending(p)
    return p


async def on_appointment_cancelled(uow: UnitOfWork, appointment: Appointment, *,
                                   provider: PaymentProvider | None = None, by_clinic: bool = False,
                                   now: datetime | None = None) -> Payment | None:
    """Apply the clinic's cancellation window: cancelled with enough notice (or by the clinic) releases the
    authorization or refunds; later than that, an authorization is captured as the cancellation fee."""
    p = await _by_appointment(uow, appointment.id, lock=True)
    if p is None:
        return None
    org = await uow.session.get(Organization, appointment.organization_id)
    window = org.cancellation_window_hours if org else 24
    when = appointment.cancelled_at or now or utcnow()
    timely = by_clinic or can_cancel(appointment.start, when, window)
    before = p.status
    if p.status in OPEN:
        _set_status(p, S.CANCELLED, strict=False)
        if p.intent_id is not None:
            await _run_or_defer(uow, provider, p, "cancel")
        else:
            _clear_pending(p)  # an intent whose creation timed out can never be confirmed: no secret went out
    elif p.status is S.AUTHORIZED:
        await _run_or_defer(uow, provider, p, "cancel" if timely else "capture")
    elif p.status in (S.CAPTURED, S.PARTIALLY_REFUNDED) and timely and p.intent_id is not None:
        remaining = p.captured_amount - p.refunded_amount
        if remaining > 0:
            r = await _new_refund(uow, p, remaining, "appointment cancelled in time", None)
            if _online(provider):
                assert provider is not None
                try:
                    await _send_refund(uow, provider, p, r)
                except ProviderError as exc:
                    log.error("payment %s: refund on cancellation refused: %s", p.id, exc.message)
            else:
                _mark_pending(p, "refund")
    uow.audit.record(SYSTEM, "payment.appointment_cancelled", object_type="PaymentReconciliation", object_id=p.id,
                     organization_id=p.organization_id, patient_id=p.patient_id,
                     detail={"timely": timely, "from": before.value, "to": p.status.value,
                             "pending": p.pending_op})
    return p


async def on_encounter_completed(uow: UnitOfWork, encounter: Encounter, *,
                                 provider: PaymentProvider | None = None) -> Payment | None:
    """Capture the authorization once the visit has happened."""
    if encounter.appointment_id is None:
        return None
    p = await _by_appointment(uow, encounter.appointment_id, lock=True)
    if p is None or p.status is not S.AUTHORIZED:
        return p
    await _run_or_defer(uow, provider, p, "capture")
    return p


async def _run_or_defer(uow: UnitOfWork, provider: PaymentProvider | None, p: Payment, op: str) -> None:
    """Run a capture/cancel now if a provider was given; else leave it for :func:`retry_pending`."""
    if not _online(provider):
        _mark_pending(p, op)
        return
    assert provider is not None
    try:
        if op == "capture":
            await _capture(uow, provider, p)
        else:
            await _cancel_intent(uow, provider, p)
    except ProviderError as exc:
        log.error("payment %s: %s refused: %s", p.id, op, exc.message)
        _clear_pending(p)


# --- retry job ---------------------------------------------------------------------------------------------


async def _run_pending(uow: UnitOfWork, provider: PaymentProvider, p: Payment) -> None:
    op = p.pending_op
    if op == "authorize":
        if p.status in OPEN and p.intent_id is None:
            await _create_intent(uow, provider, p)
        else:
            _clear_pending(p)
    elif op == "confirm":
        if p.status in OPEN and p.intent_id and p.payment_method_ref:
            await _confirm(uow, provider, p, p.payment_method_ref)
        else:
            _clear_pending(p)
    elif op == "capture":
        await _capture(uow, provider, p) if p.status is S.AUTHORIZED else _clear_pending(p)
    elif op == "cancel":
        await _cancel_intent(uow, provider, p) if p.intent_id else _clear_pending(p)
    elif op == "refund":
        r = (await uow.session.execute(
            select(PaymentRefund).where(PaymentRefund.payment_id == p.id, PaymentRefund.status == "pending")
            .order_by(PaymentRefund.seq).limit(1))).scalar_one_or_none()
        if r is None or p.intent_id is None:
            _clear_pending(p)
        else:
            await _send_refund(uow, provider, p, r)
    else:
        _clear_pending(p)


async def retry_pending(uow_factory: Callable[[], UnitOfWork], provider: PaymentProvider, *,
                        limit: int = 100) -> int:
    """Resend every operation whose outcome is unknown, each with its original idempotency key.

    Returns how many were resolved. Each payment is handled in its own transaction so one failure does not
    hold back the others. Safe to run concurrently with itself (rows are locked) and as often as wanted.
    """
    if not provider.online:
        return 0
    async with uow_factory() as uow:
        ids = list((await uow.session.execute(
            select(Payment.id).where(Payment.pending_op != "").order_by(Payment.pending_since).limit(limit)
        )).scalars())
    resolved = 0
    for pid in ids:
        try:
            async with uow_factory() as uow:
                p = (await uow.session.execute(
                    select(Payment).where(Payment.id == pid).with_for_update())).scalar_one_or_none()
                if p is None or not p.pending_op:
                    continue
                op = p.pending_op
                try:
                    await _run_pending(uow, provider, p)
                except ProviderError as exc:
                    log.error("payment %s: retry of %s refused: %s", pid, op, exc.message)
                    _clear_pending(p)
                if not p.pending_op:
                    resolved += 1
                    uow.audit.record(SYSTEM, "payment.retry", object_type="PaymentReconciliation", object_id=p.id,
                                     organization_id=p.organization_id, patient_id=p.patient_id,
                                     detail={"op": op, "status": p.status.value})
                await uow.commit()
        except Exception:
            log.exception("payment %s: retry failed", pid)
    return resolved


# --- reads -------------------------------------------------------------------------------------------------


async def _load(uow: UnitOfWork, principal: Principal, payment_id: uuid.UUID, action: str = "payment.read",
                *, lock: bool = False) -> Payment:
    q = select(Payment).where(Payment.id == payment_id)
    if lock:
        q = q.with_for_update()
    p = (await uow.session.execute(q)).scalar_one_or_none()
    if p is None:
        raise NotFound("payment not found")
    authorize(principal, "payment.read", payment_resource(p))
    if action != "payment.read":
        authorize(principal, action, payment_resource(p), hide=False)
    return p


async def get_payment(uow: UnitOfWork, principal: Principal, payment_id: uuid.UUID) -> Payment:
    p = await _load(uow, principal, payment_id)
    uow.audit.record(principal, "payment.read", object_type="PaymentReconciliation", object_id=p.id,
                     organization_id=p.organization_id, patient_id=p.patient_id)
    return p


async def payment_for_appointment(uow: UnitOfWork, principal: Principal, appointment_id: uuid.UUID) -> Payment:
    a = await uow.session.get(Appointment, appointment_id)
    if a is None:
        raise NotFound("appointment not found")
    authorize(principal, "payment.read", Resource("Appointment", organization_id=a.organization_id, id=a.id,
                                                  patient_id=a.patient_id))
    p = await ensure_payment(uow, a)
    uow.audit.record(principal, "payment.read", object_type="PaymentReconciliation", object_id=p.id,
                     organization_id=p.organization_id, patient_id=p.patient_id)
    return p


async def list_payments(uow: UnitOfWork, principal: Principal, *, organization_id: uuid.UUID | None = None,
                        patient_id: uuid.UUID | None = None, status: PaymentStatus | None = None,
                        limit: int = 100, offset: int = 0) -> list[Payment]:
    orgs = orgs_for(principal, "payment.read")
    own = patients_for(principal, "payment.read")
    if organization_id is not None:
        orgs &= {organization_id}
    scope: list[ColumnElement[bool]] = []
    if orgs:
        scope.append(Payment.organization_id.in_(orgs))
    if own:
        scope.append(Payment.patient_id.in_(own))
    if not scope:
        return []
    cond: list[ColumnElement[bool]] = [or_(*scope)]
    if organization_id is not None:
        cond.append(Payment.organization_id == organization_id)
    if patient_id is not None:
        cond.append(Payment.patient_id == patient_id)
    if status is not None:
        cond.append(Payment.status == status)
    rows = (await uow.session.execute(
        select(Payment).where(*cond).order_by(Payment.created_at.desc(), Payment.id).limit(limit).offset(offset)
    )).scalars().all()
    uow.audit.record(principal, "payment.list", object_type="PaymentReconciliation", organization_id=organization_id,
                     patient_id=patient_id, detail={"count": len(rows)})
    return list(rows)


# --- actions by people -------------------------------------------------------------------------------------


async def start_payment(uow: UnitOfWork, principal: Principal, payment_id: uuid.UUID, provider: PaymentProvider,
                        *, payment_method: str | None = None) -> Payment:
    """The patient's payment step: make sure an intent exists (for the Payment Element) and, when a
    payment method is given (API clients, saved cards), confirm it now."""
    p = await _load(uow, principal, payment_id, "payment.pay", lock=True)
    if not provider.online:
        raise Conflict("this clinic collects payment itself", code="offline_payment")
    _require_open(p)
    try:
        if p.intent_id is None or p.pending_op == "authorize":
            await _create_intent(uow, provider, p)
        if payment_method and p.intent_id is not None and p.pending_op in ("", "confirm"):
            await _confirm(uow, provider, p, payment_method)
    except ProviderError as exc:
        # E.g. a different card sent while the previous confirmation is unresolved (same key, other params).
        raise _provider_error(exc) from None
    uow.audit.record(principal, "payment.pay", object_type="PaymentReconciliation", object_id=p.id,
                     organization_id=p.organization_id, patient_id=p.patient_id,
                     detail={"status": p.status.value, "pending": p.pending_op, "failure": p.failure_code})
    return p


async def _release_open_intent(uow: UnitOfWork, provider: PaymentProvider | None, p: Payment) -> None:
    """Before the clinic settles a visit by hand, make sure the patient can no longer pay it online too."""
    if p.intent_id is None:
        return
    if not _online(provider):
        _mark_pending(p, "cancel")
        return
    assert provider is not None
    await _cancel_intent(uow, provider, p)
    if p.pending_op == "cancel":
        raise Conflict("the payment provider is unreachable; try again shortly", code="provider_unavailable")


async def _settle_offline(uow: UnitOfWork, provider: PaymentProvider | None, p: Payment) -> None:
    """Before the clinic records a payment or waiver by hand: the payment is open, no online attempt is in
    flight, and any open online authorization is released."""
    _require_open(p)
    if p.pending_op:
        raise Conflict("an online payment attempt is still being resolved", code="payment_pending")
    await _release_open_intent(uow, provider, p)
    if p.status is S.CANCELLED:
        raise Conflict("the online payment could not be released", code="illegal_transition")


async def mark_paid(uow: UnitOfWork, principal: Principal, payment_id: uuid.UUID, *, method: str,
                    reference: str = "", note: str = "", provider: PaymentProvider | None = None) -> Payment:
    p = await _load(uow, principal, payment_id, "payment.manage", lock=True)
    if method not in OFFLINE_METHODS:
        raise Invalid("unknown payment method", fields={"method": f"one of {', '.join(OFFLINE_METHODS)}"})
    await _settle_offline(uow, provider, p)
    _set_status(p, S.CAPTURED, strict=True)
    p.captured_amount = p.amount
    p.paid_at = utcnow()
    p.method, p.reference, p.note = method, reference[:200], note[:500]
    uow.audit.record(principal, "payment.mark_paid", object_type="PaymentReconciliation", object_id=p.id,
                     organization_id=p.organization_id, patient_id=p.patient_id,
                     detail={"method": method, "amount": p.amount, "currency": p.currency})
    return p


async def waive(uow: UnitOfWork, principal: Principal, payment_id: uuid.UUID, *, reason: str,
                provider: PaymentProvider | None = None) -> Payment:
    p = await _load(uow, principal, payment_id, "payment.manage", lock=True)
    await _settle_offline(uow, provider, p)
    _set_status(p, S.WAIVED, strict=True)
    p.method, p.note = "waived", reason[:500]
    uow.audit.record(principal, "payment.waive", object_type="PaymentReconciliation", object_id=p.id,
                     organization_id=p.organization_id, patient_id=p.patient_id, detail={"reason": reason[:200]})
    return p


async def _new_refund(uow: UnitOfWork, p: Payment, amount: int, reason: str,
                      by: uuid.UUID | None) -> PaymentRefund:
    seq = (await uow.session.execute(
        select(func.coalesce(func.max(PaymentRefund.seq), 0)).where(PaymentRefund.payment_id == p.id)
    )).scalar_one() + 1
    r = PaymentRefund(payment_id=p.id, seq=seq, amount=amount, reason=reason[:300], created_by_id=by)
    uow.add(r)
    await uow.session.flush()
    return r


async def refund(uow: UnitOfWork, principal: Principal, payment_id: uuid.UUID, *, amount: int | None,
                 reason: str = "", provider: PaymentProvider | None = None) -> Payment:
    p = await _load(uow, principal, payment_id, "payment.manage", lock=True)
    if p.status not in (S.CAPTURED, S.PARTIALLY_REFUNDED):
        raise Conflict(f"only a paid visit can be refunded (payment is {p.status.value})", code="not_refundable")
    if p.pending_op:
        raise Conflict("a previous operation is still being resolved; try again shortly", code="payment_pending")
    remaining = p.captured_amount - p.refunded_amount
    amount = remaining if amount is None else amount
    if not 0 < amount <= remaining:
        raise Invalid("refund amount out of range",
                      fields={"amount": f"1 to {remaining} (minor units of {p.currency})"})
    r = await _new_refund(uow, p, amount, reason, principal.user_id)
    if p.intent_id is None:
        # Collected by the clinic itself: the refund is handed back the same way; we record it.
        r.status = "succeeded"
        _book_refund(p, amount)
    elif not _online(provider):
        raise Conflict("online payments are not configured", code="offline_payment")
    else:
        assert provider is not None
        try:
            await _send_refund(uow, provider, p, r)
        except ProviderError as exc:
            raise _provider_error(exc) from None
    uow.audit.record(principal, "payment.refund", object_type="PaymentReconciliation", object_id=p.id,
                     organization_id=p.organization_id, patient_id=p.patient_id,
                     detail={"amount": amount, "seq": r.seq, "status": r.status})
    return p


async def set_insurance(uow: UnitOfWork, principal: Principal, payment_id: uuid.UUID, *, payer: str,
                        coverage_bp: int, claim_code: str, provider: PaymentProvider | None = None) -> Payment:
    p = await _load(uow, principal, payment_id, "payment.manage", lock=True)
    if not 0 <= coverage_bp <= 10000:
        raise Invalid("coverage out of range", fields={"coverage": "between 0 and 1"})
    amount = p.fee_amount - share(p.fee_amount, coverage_bp)
    if amount != p.amount:
        # The patient's share changes: only before any money moved, and never under an intent for the old sum.
        if p.status not in OPEN or p.pending_op:
            raise Conflict("the patient's share cannot change once payment has started", code="payment_started")
        if p.intent_id is not None:
            await _release_open_intent(uow, provider, p)
            p.intent_id, p.client_secret = None, ""
            p.attempt += 1
            if p.status is S.CANCELLED:
                raise Conflict("the previous payment request could not be withdrawn", code="payment_started")
        p.amount = amount
        if amount == 0:
            _set_status(p, S.WAIVED, strict=True)
            p.method = "no_charge"
    p.insurance_payer, p.coverage_bp, p.claim_code = payer[:200], coverage_bp, claim_code[:64]
    uow.audit.record(principal, "payment.insurance", object_type="PaymentReconciliation", object_id=p.id,
                     organization_id=p.organization_id, patient_id=p.patient_id,
                     detail={"payer": payer[:200], "coverage_bp": coverage_bp})
    return p


# --- fee schedule ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FeeRow:
    visit_type: VisitType
    setting: FeeSetting | None


async def list_fees(uow: UnitOfWork, principal: Principal, org_id: uuid.UUID) -> list[FeeRow]:
    authorize(principal, "payment.read", Resource("FeeSchedule", organization_id=org_id))
    vts = (await uow.session.execute(
        select(VisitType).where(VisitType.organization_id == org_id).order_by(VisitType.code))).scalars().all()
    settings = {s.visit_type_id: s for s in (await uow.session.execute(
        select(FeeSetting).where(FeeSetting.organization_id == org_id))).scalars()}
    return [FeeRow(v, settings.get(v.id)) for v in vts]


async def set_fee(uow: UnitOfWork, principal: Principal, org_id: uuid.UUID, visit_type_id: uuid.UUID, *,
                  fee_amount: int | None = None, currency: str | None = None, billing_code: str | None = None,
                  default_payer: str | None = None, default_coverage_bp: int | None = None) -> FeeRow:
    from clinic.services import booking

    authorize(principal, "payment.manage", Resource("FeeSchedule", organization_id=org_id))
    changes: dict[str, Any] = {}
    if fee_amount is not None:
        changes["fee_amount"] = fee_amount
    if currency is not None:
        changes["currency"] = currency
    if changes:
        # The fee itself lives on the visit type; its own service validates and audits the change.
        vt = await booking.update_visit_type(uow, principal, org_id, visit_type_id, changes)
    else:
        vt = await booking.get_visit_type(uow, principal, org_id, visit_type_id)
    fs = await _fee_setting(uow, vt.id)
    if fs is None:
        fs = FeeSetting(organization_id=org_id, visit_type_id=vt.id)
        uow.add(fs)
    if billing_code is not None:
        fs.billing_code = billing_code
    if default_payer is not None:
        fs.default_payer = default_payer
    if default_coverage_bp is not None:
        if not 0 <= default_coverage_bp <= 10000:
            raise Invalid("coverage out of range", fields={"default_coverage": "between 0 and 1"})
        fs.default_coverage_bp = default_coverage_bp
    await uow.session.flush()
    uow.audit.record(principal, "payment.fee_update", object_type="ChargeItemDefinition", object_id=vt.id,
                     organization_id=org_id, detail={"fee_amount": vt.fee_amount, "currency": vt.currency})
    return FeeRow(vt, fs)


# --- webhooks ----------------------------------------------------------------------------------------------


class DuplicateEvent(Exception):
    """This event id was processed already (possibly by a concurrent delivery)."""


def _uuid(raw: Any) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(raw))
    except ValueError:
        return None


async def _payment_for_object(uow: UnitOfWork, obj: dict[str, Any], kind: str) -> Payment | None:
    pid = _uuid((obj.get("metadata") or {}).get("payment_id"))
    intent = obj.get("id") if kind == "payment_intent" else obj.get("payment_intent")
    cond: list[ColumnElement[bool]] = []
    if pid is not None:
        cond.append(Payment.id == pid)
    if intent:
        cond.append(Payment.intent_id == str(intent))
    if not cond:
        return None
    return (await uow.session.execute(
        select(Payment).where(or_(*cond)).with_for_update().limit(1))).scalar_one_or_none()


async def handle_stripe_event(uow: UnitOfWork, event: dict[str, Any]) -> str:
    """Apply one verified event exactly once. Returns applied | ignored | unknown_object; raises
    :class:`DuplicateEvent` for an event id seen before (the caller rolls back and answers 200)."""
    event_id, etype = str(event.get("id", "")), str(event.get("type", ""))
    if not event_id:
        raise Invalid("event without id")
    seen = (await uow.session.execute(
        select(StripeEvent.id).where(StripeEvent.event_id == event_id))).scalar_one_or_none()
    if seen is not None:
        raise DuplicateEvent(event_id)
    record = StripeEvent(event_id=event_id[:255], type=etype[:100], outcome="ignored")
    uow.add(record)
    try:
        # Claim the id before acting: a concurrent delivery of the same event blocks here, then fails.
        await uow.session.flush()
    except IntegrityError:
        raise DuplicateEvent(event_id) from None
    obj = (event.get("data") or {}).get("object") or {}
    kind = str(obj.get("object", ""))
    if kind not in ("payment_intent", "charge", "refund"):
        return record.outcome
    p = await _payment_for_object(uow, obj, kind)
    if p is None:
        log.info("stripe event %s (%s) for an unknown object %s; acknowledged", event_id, etype, obj.get("id"))
        record.outcome = "unknown_object"
        return record.outcome
    record.payment_id = p.id
    before = p.status
    changed = False
    if etype == "payment_intent.amount_capturable_updated":
        p.intent_id = p.intent_id or str(obj.get("id"))
        changed = _set_status(p, S.AUTHORIZED, strict=False)
    elif etype == "payment_intent.succeeded":
        p.intent_id = p.intent_id or str(obj.get("id"))
        changed = _set_status(p, S.CAPTURED, strict=False)
        if changed:
            p.captured_amount = int(obj.get("amount_received") or p.amount)
            p.paid_at, p.method = utcnow(), "card"
    elif etype == "payment_intent.payment_failed":
        changed = _set_status(p, S.FAILED, strict=False)
        if changed:
            err = obj.get("last_payment_error") or {}
            p.failure_code = str(err.get("decline_code") or err.get("code") or "payment_failed")[:64]
            p.failure_message = str(err.get("message") or "")[:300]
            p.attempt += 1
    elif etype == "payment_intent.canceled":
        changed = _set_status(p, S.CANCELLED, strict=False)
    elif etype == "charge.refunded":
        total = min(int(obj.get("amount_refunded") or 0), p.captured_amount)
        if p.status.paid and total > p.refunded_amount:
            p.refunded_amount = total
            _set_status(p, refund_status(p.captured_amount, total), strict=False)
            changed = True
    if changed:
        if p.pending_op in ("authorize", "confirm") and p.status not in OPEN:
            _clear_pending(p)  # the webhook answered what the timed-out call could not
        record.outcome = "applied"
        uow.audit.record(SYSTEM, "payment.webhook", object_type="PaymentReconciliation", object_id=p.id,
                         organization_id=p.organization_id, patient_id=p.patient_id,
                         detail={"event": event_id, "type": etype, "from": before.value, "to": p.status.value})
    return record.outcome


# --- documents and exports ---------------------------------------------------------------------------------


async def receipt_pdf(uow: UnitOfWork, principal: Principal, payment_id: uuid.UUID, *, locale: str) -> bytes:
    from clinic.documents import OrgInfo, PatientInfo, ReceiptDoc, ReceiptLine, render_document_async
    from clinic.web.i18n import gettext as _

    p = await _load(uow, principal, payment_id)
    org = await uow.session.get(Organization, p.organization_id)
    patient = await uow.session.get(Patient, p.patient_id)
    vt = await uow.session.get(VisitType, p.visit_type_id)
    a = await uow.session.get(Appointment, p.appointment_id)
    assert org is not None and patient is not None and vt is not None and a is not None
    name = (vt.name_ko or vt.name) if locale == "ko" else vt.name
    paid = p.status.paid or p.status is S.WAIVED
    extra = {_("Visit", locale): f"{name}"}
    if p.insurance_payer:
        extra[_("Insurance payer", locale)] = p.insurance_payer
    if p.claim_code:
        extra[_("Claim code", locale)] = p.claim_code
    if p.refunded_amount:
        extra[_("Refunded", locale)] = format_major(p.refunded_amount, p.currency) + " " + p.currency
    if p.status is S.WAIVED:
        extra[_("Status", locale)] = _("Waived", locale)
    doc = ReceiptDoc(
        document_id=f"RC-{p.id.hex[:12].upper()}",
        organization=OrgInfo(name=org.name, address=org.address, phone=org.phone, timezone=org.timezone),
        patient=PatientInfo(name=patient.full_name, birth_date=patient.birth_date),
        issued_at=p.paid_at or a.start,
        currency=p.currency,
        lines=(ReceiptLine(name, from_minor(p.fee_amount, p.currency), code=p.billing_code),),
        insurance_amount=from_minor(p.fee_amount - p.amount, p.currency),
        paid_amount=(from_minor(p.captured_amount - p.refunded_amount, p.currency) if p.status.paid
                     else from_minor(p.amount, p.currency) if p.status is S.WAIVED else None),
        payment_method=_method_label(p.method, locale),
        payment_reference=p.intent_id or p.reference,
        kind="receipt" if paid else "invoice",
        extra=extra,
    )
    uow.audit.record(principal, "payment.receipt", object_type="PaymentReconciliation", object_id=p.id,
                     organization_id=p.organization_id, patient_id=p.patient_id)
    return await render_document_async(doc, locale=locale)


def _method_label(method: str, locale: str) -> str:
    from clinic.web.i18n import gettext as _

    labels = {"card": _("Card", locale), "cash": _("Cash", locale), "card_terminal": _("Card terminal", locale),
              "transfer": _("Bank transfer", locale), "other": _("Other", locale),
              "waived": _("Waived", locale), "no_charge": _("No charge", locale)}
    return labels.get(method, method)


EXPORT_COLUMNS = (
    "appointment_id", "visit_date", "visit_start", "patient_id", "patient_name", "birth_date", "visit_type_code",
    "visit_type", "appointment_status", "currency", "fee", "insurance_payer", "coverage", "claim_code",
    "billing_code", "insurance_amount", "patient_amount", "payment_status", "paid_amount", "refunded_amount",
    "payment_method", "payment_reference",
)


def _cell(v: Any) -> str:
    s = "" if v is None else str(v)
    # Spreadsheet formula injection: a name like "=HYPERLINK(…)" must stay text.
    return "'" + s if s[:1] in ("=", "+", "-", "@", "\t", "\r") else s


async def billing_export_csv(uow: UnitOfWork, principal: Principal, org_id: uuid.UUID, start: date,
                             end: date) -> str:
    """Visits whose local start date is in ``[start, end]``, with fees, payments and insurance fields."""
    authorize(principal, "payment.manage", Resource("BillingExport", organization_id=org_id))
    if end < start:
        raise Invalid("invalid range", fields={"to": "must not be before 'from'"})
    if (end - start).days > 366:
        raise Invalid("range too long", fields={"to": "at most one year"})
    org = await uow.session.get(Organization, org_id)
    if org is None:
        raise NotFound("organization not found")
    tz = ZoneInfo(org.timezone)
    lo = datetime.combine(start, time(0), tzinfo=tz).astimezone(UTC)
    hi = datetime.combine(end + timedelta(days=1), time(0), tzinfo=tz).astimezone(UTC)
    rows = (await uow.session.execute(
        select(Appointment, Payment, VisitType, Patient)
        .join(VisitType, VisitType.id == Appointment.visit_type_id)
        .join(Patient, Patient.id == Appointment.patient_id)
        .outerjoin(Payment, Payment.appointment_id == Appointment.id)
        .where(Appointment.organization_id == org_id, Appointment.start >= lo, Appointment.start < hi)
        .order_by(Appointment.start, Appointment.id)
    )).all()
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\r\n")
    w.writerow(EXPORT_COLUMNS)
    for a, p, vt, pat in rows:
        local = a.start.astimezone(tz)
        cur = p.currency if p else vt.currency
        fee = p.fee_amount if p else vt.fee_amount
        owed = p.amount if p else fee
        w.writerow([_cell(v) for v in (
            a.id, local.date().isoformat(), local.isoformat(timespec="minutes"), pat.id, pat.full_name,
            pat.birth_date.isoformat(), vt.code, vt.name, a.status.value, cur, format_major(fee, cur),
            p.insurance_payer if p else "", str(Decimal(p.coverage_bp) / 10000) if p else "0",
            p.claim_code if p else "", p.billing_code if p else "", format_major(fee - owed, cur),
            format_major(owed, cur), p.status.value if p else "", format_major(p.captured_amount, cur) if p else "0",
            format_major(p.refunded_amount, cur) if p else "0", p.method if p else "",
            (p.intent_id or p.reference) if p else "",
        )])
    uow.audit.record(principal, "payment.export", object_type="Bundle", organization_id=org_id,
                     detail={"from": start.isoformat(), "to": end.isoformat(), "rows": len(rows)})
    return buf.getvalue()
