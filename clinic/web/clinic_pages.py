"""Clinic pages: patient booking (``/book``), the patient portal (``/portal``), the doctor's live queue
(``/console``), the admin index (``/admin``) and the e-mail/SMS outbox (``/admin/outbox``).

Handlers stay thin: they read what the page needs through the services (which authorize and audit) and
render a shell; every action goes through the JSON API from the page's ES module.
"""

from __future__ import annotations

import uuid
from typing import Any

from aiohttp import web
from sqlalchemy import select

from clinic.db.models import Organization, OutboxMessage, Role
from clinic.errors import Forbidden, Invalid
from clinic.security.authz import Principal, Resource, authorize, orgs_for
from clinic.services import patients as patient_svc
from clinic.web.context import services
from clinic.web.render import render

#: Pages built by other features; linked only when their route is installed.
VISIT_PAGE = "/visit/{encounter_id}"
CONSOLE_VISIT_PAGE = "/console/visit/{encounter_id}"


def signed_in(request: web.Request) -> Principal:
    """The principal, or a redirect to sign-in that comes back here."""
    p: Principal = request["principal"]
    if p.extra.get("mfa_pending"):
        raise web.HTTPFound(f"/login/2fa?next={request.path}")
    if not p.authenticated:
        raise web.HTTPFound(f"/login?next={request.path}")
    return p


def has_route(app: web.Application, canonical: str) -> bool:
    return any(res.canonical == canonical for res in app.router.resources())


def _uuid(raw: str | None, name: str) -> uuid.UUID | None:
    if not raw:
        return None
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise Invalid("malformed identifier", fields={name: "must be a UUID"}) from None


async def _org_names(request: web.Request, ids: set[uuid.UUID]) -> dict[uuid.UUID, Organization]:
    if not ids:
        return {}
    async with services(request.app).uow_factory() as uow:
        rows = (await uow.session.execute(select(Organization).where(Organization.id.in_(ids)))).scalars()
        return {o.id: o for o in rows}


async def my_patients(request: web.Request, p: Principal) -> list[dict[str, Any]]:
    """The patient records the signed-in user is (or is the guardian of), read through the patient service."""
    out: list[dict[str, Any]] = []
    async with services(request.app).uow_factory() as uow:
        for pid in sorted(p.patient_ids, key=str):
            pt = await patient_svc.get_patient(uow, p, pid)
            out.append({"id": str(pt.id), "name": pt.full_name, "organization_id": str(pt.organization_id),
                        "family_name": pt.family_name, "given_name": pt.given_name,
                        "birth_date": pt.birth_date.isoformat(), "address": pt.address,
                        "postal_code": pt.postal_code, "phone": pt.phone,
                        "nominated_pharmacy_id": str(pt.nominated_pharmacy_id or "") or None})
        await uow.commit()
    orgs = await _org_names(request, {uuid.UUID(x["organization_id"]) for x in out}
                            | {uuid.UUID(x["nominated_pharmacy_id"]) for x in out if x["nominated_pharmacy_id"]})
    for x in out:
        org = orgs.get(uuid.UUID(x["organization_id"]))
        x["organization_name"] = org.name if org else ""
        x["timezone"] = org.timezone if org else "UTC"
        ph = orgs.get(uuid.UUID(x["nominated_pharmacy_id"])) if x["nominated_pharmacy_id"] else None
        x["nominated_pharmacy_name"] = ph.name if ph else ""
    return out


def _links(app: web.Application) -> dict[str, bool]:
    return {
        "visit": has_route(app, VISIT_PAGE),
        "console_visit": has_route(app, CONSOLE_VISIT_PAGE),
        "pay": has_route(app, "/pay/{appointment_id}"),
        "payments_admin": has_route(app, "/admin/payments"),
        "policy_admin": has_route(app, "/admin/policy"),
        "receipts": has_route(app, "/payments/receipts"),
    }


async def book_page(request: web.Request) -> web.Response:
    p = signed_in(request)
    patients = await my_patients(request, p)
    if not patients:
        raise Forbidden("booking is for patients; staff book from the patient's record", code="forbidden")
    return render(request, "book/index.html", {"page": {"patients": patients, "links": _links(request.app)}})


async def portal_page(request: web.Request) -> web.Response:
    p = signed_in(request)
    patients = await my_patients(request, p)
    if not patients:
        raise Forbidden("the portal is for patients", code="forbidden")
    return render(request, "portal/index.html", {"page": {"patients": patients, "links": _links(request.app)}})


async def console_page(request: web.Request) -> web.Response:
    p = signed_in(request)
    ids = orgs_for(p, "queue.read")
    if not ids:
        raise Forbidden("the consult queue is for clinicians", code="forbidden")
    orgs = await _org_names(request, ids)
    items = [{"id": str(o.id), "name": o.name, "timezone": o.timezone}
             for o in sorted(orgs.values(), key=lambda o: o.name)]
    return render(request, "console/index.html", {"page": {
        "orgs": items, "me": str(p.user_id or ""), "links": _links(request.app)}})


async def admin_page(request: web.Request) -> web.Response:
    p = signed_in(request)
    ids = p.orgs_with(Role.ORG_ADMIN)
    if not ids and not p.platform_admin:
        raise Forbidden("organization admins only", code="forbidden")
    orgs = await _org_names(request, ids)
    items = [{"id": str(o.id), "name": o.name} for o in sorted(orgs.values(), key=lambda o: o.name)]
    return render(request, "admin/index.html", {"orgs": items, "links": _links(request.app),
                                                "platform_admin": p.platform_admin,
                                                "page": {"orgs": items}})


async def outbox_page(request: web.Request) -> web.Response:
    """E-mails and SMS the platform sent (or kept in the outbox), newest first."""
    p = signed_in(request)
    org_id = _uuid(request.query.get("organization_id"), "organization_id")
    admin_orgs = sorted(p.orgs_with(Role.ORG_ADMIN), key=str)
    if org_id is None and admin_orgs:
        org_id = admin_orgs[0]
    if org_id is None and not p.platform_admin:
        raise Forbidden("organization admins only", code="forbidden")
    async with services(request.app).uow_factory() as uow:
        stmt = select(OutboxMessage).order_by(OutboxMessage.created_at.desc()).limit(200)
        if org_id is not None:
            authorize(p, "outbox.read", Resource("Organization", organization_id=org_id))
            stmt = stmt.where(OutboxMessage.organization_id == org_id)
        else:
            authorize(p, "outbox.read", Resource("Organization"))
        rows = list((await uow.session.execute(stmt)).scalars())
        uow.audit.record(p, "outbox.read", object_type="OutboxMessage", organization_id=org_id,
                         detail={"count": len(rows)})
        await uow.commit()
    orgs = await _org_names(request, set(admin_orgs))
    return render(request, "admin/outbox.html", {
        "messages": rows, "org_id": str(org_id or ""),
        "orgs": [{"id": str(o.id), "name": o.name} for o in sorted(orgs.values(), key=lambda o: o.name)],
    })


async def outbox_attachment(request: web.Request) -> web.Response:
    """Download one attachment of a stored e-mail (``/admin/outbox/{id}/attachments/{filename}``)."""
    from clinic.services import messaging

    p = signed_in(request)
    message_id = _uuid(request.match_info["id"], "id")
    assert message_id is not None
    async with services(request.app).uow_factory() as uow:
        att = await messaging.outbox_attachment(uow, p, message_id, request.match_info["filename"])
        await uow.commit()
    # Always a download, never rendered here: the bytes came from templates and user data.
    safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in att.filename) or "attachment"
    return web.Response(body=att.content, content_type=att.content_type, headers={
        "Content-Disposition": f'attachment; filename="{safe}"', "Cache-Control": "no-store"})


async def analytics_page(request: web.Request) -> web.Response:
    """Waiting times, visits per clinician and no-show rate for a date range (org admins)."""
    from datetime import date, timedelta

    from clinic.db.base import utcnow
    from clinic.services import analytics

    p = signed_in(request)
    admin_orgs = sorted(p.orgs_with(Role.ORG_ADMIN), key=str)
    org_id = _uuid(request.query.get("organization_id"), "organization_id") or (admin_orgs[0] if admin_orgs else None)
    if org_id is None:
        raise Forbidden("organization admins only", code="forbidden")
    today = utcnow().date()
    try:
        start = date.fromisoformat(request.query.get("from", "")) if request.query.get("from") else today - timedelta(
            days=29)
        end = date.fromisoformat(request.query.get("to", "")) if request.query.get("to") else today
    except ValueError:
        raise Invalid("dates must be YYYY-MM-DD", fields={"from": "YYYY-MM-DD", "to": "YYYY-MM-DD"}) from None
    async with services(request.app).uow_factory() as uow:
        a = await analytics.organization_analytics(uow, p, org_id, start, end)
        await uow.commit()
    return render(request, "admin/analytics.html", {"a": a, "org_id": str(org_id)})


def install(app: web.Application) -> None:
    r = app.router
    r.add_get("/admin/analytics", analytics_page)
    r.add_get("/book", book_page)
    r.add_get("/portal", portal_page)
    r.add_get("/console", console_page)
    r.add_get("/admin", admin_page)
    r.add_get("/admin/outbox", outbox_page)
    r.add_get("/admin/outbox/{id}/attachments/{filename}", outbox_attachment)
