"""The relay boundary and its in-process implementation."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Protocol

from .errors import BadKinds, DuplicatePeer, RelayClosed, RoomExists, RoomFull, UnknownPeer, UnknownRoom
from .events import EventCallback, RelayEvent, RelayStats
from .ice import IceServer
from .peer import RelayPeer
from .recording import RecordingSink
from .room import Room
from .slots import MEDIA_KINDS, parse_offer

logger = logging.getLogger(__name__)

MAX_CAPACITY = 8
_STATE_EVENTS = {"connecting", "connected", "disconnected", "failed", "closed"}


class MediaRelay(Protocol):
    """What signaling may ask of a relay.

    Only strings, frozensets and dataclasses cross this boundary, so an
    implementation forwarding the calls to a relay worker on another machine
    can stand in for :class:`LocalMediaRelay` unchanged.
    """

    async def create_room(self, room_id: str, *, capacity: int = 4) -> None: ...

    async def add_peer(
        self,
        room_id: str,
        peer_id: str,
        offer_sdp: str,
        *,
        kinds: frozenset[str],
        admitted: bool,
        ice_servers: list[IceServer] | None = None,
    ) -> str: ...

    async def renegotiate(self, room_id: str, peer_id: str, offer_sdp: str) -> str: ...

    async def admit(self, room_id: str, peer_id: str) -> None: ...

    async def set_kinds(self, room_id: str, peer_id: str, kinds: frozenset[str]) -> None: ...

    async def remove_peer(self, room_id: str, peer_id: str) -> None: ...

    async def close_room(self, room_id: str) -> None: ...

    async def close(self) -> None: ...

    def stats(self) -> RelayStats: ...

    async def peer_stats(self, room_id: str, peer_id: str) -> dict[str, Any]: ...


def _check_kinds(kinds: frozenset[str]) -> frozenset[str]:
    kinds = frozenset(kinds)
    if not kinds <= MEDIA_KINDS:
        raise BadKinds(f"unknown media kinds: {sorted(kinds - MEDIA_KINDS)}")
    return kinds


class LocalMediaRelay:
    """Runs every room inside the current process and event loop."""

    def __init__(
        self,
        *,
        on_event: EventCallback | None = None,
        ice_servers: list[IceServer] | None = None,
        negotiation_timeout: float = 10.0,
    ) -> None:
        self.on_event = on_event
        self._ice_servers = ice_servers
        self._timeout = negotiation_timeout
        self._rooms: dict[str, Room] = {}
        self._ice_by_peer: dict[tuple[str, str], list[IceServer] | None] = {}
        self._event_tasks: set[asyncio.Task[None]] = set()
        self._closed = False

    def _room(self, room_id: str) -> Room:
        if self._closed:
            raise RelayClosed("relay is closed")
        room = self._rooms.get(room_id)
        if room is None:
            raise UnknownRoom(room_id)
        return room

    def _peer(self, room_id: str, peer_id: str) -> tuple[Room, RelayPeer]:
        room = self._room(room_id)
        peer = room.peers.get(peer_id)
        if peer is None:
            raise UnknownPeer(peer_id)
        return room, peer

    def _emit(self, event: RelayEvent) -> None:
        callback = self.on_event
        if callback is None:
            return

        async def deliver() -> None:
            try:
                await callback(event)
            except Exception:
                # A broken listener must not take media down with it.
                logger.exception("relay event callback failed for %s", event)

        task = asyncio.get_running_loop().create_task(deliver())
        self._event_tasks.add(task)
        task.add_done_callback(self._event_tasks.discard)

    def _on_peer_state(self, peer: RelayPeer, state: str) -> None:
        if state in _STATE_EVENTS:
            self._emit(RelayEvent(room_id=peer.room_id, peer_id=peer.peer_id, kind=state))  # type: ignore[arg-type]

    async def create_room(self, room_id: str, *, capacity: int = 4) -> None:
        if self._closed:
            raise RelayClosed("relay is closed")
        if room_id in self._rooms:
            raise RoomExists(room_id)
        if not 2 <= capacity <= MAX_CAPACITY:
            # Every participant re-encodes for every other one, so the cost
            # grows with the square of the room size.
            raise ValueError(f"capacity must be between 2 and {MAX_CAPACITY}")
        self._rooms[room_id] = Room(room_id, capacity, self._emit)

    async def add_peer(
        self,
        room_id: str,
        peer_id: str,
        offer_sdp: str,
        *,
        kinds: frozenset[str],
        admitted: bool,
        ice_servers: list[IceServer] | None = None,
    ) -> str:
        room = self._room(room_id)
        kinds = _check_kinds(kinds)
        if peer_id in room.peers:
            raise DuplicatePeer(peer_id)
        if len(room.peers) >= room.capacity:
            raise RoomFull(room_id)
        parse_offer(offer_sdp)  # fail fast, before a slot is reserved
        peer = RelayPeer(room_id, peer_id, kinds=kinds, admitted=admitted, on_state=self._on_peer_state)
        # Reserve the place before the slow part so concurrent joins respect capacity.
        room.peers[peer_id] = peer
        servers = ice_servers if ice_servers is not None else self._ice_servers
        self._ice_by_peer[(room_id, peer_id)] = servers
        try:
            answer = await peer.negotiate(offer_sdp, servers, self._timeout)
        except BaseException:
            if room.peers.get(peer_id) is peer:
                del room.peers[peer_id]
            self._ice_by_peer.pop((room_id, peer_id), None)
            await peer.close()
            raise
        await room.refresh()
        return answer

    async def renegotiate(self, room_id: str, peer_id: str, offer_sdp: str) -> str:
        room, peer = self._peer(room_id, peer_id)
        answer = await peer.negotiate(offer_sdp, self._ice_by_peer.get((room_id, peer_id)), self._timeout)
        if room.peers.get(peer_id) is not peer:
            raise UnknownPeer(peer_id)
        # The new connection may have different mids, so re-announce the slots.
        await room.refresh(announce_all=True)
        return answer

    async def admit(self, room_id: str, peer_id: str) -> None:
        room, peer = self._peer(room_id, peer_id)
        if not peer.admitted:
            peer.admitted = True
            await room.refresh()

    async def hold(self, room_id: str, peer_id: str) -> None:
        """Send an admitted participant back to the waiting room."""
        room, peer = self._peer(room_id, peer_id)
        if peer.admitted:
            peer.admitted = False
            await room.refresh()

    async def set_kinds(self, room_id: str, peer_id: str, kinds: frozenset[str]) -> None:
        room, peer = self._peer(room_id, peer_id)
        kinds = _check_kinds(kinds)
        peer.kinds = kinds
        if kinds - peer.negotiated_kinds:
            # Those m-lines were answered inactive; only a new offer reopens them.
            self._emit(
                RelayEvent(
                    room_id=room_id,
                    peer_id=peer_id,
                    kind="renegotiation-needed",
                    detail=",".join(sorted(kinds - peer.negotiated_kinds)),
                )
            )
        await room.refresh()

    async def remove_peer(self, room_id: str, peer_id: str) -> None:
        room, peer = self._peer(room_id, peer_id)
        del room.peers[peer_id]
        self._ice_by_peer.pop((room_id, peer_id), None)
        await peer.close()
        await room.refresh()

    async def close_room(self, room_id: str) -> None:
        room = self._room(room_id)
        del self._rooms[room_id]
        await self._shutdown_room(room)

    async def _shutdown_room(self, room: Room) -> None:
        peers = list(room.peers.values())
        room.peers.clear()
        sink = await room.detach_recorder()
        await asyncio.gather(*(peer.close() for peer in peers), return_exceptions=True)
        for peer in peers:
            self._ice_by_peer.pop((room.room_id, peer.peer_id), None)
        if sink is not None:
            await sink.close()

    async def close(self) -> None:
        if self._closed:
            return
        rooms = list(self._rooms.values())
        self._rooms.clear()
        self._closed = True
        for room in rooms:
            await self._shutdown_room(room)
        if self._event_tasks:
            await asyncio.wait(list(self._event_tasks), timeout=1.0)

    async def start_recording(self, room_id: str, sink: RecordingSink) -> None:
        room = self._room(room_id)
        if room.recorder is not None:
            raise RuntimeError("room is already recording")
        room.recorder = sink
        await room.refresh()

    async def stop_recording(self, room_id: str) -> None:
        room = self._room(room_id)
        sink = await room.detach_recorder()
        if sink is not None:
            await sink.close()

    def stats(self) -> RelayStats:
        peers = [p for room in self._rooms.values() for p in room.peers.values()]
        return RelayStats(
            rooms=len(self._rooms),
            peers=len(peers),
            admitted_peers=sum(1 for p in peers if p.admitted),
            forwarded_tracks=sum(room.forwarded_tracks() for room in self._rooms.values()),
            cpu_seconds=time.process_time(),
        )

    async def peer_stats(self, room_id: str, peer_id: str) -> dict[str, Any]:
        _, peer = self._peer(room_id, peer_id)
        return await peer.stats()
