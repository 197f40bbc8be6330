"""Room tokens: short-lived, hashed credentials scoped to one encounter and one role.

A room token is what the signaling socket accepts in ``join`` (and ``?token=``). Participants with a
session get one from ``POST /api/v1/encounters/{id}/room-token``; invited guests get one in their link.
Tokens never live longer than :data:`MAX_TTL`, so a leaked link is useless a few minutes later.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from sqlalchemy import delete, select

from clinic.db.base import utcnow
from clinic.db.uow import UnitOfWork
from clinic.db.video import RoomToken
from clinic.errors import Forbidden
from clinic.security.secrets import hash_token, new_token

MAX_TTL: Final = timedelta(minutes=10)
ROLES: Final = frozenset({"clinician", "patient", "caregiver", "interpreter", "observer"})


@dataclass(frozen=True)
class RoomGrant:
    """What a valid room token entitles its bearer to."""

    encounter_id: uuid.UUID
    role: str
    user_id: uuid.UUID | None
    guest_id: uuid.UUID | None
    expires_at: datetime


async def issue(uow: UnitOfWork, encounter_id: uuid.UUID, role: str, *, user_id: uuid.UUID | None = None,
                guest_id: uuid.UUID | None = None, ttl: timedelta = MAX_TTL,
                now: datetime | None = None) -> tuple[str, RoomToken]:
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}")
    now = now or utcnow()
    token = new_token(24)
    row = RoomToken(token_hash=hash_token(token), encounter_id=encounter_id, role=role, user_id=user_id,
                    guest_id=guest_id, created_at=now, expires_at=now + min(ttl, MAX_TTL))
    uow.add(row)
    # Expired tokens are worthless; sweeping them here keeps the table small without a separate job.
    await uow.session.execute(delete(RoomToken).where(RoomToken.expires_at < now - MAX_TTL))
    await uow.session.flush()
    return token, row


async def verify(uow: UnitOfWork, token: str, encounter_id: uuid.UUID, *, now: datetime | None = None) -> RoomGrant:
    """The grant of ``token`` for this encounter, or ``Forbidden`` (never says which check failed)."""
    now = now or utcnow()
    row = (await uow.session.execute(
        select(RoomToken).where(RoomToken.token_hash == hash_token(token)))).scalar_one_or_none()
    if row is None or row.encounter_id != encounter_id or row.expires_at <= now:
        raise Forbidden("this room token is not valid for this visit", code="bad_token")
    return RoomGrant(encounter_id=row.encounter_id, role=row.role, user_id=row.user_id, guest_id=row.guest_id,
                     expires_at=row.expires_at)
