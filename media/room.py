"""Room membership and the policy deciding which media flows where."""

from __future__ import annotations

import logging
from collections.abc import Callable

from .events import RelayEvent, RelayEventKind
from .forwarding import SlotTrack, TrackForwarder
from .peer import RelayPeer
from .recording import RecordingSink

logger = logging.getLogger(__name__)

EmitCallback = Callable[[RelayEvent], None]


class Room:
    """Participants of one consultation and the wiring between them.

    All policy lives in :meth:`may_flow`; :meth:`refresh` recomputes the whole
    wiring from scratch after any change, which for at most a handful of
    participants is cheaper to reason about than incremental updates.
    """

    def __init__(self, room_id: str, capacity: int, emit: EmitCallback) -> None:
        self.room_id = room_id
        self.capacity = capacity
        self.peers: dict[str, RelayPeer] = {}
        # receiver peer id -> {publishing peer id -> slot index}
        self.assignments: dict[str, dict[str, int]] = {}
        self.recorder: RecordingSink | None = None
        self.recorder_tracks: dict[tuple[str, str], SlotTrack] = {}
        self._emit = emit

    @staticmethod
    def may_flow(source: RelayPeer, receiver: RelayPeer, kind: str) -> bool:
        return (
            source is not receiver
            and source.admitted
            and receiver.admitted
            and kind in source.kinds
            and kind in receiver.kinds
        )

    @staticmethod
    def may_record(source: RelayPeer, kind: str) -> bool:
        return source.admitted and kind in source.kinds

    def forwarded_tracks(self) -> int:
        return sum(f.sink_count for p in self.peers.values() for f in p.forwarders.values())

    async def refresh(self, *, announce_all: bool = False) -> None:
        self._assign_slots(announce_all)
        self._wire()
        await self._sync_recorder()

    def _assign_slots(self, announce_all: bool) -> None:
        admitted = [p for p in self.peers.values() if p.admitted]
        for receiver_id in list(self.assignments):
            if receiver_id not in self.peers or not self.peers[receiver_id].admitted:
                del self.assignments[receiver_id]
        for receiver in admitted:
            current = self.assignments.setdefault(receiver.peer_id, {})
            for remote_id, index in list(current.items()):
                remote = self.peers.get(remote_id)
                if remote is None or not remote.admitted or index >= receiver.slot_count:
                    del current[remote_id]
                    self._slot_event(receiver, "slot-released", remote_id, index)
            if announce_all:
                for remote_id, index in current.items():
                    self._slot_event(receiver, "slot-assigned", remote_id, index)
            for remote in admitted:
                if remote is receiver or remote.peer_id in current:
                    continue
                free = sorted(set(range(receiver.slot_count)) - set(current.values()))
                if not free:
                    logger.warning(
                        "room %s: %s has no free slot for %s", self.room_id, receiver.peer_id, remote.peer_id
                    )
                    continue
                current[remote.peer_id] = free[0]
                self._slot_event(receiver, "slot-assigned", remote.peer_id, free[0])

    def _slot_event(self, receiver: RelayPeer, kind: RelayEventKind, remote_id: str, index: int) -> None:
        self._emit(
            RelayEvent(
                room_id=self.room_id,
                peer_id=receiver.peer_id,
                kind=kind,
                remote_peer_id=remote_id,
                slot=index,
                audio_mid=receiver.layout.slot_mid("audio", index) if kind == "slot-assigned" else None,
                video_mid=receiver.layout.slot_mid("video", index) if kind == "slot-assigned" else None,
            )
        )

    def _wire(self) -> None:
        for receiver in self.peers.values():
            assigned = self.assignments.get(receiver.peer_id, {})
            by_slot = {index: remote_id for remote_id, index in assigned.items()}
            for index in range(receiver.slot_count):
                remote = self.peers.get(by_slot.get(index, ""))
                for kind in ("audio", "video"):
                    track = receiver.slot_track(kind, index)
                    if track is None:
                        continue
                    source: TrackForwarder | None = None
                    if remote is not None and self.may_flow(remote, receiver, kind):
                        source = remote.forwarders.get(kind)
                    track.attach(source)

    async def _sync_recorder(self) -> None:
        if self.recorder is None:
            return
        for (peer_id, kind), track in list(self.recorder_tracks.items()):
            peer = self.peers.get(peer_id)
            if peer is None:
                track.stop()
                del self.recorder_tracks[(peer_id, kind)]
                await self.recorder.remove_track(peer_id, kind)
        for peer in self.peers.values():
            for kind, forwarder in peer.forwarders.items():
                key = (peer.peer_id, kind)
                existing = self.recorder_tracks.get(key)
                if existing is None:
                    if not self.may_record(peer, kind):
                        continue
                    existing = self.recorder_tracks[key] = SlotTrack(kind, private_frames=True)
                    await self.recorder.add_track(peer.peer_id, existing)
                existing.attach(forwarder if self.may_record(peer, kind) else None)
            for kind in ("audio", "video"):
                key = (peer.peer_id, kind)
                if kind not in peer.forwarders and key in self.recorder_tracks:
                    self.recorder_tracks[key].detach()

    async def detach_recorder(self) -> RecordingSink | None:
        sink, self.recorder = self.recorder, None
        for (peer_id, kind), track in self.recorder_tracks.items():
            track.stop()
            if sink is not None:
                await sink.remove_track(peer_id, kind)
        self.recorder_tracks.clear()
        return sink
