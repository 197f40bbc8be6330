"""Password hashing with argon2id (RFC 9106 parameters via argon2-cffi defaults)."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

_hasher = PasswordHasher()  # argon2id by default
# Verified against when the user does not exist, so timing does not reveal which e-mails are registered.
_DUMMY_HASH = _hasher.hash("not-a-real-password-used-for-timing-equalisation")

MIN_LENGTH = 10


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    try:
        return _hasher.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


# Hashing is deliberately slow; it runs off the event loop on a small dedicated pool so a burst of
# sign-ins queues here instead of freezing every other request.
_POOL = ThreadPoolExecutor(max_workers=2, thread_name_prefix="argon2")


async def verify_password_async(password_hash: str | None, password: str) -> bool:
    return await asyncio.get_running_loop().run_in_executor(_POOL, verify_password, password_hash, password)


async def hash_password_async(password: str) -> str:
    return await asyncio.get_running_loop().run_in_executor(_POOL, hash_password, password)


def needs_rehash(password_hash: str) -> bool:
    return _hasher.check_needs_rehash(password_hash)


def password_problem(password: str) -> str | None:
    """Why a new password is unacceptable, or None."""
    if len(password) < MIN_LENGTH:
        return f"must be at least {MIN_LENGTH} characters"
    if len(password) > 1024:
        return "must be at most 1024 characters"
    if password.lower() in {"password123", "1234567890", "qwertyuiop"}:
        return "is too common"
    return None
