"""Recording retention and the encrypted files' keys."""

from __future__ import annotations

import uuid
from datetime import timedelta
from pathlib import Path

from sqlalchemy import select

from clinic.config import Settings
from clinic.db.base import utcnow
from clinic.db.video import Recording
from media.recorder import decrypt_chunks, encrypt_file
from signaling.recordings import purge_expired_recordings, recording_key, recordings_root
from tests.conftest import Db
from tests.video.conftest import claimed_visit
from tests.world import World


async def test_purge_deletes_expired_recordings_and_their_files(vdb: Db, vworld: World, vsettings: Settings,
                                                                tmp_path: Path) -> None:
    eid = await claimed_visit(vdb, vworld)
    now = utcnow()
    root = recordings_root(vsettings)
    made: dict[str, Path] = {}
    async with vdb.uow() as uow:
        for label, age in (("old", vsettings.recording_retention_days + 1), ("new", 1)):
            rid = uuid.uuid4()
            directory = root / rid.hex
            directory.mkdir(parents=True)
            (directory / "rec-patient-video-1.webm.enc").write_bytes(b"TMREC1" + b"\0" * 32)
            made[label] = directory
            uow.add(Recording(id=rid, encounter_id=eid, directory=rid.hex, started_at=now - timedelta(days=age),
                              files=["rec-patient-video-1.webm.enc"]))
        # a row pointing outside the recordings directory is never followed
        uow.add(Recording(encounter_id=eid, directory="../../etc", started_at=now - timedelta(days=400)))
        await uow.commit()

    assert await purge_expired_recordings(vdb.factory, vsettings, now) == 1
    assert not made["old"].exists() and made["new"].exists()
    async with vdb.uow() as uow:
        left = sorted(r.directory for r in (await uow.session.execute(select(Recording))).scalars())
    assert left == sorted(["../../etc", made["new"].name])
    # nothing else is due yet
    assert await purge_expired_recordings(vdb.factory, vsettings, now) == 0


def test_recording_keys_are_per_recording_and_decrypt(vsettings: Settings, tmp_path: Path) -> None:
    a, b = uuid.uuid4(), uuid.uuid4()
    key = recording_key(vsettings, a)
    assert len(key) == 32 and key != recording_key(vsettings, b) and key == recording_key(vsettings, a)
    plain = tmp_path / "x.webm"
    plain.write_bytes(b"webm" * 1000)
    sealed = tmp_path / "x.webm.enc"
    encrypt_file(plain, sealed, key)
    assert b"".join(decrypt_chunks(sealed, key)) == plain.read_bytes()
