"""TOTP (RFC 6238) second factor with replay protection."""

from __future__ import annotations

import time

import pyotp

ISSUER = "Telemed"
STEP = 30


def new_secret() -> str:
    return pyotp.random_base32()


def provisioning_uri(secret: str, account: str) -> str:
    return pyotp.TOTP(secret).provisioning_uri(name=account, issuer_name=ISSUER)


def verify(secret: str, code: str, last_step: int | None, now: float | None = None) -> int | None:
    """Return the accepted time-step, or None.

    One step of clock drift is tolerated either way; a step at or before ``last_step`` is refused so an
    observed code cannot be replayed.
    """
    code = code.strip().replace(" ", "")
    if not code.isdigit() or len(code) != 6:
        return None
    now = time.time() if now is None else now
    totp = pyotp.TOTP(secret)
    current = int(now // STEP)
    for step in (current - 1, current, current + 1):
        if last_step is not None and step <= last_step:
            continue
        if pyotp.utils.strings_equal(totp.at(step * STEP), code):
            return step
    return None


def code_at(secret: str, when: float) -> str:
    return pyotp.TOTP(secret).at(int(when))
