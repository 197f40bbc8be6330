"""Call recordings on disk: where they go, how their key is derived, and the retention purge."""

from __future__ import annotations

import hashlib
import hmac
import logging
import shutil
import uuid
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from clinic.config import Settings
from clinic.db.video import Recording

log = logging.getLogger(__name__)


def recordings_root(settings: Settings) -> Path:
    return settings.data_dir / "recordings"


def recording_key(settings: Settings, recording_id: uuid.UUID) -> bytes:
    """A per-recording AES-256 key derived from the server secret.

    Deriving (rather than storing) the key means the database alone never unlocks a recording, and
    rotating the secret key crypto-shreds every recording at once.
    """
    return hmac.new(settings.secret_key.encode(), b"recording:" + recording_id.bytes, hashlib.sha256).digest()


def _inside(root: Path, path: Path) -> bool:
    try:
        path.resolve().relative_to(root.resolve())
    except ValueError:
        return False
    return True


async def purge_expired_recordings(session_factory: async_sessionmaker[AsyncSession], settings: Settings,
                                   now: datetime) -> int:
    """Delete recordings (files and rows) older than ``recording_retention_days``; returns how many.

    Files go first: a row whose files could not be removed is kept so the next run tries again.
    """
    cutoff = now - timedelta(days=settings.recording_retention_days)
    root = recordings_root(settings)
    purged = 0
    async with session_factory() as session:
        rows = (await session.execute(select(Recording).where(Recording.started_at < cutoff))).scalars().all()
        for row in rows:
            directory = root / row.directory
            if not _inside(root, directory) or directory.resolve() == root.resolve():
                log.error("recording %s points outside the recordings directory; not deleting files", row.id)
                continue
            try:
                if directory.exists():
                    shutil.rmtree(directory)
            except OSError:
                log.exception("could not delete recording %s", row.id)
                continue
            await session.delete(row)
            purged += 1
        await session.commit()
    return purged
