from __future__ import annotations

import asyncio
import re

import pytest

from media import (
    BadKinds,
    BadSdp,
    DuplicatePeer,
    LocalMediaRelay,
    RoomExists,
    RoomFull,
    UnknownPeer,
    UnknownRoom,
)

from .clients import Client, EventLog, eventually

AV = frozenset({"audio", "video"})
AUDIO = frozenset({"audio"})
ROOM = "room-1"


async def join(
    relay: LocalMediaRelay,
    clients: list[Client],
    name: str,
    *,
    kinds: frozenset[str] = AV,
    admitted: bool = True,
    slots: int = 3,
) -> Client:
    client = Client(name, slots=slots)
    clients.append(client)
    answer = await asyncio.wait_for(
        relay.add_peer(ROOM, name, await client.offer(), kinds=kinds, admitted=admitted), 10
    )
    await client.accept(answer)
    return client


def from_peer(client: Client, events: EventLog, remote: str, kind: str) -> int:
    mid = events.slot_mid(client.name, remote, kind)
    return client.frames[mid] if mid is not None else 0


async def test_two_participants_receive_each_other(
    relay: LocalMediaRelay, clients: list[Client], events: EventLog
) -> None:
    await relay.create_room(ROOM)
    doctor = await join(relay, clients, "doctor")
    patient = await join(relay, clients, "patient")

    await eventually(
        lambda: all(
            from_peer(me, events, other, kind) >= 5
            for me, other in ((doctor, "patient"), (patient, "doctor"))
            for kind in ("audio", "video")
        )
    )
    await eventually(lambda: all("connected" in events.states(name) for name in ("doctor", "patient")))
    stats = relay.stats()
    assert (stats.rooms, stats.peers, stats.admitted_peers, stats.forwarded_tracks) == (1, 2, 2, 4)
    assert stats.cpu_seconds > 0

    sample = await relay.peer_stats(ROOM, "doctor")
    assert sample["state"] == "connected"
    assert sample["frames_in"]["video"] > 0 and sample["frames_out"]["audio"] > 0
    assert sample["inbound"]["video"]["packets_received"] > 0


async def test_held_peer_gets_no_media_until_admitted(
    relay: LocalMediaRelay, clients: list[Client], events: EventLog
) -> None:
    await relay.create_room(ROOM)
    doctor = await join(relay, clients, "doctor")
    patient = await join(relay, clients, "patient", admitted=False)

    await eventually(lambda: "connected" in events.states("patient"))
    await asyncio.sleep(1.0)
    assert patient.total("audio") == patient.total("video") == 0
    assert doctor.total("audio") == doctor.total("video") == 0
    # A held patient is not even told who else is in the room.
    assert not [e for e in events.events if e.kind == "slot-assigned"]

    await relay.admit(ROOM, "patient")
    await eventually(lambda: patient.total("video") >= 5 and doctor.total("video") >= 5)
    await eventually(lambda: patient.total("audio") >= 5 and doctor.total("audio") >= 5)


async def test_hold_after_admission_stops_media(
    relay: LocalMediaRelay, clients: list[Client], events: EventLog
) -> None:
    await relay.create_room(ROOM)
    doctor = await join(relay, clients, "doctor")
    patient = await join(relay, clients, "patient")
    await eventually(lambda: doctor.total("video") >= 5 and patient.total("video") >= 5)

    await relay.hold(ROOM, "patient")
    await asyncio.sleep(0.5)
    before = (doctor.total("video"), patient.total("video"), doctor.total("audio"))
    await asyncio.sleep(1.0)
    assert (doctor.total("video"), patient.total("video"), doctor.total("audio")) == before


async def test_disallowed_kind_is_rejected_and_not_forwarded(
    relay: LocalMediaRelay, clients: list[Client], events: EventLog
) -> None:
    await relay.create_room(ROOM)
    doctor = await join(relay, clients, "doctor")
    patient = Client("patient")
    clients.append(patient)
    answer = await relay.add_peer(ROOM, "patient", await patient.offer(), kinds=AUDIO, admitted=True)
    await patient.accept(answer)

    video_sections = [s for s in answer.split("m=")[1:] if s.startswith("video")]
    assert video_sections and all("a=inactive" in s for s in video_sections)

    await eventually(lambda: doctor.total("audio") >= 5 and patient.total("audio") >= 5)
    await asyncio.sleep(1.0)
    assert doctor.total("video") == 0
    assert patient.total("video") == 0


async def test_audio_only_switch_stops_video_both_ways(
    relay: LocalMediaRelay, clients: list[Client], events: EventLog
) -> None:
    await relay.create_room(ROOM)
    doctor = await join(relay, clients, "doctor")
    patient = await join(relay, clients, "patient")
    await eventually(lambda: doctor.total("video") >= 5 and patient.total("video") >= 5)

    await relay.set_kinds(ROOM, "patient", AUDIO)
    await asyncio.sleep(0.5)
    video_before = (doctor.total("video"), patient.total("video"))
    audio_before = (doctor.total("audio"), patient.total("audio"))
    await asyncio.sleep(1.0)
    assert (doctor.total("video"), patient.total("video")) == video_before
    assert doctor.total("audio") > audio_before[0] and patient.total("audio") > audio_before[1]
    assert relay.stats().forwarded_tracks == 2

    # Video was negotiated, so switching back needs no new offer.
    await relay.set_kinds(ROOM, "patient", AV)
    await eventually(lambda: doctor.total("video") > video_before[0] + 5)
    assert not [e for e in events.events if e.kind == "renegotiation-needed"]


async def test_widening_beyond_negotiated_kinds_asks_for_renegotiation(
    relay: LocalMediaRelay, clients: list[Client], events: EventLog
) -> None:
    await relay.create_room(ROOM)
    await join(relay, clients, "patient", kinds=AUDIO)
    await relay.set_kinds(ROOM, "patient", AV)
    await eventually(lambda: any(e.kind == "renegotiation-needed" for e in events.events))
    with pytest.raises(BadKinds):
        await relay.set_kinds(ROOM, "patient", frozenset({"audio", "smell"}))


async def test_three_participants_all_receive_each_other(
    relay: LocalMediaRelay, clients: list[Client], events: EventLog
) -> None:
    await relay.create_room(ROOM, capacity=3)
    names = ["doctor", "patient", "interpreter"]
    party = [await join(relay, clients, name, slots=2) for name in names]

    def everyone_sees_everyone() -> bool:
        return all(
            from_peer(me, events, other, kind) >= 3
            for me in party
            for other in names
            if other != me.name
            for kind in ("audio", "video")
        )

    await eventually(everyone_sees_everyone, within=12)
    assert relay.stats().forwarded_tracks == 12


async def test_remove_peer_stops_forwarding(
    relay: LocalMediaRelay, clients: list[Client], events: EventLog
) -> None:
    await relay.create_room(ROOM)
    doctor = await join(relay, clients, "doctor")
    await join(relay, clients, "patient")
    await eventually(lambda: doctor.total("video") >= 5)

    await relay.remove_peer(ROOM, "patient")
    assert relay.stats().peers == 1
    assert relay.stats().forwarded_tracks == 0
    await eventually(lambda: any(e.kind == "slot-released" and e.peer_id == "doctor" for e in events.events))
    await asyncio.sleep(0.5)
    before = (doctor.total("video"), doctor.total("audio"))
    await asyncio.sleep(1.0)
    assert (doctor.total("video"), doctor.total("audio")) == before
    with pytest.raises(UnknownPeer):
        await relay.remove_peer(ROOM, "patient")


async def test_reconnect_with_fresh_connection_keeps_membership(
    relay: LocalMediaRelay, clients: list[Client], events: EventLog
) -> None:
    await relay.create_room(ROOM)
    doctor = await join(relay, clients, "doctor")
    patient = await join(relay, clients, "patient")
    await eventually(lambda: doctor.total("video") >= 5)

    # The browser lost its network: it builds a new connection and re-offers.
    await patient.close()
    fresh = Client("patient")
    clients.append(fresh)
    answer = await asyncio.wait_for(relay.renegotiate(ROOM, "patient", await fresh.offer()), 10)
    await fresh.accept(answer)

    await eventually(lambda: fresh.total("video") >= 5 and fresh.total("audio") >= 5)
    before = doctor.total("video")
    await eventually(lambda: doctor.total("video") >= before + 5)
    assert relay.stats().peers == 2


async def test_bad_sdp_is_refused(relay: LocalMediaRelay, clients: list[Client]) -> None:
    await relay.create_room(ROOM)
    client = Client("patient")
    clients.append(client)
    good = await client.offer()
    without_ice = "\r\n".join(line for line in good.split("\r\n") if not line.startswith("a=ice-pwd"))
    without_fingerprint = "\r\n".join(
        line for line in good.split("\r\n") if not line.startswith("a=fingerprint")
    )
    no_codecs = re.sub(r"a=rtpmap:(\d+) [^/]+/", r"a=rtpmap:\1 bogus/", good)
    unbundled = "\r\n".join(line for line in good.split("\r\n") if not line.startswith("a=group:BUNDLE"))
    oversized = "v=0\r\n" + "x" * 70000
    for bad in ["", "hello", "v=0\r\n", without_ice, without_fingerprint, no_codecs, unbundled, oversized]:
        with pytest.raises(BadSdp):
            await asyncio.wait_for(relay.add_peer(ROOM, "patient", bad, kinds=AV, admitted=True), 5)
    # Refused offers leave no trace behind.
    assert relay.stats().peers == 0


async def test_room_and_peer_errors(relay: LocalMediaRelay, clients: list[Client]) -> None:
    await relay.create_room(ROOM, capacity=2)
    with pytest.raises(RoomExists):
        await relay.create_room(ROOM)
    with pytest.raises(ValueError):
        await relay.create_room("huge", capacity=50)
    with pytest.raises(UnknownRoom):
        await relay.add_peer("nope", "x", "v=0", kinds=AV, admitted=True)
    with pytest.raises(BadKinds):
        await relay.add_peer(ROOM, "x", "v=0", kinds=frozenset({"hologram"}), admitted=True)

    await join(relay, clients, "doctor")
    with pytest.raises(DuplicatePeer):
        await relay.add_peer(ROOM, "doctor", await Client("dup").offer(), kinds=AV, admitted=True)
    await join(relay, clients, "patient")
    with pytest.raises(RoomFull):
        await join(relay, clients, "caregiver")

    with pytest.raises(UnknownPeer):
        await relay.admit(ROOM, "ghost")
    await relay.close_room(ROOM)
    with pytest.raises(UnknownRoom):
        await relay.admit(ROOM, "doctor")
    assert relay.stats().rooms == 0
