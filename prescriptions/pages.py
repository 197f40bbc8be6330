"""Prescription pages: the pharmacy's live inbox (``/pharmacy`` and ``/ws/pharmacy``), the patient's
tracking page (``/rx/{id}``) and the patient's choice of usual pharmacy (``POST /portal/nominated-pharmacy``).

The prescriptions service announces changes after commit through ``services(app).extra["events"]`` as
``(name, target_id, prescription_id)``; the installer registers a sink that publishes them on the hub
topic ``pharmacy:<target_id>``, which the pharmacy socket listens to. Snapshots are computed per
connection through the service layer, so a pharmacist only ever sees their own pharmacy's inbox.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from typing import Any

from aiohttp import WSMsgType, web
from sqlalchemy import select

from clinic.db.clinical import Patient
from clinic.db.models import Organization, OrgKind, Role
from clinic.errors import DomainError, Forbidden, Invalid, NotFound
from clinic.security.authz import Principal, pharmacies_for
from clinic.services import patients as patient_svc
from clinic.web.clinic_pages import signed_in
from clinic.web.context import services
from clinic.web.live import check_origin, hub_of
from clinic.web.render import render
from prescriptions import delivery as dsvc
from prescriptions import service as svc
from prescriptions.models import DeliveryOrder
from prescriptions.state import DeliveryStatus, RxStatus

HEARTBEAT = 20.0
#: The order a prescription normally moves through, for the patient's timeline.
RX_STEPS = (RxStatus.SIGNED, RxStatus.SENT, RxStatus.ACCEPTED, RxStatus.DISPENSED)
DELIVERY_STEPS = (DeliveryStatus.CREATED, DeliveryStatus.PICKED_UP, DeliveryStatus.IN_TRANSIT,
                  DeliveryStatus.DELIVERED)


def pharmacy_topic(pharmacy_id: uuid.UUID | str) -> str:
    return f"pharmacy:{pharmacy_id}"


def _my_pharmacies(p: Principal) -> list[uuid.UUID]:
    return sorted(pharmacies_for(p, "prescription.dispense") | p.orgs_with(Role.PHARMACIST), key=str)


def _uuid(raw: Any, name: str) -> uuid.UUID:
    try:
        return uuid.UUID(str(raw))
    except ValueError:
        raise Invalid("malformed identifier", fields={name: "must be a UUID"}) from None


# --------------------------------------------------------------------------- pharmacy


async def pharmacy_page(request: web.Request) -> web.Response:
    p = signed_in(request)
    ids = _my_pharmacies(p)
    if not ids:
        raise Forbidden("the pharmacy inbox is for pharmacists", code="forbidden")
    async with services(request.app).uow_factory() as uow:
        orgs = list((await uow.session.execute(select(Organization).where(Organization.id.in_(ids)))).scalars())
    items = [{"id": str(o.id), "name": o.name, "timezone": o.timezone} for o in sorted(orgs, key=lambda o: o.name)]
    return render(request, "pharmacy/index.html", {"page": {"pharmacies": items}})


async def inbox_snapshot(app: web.Application, p: Principal, pharmacy_id: uuid.UUID) -> dict[str, Any]:
    """The inbox as the service returns it, with each prescription's delivery (if any) alongside."""
    async with services(app).uow_factory() as uow:
        rows = await svc.pharmacy_inbox(uow, p, pharmacy_id)
        ids = [r.id for r in rows]
        deliveries = {d.request_id: d for d in (await uow.session.execute(
            select(DeliveryOrder).where(DeliveryOrder.request_id.in_(ids), DeliveryOrder.pharmacy_id == pharmacy_id)
        )).scalars()} if ids else {}
        await uow.commit()
    items = []
    for r in rows:
        d = deliveries.get(r.id)
        items.append({
            "id": str(r.id), "rx_number": r.rx_number, "status": r.status.value, "routing": r.routing,
            "fulfilment": r.fulfilment, "item_count": len(r.items),
            "sent_at": r.sent_at.isoformat() if r.sent_at else None,
            "created_at": r.created_at.isoformat(),
            "delivery": {"id": str(d.id), "status": d.status.value} if d is not None else None,
        })
    return {"pharmacy_id": str(pharmacy_id), "items": items}


async def pharmacy_socket(request: web.Request) -> web.StreamResponse:
    """``/ws/pharmacy?organization_id=…``: the inbox on connect, and again on every routing event.

    The client may send ``refresh`` after its own actions, and ``ping`` to keep the line open.
    """
    check_origin(request)
    p: Principal = request["principal"]
    if not p.authenticated or p.extra.get("mfa_pending"):
        raise web.HTTPUnauthorized()
    raw = request.query.get("organization_id")
    mine = _my_pharmacies(p)
    pharmacy_id = _uuid(raw, "organization_id") if raw else (mine[0] if mine else None)
    if pharmacy_id is None:
        raise Forbidden("no pharmacy to watch", code="forbidden")
    first = await inbox_snapshot(request.app, p, pharmacy_id)  # authorizes before the upgrade

    ws = web.WebSocketResponse(heartbeat=HEARTBEAT, max_msg_size=16 * 1024)
    await ws.prepare(request)
    sub = hub_of(request.app).subscribe(pharmacy_topic(pharmacy_id))
    wake: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()

    async def reader() -> None:
        async for msg in ws:
            if msg.type == WSMsgType.TEXT and msg.data == "ping":
                await ws.send_str('{"type":"pong"}')
            elif msg.type == WSMsgType.TEXT and msg.data == "refresh":
                await wake.put(None)
            elif msg.type in (WSMsgType.ERROR, WSMsgType.CLOSE):
                break

    async def relay() -> None:
        while True:
            event = await sub.get(wait=HEARTBEAT)
            if event is not None:
                await wake.put(event)

    tasks = [asyncio.create_task(reader()), asyncio.create_task(relay())]
    try:
        await ws.send_json({"type": "snapshot", **first})
        while not ws.closed and not tasks[0].done():
            getter = asyncio.create_task(wake.get())
            done, _pending = await asyncio.wait([getter, tasks[0]], return_when=asyncio.FIRST_COMPLETED)
            if getter not in done:
                getter.cancel()
                break
            event = getter.result()
            try:
                data = await inbox_snapshot(request.app, p, pharmacy_id)
            except DomainError as exc:
                await ws.send_json({"type": "error", "code": exc.code, "message": exc.message})
                break
            msg: dict[str, Any] = {"type": "snapshot", **data}
            if event is not None:
                msg["event"] = event
            await ws.send_json(msg)
    finally:
        sub.close()
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await ws.close()
    return ws


# --------------------------------------------------------------------------- patient tracking


async def rx_page(request: web.Request) -> web.Response:
    """Where the patient's prescription is: its steps, the pharmacy, and the delivery's steps."""
    p = signed_in(request)
    rx_id = _uuid(request.match_info["id"], "id")
    async with services(request.app).uow_factory() as uow:
        view = await svc.get_prescription(uow, p, rx_id)
        rx = view.rx
        pharmacy = await uow.session.get(Organization, rx.pharmacy_id) if rx.pharmacy_id else None
        delivery_id = (await uow.session.execute(
            select(DeliveryOrder.id).where(DeliveryOrder.request_id == rx.id)
            .order_by(DeliveryOrder.created_at.desc()).limit(1))).scalar_one_or_none()
        delivery = await dsvc.get_delivery(uow, p, delivery_id) if delivery_id is not None else None
        await uow.commit()
    times: dict[RxStatus, Any] = {RxStatus.SIGNED: rx.signed_at, RxStatus.SENT: rx.sent_at,
                                  RxStatus.ACCEPTED: rx.accepted_at,
                                  RxStatus.DISPENSED: view.dispenses[-1].dispensed_at if view.dispenses else None}
    order = [s.value for s in RX_STEPS]
    reached = order.index(rx.status.value) if rx.status.value in order else (
        order.index("dispensed") if rx.status in (RxStatus.DISPENSED_PARTIAL, RxStatus.CLOSED) else -1)
    steps = [{"status": s.value, "at": times[s], "done": i <= reached or times[s] is not None}
             for i, s in enumerate(RX_STEPS)]
    dsteps: list[dict[str, Any]] = []
    if delivery is not None:
        seen = {e["status"]: e for e in delivery.events}
        for s in DELIVERY_STEPS:
            ev = seen.get(s.value)
            dsteps.append({"status": s.value, "at": ev["at"] if ev else None, "done": ev is not None,
                           "note": ev.get("note", "") if ev else ""})
        for extra in (DeliveryStatus.FAILED, DeliveryStatus.RETURNED):
            if extra.value in seen:
                dsteps.append({"status": extra.value, "at": seen[extra.value]["at"], "done": True,
                               "note": seen[extra.value].get("note", "")})
    return render(request, "rx/index.html", {
        "rx": rx, "view": view, "steps": steps, "pharmacy": pharmacy, "delivery": delivery,
        "delivery_steps": dsteps, "final": rx.status.final,
    })


# --------------------------------------------------------------------------- nomination


async def nominate(request: web.Request) -> web.Response:
    """The patient chooses their usual pharmacy (where new prescriptions go by default)."""
    p = signed_in(request)
    try:
        body = json.loads(await request.text() or "{}")
    except ValueError:
        raise Invalid("body must be JSON") from None
    if not isinstance(body, dict):
        raise Invalid("body must be a JSON object")
    patient_id = _uuid(body.get("patient_id"), "patient_id")
    pharmacy_id = _uuid(body.get("pharmacy_id"), "pharmacy_id")
    async with services(request.app).uow_factory() as uow:
        pt: Patient = await patient_svc.load(uow, p, patient_id, "patient.update")
        ph = await uow.session.get(Organization, pharmacy_id)
        if ph is None or ph.kind is not OrgKind.PHARMACY:
            raise NotFound("pharmacy not found", fields={"pharmacy_id": "unknown pharmacy"})
        pt.nominated_pharmacy_id = ph.id
        uow.audit.record(p, "patient.update", object_type="Patient", object_id=pt.id,
                         organization_id=pt.organization_id, patient_id=pt.id,
                         detail={"fields": ["nominated_pharmacy_id"], "pharmacy_id": str(ph.id)})
        await uow.commit()
    return web.json_response({"patient_id": str(patient_id), "nominated_pharmacy_id": str(pharmacy_id),
                              "pharmacy_name": ph.name})


# --------------------------------------------------------------------------- wiring


def _event_sink(app: web.Application) -> svc.EventSink:
    previous = services(app).extra.get("events")

    async def publish(name: str, target_id: object, object_id: object) -> None:
        if previous is not None:
            result = previous(name, target_id, object_id)
            if asyncio.iscoroutine(result):
                await result
        if target_id is None:
            return
        await hub_of(app).publish(pharmacy_topic(str(target_id)),
                                  {"type": name, "prescription_id": str(object_id)})

    return publish


def install(app: web.Application) -> None:
    extra = services(app).extra
    if "hub" not in extra:  # normally created by clinic.web.live, installed earlier
        from clinic.realtime import make_hub

        extra["hub"] = make_hub(services(app).redis, services(app).settings)
    extra["events"] = _event_sink(app)
    r = app.router
    r.add_get("/pharmacy", pharmacy_page)
    r.add_get("/ws/pharmacy", pharmacy_socket)
    r.add_get("/rx/{id}", rx_page)
    r.add_post("/portal/nominated-pharmacy", nominate)
