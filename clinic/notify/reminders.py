"""Appointment reminders, independent of the appointment model.

The selection is a pure function so it can be tested without a clock or a database; the job
glues a candidate source and a sender together and is wired by whoever owns appointments.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReminderCandidate:
    appointment_id: uuid.UUID
    start_utc: datetime
    reminded_at: datetime | None = None
    #: Anything the sender needs (recipient, locale, organization, …); opaque here.
    data: dict[str, object] = field(default_factory=dict, compare=False, hash=False)


def due_reminders(
    appointments: Iterable[ReminderCandidate], now: datetime, lead: timedelta
) -> list[ReminderCandidate]:
    """Candidates not yet reminded whose start is in ``(now, now + lead]``, soonest first.

    Appointments already started are skipped: a reminder after the fact is noise.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    horizon = now + lead
    due = [a for a in appointments if a.reminded_at is None and now < a.start_utc <= horizon]
    return sorted(due, key=lambda a: a.start_utc)


FetchCandidates = Callable[[datetime, timedelta], Awaitable[Sequence[ReminderCandidate]]]
SendReminder = Callable[[ReminderCandidate], Awaitable[None]]


@dataclass
class ReminderRun:
    sent: list[uuid.UUID] = field(default_factory=list)
    failed: list[uuid.UUID] = field(default_factory=list)


class ReminderJob:
    """One pass: fetch candidates, pick the due ones, send each.

    ``fetch(now, lead)`` may over-fetch (the pure filter decides); ``send(candidate)`` must send and
    mark the appointment as reminded in one transaction, so a crash between the two cannot cause a
    duplicate on the next run. One failing send does not stop the others.
    """

    def __init__(self, fetch: FetchCandidates, send: SendReminder, lead: timedelta) -> None:
        self.fetch = fetch
        self.send = send
        self.lead = lead

    async def run_once(self, now: datetime) -> ReminderRun:
        run = ReminderRun()
        for c in due_reminders(await self.fetch(now, self.lead), now, self.lead):
            try:
                await self.send(c)
            except Exception:
                log.exception("reminder for appointment %s failed", c.appointment_id)
                run.failed.append(c.appointment_id)
            else:
                run.sent.append(c.appointment_id)
        return run
