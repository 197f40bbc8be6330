"""Cost and latency of relaying 1:1 consults through LocalMediaRelay.

    python benchmarks/relay_bench.py [--seconds 20] [--consults N] [--json]

The relay runs in its own process so its CPU time can be read from
``getrusage`` without counting the synthetic browsers, which live in this
process. Each browser sends 640x480 @ 30 fps VP8 plus Opus; every video frame
carries its sequence number in luma blocks, so the receiver can match a decoded
frame to its capture time. The same browsers are then connected directly to
each other to get the peer-to-peer baseline latency.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import multiprocessing as mp
import os
import platform
import resource
import statistics
import struct
import sys
import time
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aiortc import (
    RTCBundlePolicy,
    RTCConfiguration,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.mediastreams import (
    MediaStreamError,
    MediaStreamTrack,
    VideoStreamTrack,
)
from av import AudioFrame, VideoFrame

WIDTH, HEIGHT, FPS = 640, 480, 30
SEQ_BITS = 20
BLOCK = 16
ROOM_CAPACITY = 2  # a 1:1 consult: one sendrecv audio+video pair per side


# --- synthetic media -----------------------------------------------------------


class PatternVideoTrack(VideoStreamTrack):
    """A scrolling ramp with a moving box: cheap to make, not trivial to encode."""

    def __init__(self, sent: dict[int, float]) -> None:
        super().__init__()
        self._sent = sent
        self._seq = 0
        self._ramp = bytes((x * 3 + (x // 40) * 17) & 255 for x in range(WIDTH * 2))
        self._chroma = bytes([128]) * (WIDTH // 2 * HEIGHT // 2)

    async def recv(self) -> VideoFrame:
        pts, time_base = await self.next_timestamp()
        seq = self._seq
        self._seq += 1
        shift = (seq * 4) % WIDTH
        rows = [self._ramp[(shift + y) % WIDTH :][:WIDTH] for y in range(HEIGHT)]
        box_x = (seq * 6) % (WIDTH - 96)
        for y in range(200, 296):
            row = rows[y]
            rows[y] = row[:box_x] + bytes([255]) * 96 + row[box_x + 96 :]
        marker = b"".join(
            (bytes([235]) if (seq >> bit) & 1 else bytes([16])) * BLOCK for bit in range(SEQ_BITS)
        )
        for y in range(BLOCK):
            rows[y] = marker + rows[y][len(marker) :]
        frame = VideoFrame(WIDTH, HEIGHT, "yuv420p")
        frame.planes[0].update(b"".join(rows))
        frame.planes[1].update(self._chroma)
        frame.planes[2].update(self._chroma)
        frame.pts = pts
        frame.time_base = time_base
        self._sent[seq] = time.perf_counter()
        return frame


def read_seq(frame: VideoFrame) -> int | None:
    plane = frame.planes[0]
    if frame.width < SEQ_BITS * BLOCK:
        return None
    row = bytes(plane)[plane.line_size * (BLOCK // 2) :][: SEQ_BITS * BLOCK]
    return sum(1 << bit for bit in range(SEQ_BITS) if row[bit * BLOCK + BLOCK // 2] > 128)


class ToneAudioTrack(MediaStreamTrack):
    """20 ms frames of a 440 Hz stereo tone at 48 kHz: silence would make Opus unrealistically cheap."""

    kind = "audio"
    SAMPLES = 960

    def __init__(self) -> None:
        super().__init__()
        self._payload = b"".join(
            struct.pack("<hh", v, v)
            for v in (int(8000 * math.sin(2 * math.pi * 440 * i / 48000)) for i in range(self.SAMPLES))
        )
        self._start: float | None = None
        self._pts = 0

    async def recv(self) -> AudioFrame:
        if self._start is None:
            self._start = time.perf_counter()
        else:
            self._pts += self.SAMPLES
            await asyncio.sleep(max(0.0, self._start + self._pts / 48000 - time.perf_counter()))
        frame = AudioFrame(format="s16", layout="stereo", samples=self.SAMPLES)
        frame.planes[0].update(self._payload)
        frame.sample_rate = 48000
        frame.pts = self._pts
        frame.time_base = Fraction(1, 48000)
        return frame


@dataclass
class Browser:
    name: str
    pc: RTCPeerConnection = field(
        default_factory=lambda: RTCPeerConnection(RTCConfiguration(bundlePolicy=RTCBundlePolicy.MAX_BUNDLE))
    )
    sent: dict[int, float] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)
    video_frames: int = 0
    audio_seconds: float = 0.0
    measuring: bool = False
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def start(self, peer_sent: dict[int, float]) -> None:
        self.pc.addTransceiver(ToneAudioTrack(), direction="sendrecv")
        self.pc.addTransceiver(PatternVideoTrack(self.sent), direction="sendrecv")

        @self.pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            self.tasks.append(asyncio.ensure_future(self._consume(track, peer_sent)))

    async def _consume(self, track: MediaStreamTrack, peer_sent: dict[int, float]) -> None:
        try:
            while True:
                frame = await track.recv()
                if not self.measuring:
                    continue
                if isinstance(frame, VideoFrame):
                    self.video_frames += 1
                    seq = read_seq(frame)
                    sent_at = peer_sent.get(seq) if seq is not None else None
                    if sent_at is not None:
                        self.latencies.append(time.perf_counter() - sent_at)
                elif isinstance(frame, AudioFrame):
                    # Decoded audio frames vary in length, so count duration.
                    self.audio_seconds += frame.samples / frame.sample_rate
        except MediaStreamError:
            pass

    async def offer(self) -> str:
        await self.pc.setLocalDescription(await self.pc.createOffer())
        return self.pc.localDescription.sdp

    async def accept(self, sdp: str) -> None:
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="answer"))

    async def close(self) -> None:
        await self.pc.close()
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


# --- relay process ---------------------------------------------------------------


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def relay_process(conn: Connection) -> None:
    from media import LocalMediaRelay

    async def serve() -> None:
        relay = LocalMediaRelay()
        loop = asyncio.get_running_loop()
        while True:
            command, args = await loop.run_in_executor(None, conn.recv)
            try:
                if command == "create_room":
                    await relay.create_room(args[0], capacity=ROOM_CAPACITY)
                    result: Any = None
                elif command == "add_peer":
                    room, peer, sdp = args
                    kinds = frozenset({"audio", "video"})
                    result = await relay.add_peer(room, peer, sdp, kinds=kinds, admitted=True)
                elif command == "cpu":
                    result = (_cpu_seconds(), asdict(relay.stats()))
                elif command == "close":
                    await relay.close()
                    conn.send(("ok", None))
                    return
                else:
                    raise ValueError(command)
                conn.send(("ok", result))
            except Exception as exc:
                conn.send(("error", repr(exc)))

    asyncio.run(serve())


class RelayClient:
    def __init__(self) -> None:
        ctx = mp.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._process = ctx.Process(target=relay_process, args=(child,), daemon=True)
        self._process.start()
        self._lock = asyncio.Lock()

    async def call(self, command: str, *args: Any) -> Any:
        async with self._lock:
            loop = asyncio.get_running_loop()
            self._conn.send((command, args))
            status, result = await loop.run_in_executor(None, self._conn.recv)
        if status != "ok":
            raise RuntimeError(result)
        return result

    async def close(self) -> None:
        await self.call("close")
        self._process.join(5)


# --- scenarios -------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def measure(pairs: list[tuple[Browser, Browser]], seconds: float) -> dict[str, Any]:
    for a, b in pairs:
        a.measuring = b.measuring = True
    await asyncio.sleep(seconds)
    browsers = [x for pair in pairs for x in pair]
    for x in browsers:
        x.measuring = False
    latencies = [v for x in browsers for v in x.latencies]
    return {
        "latency_ms_p50": _ms(percentile(latencies, 0.5)),
        "latency_ms_p95": _ms(percentile(latencies, 0.95)),
        "latency_ms_mean": _ms(statistics.fmean(latencies) if latencies else None),
        "received_fps": round(sum(x.video_frames for x in browsers) / len(browsers) / seconds, 1),
        "audio_realtime_ratio": round(sum(x.audio_seconds for x in browsers) / len(browsers) / seconds, 2),
    }


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value * 1000, 1)


def make_pair(index: int) -> tuple[Browser, Browser]:
    doctor, patient = Browser(f"doctor-{index}"), Browser(f"patient-{index}")
    doctor.start(patient.sent)
    patient.start(doctor.sent)
    return doctor, patient


async def run_relayed(consults: int, seconds: float, warmup: float) -> dict[str, Any]:
    relay = RelayClient()
    pairs: list[tuple[Browser, Browser]] = []
    try:
        for i in range(consults):
            room = f"consult-{i}"
            await relay.call("create_room", room)
            pair = make_pair(i)
            pairs.append(pair)
            for browser in pair:
                answer = await relay.call("add_peer", room, browser.name, await browser.offer())
                await browser.accept(answer)
        await asyncio.sleep(warmup)
        cpu_start, _ = await relay.call("cpu")
        wall_start = time.perf_counter()
        result = await measure(pairs, seconds)
        cpu_end, stats = await relay.call("cpu")
        wall = time.perf_counter() - wall_start
        cpu = cpu_end - cpu_start
        per_consult_minute = cpu / consults / (wall / 60)
        result.update(
            relay_cpu_seconds=round(cpu, 2),
            relay_cpu_utilisation=round(cpu / wall, 3),
            relay_cpu_s_per_consult_minute=round(per_consult_minute, 2),
            consults_per_core=round(60 / per_consult_minute, 1) if per_consult_minute else None,
            relay_forwarded_tracks=stats["forwarded_tracks"],
        )
        return result
    finally:
        for a, b in pairs:
            await a.close()
            await b.close()
        await relay.close()


async def run_direct(seconds: float, warmup: float) -> dict[str, Any]:
    doctor, patient = make_pair(0)
    try:
        await patient.pc.setRemoteDescription(RTCSessionDescription(sdp=await doctor.offer(), type="offer"))
        await patient.pc.setLocalDescription(await patient.pc.createAnswer())
        await doctor.accept(patient.pc.localDescription.sdp)
        await asyncio.sleep(warmup)
        return await measure([(doctor, patient)], seconds)
    finally:
        await doctor.close()
        await patient.close()


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    relayed = await run_relayed(args.consults, args.seconds, args.warmup)
    direct = await run_direct(min(args.seconds, 10.0), args.warmup)
    added = None
    if relayed["latency_ms_p50"] is not None and direct["latency_ms_p50"] is not None:
        added = round(relayed["latency_ms_p50"] - direct["latency_ms_p50"], 1)
    return {
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "config": {
            "consults": args.consults,
            "seconds": args.seconds,
            "video": f"{WIDTH}x{HEIGHT}@{FPS} VP8",
            "audio": "Opus 48 kHz",
        },
        "relayed": relayed,
        "direct": direct,
        "relay_added_latency_ms_p50": added,
    }


def print_table(report: dict[str, Any]) -> None:
    relayed, direct = report["relayed"], report["direct"]
    rows = [
        ("consults", report["config"]["consults"], "-"),
        ("relay CPU s / consult-minute", relayed["relay_cpu_s_per_consult_minute"], "-"),
        ("consults per core (extrapolated)", relayed["consults_per_core"], "-"),
        ("relay CPU utilisation (cores)", relayed["relay_cpu_utilisation"], "-"),
        ("video latency p50 ms", relayed["latency_ms_p50"], direct["latency_ms_p50"]),
        ("video latency p95 ms", relayed["latency_ms_p95"], direct["latency_ms_p95"]),
        ("received video fps", relayed["received_fps"], direct["received_fps"]),
        ("received audio s per wall s", relayed["audio_realtime_ratio"], direct["audio_realtime_ratio"]),
    ]
    print(f"machine: {report['machine']['cpus']} CPUs, {report['machine']['platform']}")
    print(f"{'metric':<36}{'relayed':>12}{'direct':>12}")
    for name, a, b in rows:
        print(f"{name:<36}{a!s:>12}{b!s:>12}")
    print(f"{'latency added by relay (p50) ms':<36}{report['relay_added_latency_ms_p50']!s:>12}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--consults", type=int, default=1)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args()
    report = asyncio.run(main_async(args))
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_table(report)


if __name__ == "__main__":
    main()
