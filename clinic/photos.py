"""Photo intake: type and size limits, re-encoding (which drops EXIF/GPS and any payload hidden in the
original file), and encryption at rest."""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

from clinic.errors import Invalid, PayloadTooLarge
from clinic.security.secrets import SecretBox

ACCEPTED = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp", "HEIF": "image/heif"}
MAX_PIXELS = 40_000_000  # refuse decompression bombs before decoding
MAX_SIDE = 1600


@dataclass(frozen=True)
class CleanImage:
    data: bytes
    width: int
    height: int
    sha256: str
    content_type: str = "image/jpeg"


def clean_image(raw: bytes, max_bytes: int) -> CleanImage:
    if len(raw) > max_bytes:
        raise PayloadTooLarge(f"image exceeds {max_bytes} bytes")
    Image.MAX_IMAGE_PIXELS = MAX_PIXELS
    try:
        with Image.open(io.BytesIO(raw)) as src:
            if src.format not in ACCEPTED:
                raise Invalid("unsupported image type", fields={"photo": "use JPEG, PNG or WebP"})
            img = ImageOps.exif_transpose(src)
            img.thumbnail((MAX_SIDE, MAX_SIDE))
            rgb = img.convert("RGB")
            out = io.BytesIO()
            rgb.save(out, "JPEG", quality=85, optimize=True)
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, SyntaxError) as exc:
        raise Invalid("not a readable image", fields={"photo": str(exc)[:100]}) from None
    data = out.getvalue()
    return CleanImage(data, rgb.width, rgb.height, hashlib.sha256(data).hexdigest())


class PhotoStore:
    def __init__(self, root: Path, server_key: str) -> None:
        self.root = root
        self._box = SecretBox(server_key, "photos")

    def _path(self, photo_id: str) -> Path:
        return self.root / photo_id[:2] / f"{photo_id}.bin"

    def put(self, photo_id: str, data: bytes) -> None:
        path = self._path(photo_id)
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        path.write_text(self._box.encrypt(data))
        path.chmod(0o600)

    def get(self, photo_id: str) -> bytes:
        return self._box.decrypt(self._path(photo_id).read_text())

    def delete(self, photo_id: str) -> None:
        self._path(photo_id).unlink(missing_ok=True)
