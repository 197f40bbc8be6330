"""Synthetic aiortc browsers for relay tests."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Callable

from aiortc import RTCBundlePolicy, RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import AudioStreamTrack, MediaStreamError, MediaStreamTrack, VideoStreamTrack
from av import VideoFrame

from media import RelayEvent


class SmallVideoTrack(VideoStreamTrack):
    """Tiny frames keep several encoders per test affordable on two cores."""

    async def recv(self) -> VideoFrame:
        pts, time_base = await self.next_timestamp()
        frame = VideoFrame(width=160, height=120, format="yuv420p")
        for plane in frame.planes:
            plane.update(bytes([128]) * plane.buffer_size)
        frame.pts = pts
        frame.time_base = time_base
        return frame


class Client:
    """A participant following the fixed-slot layout from docs/media.md."""

    def __init__(self, name: str, *, slots: int = 3, audio: bool = True, video: bool = True) -> None:
        self.name = name
        self.slots = slots
        self.send_audio = audio
        self.send_video = video
        # aiortc itself needs max-bundle for more than one m-line per kind.
        self.pc = RTCPeerConnection(RTCConfiguration(bundlePolicy=RTCBundlePolicy.MAX_BUNDLE))
        self.frames: Counter[str] = Counter()  # mid -> frames received
        self.kind_of: dict[str, str] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self.pc.on("track", self._on_track)

    def _on_track(self, track: MediaStreamTrack) -> None:
        mid = next(t.mid for t in self.pc.getTransceivers() if t.receiver.track is track)
        assert mid is not None
        self.kind_of[mid] = track.kind
        self._tasks.append(asyncio.ensure_future(self._consume(mid, track)))

    async def _consume(self, mid: str, track: MediaStreamTrack) -> None:
        with contextlib.suppress(MediaStreamError):
            while True:
                await track.recv()
                self.frames[mid] += 1

    async def offer(self) -> str:
        audio: MediaStreamTrack | str = AudioStreamTrack() if self.send_audio else "audio"
        video: MediaStreamTrack | str = SmallVideoTrack() if self.send_video else "video"
        self.pc.addTransceiver(audio, direction="sendrecv" if self.send_audio else "recvonly")
        self.pc.addTransceiver(video, direction="sendrecv" if self.send_video else "recvonly")
        for _ in range(self.slots - 1):
            self.pc.addTransceiver("audio", direction="recvonly")
            self.pc.addTransceiver("video", direction="recvonly")
        await self.pc.setLocalDescription(await self.pc.createOffer())
        return self.pc.localDescription.sdp

    async def accept(self, answer: str) -> None:
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))

    def total(self, kind: str) -> int:
        return sum(n for mid, n in self.frames.items() if self.kind_of.get(mid) == kind)

    async def close(self) -> None:
        await self.pc.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


async def eventually(predicate: Callable[[], bool], within: float = 8.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while True:
        if predicate():
            return
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError("condition not met in time")
        await asyncio.sleep(0.05)


class EventLog:
    def __init__(self) -> None:
        self.events: list[RelayEvent] = []

    async def __call__(self, event: RelayEvent) -> None:
        self.events.append(event)

    def slot_mid(self, receiver: str, remote: str, kind: str) -> str | None:
        """The mid on which ``receiver`` currently gets ``remote``'s media."""
        mid: str | None = None
        for event in self.events:
            if event.peer_id == receiver and event.remote_peer_id == remote:
                if event.kind == "slot-assigned":
                    mid = event.audio_mid if kind == "audio" else event.video_mid
                elif event.kind == "slot-released":
                    mid = None
        return mid

    def states(self, peer_id: str) -> list[str]:
        return [e.kind for e in self.events if e.peer_id == peer_id and e.remote_peer_id is None]
