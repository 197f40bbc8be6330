"""SMS delivery. The only built-in provider is the outbox: admins read messages in the UI."""

from __future__ import annotations

import re
from typing import Protocol

from clinic.db.base import utcnow
from clinic.db.models import OutboxMessage
from clinic.db.uow import UnitOfWork

_E164 = re.compile(r"^\+[1-9]\d{6,14}$")


def is_e164(number: str) -> bool:
    return bool(_E164.match(number))


class SmsProvider(Protocol):
    async def send(self, uow: UnitOfWork, message: OutboxMessage) -> None:
        """Deliver ``message`` (already added to ``uow`` with status "queued").

        A provider that talks to a network gateway must do so in ``uow.after_commit`` and record
        the outcome itself, so that a rolled-back transaction never sends a text.
        """


class OutboxSmsProvider:
    """Delivery *is* the outbox row, so it happens inside the caller's transaction."""

    async def send(self, uow: UnitOfWork, message: OutboxMessage) -> None:
        message.status = "sent"
        message.attempts = 1
        message.sent_at = utcnow()
