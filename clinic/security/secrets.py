"""Random tokens, their hashes, and symmetric encryption of secrets at rest.

Tokens are 256-bit random values, so a plain SHA-256 is a sufficient one-way hash for storage
(no salt or stretching needed, unlike passwords).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF


def new_token(nbytes: int = 32) -> str:
    return secrets.token_urlsafe(nbytes)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def constant_time_equals(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


class SecretBox:
    """Encrypts small secrets (TOTP seeds, signing keys) with a key derived from the server key.

    Each purpose gets its own derived key so a leak of one ciphertext class says nothing about another.
    """

    def __init__(self, server_key: str, purpose: str) -> None:
        hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=b"telemed-secretbox", info=purpose.encode())
        self._fernet = Fernet(base64.urlsafe_b64encode(hkdf.derive(server_key.encode())))

    def encrypt(self, plaintext: bytes) -> str:
        return self._fernet.encrypt(plaintext).decode()

    def decrypt(self, token: str) -> bytes:
        try:
            return self._fernet.decrypt(token.encode())
        except InvalidToken as exc:
            raise ValueError("secret cannot be decrypted with this server key") from exc

