"""Live pages: the pub/sub hub, the doctor's consult-queue WebSocket and the waiting-room WebSocket.

Pages never poll: each socket sends a snapshot on connect and a fresh one whenever its topic announces a
change (a check-in, a claim, a chat message). Snapshots are computed per connection through the service
layer, so every viewer only ever sees what their role allows.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
import weakref
from typing import Any
from urllib.parse import urlsplit

from aiohttp import WSCloseCode, WSMsgType, web

from clinic.db.models import Role
from clinic.errors import DomainError, Forbidden, Unauthenticated
from clinic.photos import PhotoStore
from clinic.realtime import LocalHub, RedisHub, make_hub
from clinic.security.authz import Principal
from clinic.services import encounters as svc
from clinic.web.context import services
from clinic.web.routes.encounters import QueueEntryOut, WaitingOut

HEARTBEAT = 20.0
OPEN_SOCKETS: web.AppKey[weakref.WeakSet[Any]] = web.AppKey("telemed_open_sockets", weakref.WeakSet)


def track(app: web.Application, ws: web.WebSocketResponse) -> None:
    """Register a socket so shutdown closes it at once (clients then reconnect to another node)."""
    app[OPEN_SOCKETS].add(ws)


async def _close_sockets(app: web.Application) -> None:
    sockets: weakref.WeakSet[Any] = app[OPEN_SOCKETS]
    for ws in list(sockets):
        with contextlib.suppress(Exception):
            await ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutdown")


def hub_of(app: web.Application) -> LocalHub:
    hub: LocalHub = services(app).extra["hub"]
    return hub


def check_origin(request: web.Request) -> None:
    """Refuse cross-site WebSocket handshakes (cookies would otherwise ride along)."""
    origin = request.headers.get("Origin")
    if origin is None:
        return  # non-browser clients
    if urlsplit(origin).netloc != request.host:
        raise Forbidden("cross-origin WebSocket refused", code="bad_origin")


def _principal(request: web.Request) -> Principal:
    p: Principal = request["principal"]
    if not p.authenticated or p.extra.get("mfa_pending"):
        raise Unauthenticated("sign in first")
    return p


class _Gone(Exception):
    pass


async def _send(ws: web.WebSocketResponse, message: dict[str, Any]) -> None:
    try:
        await ws.send_json(message)
    except ConnectionResetError:  # aiohttp raises its subclass ClientConnectionResetError
        raise _Gone from None


async def _serve(request: web.Request, topic: str, snapshot: Any, *, on_close: Any = None) -> web.WebSocketResponse:
    """Common loop: snapshot, then a fresh snapshot (with the triggering event) on every announcement."""
    ws = web.WebSocketResponse(heartbeat=HEARTBEAT, max_msg_size=16 * 1024)
    await ws.prepare(request)
    track(request.app, ws)
    sub = hub_of(request.app).subscribe(topic)

    async def reader() -> None:
        async for msg in ws:
            if msg.type == WSMsgType.TEXT and msg.data == "ping":
                await ws.send_str('{"type":"pong"}')
            elif msg.type in (WSMsgType.ERROR, WSMsgType.CLOSE):
                break

    task = asyncio.create_task(reader())
    try:
        await _send(ws, {"type": "snapshot", **await snapshot()})
        while not ws.closed and not task.done():
            getter = asyncio.ensure_future(sub.get(wait=HEARTBEAT))
            # Wake on either an announcement or the client going away, so a closed socket frees its
            # handler at once (and shutdown is not held up by idle waits).
            await asyncio.wait({getter, task}, return_when=asyncio.FIRST_COMPLETED)
            if not getter.done():
                getter.cancel()
                break
            event = getter.result()
            if event is None:
                continue
            try:
                data = await snapshot()
            except DomainError as exc:
                await _send(ws, {"type": "error", "code": exc.code, "message": exc.message})
                break
            await _send(ws, {"type": "snapshot", "event": event, **data})
    except _Gone:
        pass  # the page went away while a snapshot was on its way: an ordinary end
    finally:
        sub.close()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
        if on_close is not None:
            await on_close()
        await ws.close()
    return ws


async def queue_socket(request: web.Request) -> web.StreamResponse:
    """``/ws/queue?organization_id=…&scope=all|mine|shared`` for clinicians."""
    check_origin(request)
    p = _principal(request)
    svcs = services(request.app)
    raw_org = request.query.get("organization_id")
    orgs = sorted(p.orgs_with(Role.CLINICIAN, Role.ORG_ADMIN))
    try:
        org_id = uuid.UUID(raw_org) if raw_org else (orgs[0] if orgs else None)
    except ValueError:
        org_id = None
    if org_id is None:
        raise Forbidden("no clinic to watch", code="forbidden")
    scope = request.query.get("scope", "all")
    if scope not in ("all", "mine", "shared"):
        scope = "all"

    async def snapshot() -> dict[str, Any]:
        async with svcs.uow_factory() as uow:
            rows = await svc.queue(uow, p, org_id, scope=scope)
            await uow.commit()
        return {"items": [QueueEntryOut.model_validate(r).model_dump(mode="json") for r in rows]}

    await snapshot()  # authorizes before the upgrade, so a refusal is a plain 403/404
    if p.has_role(Role.CLINICIAN, org_id):
        async with svcs.uow_factory() as uow:
            await svc.set_presence(uow, p, "online")
            await uow.commit()

    async def gone() -> None:
        if p.has_role(Role.CLINICIAN, org_id):
            with contextlib.suppress(Exception):
                async with svcs.uow_factory() as uow:
                    from sqlalchemy import select

                    from clinic.db.clinical import Practitioner

                    status = (await uow.session.execute(
                        select(Practitioner.status).where(Practitioner.user_id == p.user_id))).scalar()
                    if status != "in_call":
                        await svc.set_presence(uow, p, "away")
                    await uow.commit()

    return await _serve(request, svc.queue_topic(org_id), snapshot, on_close=gone)


async def waiting_socket(request: web.Request) -> web.StreamResponse:
    """``/ws/encounters/{id}/waiting``: position, estimated wait, provider status and chat, live."""
    check_origin(request)
    p = _principal(request)
    svcs = services(request.app)
    try:
        eid = uuid.UUID(request.match_info["id"])
    except ValueError:
        raise web.HTTPNotFound() from None

    async def snapshot() -> dict[str, Any]:
        async with svcs.uow_factory() as uow:
            w = await svc.waiting_status(uow, p, eid)
            await uow.commit()
        return {"waiting": WaitingOut.model_validate(w).model_dump(mode="json")}

    data = await snapshot()
    # The waiting patient also needs to hear about the rest of the queue moving.
    async with svcs.uow_factory() as uow:
        e = await svc.load(uow, p, eid)
        org = e.organization_id
    ws_topic = svc.encounter_topic(eid)
    hub = hub_of(request.app)
    relay = hub.subscribe(svc.queue_topic(org))

    async def forward() -> None:
        while True:
            ev = await relay.get()
            if ev is not None:
                await hub.publish(ws_topic, {"type": "queue.moved"})

    fwd = asyncio.create_task(forward())
    try:
        del data
        return await _serve(request, ws_topic, snapshot)
    finally:
        fwd.cancel()
        relay.close()


SIGN_INS_TOPIC = "sign-ins"
_SHARING: web.AppKey[list[asyncio.Task[None]]] = web.AppKey("telemed_sign_in_sharing")


async def _start(app: web.Application) -> None:
    hub = hub_of(app)
    await hub.start()
    if isinstance(hub, RedisHub):
        _share_evictions(app, hub)


def _share_evictions(app: web.Application, hub: RedisHub) -> None:
    """Other processes drop a sign-in this one evicted (sign-out, revoked role) at once, not after the TTL."""
    cache = services(app).session_cache
    tasks = app[_SHARING]
    sub = hub.subscribe(SIGN_INS_TOPIC)

    def announce(users: frozenset[uuid.UUID] | None) -> None:
        message = {"users": None if users is None else [str(u) for u in users]}
        task = asyncio.get_running_loop().create_task(hub.publish(SIGN_INS_TOPIC, message))
        tasks.append(task)
        task.add_done_callback(tasks.remove)

    async def apply() -> None:
        try:
            async for message in sub:
                users = message.get("users")
                if users is None:
                    cache.clear(announce=False)
                elif isinstance(users, list):
                    cache.evict_users((uuid.UUID(u) for u in users), announce=False)
        finally:
            sub.close()

    cache.announce = announce
    tasks.append(asyncio.get_running_loop().create_task(apply()))


async def _stop(app: web.Application) -> None:
    services(app).session_cache.announce = None
    tasks = app[_SHARING]
    for task in tasks.copy():
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    await hub_of(app).close()


def install(app: web.Application) -> None:
    svcs = services(app)
    svcs.extra.setdefault("hub", make_hub(svcs.redis, svcs.settings))
    svcs.extra.setdefault("photo_store", PhotoStore(svcs.settings.data_dir / "photos", svcs.settings.secret_key))
    app[OPEN_SOCKETS] = weakref.WeakSet()
    app[_SHARING] = []
    app.on_startup.append(_start)
    app.on_shutdown.append(_close_sockets)
    app.on_cleanup.append(_stop)
    app.router.add_get("/ws/queue", queue_socket)
    app.router.add_get("/ws/encounters/{id}/waiting", waiting_socket)
