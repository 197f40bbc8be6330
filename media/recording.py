"""The boundary between the relay and whatever records a consultation."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from aiortc.mediastreams import MediaStreamTrack


@runtime_checkable
class RecordingSink(Protocol):
    """Receives the tracks of admitted participants while recording is on.

    Each track is a relay-owned subscription that follows the same policy as
    what other participants receive: it goes quiet while its owner is held,
    audio-only or disallowed that kind, and the relay stops it (``recv`` raises
    ``MediaStreamError``) after ``remove_track``. Consent is the caller's job:
    the relay records whoever is in the room once a sink is attached.
    """

    async def add_track(self, peer_id: str, track: MediaStreamTrack) -> None: ...

    async def remove_track(self, peer_id: str, kind: str) -> None: ...

    async def close(self) -> None: ...
