"""The Notifier: every e-mail and SMS is an ``OutboxMessage`` row written in the caller's transaction.

E-mail is handed to the mail server only after that transaction commits, so a rolled-back booking
never sends mail; the outcome is then written back to the row in a short transaction of its own.
Failed rows are picked up again by :func:`retry_failed` from a periodic job.

Statuses: ``queued`` (committed, not yet handed over), ``sending`` (claimed by a retry run),
``sent``, ``failed`` (will be retried until ``max_attempts``) and ``outbox`` (no SMTP server is
configured — ``smtp_host`` empty — so the row is the only copy; admins read it in the UI. This is
what the embedded single-machine setup does).
"""

from __future__ import annotations

import asyncio
import base64
import logging
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from email.parser import BytesHeaderParser
from email.utils import parseaddr
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from clinic.config import Settings
from clinic.db.base import new_id, utcnow
from clinic.db.models import OutboxMessage
from clinic.db.uow import UnitOfWork
from clinic.errors import Invalid
from clinic.notify.mail import Attachment, Envelope, Mailer, SmtpMailer, build_email, message_bytes
from clinic.notify.sms import OutboxSmsProvider, SmsProvider, is_e164
from clinic.web.i18n import gettext as _

log = logging.getLogger(__name__)

SessionFactory = async_sessionmaker[AsyncSession]

#: Error text is for admins reading the outbox; a full SMTP transcript is not useful there.
_MAX_ERROR = 1000


def _clip(value: str, n: int) -> str:
    return value if len(value) <= n else value[: n - 1] + "…"


def _stored_envelope(payload: dict[str, Any], recipient: str) -> Envelope:
    data = base64.b64decode(payload["raw"])
    # Rows written before the envelope sender was stored: read it from the message's own From.
    sender = payload.get("from") or parseaddr(str(BytesHeaderParser().parsebytes(data)["From"] or ""))[1]
    return Envelope(sender, (recipient,), data)


def _error_text(exc: BaseException) -> str:
    return _clip(f"{type(exc).__name__}: {exc}", _MAX_ERROR)


async def _record_outcome(factory: SessionFactory, row_id: uuid.UUID, error: BaseException | None) -> None:
    async with factory() as session, session.begin():
        row = await session.get(OutboxMessage, row_id)
        if row is None:  # deleted by an admin meanwhile; nothing to record
            return
        row.attempts = (row.attempts or 0) + 1
        if error is None:
            row.status, row.error, row.sent_at = "sent", "", utcnow()
        else:
            row.status, row.error = "failed", _error_text(error)


async def _deliver(factory: SessionFactory, mailer: Mailer, row_id: uuid.UUID, envelope: Envelope) -> bool:
    error: BaseException | None = None
    try:
        await mailer.send(envelope)
    except Exception as exc:
        log.warning("e-mail %s not delivered: %s", row_id, exc)
        error = exc
    await _record_outcome(factory, row_id, error)
    return error is None


class Notifier:
    """Sends e-mail and SMS on behalf of services; see the module docstring for the lifecycle.

    ``mailer=None`` means "no mail server": messages are kept in the outbox with status "outbox".
    With ``background=True`` the after-commit delivery runs as a task so a slow mail server does not
    delay the HTTP response; call :meth:`drain` at shutdown (and in tests) to wait for those tasks.
    """

    def __init__(
        self,
        session_factory: SessionFactory,
        *,
        mailer: Mailer | None,
        mail_from: str,
        sms: SmsProvider | None = None,
        background: bool = False,
    ) -> None:
        self._factory = session_factory
        self.mailer = mailer
        self.mail_from = mail_from
        self.sms = sms or OutboxSmsProvider()
        self.background = background
        self._tasks: set[asyncio.Task[bool]] = set()

    @classmethod
    def from_settings(cls, settings: Settings, session_factory: SessionFactory, *, background: bool = True) -> Notifier:
        mailer = SmtpMailer(settings) if settings.smtp_host else None
        return cls(session_factory, mailer=mailer, mail_from=settings.mail_from, background=background)

    async def send_email(
        self,
        uow: UnitOfWork,
        *,
        organization_id: uuid.UUID | None,
        to: str,
        subject: str,
        text: str,
        html: str | None = None,
        ics: bytes | None = None,
        attachments: Sequence[Attachment] = (),
        kind: str = "",
    ) -> OutboxMessage:
        """Record the message in ``uow`` and deliver it once ``uow`` commits."""
        if "@" not in to or any(c in to for c in "\r\n,;"):
            raise Invalid(_("Invalid e-mail address"), fields={"to": "invalid"})
        message = build_email(to, subject, text, html, attachments, ics, sender=self.mail_from)
        # Serialised once: the outbox keeps exactly the bytes that are delivered (now, or by a retry).
        envelope = Envelope(parseaddr(self.mail_from)[1], (to,), message_bytes(message))
        payload: dict[str, Any] = {"raw": base64.b64encode(envelope.data).decode("ascii"), "from": envelope.sender}
        if kind:
            payload["kind"] = kind
        if attachments or ics:
            payload["attachments"] = [a[0] for a in attachments] + (["invite.ics"] if ics else [])
        row = OutboxMessage(
            id=new_id(),
            organization_id=organization_id,
            channel="email",
            recipient=_clip(to, 254),
            subject=_clip(" ".join(subject.split()), 300),
            body=text,
            status="queued" if self.mailer is not None else "outbox",
            attempts=0,
            error="",
            created_at=utcnow(),
            payload=payload,
        )
        uow.add(row)
        if self.mailer is not None:
            mailer, row_id = self.mailer, row.id

            async def after_commit() -> None:
                if self.background:
                    task = asyncio.create_task(_deliver(self._factory, mailer, row_id, envelope))
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)
                else:
                    await _deliver(self._factory, mailer, row_id, envelope)

            uow.after_commit(after_commit)
        return row

    async def send_sms(
        self, uow: UnitOfWork, *, organization_id: uuid.UUID | None, to_e164: str, text: str
    ) -> OutboxMessage:
        if not is_e164(to_e164):
            raise Invalid(_("Phone number must be in international format, e.g. +821012345678"),
                          fields={"to_e164": "invalid"})
        row = OutboxMessage(
            id=new_id(),
            organization_id=organization_id,
            channel="sms",
            recipient=to_e164,
            subject="",
            body=text,
            status="queued",
            attempts=0,
            error="",
            created_at=utcnow(),
            payload={},
        )
        uow.add(row)
        await self.sms.send(uow, row)
        return row

    async def drain(self) -> None:
        """Wait for background deliveries (shutdown, tests)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)


async def retry_failed(
    session_factory: SessionFactory,
    mailer: Mailer,
    max_attempts: int = 5,
    *,
    now: datetime | None = None,
    stale_after: timedelta = timedelta(minutes=15),
    limit: int = 100,
) -> int:
    """Re-send failed e-mail (and e-mail left "queued" by a crash after commit); return how many went out.

    Each row is claimed with a conditional UPDATE (status → "sending") before it is sent, so two
    job runs on different workers never send the same message twice.
    """
    now = now or utcnow()
    retryable = or_(
        OutboxMessage.status == "failed",
        (OutboxMessage.status == "queued") & (OutboxMessage.created_at < now - stale_after),
    )
    async with session_factory() as session:
        rows = (
            await session.execute(
                select(OutboxMessage.id, OutboxMessage.status, OutboxMessage.payload, OutboxMessage.recipient)
                .where(OutboxMessage.channel == "email", OutboxMessage.attempts < max_attempts, retryable)
                .order_by(OutboxMessage.created_at)
                .limit(limit)
            )
        ).all()
    sent = 0
    for row_id, status, payload, recipient in rows:
        raw = (payload or {}).get("raw")
        async with session_factory() as session, session.begin():
            claimed = await session.execute(
                update(OutboxMessage)
                .where(OutboxMessage.id == row_id, OutboxMessage.status == status)
                .values(status="sending")
            )
            if claimed.rowcount != 1:  # type: ignore[attr-defined]
                continue
            if not raw:
                # Nothing to resend: give up on it visibly instead of retrying forever.
                await session.execute(
                    update(OutboxMessage).where(OutboxMessage.id == row_id)
                    .values(status="failed", attempts=max_attempts, error="message content not stored")
                )
                continue
        if await _deliver(session_factory, mailer, row_id, _stored_envelope(payload, recipient)):
            sent += 1
    return sent
