"""One participant's server-side peer connection and its media endpoints."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

from aiortc import RTCBundlePolicy, RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamTrack
from aiortc.stats import (
    RTCInboundRtpStreamStats,
    RTCOutboundRtpStreamStats,
    RTCRemoteInboundRtpStreamStats,
    RTCTransportStats,
)

from .errors import BadSdp, NegotiationTimeout, RelayError, UnknownPeer
from .forwarding import SlotTrack, TrackForwarder
from .ice import IceServer
from .slots import OfferLayout, parse_offer

logger = logging.getLogger(__name__)

_CLOCK_RATES = {"audio": 48000, "video": 90000}

StateCallback = Callable[["RelayPeer", str], None]


class RelayPeer:
    """Owns the aiortc connection of one participant.

    Every (re)negotiation builds a fresh ``RTCPeerConnection`` and swaps it in:
    aiortc starts ICE exactly once per transport and cannot restart it, so an
    ICE restart or a reconnect from a new browser connection is served by a
    new server-side connection. Room membership, admission and slot
    assignments live on this object and survive the swap.
    """

    def __init__(
        self,
        room_id: str,
        peer_id: str,
        *,
        kinds: frozenset[str],
        admitted: bool,
        on_state: StateCallback,
    ) -> None:
        self.room_id = room_id
        self.peer_id = peer_id
        self.kinds = kinds
        self.admitted = admitted
        self.negotiated_kinds: frozenset[str] = frozenset()
        self.joined_at = time.monotonic()
        self.pc: RTCPeerConnection | None = None
        self.layout = OfferLayout()
        self.forwarders: dict[str, TrackForwarder] = {}
        self.slot_tracks: dict[str, list[SlotTrack]] = {"audio": [], "video": []}
        self.connection_state = "new"
        self.closed = False
        self._on_state = on_state
        self._negotiating = asyncio.Lock()
        self._last_bytes: tuple[float, int, int] | None = None

    @property
    def slot_count(self) -> int:
        return max(len(self.slot_tracks["audio"]), len(self.slot_tracks["video"]))

    def slot_track(self, kind: str, index: int) -> SlotTrack | None:
        tracks = self.slot_tracks[kind]
        return tracks[index] if index < len(tracks) else None

    async def negotiate(self, offer_sdp: str, ice_servers: list[IceServer] | None, time_limit: float) -> str:
        _, layout = parse_offer(offer_sdp)
        async with self._negotiating:
            if self.closed:
                raise UnknownPeer(self.peer_id)
            kinds = self.kinds
            pc = self._new_connection(ice_servers)
            slot_tracks: dict[str, list[SlotTrack]] = {"audio": [], "video": []}
            published: dict[str, MediaStreamTrack] = {}
            try:
                async with asyncio.timeout(time_limit):
                    await pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
                    for kind in ("audio", "video"):
                        if kind in kinds:
                            slot_tracks[kind] = [SlotTrack(kind) for _ in layout.receive[kind]]
                    for transceiver in pc.getTransceivers():
                        kind, mid = transceiver.kind, transceiver.mid
                        if mid is None:
                            continue
                        transceiver.direction = layout.answer_direction(mid, kind, kinds)
                        if kind not in kinds:
                            continue
                        if mid in layout.receive[kind]:
                            index = layout.receive[kind].index(mid)
                            transceiver.sender.replaceTrack(slot_tracks[kind][index])
                        if layout.publish.get(kind) == mid and transceiver.receiver.track is not None:
                            published[kind] = transceiver.receiver.track
                    answer = await pc.createAnswer()
                    await pc.setLocalDescription(answer)
            except TimeoutError as exc:
                await self._discard(pc, slot_tracks)
                raise NegotiationTimeout(f"negotiation for {self.peer_id} timed out") from exc
            except RelayError:
                await self._discard(pc, slot_tracks)
                raise
            except Exception as exc:  # aiortc reports bad offers with assorted exception types
                await self._discard(pc, slot_tracks)
                raise BadSdp(f"offer rejected: {exc}") from exc

            if self.closed:
                await self._discard(pc, slot_tracks)
                raise UnknownPeer(self.peer_id)

            old_pc, old_forwarders, old_slots = self.pc, self.forwarders, self.slot_tracks
            self.pc = pc
            self.layout = layout
            self.negotiated_kinds = kinds
            self.slot_tracks = slot_tracks
            self.forwarders = {kind: TrackForwarder(track) for kind, track in published.items()}
            for forwarder in self.forwarders.values():
                forwarder.start()
            self._last_bytes = None
            await self._teardown(old_pc, old_forwarders, old_slots)
            return pc.localDescription.sdp

    def _new_connection(self, ice_servers: list[IceServer] | None) -> RTCPeerConnection:
        # aiortc's default "balanced" policy leaves the second and later
        # m-lines of one kind on a transport that bundling then discards, so
        # those slots never start sending; max-bundle keeps every m-line on the
        # first transport, which is what browsers negotiate anyway.
        config = RTCConfiguration(
            iceServers=[s.to_aiortc() for s in ice_servers or []],
            bundlePolicy=RTCBundlePolicy.MAX_BUNDLE,
        )
        pc = RTCPeerConnection(configuration=config)

        @pc.on("connectionstatechange")
        def on_state() -> None:
            # A replaced connection still reports its own shutdown; only the
            # current one speaks for the participant.
            if pc is self.pc and not self.closed:
                self.connection_state = pc.connectionState
                self._on_state(self, pc.connectionState)

        return pc

    async def _discard(self, pc: RTCPeerConnection, slot_tracks: dict[str, list[SlotTrack]]) -> None:
        await self._teardown(pc, {}, slot_tracks)

    @staticmethod
    async def _teardown(
        pc: RTCPeerConnection | None,
        forwarders: dict[str, TrackForwarder],
        slot_tracks: dict[str, list[SlotTrack]],
    ) -> None:
        for forwarder in forwarders.values():
            await forwarder.stop()
        for tracks in slot_tracks.values():
            for track in tracks:
                track.stop()
        if pc is not None:
            with contextlib.suppress(Exception):
                await pc.close()

    async def close(self) -> None:
        self.closed = True
        pc, forwarders, slots = self.pc, self.forwarders, self.slot_tracks
        self.pc, self.forwarders, self.slot_tracks = None, {}, {"audio": [], "video": []}
        await self._teardown(pc, forwarders, slots)
        self.connection_state = "closed"

    async def stats(self) -> dict[str, Any]:
        result: dict[str, Any] = {
            "peer_id": self.peer_id,
            "state": self.connection_state,
            "admitted": self.admitted,
            "kinds": sorted(self.kinds),
            "inbound": {},
            "outbound": {},
            "rtt_seconds": None,
            "bitrate_in_bps": None,
            "bitrate_out_bps": None,
            "frames_in": {kind: f.frames_in for kind, f in self.forwarders.items()},
            "frames_out": {kind: sum(t.frames_sent for t in ts) for kind, ts in self.slot_tracks.items()},
        }
        if self.pc is None:
            return result
        report = await self.pc.getStats()
        rtts: list[float] = []
        bytes_in = bytes_out = 0
        for stat in report.values():
            if isinstance(stat, RTCInboundRtpStreamStats):
                rate = _CLOCK_RATES.get(stat.kind, 90000)
                entry = result["inbound"].setdefault(
                    stat.kind, {"packets_received": 0, "packets_lost": 0, "jitter_seconds": 0.0}
                )
                entry["packets_received"] += stat.packetsReceived
                entry["packets_lost"] += stat.packetsLost
                entry["jitter_seconds"] = max(entry["jitter_seconds"], stat.jitter / rate)
            elif isinstance(stat, RTCOutboundRtpStreamStats):
                entry = result["outbound"].setdefault(stat.kind, {"packets_sent": 0, "bytes_sent": 0})
                entry["packets_sent"] += stat.packetsSent
                entry["bytes_sent"] += stat.bytesSent
            elif isinstance(stat, RTCRemoteInboundRtpStreamStats):
                rtts.append(stat.roundTripTime)
                entry = result["outbound"].setdefault(stat.kind, {"packets_sent": 0, "bytes_sent": 0})
                entry["remote_packets_lost"] = entry.get("remote_packets_lost", 0) + stat.packetsLost
            elif isinstance(stat, RTCTransportStats):
                bytes_in += stat.bytesReceived
                bytes_out += stat.bytesSent
        if rtts:
            result["rtt_seconds"] = max(rtts)
        now = time.monotonic()
        if self._last_bytes is not None:
            then, last_in, last_out = self._last_bytes
            elapsed = now - then
            if elapsed > 0:
                result["bitrate_in_bps"] = int((bytes_in - last_in) * 8 / elapsed)
                result["bitrate_out_bps"] = int((bytes_out - last_out) * 8 / elapsed)
        self._last_bytes = (now, bytes_in, bytes_out)
        return result
