from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidTag

from media import LocalMediaRelay, RecordingSink
from media.recorder import EncryptedWebmRecorder, decrypt_chunks, encrypt_file

from .clients import Client, eventually
from .test_relay import ROOM, join

EBML_MAGIC = b"\x1a\x45\xdf\xa3"


def test_encrypt_round_trip_and_tamper_detection(tmp_path: Path) -> None:
    key = os.urandom(32)
    plain = tmp_path / "a.bin"
    data = os.urandom(2 * 1024 * 1024 + 123)
    plain.write_bytes(data)
    sealed = tmp_path / "a.enc"
    encrypt_file(plain, sealed, key)
    assert b"".join(decrypt_chunks(sealed, key)) == data

    with pytest.raises(InvalidTag):
        list(decrypt_chunks(sealed, os.urandom(32)))
    raw = sealed.read_bytes()
    truncated = tmp_path / "t.enc"
    truncated.write_bytes(raw[: len(raw) - (123 + 16 + 4)])  # drop the final chunk
    with pytest.raises(InvalidTag):
        list(decrypt_chunks(truncated, key))


async def test_recorder_writes_encrypted_webm_per_track(
    relay: LocalMediaRelay, clients: list[Client], tmp_path: Path
) -> None:
    key = os.urandom(32)
    recorder = EncryptedWebmRecorder(tmp_path, key, prefix="visit")
    assert isinstance(recorder, RecordingSink)
    await relay.create_room(ROOM)
    doctor = await join(relay, clients, "doctor")
    await join(relay, clients, "patient", admitted=False)
    await relay.start_recording(ROOM, recorder)
    await eventually(lambda: doctor.total("video") == 0 and len(recorder._recorders) == 2)
    # The held patient is not recorded until admitted.
    assert {peer for peer, _ in recorder._recorders} == {"doctor"}

    await relay.admit(ROOM, "patient")
    await eventually(lambda: doctor.total("video") >= 30)
    await asyncio.wait_for(relay.stop_recording(ROOM), 10)

    names = sorted(p.name for p in tmp_path.iterdir())
    assert all(name.endswith(".webm.enc") for name in names)
    assert len(names) == 4
    for path in tmp_path.iterdir():
        plaintext = b"".join(decrypt_chunks(path, key))
        assert plaintext.startswith(EBML_MAGIC)
    await eventually(lambda: relay.stats().forwarded_tracks == 4)
