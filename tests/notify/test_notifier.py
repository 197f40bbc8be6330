"""Notifier + SmtpMailer against a real SMTP server (aiosmtpd) and real databases."""

from __future__ import annotations

import socket
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from icalendar import Calendar
from sqlalchemy import select, update

from clinic.config import SettingsError
from clinic.db.models import Organization, OrgKind, OutboxMessage
from clinic.errors import Invalid
from clinic.notify import Notifier, SmtpMailer, appointment_ics, appointment_uid, render_email, retry_failed
from tests.conftest import Db, make_settings
from tests.notify.conftest import SmtpServer, free_port

START = datetime(2025, 3, 4, 5, 30, tzinfo=UTC)
END = START + timedelta(minutes=20)


def _mailer(db_url: str, tmp_path: Path, port: int) -> SmtpMailer:
    return SmtpMailer(make_settings(db_url, tmp_path, smtp_host="127.0.0.1", smtp_port=port), timeout=5)


async def _org(db: Db) -> uuid.UUID:
    async with db.uow() as uow:
        org = Organization(name="Clinic A", kind=OrgKind.CLINIC)
        uow.add(org)
        await uow.commit()
    return org.id


async def _rows(db: Db) -> list[OutboxMessage]:
    async with db.factory() as s:
        return list((await s.execute(select(OutboxMessage).order_by(OutboxMessage.created_at))).scalars())


def _invite() -> bytes:
    return appointment_ics(
        appointment_uid("7d4c0f5e-0000-4000-8000-000000000001", "clinic.example"), START, END,
        "진료 예약", "Video visit", "https://clinic.example/v/abc", "clinic@clinic.example", "minji@example.com",
    )


async def test_email_with_invitation_is_sent_after_commit(
    db: Db, db_url: str, tmp_path: Path, smtp_server: SmtpServer
) -> None:
    org_id = await _org(db)
    mailer = _mailer(db_url, tmp_path, smtp_server.port)
    notifier = Notifier(db.factory, mailer=mailer, mail_from="clinic@clinic.example")
    subject, text, html = render_email("confirmation", "ko", {
        "organization": "Clinic A", "recipient_name": "김민지", "start": START, "end": END,
        "timezone": "Asia/Seoul", "visit_url": "https://clinic.example/v/abc", "mode": "video",
    })
    async with db.uow() as uow:
        await notifier.send_email(uow, organization_id=org_id, to="minji@example.com", subject=subject, text=text,
                                  html=html, ics=_invite(),
                                  attachments=[("summary.pdf", "application/pdf", b"%PDF-1.7")])
        assert smtp_server.messages == []  # nothing leaves before the commit
        await uow.commit()

    assert len(smtp_server.messages) == 1
    got = smtp_server.messages[0]
    assert got.rcpt_tos == ["minji@example.com"]
    assert got.envelope_from == "clinic@clinic.example"
    msg = got.message
    assert msg["Subject"] == subject
    assert "2025년 3월 4일" in msg["Subject"]
    assert msg["To"] == "minji@example.com"
    body = msg.get_body(("plain",))
    assert body is not None and "김민지" in body.get_content()
    html_part = msg.get_body(("html",))
    assert html_part is not None and "https://clinic.example/v/abc" in html_part.get_content()

    cal_parts = [p for p in msg.walk() if p.get_content_type() == "text/calendar"]
    assert len(cal_parts) == 1
    part = cal_parts[0]
    assert part.get_param("method") == "REQUEST"
    assert str(part.get_param("charset")).upper() == "UTF-8"
    assert part.get_filename() == "invite.ics"
    payload = part.get_payload(decode=True)
    assert isinstance(payload, bytes)
    cal = Calendar.from_ical(payload)
    assert str(cal["METHOD"]) == "REQUEST"
    ev = next(iter(cal.walk("VEVENT")))
    assert ev.decoded("DTSTART") == START
    assert ev.decoded("DTEND") == END
    assert str(ev["SUMMARY"]) == "진료 예약"
    pdfs = [p for p in msg.iter_attachments() if p.get_content_type() == "application/pdf"]
    assert pdfs and pdfs[0].get_payload(decode=True) == b"%PDF-1.7"

    [row] = await _rows(db)
    assert (row.channel, row.status, row.attempts, row.error) == ("email", "sent", 1, "")
    assert row.sent_at is not None and row.organization_id == org_id
    assert row.recipient == "minji@example.com" and row.subject == subject and "김민지" in row.body


async def test_rolled_back_transaction_sends_nothing(
    db: Db, db_url: str, tmp_path: Path, smtp_server: SmtpServer
) -> None:
    notifier = Notifier(db.factory, mailer=_mailer(db_url, tmp_path, smtp_server.port), mail_from="c@clinic.example")
    with pytest.raises(RuntimeError):
        async with db.uow() as uow:
            await notifier.send_email(uow, organization_id=None, to="a@example.com", subject="s", text="t")
            raise RuntimeError("booking failed")
    async with db.uow() as uow:
        await notifier.send_email(uow, organization_id=None, to="b@example.com", subject="s", text="t")
        await uow.rollback()
    assert smtp_server.messages == []
    assert await _rows(db) == []


async def test_smtp_down_marks_failed_and_retry_sends_exactly_once(db: Db, db_url: str, tmp_path: Path) -> None:
    port = free_port()  # nothing listens here yet
    notifier = Notifier(db.factory, mailer=_mailer(db_url, tmp_path, port), mail_from="c@clinic.example")
    async with db.uow() as uow:
        await notifier.send_email(uow, organization_id=None, to="a@example.com", subject="Hello 안녕", text="t",
                                  ics=_invite())
        await uow.commit()
    [row] = await _rows(db)
    assert (row.status, row.attempts) == ("failed", 1)
    assert row.error and row.sent_at is None

    from tests.notify.conftest import CollectingHandler
    server = SmtpServer(port, CollectingHandler())
    server.start()
    try:
        mailer = _mailer(db_url, tmp_path, port)
        assert await retry_failed(db.factory, mailer) == 1
        assert await retry_failed(db.factory, mailer) == 0
    finally:
        server.stop()
    assert len(server.messages) == 1
    assert server.messages[0].message["Subject"] == "Hello 안녕"
    assert any(p.get_content_type() == "text/calendar" for p in server.messages[0].message.walk())
    [row] = await _rows(db)
    assert (row.status, row.attempts, row.error) == ("sent", 2, "")
    assert row.sent_at is not None


async def test_retry_of_a_row_stored_without_its_envelope_sender(db: Db, db_url: str, tmp_path: Path,
                                                                  smtp_server: SmtpServer) -> None:
    """Rows queued before the outbox kept the envelope sender are retried with the message's own From."""
    down = Notifier(db.factory, mailer=_mailer(db_url, tmp_path, free_port()),
                    mail_from="Clinic A <c@clinic.example>")
    async with db.uow() as uow:
        await down.send_email(uow, organization_id=None, to="a@example.com", subject="s", text="t")
        await uow.commit()
    [row] = await _rows(db)
    async with db.factory() as s, s.begin():
        await s.execute(update(OutboxMessage).where(OutboxMessage.id == row.id).values(
            payload={k: v for k, v in row.payload.items() if k != "from"}))
    assert await retry_failed(db.factory, _mailer(db_url, tmp_path, smtp_server.port)) == 1
    [got] = smtp_server.messages
    assert got.envelope_from == "c@clinic.example" and got.rcpt_tos == ["a@example.com"]


async def test_retry_gives_up_after_max_attempts(db: Db, db_url: str, tmp_path: Path) -> None:
    mailer = _mailer(db_url, tmp_path, free_port())
    notifier = Notifier(db.factory, mailer=mailer, mail_from="c@clinic.example")
    async with db.uow() as uow:
        await notifier.send_email(uow, organization_id=None, to="a@example.com", subject="s", text="t")
        await uow.commit()
    assert await retry_failed(db.factory, mailer, max_attempts=3) == 0
    assert await retry_failed(db.factory, mailer, max_attempts=3) == 0
    [row] = await _rows(db)
    assert (row.status, row.attempts) == ("failed", 3)
    assert await retry_failed(db.factory, mailer, max_attempts=3) == 0
    [row] = await _rows(db)
    assert row.attempts == 3  # not tried again


async def test_background_delivery(db: Db, db_url: str, tmp_path: Path, smtp_server: SmtpServer) -> None:
    notifier = Notifier(db.factory, mailer=_mailer(db_url, tmp_path, smtp_server.port), mail_from="c@clinic.example",
                        background=True)
    async with db.uow() as uow:
        await notifier.send_email(uow, organization_id=None, to="a@example.com", subject="s", text="t")
        await uow.commit()
    await notifier.drain()
    assert len(smtp_server.messages) == 1
    [row] = await _rows(db)
    assert row.status == "sent"


async def test_ehlo_names_this_host_as_configured_or_by_its_fqdn(db: Db, db_url: str, tmp_path: Path,
                                                                 smtp_server: SmtpServer) -> None:
    named = SmtpMailer(make_settings(db_url, tmp_path, smtp_host="127.0.0.1", smtp_port=smtp_server.port,
                                     smtp_helo_name="mail.clinic.example"), timeout=5)
    default = _mailer(db_url, tmp_path, smtp_server.port)
    for mailer in (named, default, default):
        notifier = Notifier(db.factory, mailer=mailer, mail_from="c@clinic.example")
        async with db.uow() as uow:
            await notifier.send_email(uow, organization_id=None, to="a@example.com", subject="s", text="t")
            await uow.commit()
    assert [m.helo_name for m in smtp_server.messages] == ["mail.clinic.example", socket.getfqdn(), socket.getfqdn()]
    with pytest.raises(SettingsError, match="TELEMED_SMTP_HELO_NAME"):
        make_settings(db_url, tmp_path, smtp_helo_name="bad name\r\nMAIL FROM:<x@y>")


async def test_without_smtp_host_mail_stays_in_outbox(db: Db, db_url: str, tmp_path: Path) -> None:
    notifier = Notifier.from_settings(make_settings(db_url, tmp_path), db.factory)
    assert notifier.mailer is None
    async with db.uow() as uow:
        await notifier.send_email(uow, organization_id=None, to="a@example.com", subject="s", text="body")
        await uow.commit()
    [row] = await _rows(db)
    assert (row.status, row.body) == ("outbox", "body")
    assert await retry_failed(db.factory, _mailer(db_url, tmp_path, free_port())) == 0


async def test_sms_goes_to_outbox(db: Db) -> None:
    org_id = await _org(db)
    notifier = Notifier(db.factory, mailer=None, mail_from="c@clinic.example")
    async with db.uow() as uow:
        await notifier.send_sms(uow, organization_id=org_id, to_e164="+821012345678", text="내일 10:00 진료 예약")
        await uow.commit()
    [row] = await _rows(db)
    assert (row.channel, row.recipient, row.status, row.attempts) == ("sms", "+821012345678", "sent", 1)
    assert row.body == "내일 10:00 진료 예약" and row.sent_at is not None and row.organization_id == org_id

    async with db.uow() as uow:
        with pytest.raises(Invalid):
            await notifier.send_sms(uow, organization_id=org_id, to_e164="010-1234-5678", text="x")


async def test_header_injection_refused(db: Db) -> None:
    notifier = Notifier(db.factory, mailer=None, mail_from="c@clinic.example")
    async with db.uow() as uow:
        with pytest.raises(Invalid):
            await notifier.send_email(uow, organization_id=None, to="a@example.com\r\nBcc: x@evil.example",
                                      subject="s", text="t")
        row = await notifier.send_email(uow, organization_id=None, to="a@example.com", subject="a\r\nBcc: x@e",
                                        text="t")
        assert "\n" not in row.subject
