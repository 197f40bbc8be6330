from __future__ import annotations

import asyncio
from fractions import Fraction

import pytest
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av import AudioFrame, VideoFrame

from media.forwarding import SlotTrack, TrackForwarder


class FakeSource(MediaStreamTrack):
    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind
        self.queue: asyncio.Queue[AudioFrame | VideoFrame] = asyncio.Queue()

    async def recv(self) -> AudioFrame | VideoFrame:
        return await self.queue.get()


def audio_frame(pts: int) -> AudioFrame:
    frame = AudioFrame(format="s16", layout="stereo", samples=960)
    frame.planes[0].update(bytes(frame.planes[0].buffer_size))
    frame.sample_rate = 48000
    frame.pts = pts
    frame.time_base = Fraction(1, 48000)
    return frame


async def test_slot_switches_sources_with_monotonic_audio_timestamps() -> None:
    first, second = FakeSource("audio"), FakeSource("audio")
    a, b = TrackForwarder(first), TrackForwarder(second)
    a.start()
    b.start()
    slot = SlotTrack("audio")
    slot.attach(a)
    first.queue.put_nowait(audio_frame(123_456_789))
    out1 = await asyncio.wait_for(slot.recv(), 1)
    slot.attach(b)
    # The second source's own clock is far behind the first one's.
    second.queue.put_nowait(audio_frame(5))
    out2 = await asyncio.wait_for(slot.recv(), 1)
    assert out2.pts is not None and out1.pts is not None and out2.pts > out1.pts
    await a.stop()
    await b.stop()


async def test_empty_slot_produces_nothing_and_stop_wakes_reader() -> None:
    slot = SlotTrack("video")
    reader = asyncio.ensure_future(slot.recv())
    await asyncio.sleep(0.1)
    assert not reader.done()
    slot.stop()
    with pytest.raises(MediaStreamError):
        await asyncio.wait_for(reader, 1)


async def test_video_queue_drops_oldest_frames() -> None:
    source = FakeSource("video")
    forwarder = TrackForwarder(source)
    forwarder.start()
    slot = SlotTrack("video")
    slot.attach(forwarder)
    for _ in range(5):
        source.queue.put_nowait(VideoFrame(16, 16, "yuv420p"))
    await asyncio.sleep(0.05)
    assert slot.frames_dropped == 3
    await forwarder.stop()
    assert slot.source is None


def test_kind_mismatch_is_refused() -> None:
    with pytest.raises(ValueError):
        SlotTrack("audio").attach(TrackForwarder(FakeSource("video")))
