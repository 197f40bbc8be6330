"""Ed25519 signatures over a canonical serialization of the prescription.

Canonical form (what is signed): UTF-8 JSON with sorted keys, no insignificant whitespace
(``separators=(",", ":")``), ``ensure_ascii=False``; UUIDs as lower-case hyphenated strings;
timestamps as ISO 8601 UTC with microseconds (``2026-11-23T13:30:13.123456+00:00``); decimals as plain
strings without exponent or trailing zeros. Content: ``v`` (format version), ``id``, ``rx_number``,
``organization_id``, ``encounter_id``, ``patient`` (id, names, birth date, jurisdiction),
``prescriber`` (id, name), ``signed_at``, ``note`` and ``items`` in position order (code, name, ATC, dose,
unit, route, frequency, PRN maximum, days, quantity, refills, substitution, note to pharmacist).

Anything that is not part of that document (status, routing, dispenses) may change after signing;
anything that is, may not.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from typing import Any, Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat

from clinic.security.secrets import SecretBox

CANONICAL_VERSION = 1
PURPOSE = "rx-signing"


def canonical_bytes(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def fingerprint(public_raw: bytes) -> str:
    return hashlib.sha256(public_raw).hexdigest()


@dataclass(frozen=True)
class KeyMaterial:
    public_hex: str
    fingerprint: str
    private_enc: str


class KeyStore(Protocol):
    """Key management boundary: an HSM- or KMS-backed store can replace the local one."""

    def generate(self) -> KeyMaterial: ...

    def sign(self, private_enc: str, message: bytes) -> bytes: ...


class LocalKeyStore:
    """Private keys encrypted with a key derived from the server secret (purpose ``rx-signing``)."""

    def __init__(self, server_key: str) -> None:
        self._box = SecretBox(server_key, PURPOSE)

    def generate(self) -> KeyMaterial:
        priv = Ed25519PrivateKey.generate()
        raw_priv = priv.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
        raw_pub = priv.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        return KeyMaterial(raw_pub.hex(), fingerprint(raw_pub), self._box.encrypt(raw_priv))

    def sign(self, private_enc: str, message: bytes) -> bytes:
        priv = Ed25519PrivateKey.from_private_bytes(self._box.decrypt(private_enc))
        return priv.sign(message)


@dataclass(frozen=True)
class VerificationResult:
    ok: bool
    reason: str


def verify_bytes(message: bytes, signature_b64: str | None, public_hex: str | None,
                 expected_fingerprint: str | None = None) -> VerificationResult:
    """Check a signature; needs nothing secret, so a pharmacy or the patient can run it."""
    if not signature_b64 or not public_hex:
        return VerificationResult(False, "not signed")
    try:
        raw_pub = bytes.fromhex(public_hex)
        sig = base64.b64decode(signature_b64, validate=True)
    except ValueError:
        return VerificationResult(False, "malformed signature or key")
    if expected_fingerprint is not None and fingerprint(raw_pub) != expected_fingerprint:
        return VerificationResult(False, "public key does not match the recorded fingerprint")
    try:
        Ed25519PublicKey.from_public_bytes(raw_pub).verify(sig, message)
    except (InvalidSignature, ValueError):
        return VerificationResult(False, "signature does not match the prescription content")
    return VerificationResult(True, "signature valid")
