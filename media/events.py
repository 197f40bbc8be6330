"""Values the relay hands to the layers above it: events and counters."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal

RelayEventKind = Literal[
    "connecting",
    "connected",
    "disconnected",
    "failed",
    "closed",
    "slot-assigned",
    "slot-released",
    "renegotiation-needed",
]


@dataclass(frozen=True)
class RelayEvent:
    """Something signaling may need to tell a client about.

    ``failed`` and ``disconnected`` are the cue to send a reconnect hint; the
    ``slot-*`` events tell a client which of its receive transceivers (by mid)
    now carries which participant.
    """

    room_id: str
    peer_id: str
    kind: RelayEventKind
    remote_peer_id: str | None = None
    slot: int | None = None
    audio_mid: str | None = None
    video_mid: str | None = None
    detail: str | None = None


EventCallback = Callable[[RelayEvent], Awaitable[None]]


@dataclass(frozen=True)
class RelayStats:
    """Process-wide gauges, shaped for Prometheus."""

    rooms: int
    peers: int
    admitted_peers: int
    forwarded_tracks: int
    cpu_seconds: float
