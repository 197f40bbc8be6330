"""The signaling WebSocket ``/ws/signal/{encounter_id}`` and the call rooms behind it.

One :class:`CallManager` per app owns the :class:`~media.LocalMediaRelay` (one relay room per encounter)
and the in-memory view of each call. What must outlive a socket or the process is in the database:
admission is ``Encounter.status`` (``in_consult``), the mode is ``Encounter.mode``, and each peer has a
:class:`~clinic.db.video.CallParticipant` row (resume-token hash, consent, connected). Decisions with
legal weight (admission, mode, recording) go through the encounter service and the policy engine;
the relay only enforces them.

Every change that can also come from the HTTP API (chat, admission, mode, completion) is applied from
the encounter's hub topic, so a call reacts the same way whether the doctor clicked in the call or used
the API; the socket paths apply their change directly as well and the hub path is idempotent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from aiohttp import WSMsgType, web
from prometheus_client import Gauge
from pydantic import BaseModel
from sqlalchemy import select

from clinic.db.base import utcnow
from clinic.db.encounters import Encounter, StoredPhoto
from clinic.db.models import Role, User
from clinic.db.uow import UnitOfWork
from clinic.db.video import CallGuest, CallParticipant, QualitySample, Recording
from clinic.encounters.state import EncounterStatus
from clinic.errors import DomainError, Forbidden
from clinic.security.authz import Principal
from clinic.security.secrets import hash_token, new_token
from clinic.serve import SIGNAL_OWNER
from clinic.services import accounts
from clinic.services import encounters as svc
from clinic.web.api import error_response
from clinic.web.context import services
from clinic.web.live import check_origin
from clinic.web.middleware import audit_failure
from media import IceServer, LocalMediaRelay, RelayError, RelayEvent, turn_rest_credentials
from media.errors import DuplicatePeer, UnknownPeer, UnknownRoom
from media.recorder import EncryptedWebmRecorder
from signaling import protocol as p
from signaling import tokens
from signaling.recordings import recording_key, recordings_root

log = logging.getLogger(__name__)

MANAGER_KEY: Final = "call_manager"
#: Room size offered to clients: patient, clinician and up to two guests.
CAPACITY: Final = 4
#: How long the first frame (``join``) may take after the upgrade.
JOIN_TIMEOUT: Final = 10.0
#: A peer whose socket dropped keeps its media session this long, waiting for a resume.
RESUME_GRACE_SECONDS: Final = 60.0
#: A relay connection ``disconnected`` for this long is treated as failed.
DISCONNECTED_GRACE_SECONDS: Final = 5.0
QUALITY_INTERVAL_SECONDS: Final = 10.0
KINDS: Final[dict[str, frozenset[str]]] = {
    "video": frozenset({"audio", "video"}),
    "audio": frozenset({"audio"}),
    "chat": frozenset(),
}
_S = EncounterStatus


def _ms(at: datetime | None = None) -> int:
    return int((at.timestamp() if at else time.time()) * 1000)


# --- per-connection limits ------------------------------------------------------------------------------------


class TokenBucket:
    def __init__(self, rate: float, burst: int) -> None:
        self.rate, self.burst = rate, float(burst)
        self.tokens = float(burst)
        self.at = time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


class Limits:
    """Token buckets by message type plus the strike counter that ends abusive connections."""

    def __init__(self) -> None:
        self.buckets = {kind: TokenBucket(*limit) for kind, limit in p.RATE_LIMITS.items()}
        self.strikes: deque[float] = deque()

    def allow(self, kind: str) -> bool:
        return self.buckets.get(kind, self.buckets["*"]).take()

    def strike(self) -> bool:
        """Count a refused frame; True when the connection must be closed."""
        now = time.monotonic()
        self.strikes.append(now)
        while self.strikes and now - self.strikes[0] > p.ERROR_WINDOW_SECONDS:
            self.strikes.popleft()
        return len(self.strikes) > p.MAX_ERRORS_PER_WINDOW


# --- room state ----------------------------------------------------------------------------------------------


@dataclass
class Peer:
    """One participant of a call, surviving their socket reconnecting."""

    peer_id: str
    role: str
    display_name: str
    principal: Principal
    user_id: uuid.UUID | None
    guest_id: uuid.UUID | None
    admitted: bool
    kinds: frozenset[str]
    in_relay: bool = False
    screensharing: bool = False
    consent: bool = False
    relay_state: str = "new"
    conn: Connection | None = None
    removal: asyncio.Task[None] | None = None
    negotiating: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def staff(self) -> bool:
        return self.peer_id == "clinician"

    def info(self, mode: str) -> p.PeerInfo:
        return p.PeerInfo(peer_id=self.peer_id, role=self.role, display_name=self.display_name or None,
                          mode=mode, screensharing=self.screensharing, admitted=self.admitted)


@dataclass
class Connection:
    ws: web.WebSocketResponse
    peer: Peer
    limits: Limits = field(default_factory=Limits)
    closing: bool = False


@dataclass
class ActiveRecording:
    id: uuid.UUID
    sink: EncryptedWebmRecorder


class CallRoom:
    def __init__(self, manager: CallManager, encounter: Encounter) -> None:
        self.manager = manager
        self.encounter_id = encounter.id
        self.rid = str(encounter.id)
        self.organization_id = encounter.organization_id
        self.patient_id = encounter.patient_id
        self.mode = encounter.mode if encounter.mode in KINDS else "video"
        self.peers: dict[str, Peer] = {}
        # receiver -> remote -> the latest slot-assigned event, replayed to a resumed socket.
        self.slots: dict[str, dict[str, RelayEvent]] = {}
        self.shared_photos: set[str] = set()
        self.chat_senders: dict[str, tuple[str, str | None]] = {}  # message id -> (peer id, client id)
        self.recording: ActiveRecording | None = None
        self.in_relay = False
        self.closed = False
        self.lock = asyncio.Lock()
        self.watcher: asyncio.Task[None] | None = None

    @property
    def connected(self) -> list[Peer]:
        return [peer for peer in self.peers.values() if peer.conn is not None]

    async def send(self, peer: Peer, message: BaseModel) -> None:
        conn = peer.conn
        if conn is None or conn.ws.closed:
            return
        try:
            await conn.ws.send_str(p.serialize_server_message(message))
        except (ConnectionError, RuntimeError):
            pass  # the socket is going away; its own loop cleans up

    async def broadcast(self, message: BaseModel, *, admitted_only: bool = False,
                        exclude: str | None = None) -> None:
        for peer in list(self.peers.values()):
            if peer.peer_id == exclude or (admitted_only and not peer.admitted):
                continue
            await self.send(peer, message)

    def visible_peers(self, viewer: Peer) -> list[p.PeerInfo]:
        # Held participants do not learn who is in the room (docs/media.md).
        if not viewer.admitted:
            return []
        return [peer.info(self.mode) for peer in self.peers.values()
                if peer is not viewer and peer.conn is not None and (peer.admitted or viewer.staff)]


# --- the manager ---------------------------------------------------------------------------------------------


class CallManager:
    def __init__(self, app: web.Application) -> None:
        self.app = app
        self.svcs = services(app)
        self.relay = LocalMediaRelay(on_event=self._on_relay_event)
        self.rooms: dict[str, CallRoom] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._sampler: asyncio.Task[None] | None = None
        self.quality_interval = float(self.svcs.extra.get("video_quality_interval", QUALITY_INTERVAL_SECONDS))

    # lifecycle

    async def start(self) -> None:
        self._sampler = asyncio.get_running_loop().create_task(self._sample_quality())

    async def close(self) -> None:
        if self._sampler is not None:
            self._sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sampler
        for room in list(self.rooms.values()):
            await self._close_room(room, notify=False)
        await self.relay.close()
        for task in list(self._tasks):
            task.cancel()

    def spawn(self, coro: Awaitable[None]) -> asyncio.Task[None]:
        async def run() -> None:
            try:
                await coro
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("call task failed")

        task = asyncio.get_running_loop().create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def uow(self) -> UnitOfWork:
        return self.svcs.uow_factory()

    @property
    def hub(self) -> Any:
        return self.svcs.extra.get("hub")

    @property
    def policy(self) -> Any:
        return self.svcs.extra.get("policy")

    def ice_servers(self, peer_id: str) -> list[IceServer]:
        s = self.svcs.settings
        servers: list[IceServer] = []
        if s.stun_urls:
            servers.append(IceServer(urls=list(s.stun_urls)))
        if s.turn_urls:
            if s.turn_secret:
                user, credential = turn_rest_credentials(s.turn_secret, peer_id.replace(":", "_"),
                                                         s.turn_ttl_seconds, int(time.time()))
                servers.append(IceServer(urls=list(s.turn_urls), username=user, credential=credential))
            else:
                servers.append(IceServer(urls=list(s.turn_urls)))
        return servers

    def room_of(self, encounter: Encounter) -> CallRoom:
        room = self.rooms.get(str(encounter.id))
        if room is None or room.closed:
            room = CallRoom(self, encounter)
            self.rooms[room.rid] = room
            if self.hub is not None:
                room.watcher = self.spawn(self._watch(room))
        return room

    # --- joining --------------------------------------------------------------------------------------------

    async def authenticate(self, room_eid: uuid.UUID, join: p.Join, cookie: Principal) -> tuple[Peer, str, bool]:
        """Check the join against the room rules; returns the peer, a fresh resume token and resumed."""
        async with self.uow() as uow:
            e = await uow.session.get(Encounter, room_eid)
            if e is None:
                raise Forbidden("this room token is not valid for this visit", code="bad_token")
            part: CallParticipant | None = None
            if join.resume_token:
                part = (await uow.session.execute(select(CallParticipant).where(
                    CallParticipant.encounter_id == e.id,
                    CallParticipant.resume_hash == hash_token(join.resume_token)))).scalar_one_or_none()
            if part is not None:
                grant = tokens.RoomGrant(encounter_id=e.id, role=part.role, user_id=part.user_id,
                                         guest_id=part.guest_id, expires_at=utcnow())
            else:
                grant = await tokens.verify(uow, join.token, e.id)
            if cookie.authenticated and cookie.user_id is not None and grant.user_id is not None \
                    and cookie.user_id != grant.user_id:
                raise Forbidden("this room token belongs to someone else", code="bad_token")
            if e.status.final:
                raise Forbidden(f"the visit is {e.status.value}", code="visit_closed")
            peer = await self._peer_for(uow, e, grant, join.display_name)
            resume = new_token(24)
            if part is None:
                part = (await uow.session.execute(select(CallParticipant).where(
                    CallParticipant.encounter_id == e.id, CallParticipant.peer_id == peer.peer_id))
                ).scalar_one_or_none()
            if part is None:
                part = CallParticipant(encounter_id=e.id, peer_id=peer.peer_id, role=peer.role,
                                       user_id=grant.user_id, guest_id=grant.guest_id)
                uow.add(part)
            resumed = join.resume_token is not None and part.resume_hash == hash_token(join.resume_token)
            part.display_name = peer.display_name[:80]
            part.resume_hash = hash_token(resume)
            part.connected = True
            part.left_at = None
            part.last_seen_at = utcnow()
            # A guest's admission is remembered; patients are admitted exactly when the visit is in consult.
            if peer.guest_id is not None:
                peer.admitted = peer.admitted or part.admitted
            part.admitted = peer.admitted
            peer.consent = part.record_consent
            uow.audit.record(peer.principal, "call.join", object_type="Encounter", object_id=e.id,
                             organization_id=e.organization_id, patient_id=e.patient_id,
                             detail={"peer": peer.peer_id, "resumed": resumed})
            await uow.commit()
            return peer, resume, resumed

    async def _peer_for(self, uow: UnitOfWork, e: Encounter, grant: tokens.RoomGrant,
                        display_name: str | None) -> Peer:
        kinds = KINDS.get(e.mode, KINDS["video"])
        if grant.guest_id is not None:
            guest = await uow.session.get(CallGuest, grant.guest_id)
            if guest is None or guest.revoked_at is not None or guest.encounter_id != e.id:
                raise Forbidden("this invitation was withdrawn", code="bad_token")
            # Guests act only through this call: chat in the encounter, nothing else (scopes), and the audit
            # trail names the guest rather than a user.
            principal = Principal(kind="user", label=f"guest:{guest.id}",
                                  roles=frozenset({(e.organization_id, Role.PATIENT)}),
                                  patient_ids=frozenset({e.patient_id}),
                                  scopes=frozenset({"chat.write", "encounter.read"}))
            return Peer(peer_id=f"g-{guest.id.hex[:16]}", role=grant.role, display_name=guest.display_name,
                        principal=principal, user_id=None, guest_id=guest.id,
                        admitted=e.status is _S.IN_CONSULT, kinds=kinds)
        user = await uow.session.get(User, grant.user_id) if grant.user_id else None
        if user is None or not user.is_active:
            raise Forbidden("this room token is not valid for this visit", code="bad_token")
        principal = await accounts.build_principal(uow, user)
        if grant.role == "patient":
            if e.patient_id not in principal.patient_ids:
                raise Forbidden("only the visit's patient can join as the patient", code="not_a_participant")
            if e.status is _S.BOOKED:
                raise Forbidden("check in before joining the call", code="not_checked_in")
            return Peer(peer_id="patient", role="patient", display_name=display_name or user.display_name,
                        principal=principal, user_id=user.id, guest_id=None,
                        admitted=e.status is _S.IN_CONSULT, kinds=kinds)
        if grant.role == "clinician" and e.claimed_by_id == user.id:
            return Peer(peer_id="clinician", role="clinician", display_name=user.display_name,
                        principal=principal, user_id=user.id, guest_id=None, admitted=True, kinds=kinds)
        raise Forbidden("only the clinician who took this visit can join it", code="not_a_participant")

    async def attach(self, room: CallRoom, peer: Peer, conn: Connection, resume: str, resumed: bool) -> None:
        async with room.lock:
            existing = room.peers.get(peer.peer_id)
            if existing is not None:
                # Same person again (resume, reload or a second tab): keep the media session, replace the socket.
                old = existing.conn
                existing.principal, existing.display_name = peer.principal, peer.display_name
                existing.admitted = existing.admitted or peer.admitted
                existing.consent = peer.consent
                peer = existing
                if old is not None and old is not conn:
                    old.closing = True
                    with contextlib.suppress(Exception):
                        await old.ws.close(code=4000, message=b"replaced by a newer connection")
            else:
                room.peers[peer.peer_id] = peer
            if peer.removal is not None:
                peer.removal.cancel()
                peer.removal = None
            peer.kinds = KINDS[room.mode]
            peer.conn = conn
            conn.peer = peer
        await room.send(peer, p.Joined(
            peer_id=peer.peer_id, room=room.rid, role=peer.role, resume_token=resume,
            capacity=CAPACITY, kinds=sorted(peer.kinds),
            ice_servers=[p.IceServerInfo(**s.to_browser()) for s in self.ice_servers(peer.peer_id)],
            peers=room.visible_peers(peer), resumed=resumed and peer.in_relay))
        if peer.admitted:
            if not peer.staff:
                # Admission is remembered (Encounter.status), so a reconnecting patient goes straight back in.
                await room.send(peer, p.Admitted())
            for event in list(room.slots.get(peer.peer_id, {}).values()):
                await self._send_slot(room, event)
        else:
            await self.send_waiting(room, peer)
        # Clinicians see who is waiting; others see a participant once media is wired (slot-assigned).
        for other in room.peers.values():
            if other is not peer and other.staff and other.conn is not None:
                await room.send(other, p.PeerJoined(peer=self._info(room, peer)))
        await self._sync_recording(room)

    def _info(self, room: CallRoom, peer: Peer) -> p.PeerInfo:
        return peer.info(room.mode)

    async def send_waiting(self, room: CallRoom, peer: Peer) -> None:
        if peer.admitted or peer.conn is None:
            return
        position, eta, name, status = 1, None, None, None
        if peer.peer_id == "patient":
            try:
                async with self.uow() as uow:
                    w = await svc.waiting_status(uow, peer.principal, room.encounter_id)
                    await uow.commit()
            except DomainError:
                return
            if w.admitted:
                return
            position = w.position or 1
            eta = w.estimated_wait_minutes * 60 if w.estimated_wait_minutes is not None else None
            name = w.provider_name or None
            status = w.provider_status if w.provider_status in ("online", "in_call", "away") else None
        await room.send(peer, p.Waiting(position=position, estimated_wait_seconds=eta, provider_name=name,
                                        provider_status=status))

    # --- leaving ----------------------------------------------------------------------------------------------

    async def detach(self, room: CallRoom, conn: Connection, *, left: bool) -> None:
        peer = conn.peer
        if peer.conn is not conn:
            return  # replaced by a newer socket
        peer.conn = None
        await self._mark(room, peer, connected=False, left=left)
        if left:
            await self.remove_peer(room, peer, "left")
        else:
            peer.removal = self.spawn(self._expire(room, peer))

    async def _expire(self, room: CallRoom, peer: Peer) -> None:
        await asyncio.sleep(float(self.svcs.extra.get("video_resume_grace", RESUME_GRACE_SECONDS)))
        if peer.conn is None and room.peers.get(peer.peer_id) is peer:
            peer.removal = None
            await self.remove_peer(room, peer, "disconnected")

    async def remove_peer(self, room: CallRoom, peer: Peer, reason: str) -> None:
        async with room.lock:
            if room.peers.get(peer.peer_id) is not peer:
                return
            del room.peers[peer.peer_id]
            room.slots.pop(peer.peer_id, None)
            for assigned in room.slots.values():
                assigned.pop(peer.peer_id, None)
            if peer.in_relay:
                peer.in_relay = False
                with contextlib.suppress(RelayError):
                    await self.relay.remove_peer(room.rid, peer.peer_id)
        await room.broadcast(p.PeerLeft(peer_id=peer.peer_id, reason=reason))
        if await self._sync_recording(room):
            # Someone who consented is gone: recording stops until everyone present consents again.
            await room.broadcast(p.RecordConsentChanged(peer_id=peer.peer_id, consent=False, recording=False),
                                 admitted_only=True)
        if not room.peers:
            await self._close_room(room, notify=False)

    async def _mark(self, room: CallRoom, peer: Peer, *, connected: bool, left: bool = False) -> None:
        with contextlib.suppress(Exception):
            async with self.uow() as uow:
                part = (await uow.session.execute(select(CallParticipant).where(
                    CallParticipant.encounter_id == room.encounter_id, CallParticipant.peer_id == peer.peer_id))
                ).scalar_one_or_none()
                if part is not None:
                    part.connected = connected
                    part.last_seen_at = utcnow()
                    part.admitted = peer.admitted
                    part.record_consent = peer.consent
                    if left:
                        part.left_at = utcnow()
                        part.resume_hash = ""
                await uow.commit()

    async def _close_room(self, room: CallRoom, *, notify: bool, reason: str = "") -> None:
        if room.closed:
            return
        room.closed = True
        self.rooms.pop(room.rid, None)
        await self._stop_recording(room)
        if notify:
            for peer in list(room.peers.values()):
                await room.send(peer, p.Error(code="visit_ended", message=reason or "the visit has ended", fatal=True))
        for peer in list(room.peers.values()):
            if peer.removal is not None:
                peer.removal.cancel()
            if peer.conn is not None:
                peer.conn.closing = True
                with contextlib.suppress(Exception):
                    await peer.conn.ws.close(code=1000, message=b"visit ended")
        if room.in_relay:
            with contextlib.suppress(RelayError):
                await self.relay.close_room(room.rid)
        if room.watcher is not None and room.watcher is not asyncio.current_task():
            room.watcher.cancel()

    # --- media ------------------------------------------------------------------------------------------------

    async def offer(self, room: CallRoom, peer: Peer, offer: p.Offer) -> None:
        async with peer.negotiating:
            if not room.in_relay:
                with contextlib.suppress(Exception):
                    await self.relay.create_room(room.rid, capacity=CAPACITY)
                room.in_relay = True
            try:
                if peer.in_relay:
                    try:
                        answer = await self.relay.renegotiate(room.rid, peer.peer_id, offer.sdp)
                    except UnknownPeer:
                        peer.in_relay = False
                if not peer.in_relay:
                    try:
                        answer = await self.relay.add_peer(room.rid, peer.peer_id, offer.sdp, kinds=peer.kinds,
                                                           admitted=peer.admitted)
                    except DuplicatePeer:
                        answer = await self.relay.renegotiate(room.rid, peer.peer_id, offer.sdp)
                    peer.in_relay = True
            except UnknownRoom:
                room.in_relay = False
                await room.send(peer, p.Error(code="unknown_room", message="the call was reset; offer again"))
                return
            except RelayError as exc:
                await room.send(peer, p.Error(code=exc.code, message=str(exc) or exc.code))
                return
            peer.relay_state = "connecting"
        await room.send(peer, p.Answer(sdp=answer))
        await self._sync_recording(room)

    async def _send_slot(self, room: CallRoom, event: RelayEvent) -> None:
        receiver = room.peers.get(event.peer_id)
        remote = room.peers.get(event.remote_peer_id or "")
        if receiver is None or remote is None:
            return
        await room.send(receiver, p.PeerJoined(peer=self._info(room, remote), slot=event.slot,
                                               audio_mid=event.audio_mid, video_mid=event.video_mid))

    async def _on_relay_event(self, event: RelayEvent) -> None:
        room = self.rooms.get(event.room_id)
        if room is None:
            return
        peer = room.peers.get(event.peer_id)
        if event.kind == "slot-assigned" and event.remote_peer_id:
            room.slots.setdefault(event.peer_id, {})[event.remote_peer_id] = event
            await self._send_slot(room, event)
        elif event.kind == "slot-released" and event.remote_peer_id:
            room.slots.get(event.peer_id, {}).pop(event.remote_peer_id, None)
            remote = room.peers.get(event.remote_peer_id)
            if peer is not None and remote is not None:
                reason = "held" if not remote.admitted else "left"
                await room.send(peer, p.PeerLeft(peer_id=remote.peer_id, reason=reason))
        elif peer is None:
            return
        elif event.kind in ("connecting", "connected", "disconnected", "failed", "closed"):
            peer.relay_state = event.kind
            if event.kind == "failed":
                await self._ask_reconnect(room, peer, "ice-failed")
            elif event.kind == "disconnected":
                self.spawn(self._check_disconnected(room, peer))
        elif event.kind == "renegotiation-needed":
            await self._ask_reconnect(room, peer, "renegotiate")

    async def _check_disconnected(self, room: CallRoom, peer: Peer) -> None:
        await asyncio.sleep(DISCONNECTED_GRACE_SECONDS)
        if peer.relay_state == "disconnected" and room.peers.get(peer.peer_id) is peer:
            await self._ask_reconnect(room, peer, "ice-failed")

    async def _ask_reconnect(self, room: CallRoom, peer: Peer, reason: str) -> None:
        if peer.conn is None:
            return  # the client re-offers by itself when its socket comes back
        resume = new_token(24)
        async with self.uow() as uow:
            part = (await uow.session.execute(select(CallParticipant).where(
                CallParticipant.encounter_id == room.encounter_id, CallParticipant.peer_id == peer.peer_id))
            ).scalar_one_or_none()
            if part is not None:
                part.resume_hash = hash_token(resume)
            await uow.commit()
        await room.send(peer, p.Reconnect(reason=reason, resume_token=resume,
                                          ice_restart=reason != "renegotiate"))

    # --- admission and mode -----------------------------------------------------------------------------------

    async def admit(self, room: CallRoom, by: Peer, target_id: str) -> None:
        if not by.staff:
            raise Forbidden("only the clinician can admit participants", code="forbidden")
        target = room.peers.get(target_id)
        if target_id == "patient":
            async with self.uow() as uow:
                await svc.admit(uow, by.principal, room.encounter_id, policy=self.policy, hub=self.hub)
                await uow.commit()
            await self.apply_admission(room)
        elif target is not None and target.guest_id is not None:
            await self._admit_peer(room, target)
        else:
            raise Forbidden("nobody with that id is waiting", code="unknown_peer")

    async def apply_admission(self, room: CallRoom) -> None:
        """The visit is in consult: the patient and every invited guest are let in (idempotent)."""
        for peer in list(room.peers.values()):
            if not peer.admitted and (peer.peer_id == "patient" or peer.guest_id is not None):
                await self._admit_peer(room, peer)

    async def _admit_peer(self, room: CallRoom, peer: Peer) -> None:
        async with room.lock:
            if peer.admitted:
                return
            peer.admitted = True
            if peer.in_relay:
                with contextlib.suppress(RelayError):
                    await self.relay.admit(room.rid, peer.peer_id)
        await self._mark(room, peer, connected=peer.conn is not None)
        await room.send(peer, p.Admitted())
        for other in room.peers.values():
            if other is not peer and other.staff:
                await room.send(other, p.PeerJoined(peer=self._info(room, peer)))
        await self._sync_recording(room)

    async def change_mode(self, room: CallRoom, by: Peer, request: p.ModeRequest) -> None:
        if by.guest_id is not None:
            raise Forbidden("guests cannot change the visit's mode", code="forbidden")
        if request.peer_id not in (None, by.peer_id) and not by.staff:
            raise Forbidden("only the clinician can change someone else's mode", code="forbidden")
        async with self.uow() as uow:
            await svc.change_mode(uow, by.principal, room.encounter_id, request.mode, policy=self.policy,
                                  hub=self.hub)
            await uow.commit()
        await self.apply_mode(room, request.mode, by.peer_id)

    async def apply_mode(self, room: CallRoom, mode: str, by: str) -> None:
        """The visit's mode applies to everyone in it: the relay enforces the kinds."""
        if mode not in KINDS or mode == room.mode:
            return
        room.mode = mode
        kinds = KINDS[mode]
        for peer in list(room.peers.values()):
            peer.kinds = kinds
            if peer.in_relay:
                with contextlib.suppress(RelayError):
                    await self.relay.set_kinds(room.rid, peer.peer_id, kinds)
        for peer in list(room.peers.values()):
            await room.broadcast(p.ModeChanged(peer_id=peer.peer_id, mode=mode, by=by))

    # --- chat, photos, screen share -----------------------------------------------------------------------------

    async def chat(self, room: CallRoom, peer: Peer, message: p.ChatSend) -> None:
        role = "guest" if peer.guest_id is not None else peer.role
        async with self.uow() as uow:
            m = await svc.post_chat(uow, peer.principal, room.encounter_id, message.text, hub=self.hub,
                                    sender_role=role, sender_name=peer.display_name)
            room.chat_senders[str(m.id)] = (peer.peer_id, message.client_id)
            text, ts, mid = m.text, _ms(m.created_at), str(m.id)
            await uow.commit()
        if self.hub is None:
            await self._broadcast_chat(room, {"id": mid, "text": text, "ts": ts, "sender_role": role,
                                              "sender_name": peer.display_name, "photo_id": None})

    async def _broadcast_chat(self, room: CallRoom, payload: dict[str, Any]) -> None:
        mid = str(payload.get("id", ""))
        sender, client_id = room.chat_senders.pop(mid, (None, None))
        role = str(payload.get("sender_role") or "")
        if sender is None:
            sender = {"patient": "patient", "clinician": "clinician"}.get(role, "guest")
        ts = payload.get("ts")
        ts_ms = _ms(datetime.fromisoformat(ts)) if isinstance(ts, str) else int(ts or _ms())
        photo_id = payload.get("photo_id")
        if photo_id:
            await self._share_photo(room, str(photo_id), sender, ts_ms)
            return
        text = str(payload.get("text") or "").strip()
        if not text:
            return
        await room.broadcast(p.ChatMessage(id=mid, sender=sender, text=text, ts=ts_ms, client_id=client_id,
                                           sender_name=str(payload.get("sender_name") or "")[:200] or None,
                                           sender_role=role[:16] or None))

    async def _share_photo(self, room: CallRoom, photo_id: str, sender: str, ts: int) -> None:
        if photo_id in room.shared_photos:
            return  # announced by the uploader and by the upload's chat entry: show it once
        room.shared_photos.add(photo_id)
        await room.broadcast(p.PhotoShared(photo_id=photo_id, sender=sender, url=f"/api/v1/photos/{photo_id}",
                                           ts=ts))

    async def photo(self, room: CallRoom, peer: Peer, message: p.PhotoAnnounce) -> None:
        try:
            pid = uuid.UUID(message.photo_id)
        except ValueError:
            raise Forbidden("unknown photo", code="unknown_photo") from None
        async with self.uow() as uow:
            row = await uow.session.get(StoredPhoto, pid)
            if row is None or row.encounter_id != room.encounter_id:
                raise Forbidden("unknown photo", code="unknown_photo")
        await self._share_photo(room, str(pid), peer.peer_id, _ms())

    async def screenshare(self, room: CallRoom, peer: Peer, message: p.ScreenShare) -> None:
        if peer.role != "clinician":
            raise Forbidden("only clinicians can share their screen", code="forbidden")
        peer.screensharing = message.active
        await room.broadcast(p.ScreenShareChanged(peer_id=peer.peer_id, active=message.active), admitted_only=True)

    # --- recording -----------------------------------------------------------------------------------------------

    async def consent(self, room: CallRoom, peer: Peer, message: p.RecordConsent) -> None:
        peer.consent = message.consent
        await self._mark(room, peer, connected=True)
        await self._sync_recording(room, requested_by=peer)
        await room.broadcast(p.RecordConsentChanged(peer_id=peer.peer_id, consent=message.consent,
                                                    recording=room.recording is not None), admitted_only=True)

    async def _sync_recording(self, room: CallRoom, requested_by: Peer | None = None) -> bool:
        """Record exactly while every admitted, connected participant (at least two) consents.

        Returns True when recording started or stopped.
        """
        if room.closed:
            return False
        present = [peer for peer in room.peers.values() if peer.admitted and peer.conn is not None]
        wanted = len(present) >= 2 and all(peer.consent for peer in present) and room.in_relay
        if wanted and room.recording is None:
            await self._start_recording(room, present, requested_by)
            return room.recording is not None
        if not wanted and room.recording is not None:
            await self._stop_recording(room)
            return True
        return False

    async def _start_recording(self, room: CallRoom, present: list[Peer], requested_by: Peer | None) -> None:
        clinician = room.peers.get("clinician")
        if clinician is None:
            return
        settings = self.svcs.settings
        rec_id = uuid.uuid4()
        try:
            async with self.uow() as uow:
                e = await svc.load(uow, clinician.principal, room.encounter_id, "encounter.manage")
                decision: dict[str, Any] = {}
                if self.policy is not None:
                    subject = await self.policy.subject_for_encounter(uow, e)
                    decision = await self.policy.require(uow, subject, "record", point="recording",
                                                         participants=e.participants)
                directory = recordings_root(settings) / rec_id.hex
                directory.mkdir(parents=True, exist_ok=True)
                sink = EncryptedWebmRecorder(directory, recording_key(settings, rec_id), prefix="rec")
                uow.add(Recording(id=rec_id, encounter_id=e.id, directory=rec_id.hex, started_by_id=clinician.user_id,
                                  consents=sorted(peer.peer_id for peer in present), policy_decision=decision))
                uow.audit.record(clinician.principal, "recording.start", object_type="Media", object_id=rec_id,
                                 organization_id=e.organization_id, patient_id=e.patient_id,
                                 detail={"consents": sorted(peer.peer_id for peer in present)})
                await uow.commit()
        except DomainError as exc:
            for peer in (clinician, requested_by):
                if peer is not None:
                    await room.send(peer, p.Error(code=exc.code, message=exc.message[:500]))
            return
        await self.relay.start_recording(room.rid, sink)
        room.recording = ActiveRecording(id=rec_id, sink=sink)

    async def _stop_recording(self, room: CallRoom) -> None:
        active, room.recording = room.recording, None
        if active is None:
            return
        with contextlib.suppress(RelayError):
            await self.relay.stop_recording(room.rid)
        await active.sink.close()
        async with self.uow() as uow:
            row = await uow.session.get(Recording, active.id)
            if row is not None:
                row.ended_at = utcnow()
                row.files = [f.name for f in active.sink.files]
            await uow.commit()

    # --- the hub: changes made elsewhere (HTTP API, other nodes) ------------------------------------------------

    async def _watch(self, room: CallRoom) -> None:
        sub = self.hub.subscribe(svc.encounter_topic(room.encounter_id), svc.queue_topic(room.organization_id))
        try:
            while not room.closed:
                event = await sub.get()
                if event is None:
                    continue
                await self._on_hub(room, event)
        finally:
            sub.close()

    async def _on_hub(self, room: CallRoom, event: dict[str, Any]) -> None:
        kind = event.get("type")
        if str(event.get("topic", "")).startswith("queue:"):
            for peer in list(room.peers.values()):
                await self.send_waiting(room, peer)
            return
        if kind == "chat":
            await self._broadcast_chat(room, dict(event.get("message") or {}))
        elif kind == "encounter.admitted":
            await self.apply_admission(room)
        elif kind == "encounter.mode":
            await self.apply_mode(room, str(event.get("mode")), "clinician")
        elif event.get("status") in ("completed", "abandoned", "cancelled", "no_show"):
            await self._close_room(room, notify=True, reason=f"the visit is {event.get('status')}")

    # --- observability ----------------------------------------------------------------------------------------

    async def _sample_quality(self) -> None:
        while True:
            await asyncio.sleep(self.quality_interval)
            with contextlib.suppress(Exception):
                await self.sample_once()

    async def sample_once(self) -> int:
        samples: list[QualitySample] = []
        for room in list(self.rooms.values()):
            for peer in list(room.peers.values()):
                if not peer.in_relay:
                    continue
                try:
                    stats = await self.relay.peer_stats(room.rid, peer.peer_id)
                except RelayError:
                    continue
                samples.append(quality_sample(room.encounter_id, peer.peer_id, stats))
        if samples:
            async with self.uow() as uow:
                for sample in samples:
                    uow.add(sample)
                await uow.commit()
        return len(samples)


def quality_sample(encounter_id: uuid.UUID, peer_id: str, stats: dict[str, Any]) -> QualitySample:
    inbound = stats.get("inbound") or {}
    received = sum(int(v.get("packets_received", 0)) for v in inbound.values())
    lost = sum(max(0, int(v.get("packets_lost", 0))) for v in inbound.values())
    jitter = max((float(v.get("jitter_seconds", 0.0)) for v in inbound.values()), default=None)
    rtt = stats.get("rtt_seconds")
    return QualitySample(
        encounter_id=encounter_id, peer_id=peer_id, source="relay",
        rtt_ms=rtt * 1000 if rtt is not None else None,
        jitter_ms=jitter * 1000 if jitter is not None else None,
        loss_pct=round(100 * lost / (received + lost), 3) if received + lost else None,
        bitrate_in_bps=stats.get("bitrate_in_bps"), bitrate_out_bps=stats.get("bitrate_out_bps"),
        frames_in=sum((stats.get("frames_in") or {}).values()) or None,
        frames_out=sum((stats.get("frames_out") or {}).values()) or None,
    )


# --- the WebSocket -------------------------------------------------------------------------------------------

Handler = Callable[[CallManager, CallRoom, Peer, Any], Awaitable[None]]


def manager(app: web.Application) -> CallManager:
    m: CallManager = services(app).extra[MANAGER_KEY]
    return m


async def signal_socket(request: web.Request) -> web.StreamResponse:
    check_origin(request)
    mgr = manager(request.app)
    try:
        eid = uuid.UUID(request.match_info["encounter_id"])
    except ValueError:
        raise web.HTTPNotFound() from None
    cookie: Principal = request["principal"]
    query_token = request.query.get("token")
    # Refuse before the upgrade with a plain JSON error (never the sign-in redirect pages get), so a bad
    # link is a 401/403 rather than a socket that opens and closes.
    if query_token:
        try:
            async with mgr.uow() as uow:
                await tokens.verify(uow, query_token, eid)
        except DomainError as exc:
            await audit_failure(request, exc)
            return error_response(exc.status, exc.code, exc.message)
    elif not cookie.authenticated or cookie.extra.get("mfa_pending"):
        return error_response(401, "unauthenticated", "sign in or use a room token")
    ws = web.WebSocketResponse(max_msg_size=4 * p.MAX_MESSAGE_BYTES, heartbeat=None)
    await ws.prepare(request)
    conn: Connection | None = None
    room: CallRoom | None = None
    left = False
    try:
        joined = await _await_join(ws)
        if joined is None:
            return ws
        try:
            peer, resume, resumed = await mgr.authenticate(eid, joined, cookie)
        except DomainError as exc:
            await _refuse(ws, exc.code, exc.message)
            return ws
        async with mgr.uow() as uow:
            encounter = await uow.session.get(Encounter, eid)
        assert encounter is not None
        room = mgr.room_of(encounter)
        conn = Connection(ws=ws, peer=peer)
        await mgr.attach(room, peer, conn, resume, resumed)
        left = await _serve(mgr, room, conn)
    finally:
        if conn is not None and room is not None and not room.closed:
            await mgr.detach(room, conn, left=left)
        if not ws.closed:
            await ws.close()
    return ws


async def _refuse(ws: web.WebSocketResponse, code: str, message: str) -> None:
    with contextlib.suppress(Exception):
        await ws.send_str(p.error_message(code, message, fatal=True))
        await ws.close(code=p.CLOSE_POLICY_VIOLATION, message=code.encode()[:120])


async def _await_join(ws: web.WebSocketResponse) -> p.Join | None:
    """The first frame must be ``join``; ``ping`` before it is answered (the device check uses it)."""
    deadline = time.monotonic() + JOIN_TIMEOUT
    limits = Limits()
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            await _refuse(ws, "join_timeout", "send join first")
            return None
        try:
            msg = await ws.receive(timeout=remaining)
        except TimeoutError:
            await _refuse(ws, "join_timeout", "send join first")
            return None
        if msg.type != WSMsgType.TEXT:
            return None
        try:
            message = p.parse_client_message(msg.data)
        except p.ProtocolError as exc:
            await ws.send_str(p.error_message(exc.code, exc.message))
            if limits.strike():
                await _refuse(ws, "too_many_errors", "too many bad frames")
                return None
            continue
        if isinstance(message, p.Join):
            return message
        if isinstance(message, p.Ping) and limits.allow("ping"):
            await ws.send_str(p.serialize_server_message(p.Pong(ts=message.ts, server_ts=_ms())))
            continue
        await ws.send_str(p.error_message("join_first", "send join first"))
        if limits.strike():
            await _refuse(ws, "too_many_errors", "too many bad frames")
            return None


async def _serve(mgr: CallManager, room: CallRoom, conn: Connection) -> bool:
    """The message loop; returns True when the participant left on purpose."""
    ws = conn.ws
    while not ws.closed and not conn.closing:
        try:
            msg = await ws.receive(timeout=p.IDLE_TIMEOUT_SECONDS)
        except TimeoutError:
            await _refuse(ws, "idle_timeout", "no message for too long; resume with your token")
            return False
        if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
            return False
        if msg.type != WSMsgType.TEXT:
            error: tuple[str, str] | None = ("bad_message", "send text frames")
        else:
            error = None
            try:
                message = p.parse_client_message(msg.data)
            except p.ProtocolError as exc:
                error = (exc.code, exc.message)
            else:
                if not conn.limits.allow(message.type):
                    error = ("rate_limited", f"too many {message.type} messages")
                elif isinstance(message, p.Leave):
                    await ws.close(code=1000, message=b"left")
                    return True
                else:
                    try:
                        await _dispatch(mgr, room, conn.peer, message)
                    except DomainError as exc:
                        # Refusals by the services (policy, state machine, authorization) are answers, not abuse.
                        await room.send(conn.peer, p.Error(code=_code(exc.code), message=exc.message[:500]))
        if error is not None:
            await ws.send_str(p.error_message(*error))
            if conn.limits.strike():
                await _refuse(ws, "too_many_errors", "too many refused frames")
                return False
    return False


def _code(code: str) -> str:
    clean = "".join(ch for ch in code.lower() if ch.isalpha() or ch == "_")[:40]
    return clean or "error"


async def _dispatch(mgr: CallManager, room: CallRoom, peer: Peer, message: Any) -> None:
    if isinstance(message, p.Ping):
        await room.send(peer, p.Pong(ts=message.ts, server_ts=_ms()))
    elif isinstance(message, p.Offer):
        await mgr.offer(room, peer, message)
    elif isinstance(message, p.Ice):
        return  # the relay answers with every candidate; trickled ones are not needed (docs/media.md)
    elif isinstance(message, p.Admit):
        await mgr.admit(room, peer, message.peer_id)
    elif isinstance(message, p.ModeRequest):
        await mgr.change_mode(room, peer, message)
    elif isinstance(message, p.ChatSend):
        await mgr.chat(room, peer, message)
    elif isinstance(message, p.PhotoAnnounce):
        await mgr.photo(room, peer, message)
    elif isinstance(message, p.ScreenShare):
        await mgr.screenshare(room, peer, message)
    elif isinstance(message, p.RecordConsent):
        await mgr.consent(room, peer, message)
    elif isinstance(message, p.Join):
        await room.send(peer, p.Error(code="already_joined", message="this connection has already joined"))


# --- installation --------------------------------------------------------------------------------------------


def _metrics(app: web.Application, mgr: CallManager) -> None:
    reg = services(app).metrics

    def stat(name: str) -> Callable[[], float]:
        return lambda: float(getattr(mgr.relay.stats(), name))

    for name, doc in (("rooms", "Media relay rooms"), ("peers", "Peers connected to the media relay"),
                      ("admitted_peers", "Admitted peers"), ("forwarded_tracks", "Tracks being forwarded")):
        Gauge(f"telemed_relay_{name}", doc, registry=reg).set_function(stat(name))
    Gauge("telemed_relay_cpu_seconds", "CPU seconds used by the process hosting the relay",
          registry=reg).set_function(stat("cpu_seconds"))
    Gauge("telemed_call_rooms", "Calls with at least one participant", registry=reg).set_function(
        lambda: float(len(mgr.rooms)))
    Gauge("telemed_call_sockets", "Open signaling sockets", registry=reg).set_function(
        lambda: float(sum(len(room.connected) for room in mgr.rooms.values())))


async def _start(app: web.Application) -> None:
    await manager(app).start()


async def _stop(app: web.Application) -> None:
    await manager(app).close()


def install(app: web.Application) -> None:
    svcs = services(app)
    if svcs.extra.get(SIGNAL_OWNER):
        # Another worker hosts the call rooms (clinic.serve): forward the socket there, run no relay here.
        from signaling.forward import forward_socket

        app.router.add_get("/ws/signal/{encounter_id}", forward_socket)
        return
    mgr = svcs.extra.setdefault(MANAGER_KEY, CallManager(app))
    _metrics(app, mgr)
    app.on_startup.append(_start)
    app.on_cleanup.append(_stop)
    app.router.add_get("/ws/signal/{encounter_id}", signal_socket)
