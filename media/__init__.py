"""Server-side WebRTC media relay built on aiortc."""

from .errors import (
    BadKinds,
    BadSdp,
    DuplicatePeer,
    NegotiationTimeout,
    RelayClosed,
    RelayError,
    RoomExists,
    RoomFull,
    UnknownPeer,
    UnknownRoom,
)
from .events import RelayEvent, RelayStats
from .ice import IceServer, turn_rest_credentials
from .recording import RecordingSink
from .relay import LocalMediaRelay, MediaRelay

__all__ = [
    "BadKinds",
    "BadSdp",
    "DuplicatePeer",
    "IceServer",
    "LocalMediaRelay",
    "MediaRelay",
    "NegotiationTimeout",
    "RecordingSink",
    "RelayClosed",
    "RelayError",
    "RelayEvent",
    "RelayStats",
    "RoomExists",
    "RoomFull",
    "UnknownPeer",
    "UnknownRoom",
    "turn_rest_credentials",
]
