"""Payment pages and wiring: the provider in ``services(app).extra``, the CSP for Stripe.js, the retry loop,
and the pages (the patient's payment step and receipts, the admin's fees, payments and refunds).

Pages only render what the services return; every action goes through the JSON API (``payments.js``).
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from aiohttp import web
from sqlalchemy import select

from clinic.db.clinical import Patient
from clinic.db.models import Organization, Role
from clinic.db.payments import PaymentStatus
from clinic.db.scheduling import Appointment, VisitType
from clinic.errors import Forbidden, Invalid, NotFound, Unauthenticated
from clinic.jobs import register_job
from clinic.payments import service as svc
from clinic.payments.money import format_major, minor_digits
from clinic.payments.provider import PaymentProvider, provider_from_settings
from clinic.security.authz import Principal
from clinic.web.context import services
from clinic.web.render import render

log = logging.getLogger(__name__)

STRIPE_CSP = " https://js.stripe.com https://api.stripe.com"
RETRY_INTERVAL_SECONDS = 60.0
#: ``services(app).extra`` key: set to False to keep the background retry loop off (tests, one-shot CLIs).
RETRY_LOOP_KEY = "payment_retry_loop"


def payment_provider(app: web.Application) -> PaymentProvider:
    """The app's provider; what the lead passes to the booking hooks."""
    provider: PaymentProvider = services(app).extra[svc.PROVIDER_KEY]
    return provider


def install(app: web.Application) -> None:
    svc_ = services(app)
    # Tests (and embedders) may inject their own provider through create_app(overrides=...).
    provider: PaymentProvider = svc_.extra.get(svc.PROVIDER_KEY) or provider_from_settings(svc_.settings)
    svc_.extra[svc.PROVIDER_KEY] = provider
    if provider.online:
        svc_.extra["csp_extra"] = STRIPE_CSP
    svc_.on_shutdown.append(provider.close)
    if provider.online and svc_.extra.get(RETRY_LOOP_KEY, True):
        register_job(app, "payments-retry", RETRY_INTERVAL_SECONDS, _retry_pass)

    # The booking and visit flows call these (see clinic.web.routes.scheduling / encounters).
    async def booked(uow: Any, a: Any, principal: Any) -> None:
        await svc.on_appointment_booked(uow, a, provider=payment_provider(app))

    async def cancelled(uow: Any, a: Any, principal: Any) -> None:
        from clinic.services.booking import is_staff

        await svc.on_appointment_cancelled(uow, a, provider=payment_provider(app),
                                           by_clinic=is_staff(principal, a.organization_id))

    async def completed(uow: Any, e: Any) -> None:
        await svc.on_encounter_completed(uow, e, provider=payment_provider(app))

    svc_.extra["on_appointment_booked"] = booked
    svc_.extra["on_appointment_cancelled"] = cancelled
    svc_.extra["on_encounter_completed"] = completed
    app.router.add_get("/pay/{appointment_id}", pay_page)
    app.router.add_get("/payments/receipts", receipts_page)
    app.router.add_get("/admin/payments", admin_page)


async def _retry_pass(app: web.Application) -> None:
    await svc.retry_pending(services(app).uow_factory, payment_provider(app))



def _principal(request: web.Request) -> Principal:
    p: Principal = request["principal"]
    if not p.authenticated or p.extra.get("mfa_pending"):
        raise Unauthenticated("sign in first")
    return p


def _uuid(raw: str, name: str) -> uuid.UUID:
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise Invalid("malformed identifier", fields={name: "must be a UUID"}) from None


async def pay_page(request: web.Request) -> web.Response:
    principal = _principal(request)
    appointment_id = _uuid(request.match_info["appointment_id"], "appointment_id")
    provider = payment_provider(request.app)
    async with services(request.app).uow_factory() as uow:
        p = await svc.payment_for_appointment(uow, principal, appointment_id)
        a = await uow.session.get(Appointment, appointment_id)
        vt = await uow.session.get(VisitType, p.visit_type_id)
        await uow.commit()
    assert a is not None and vt is not None
    return render(request, "payments/pay.html", {
        "payment": p, "appointment": a, "visit_type": vt, "provider": provider.name,
        "publishable_key": provider.browser_config().get("publishable_key", ""),
        "amount": format_major(p.amount, p.currency), "fee": format_major(p.fee_amount, p.currency),
    })


async def receipts_page(request: web.Request) -> web.Response:
    principal = _principal(request)
    async with services(request.app).uow_factory() as uow:
        rows = await svc.list_payments(uow, principal, patient_id=None)
        await uow.commit()
    return render(request, "payments/receipts.html", {
        "payments": [{"p": p, "amount": format_major(p.amount, p.currency),
                      "paid": format_major(p.captured_amount - p.refunded_amount, p.currency)} for p in rows],
    })


async def admin_page(request: web.Request) -> web.Response:
    principal = _principal(request)
    orgs = sorted(principal.orgs_with(Role.ORG_ADMIN), key=str)
    if not orgs:
        raise Forbidden("organization admins only", code="forbidden")
    raw = request.query.get("organization_id")
    org_id = _uuid(raw, "organization_id") if raw else orgs[0]
    status_raw = request.query.get("status") or None
    try:
        status = PaymentStatus(status_raw) if status_raw else None
    except ValueError:
        raise Invalid("unknown status", fields={"status": "not a payment status"}) from None
    async with services(request.app).uow_factory() as uow:
        fees = await svc.list_fees(uow, principal, org_id)
        rows = await svc.list_payments(uow, principal, organization_id=org_id, status=status, limit=200)
        org = await uow.session.get(Organization, org_id)
        if org is None:
            raise NotFound("organization not found")
        ids = {p.patient_id for p in rows}
        names = {pt.id: pt.full_name for pt in (await uow.session.execute(
            select(Patient).where(Patient.id.in_(ids)))).scalars()} if ids else {}
        await uow.commit()
    return render(request, "payments/admin.html", {
        "org": org, "org_ids": orgs, "status": status_raw or "", "statuses": [s.value for s in PaymentStatus],
        "fees": [{"vt": r.visit_type, "s": r.setting,
                  "fee": format_major(r.visit_type.fee_amount, r.visit_type.currency),
                  "coverage": (r.setting.default_coverage_bp if r.setting else 0) / 10000} for r in fees],
        "payments": [{"p": p, "patient": names.get(p.patient_id, ""), "amount": format_major(p.amount, p.currency),
                      "refundable": format_major(p.captured_amount - p.refunded_amount, p.currency),
                      "digits": minor_digits(p.currency)} for p in rows],
    })
