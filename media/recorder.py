"""Encrypted WebM recording of relay tracks.

Each (participant, kind) is written to its own WebM file with aiortc's
``MediaRecorder``: aiortc needs every track of a container before it starts,
and participants join and leave at different times. When a track ends the
file is encrypted and the plaintext removed.

Encrypted file format (``.webm.enc``)::

    b"TMREC1" | nonce_prefix (8 bytes) | chunk*
    chunk = length (4 bytes, big endian) | AES-GCM ciphertext of <= 1 MiB

Chunk ``i`` uses nonce ``nonce_prefix || i`` (4 bytes) and associated data
``header || i || final_flag``, so chunks cannot be reordered, dropped or the
file truncated without decryption failing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import struct
from collections.abc import Iterator
from pathlib import Path

from aiortc.contrib.media import MediaRecorder
from aiortc.mediastreams import MediaStreamTrack
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

logger = logging.getLogger(__name__)

MAGIC = b"TMREC1"
CHUNK_BYTES = 1024 * 1024
_NONCE_PREFIX_BYTES = 8


def _aad(header: bytes, index: int, final: bool) -> bytes:
    return header + struct.pack(">I?", index, final)


def encrypt_file(source: Path, target: Path, key: bytes) -> None:
    aead = AESGCM(key)
    header = MAGIC + os.urandom(_NONCE_PREFIX_BYTES)
    size = source.stat().st_size
    with source.open("rb") as plain, target.open("wb") as out:
        out.write(header)
        index, done = 0, 0
        while True:
            chunk = plain.read(CHUNK_BYTES)
            done += len(chunk)
            final = done >= size
            nonce = header[len(MAGIC) :] + struct.pack(">I", index)
            sealed = aead.encrypt(nonce, chunk, _aad(header, index, final))
            out.write(struct.pack(">I", len(sealed)) + sealed)
            index += 1
            if final:
                break


def decrypt_chunks(path: Path, key: bytes) -> Iterator[bytes]:
    """Plaintext chunks of an encrypted recording; raises on any tampering."""
    aead = AESGCM(key)
    with path.open("rb") as sealed:
        header = sealed.read(len(MAGIC) + _NONCE_PREFIX_BYTES)
        if not header.startswith(MAGIC) or len(header) != len(MAGIC) + _NONCE_PREFIX_BYTES:
            raise ValueError("not an encrypted recording")
        index = 0
        while True:
            length_bytes = sealed.read(4)
            if len(length_bytes) != 4:
                raise ValueError("recording is truncated")
            (length,) = struct.unpack(">I", length_bytes)
            body = sealed.read(length)
            nonce = header[len(MAGIC) :] + struct.pack(">I", index)
            final = not sealed.peek(1)
            yield aead.decrypt(nonce, body, _aad(header, index, final))
            if final:
                return
            index += 1


class EncryptedWebmRecorder:
    """A :class:`~media.recording.RecordingSink` writing encrypted WebM files."""

    def __init__(self, directory: Path, key: bytes, *, prefix: str = "rec") -> None:
        if len(key) not in (16, 24, 32):
            raise ValueError("AES-GCM key must be 16, 24 or 32 bytes")
        self.directory = directory
        self._key = key
        self._prefix = prefix
        self._recorders: dict[tuple[str, str], tuple[MediaRecorder, Path]] = {}
        self._counter = 0
        self.files: list[Path] = []

    async def add_track(self, peer_id: str, track: MediaStreamTrack) -> None:
        key = (peer_id, track.kind)
        if key in self._recorders:
            await self.remove_track(peer_id, track.kind)
        self._counter += 1
        path = self.directory / f"{self._prefix}-{peer_id}-{track.kind}-{self._counter}.webm"
        recorder = MediaRecorder(str(path), format="webm")
        recorder.addTrack(track)
        await recorder.start()
        self._recorders[key] = (recorder, path)

    async def remove_track(self, peer_id: str, kind: str) -> None:
        entry = self._recorders.pop((peer_id, kind), None)
        if entry is None:
            return
        recorder, path = entry
        with contextlib.suppress(Exception):
            await recorder.stop()
        await self._seal(path)

    async def close(self) -> None:
        for peer_id, kind in list(self._recorders):
            await self.remove_track(peer_id, kind)

    async def _seal(self, path: Path) -> None:
        target = await asyncio.to_thread(self._seal_sync, path)
        if target is not None:
            self.files.append(target)

    def _seal_sync(self, path: Path) -> Path | None:
        if not path.exists():
            return None
        target = path.with_name(path.name + ".enc")
        encrypt_file(path, target, self._key)
        path.unlink()
        return target
