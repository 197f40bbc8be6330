"""The forwarding path: every byte of relayed media goes through this module.

Today the path is *decode → fan-out → re-encode per receiver*, because that is
what aiortc's ``RTCRtpSender`` supports: a :class:`TrackForwarder` drains one
participant's decoded track and pushes each frame into the :class:`SlotTrack`
of every receiver allowed to see it; each receiver's sender encodes on its own.
A packet-level (no transcode) path can replace these two classes without the
room or peer code noticing, because they only call ``attach``/``detach`` and
read the counters.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from fractions import Fraction

from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av import AudioFrame, VideoFrame
from av.frame import Frame

logger = logging.getLogger(__name__)

# One shared timeline for every stamped frame, so a slot switching from one
# participant to another never sees its timestamps jump backwards.
RELAY_EPOCH = time.monotonic()
VIDEO_CLOCK_RATE = 90000
VIDEO_TIME_BASE = Fraction(1, VIDEO_CLOCK_RATE)

# Video keeps latency low by dropping stale frames; audio keeps a little more
# because every dropped audio frame is an audible click.
VIDEO_QUEUE = 2
AUDIO_QUEUE = 8
# How far an audio slot's sample counter may fall behind the wall clock (after
# a pause or a source switch) before it jumps forward to catch up.
AUDIO_RESYNC_SECONDS = 0.2


def _wall_ticks(rate: int) -> int:
    return int((time.monotonic() - RELAY_EPOCH) * rate)


def _copy_audio(frame: AudioFrame, pts: int) -> AudioFrame:
    # Audio frames are a few kilobytes, so each slot gets its own copy to carry
    # its own timestamps; the shared original is never mutated.
    copy = AudioFrame(format=frame.format.name, layout=frame.layout.name, samples=frame.samples)
    for src, dst in zip(frame.planes, copy.planes, strict=True):
        data = bytes(src)
        if len(data) != dst.buffer_size:
            data = data[: dst.buffer_size].ljust(dst.buffer_size, b"\0")
        dst.update(data)
    copy.sample_rate = frame.sample_rate
    copy.pts = pts
    copy.time_base = Fraction(1, frame.sample_rate)
    return copy


def _copy_video(frame: VideoFrame) -> VideoFrame:
    copy = VideoFrame(frame.width, frame.height, frame.format.name)
    for src, dst in zip(frame.planes, copy.planes, strict=True):
        data = bytes(src)
        if src.line_size != dst.line_size:
            rows = dst.buffer_size // dst.line_size
            data = b"".join(data[i * src.line_size :][: dst.line_size] for i in range(rows))
        dst.update(data[: dst.buffer_size].ljust(dst.buffer_size, b"\0"))
    copy.pts = frame.pts
    copy.time_base = frame.time_base
    return copy


class SlotTrack(MediaStreamTrack):
    """An outgoing track whose upstream participant can be swapped at runtime.

    With no upstream it produces nothing at all: the sender stays idle, so the
    browser's ``framesDecoded`` stops increasing, which is exactly what held,
    audio-only and empty slots need.

    Video frames are shared between all slots of one source: aiortc's
    encoders only read them. Consumers that rewrite timestamps in place (PyAV
    streams rebase ``pts`` while encoding, e.g. ``MediaRecorder``) must ask for
    ``private_frames`` or they race with the encoders' worker threads.
    """

    def __init__(self, kind: str, *, private_frames: bool = False) -> None:
        super().__init__()
        self.kind = kind
        self._private = private_frames
        self._queue: asyncio.Queue[Frame | None] = asyncio.Queue(
            maxsize=AUDIO_QUEUE if kind == "audio" else VIDEO_QUEUE
        )
        self._source: TrackForwarder | None = None
        self._next_audio_pts: int | None = None
        self.frames_sent = 0
        self.frames_dropped = 0

    @property
    def source(self) -> TrackForwarder | None:
        return self._source

    def attach(self, source: TrackForwarder | None) -> None:
        if source is self._source:
            return
        if source is not None and source.kind != self.kind:
            raise ValueError(f"cannot feed a {source.kind} source into a {self.kind} slot")
        if self._source is not None:
            self._source._remove_sink(self)
        self._drain()
        self._source = source
        if source is not None and self.readyState == "live":
            source._add_sink(self)

    def detach(self) -> None:
        self.attach(None)

    def _drain(self) -> None:
        while not self._queue.empty():
            self._queue.get_nowait()

    def push(self, frame: Frame) -> None:
        if self._queue.full():
            self._queue.get_nowait()
            self.frames_dropped += 1
        self._queue.put_nowait(frame)

    async def recv(self) -> Frame:
        if self.readyState != "live":
            raise MediaStreamError
        frame = await self._queue.get()
        if frame is None:
            raise MediaStreamError
        if isinstance(frame, AudioFrame):
            frame = self._restamp_audio(frame)
        elif self._private and isinstance(frame, VideoFrame):
            frame = _copy_video(frame)
        self.frames_sent += 1
        return frame

    def _restamp_audio(self, frame: AudioFrame) -> AudioFrame:
        rate = frame.sample_rate
        wall = _wall_ticks(rate)
        if self._next_audio_pts is None or self._next_audio_pts < wall - int(rate * AUDIO_RESYNC_SECONDS):
            self._next_audio_pts = wall
        pts = self._next_audio_pts
        self._next_audio_pts += frame.samples
        return _copy_audio(frame, pts)

    def stop(self) -> None:
        if self.readyState == "live":
            self.detach()
            self._drain()
            # Wake a pending recv() so the sender's loop ends instead of hanging.
            self._queue.put_nowait(None)
        super().stop()


class TrackForwarder:
    """Drains one incoming track and fans its frames out to attached slots.

    The incoming track is always drained, even with no listeners: aiortc's
    remote tracks queue decoded frames without bound, so an unread track held
    in the waiting room would leak memory.
    """

    def __init__(self, track: MediaStreamTrack) -> None:
        self.kind = track.kind
        self.track = track
        self._sinks: set[SlotTrack] = set()
        self._task: asyncio.Task[None] | None = None
        self._last_video_pts = -1
        self.frames_in = 0
        self.frames_out = 0

    @property
    def sink_count(self) -> int:
        return len(self._sinks)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"forward-{self.kind}-{self.track.id}")

    async def stop(self) -> None:
        for sink in list(self._sinks):
            sink.detach()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def _add_sink(self, sink: SlotTrack) -> None:
        self._sinks.add(sink)

    def _remove_sink(self, sink: SlotTrack) -> None:
        self._sinks.discard(sink)

    async def _run(self) -> None:
        try:
            while True:
                frame = await self.track.recv()
                self.frames_in += 1
                if not self._sinks or not isinstance(frame, Frame):
                    continue
                if isinstance(frame, VideoFrame):
                    self._restamp_video(frame)
                for sink in list(self._sinks):
                    sink.push(frame)
                    self.frames_out += 1
        except MediaStreamError:
            logger.debug("source %s ended", self.track.id)

    def _restamp_video(self, frame: VideoFrame) -> None:
        # Stamped once, before fan-out: encoders read pts from worker threads,
        # so the shared frame must not change after it has been pushed.
        pts = max(_wall_ticks(VIDEO_CLOCK_RATE), self._last_video_pts + 1)
        self._last_video_pts = pts
        frame.pts = pts
        frame.time_base = VIDEO_TIME_BASE
