"""Typed failures raised at the relay boundary.

Signaling maps each subclass to a protocol error code, so callers never have to
inspect aiortc's own exceptions.
"""

from __future__ import annotations


class RelayError(Exception):
    """Base class for every error the relay raises on purpose."""

    code = "relay_error"


class UnknownRoom(RelayError):
    code = "unknown_room"


class RoomExists(RelayError):
    code = "room_exists"


class UnknownPeer(RelayError):
    code = "unknown_peer"


class DuplicatePeer(RelayError):
    code = "duplicate_peer"


class RoomFull(RelayError):
    code = "room_full"


class BadSdp(RelayError):
    code = "bad_sdp"


class BadKinds(RelayError):
    code = "bad_kinds"


class NegotiationTimeout(RelayError):
    code = "negotiation_timeout"


class RelayClosed(RelayError):
    code = "relay_closed"
