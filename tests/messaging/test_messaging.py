"""Booking e-mails with ICS through a real SMTP server, visit invites by e-mail and SMS, and reminders."""

from __future__ import annotations

import re
from datetime import timedelta

from aiohttp.test_utils import TestClient
from icalendar import Calendar
from sqlalchemy import select

from clinic.db.base import utcnow
from clinic.db.models import OutboxMessage, User
from clinic.db.scheduling import Appointment
from clinic.web.context import services
from clinic.web.notifications import reminders_pass
from tests.conftest import Db
from tests.encounters.conftest import make_visit
from tests.notify.conftest import SmtpServer
from tests.scheduling.conftest import Booking
from tests.world import World, hdr, login


async def _drain(client: TestClient) -> None:
    await services(client.app).extra["notify"].drain()


def _ics(msg) -> Calendar:  # type: ignore[no-untyped-def]
    for part in msg.walk():
        if part.get_content_type() == "text/calendar":
            return Calendar.from_ical(part.get_payload(decode=True))
    raise AssertionError("no text/calendar part")


async def test_booking_sends_confirmation_with_ics_and_cancel_sends_cancel(
        mail_client: TestClient, world: World, booking: Booking, smtp_server: SmtpServer) -> None:
    csrf = await login(mail_client, world.a.users["patient"].email)
    start = booking.at(10)
    r = await mail_client.post("/api/v1/appointments", headers=hdr(csrf, Idempotency_Key="book-ics-000001"), json={
        "patient_id": str(world.a.patient.id), "practitioner_id": str(booking.doc),  # type: ignore[union-attr]
        "visit_type_id": str(booking.consult), "start": start.isoformat(), "mode": "video"})
    assert r.status == 201, await r.text()
    appt = await r.json()
    await _drain(mail_client)
    assert len(smtp_server.messages) == 1
    got = smtp_server.messages[0]
    assert got.rcpt_tos == [world.a.patient.email]  # type: ignore[union-attr]
    cal = _ics(got.message)
    ev = next(c for c in cal.walk() if c.name == "VEVENT")
    assert cal.get("METHOD") == "REQUEST" and ev.decoded("DTSTART") == start
    assert "/visit/" in str(ev.get("LOCATION")) or "/visit/" in got.message.get_body(("plain",)).get_content()
    r = await mail_client.post(f"/api/v1/appointments/{appt['id']}/cancel", json={"reason": "x"}, headers=hdr(csrf))
    assert r.status == 200
    await _drain(mail_client)
    assert len(smtp_server.messages) == 2
    cal2 = _ics(smtp_server.messages[1].message)
    ev2 = next(c for c in cal2.walk() if c.name == "VEVENT")
    assert cal2.get("METHOD") == "CANCEL" and str(ev2.get("UID")) == str(ev.get("UID"))
    assert int(ev2.get("SEQUENCE")) > int(ev.get("SEQUENCE"))


async def test_email_invite_link_is_single_use_revocable_and_resendable(
        mail_client: TestClient, world: World, db: Db, smtp_server: SmtpServer) -> None:
    eid = await make_visit(db, world)
    csrf = await login(mail_client, world.a.users["clinician"].email)
    r = await mail_client.post(f"/api/v1/encounters/{eid}/invites", json={"channel": "email"}, headers=hdr(csrf))
    inv = await r.json()
    assert r.status == 201 and "url" not in inv and "token" not in str(inv)
    await _drain(mail_client)
    body = smtp_server.messages[-1].message.get_body(("plain",)).get_content()
    url = re.search(r"https://clinic\.example(/m/[\w-]+)", body).group(1)  # type: ignore[union-attr]
    # revoke, then the link no longer works
    r = await mail_client.post(f"/api/v1/invites/{inv['id']}/revoke", headers=hdr(csrf))
    assert r.status == 200
    mail_client.session.cookie_jar.clear()
    assert (await mail_client.get(url, allow_redirects=False)).status == 410
    csrf = await login(mail_client, world.a.users["clinician"].email)
    r = await mail_client.post(f"/api/v1/invites/{inv['id']}/resend", headers=hdr(csrf))
    assert r.status == 201
    await _drain(mail_client)
    body = smtp_server.messages[-1].message.get_body(("plain",)).get_content()
    url2 = re.search(r"https://clinic\.example(/m/[\w-]+)", body).group(1)  # type: ignore[union-attr]
    assert url2 != url
    mail_client.session.cookie_jar.clear()
    r = await mail_client.get(url2, allow_redirects=False)
    assert r.status == 302 and r.headers["Location"] == f"/visit/{eid}"
    me = await (await mail_client.get("/api/v1/me")).json()
    assert me["patient_ids"] == [str(world.a.patient.id)]  # type: ignore[union-attr]
    mail_client.session.cookie_jar.clear()
    assert (await mail_client.get(url2, allow_redirects=False)).status == 410  # single use


async def test_sms_invite_lands_in_outbox_readable_by_admin(mail_client: TestClient, world: World, db: Db) -> None:
    eid = await make_visit(db, world)
    csrf = await login(mail_client, world.a.users["clinician"].email)
    r = await mail_client.post(f"/api/v1/encounters/{eid}/invites", json={"channel": "sms", "to": "010-9876-5432"},
                               headers=hdr(csrf))
    assert r.status == 201 and (await r.json())["recipient"] == "+821098765432"
    r = await mail_client.post(f"/api/v1/encounters/{eid}/invites", json={"channel": "sms", "to": "12"},
                               headers=hdr(csrf))
    assert r.status == 422 and "phone" in (await r.json())["error"]["fields"]
    mail_client.session.cookie_jar.clear()
    csrf = await login(mail_client, world.a.users["org_admin"].email)
    r = await mail_client.get(f"/api/v1/organizations/{world.a.clinic.id}/outbox?channel=sms")
    items = (await r.json())["items"]
    assert r.status == 200 and items[0]["recipient"] == "+821098765432" and "/m/" in items[0]["body"]


async def test_invite_creates_passwordless_account_for_patient_without_one(
        mail_client: TestClient, world: World, db: Db) -> None:
    async with db.uow() as uow:
        from clinic.db.clinical import Patient

        p = await uow.session.get(Patient, world.a.other_patient.id)  # type: ignore[union-attr]
        assert p is not None
        p.user_id = None
        await uow.commit()
    eid = await make_visit(db, world, patient="other")
    csrf = await login(mail_client, world.a.users["clinician"].email)
    r = await mail_client.post(f"/api/v1/encounters/{eid}/invites", json={"channel": "sms"}, headers=hdr(csrf))
    assert r.status == 201, await r.text()
    async with db.uow() as uow:
        p = await uow.session.get(Patient, world.a.other_patient.id)  # type: ignore[union-attr]
        assert p is not None and p.user_id is not None
        u = await uow.session.get(User, p.user_id)
        assert u is not None and u.password_hash is None


async def test_reminders_sent_once(mail_client: TestClient, world: World, booking: Booking, db: Db,
                                   smtp_server: SmtpServer) -> None:
    from clinic.db.scheduling import VisitMode
    from clinic.services import booking as bsvc
    from tests.scheduling.conftest import principal_of

    pat = await principal_of(db, world.a.users["patient"])
    async with db.uow() as uow:
        a = await bsvc.book(uow, pat, patient_id=world.a.patient.id, practitioner_user_id=booking.doc,  # type: ignore[union-attr]
                            visit_type_id=booking.consult, start=booking.at(11), mode=VisitMode.VIDEO)
        await uow.commit()
    async with db.uow() as uow:  # bring it within the reminder lead time
        row = await uow.session.get(Appointment, a.id)
        assert row is not None
        row.start = utcnow() + timedelta(minutes=30)
        row.end = row.start + timedelta(minutes=30)
        await uow.commit()
    assert await reminders_pass(mail_client.app) == 1
    assert await reminders_pass(mail_client.app) == 0
    await _drain(mail_client)
    assert [m.rcpt_tos for m in smtp_server.messages] == [[world.a.patient.email]]  # type: ignore[union-attr]
    async with db.uow() as uow:
        sms = (await uow.session.execute(select(OutboxMessage).where(OutboxMessage.channel == "sms"))).scalars().all()
        assert len(sms) == 1 and "/visit/" in sms[0].body


async def test_admin_analytics_page_renders(mail_client: TestClient, world: World) -> None:
    await login(mail_client, world.a.users["org_admin"].email)
    r = await mail_client.get("/admin/analytics?from=2026-01-01&to=2026-01-31")
    html = await r.text()
    assert r.status == 200 and 'data-testid="analytics-noshow"' in html
    r = await mail_client.get("/admin/analytics?from=yesterday")
    assert r.status == 422
    mail_client.session.cookie_jar.clear()
    await login(mail_client, world.a.users["clinician"].email)
    assert (await mail_client.get("/admin/analytics")).status == 403


async def test_admin_downloads_the_calendar_invitation_as_sent(
        mail_client: TestClient, world: World, booking: Booking, smtp_server: SmtpServer) -> None:
    csrf = await login(mail_client, world.a.users["patient"].email)
    r = await mail_client.post("/api/v1/appointments", headers=hdr(csrf, Idempotency_Key="book-ics-000002"), json={
        "patient_id": str(world.a.patient.id), "practitioner_id": str(booking.doc),  # type: ignore[union-attr]
        "visit_type_id": str(booking.consult), "start": booking.at(11).isoformat(), "mode": "video"})
    assert r.status == 201, await r.text()
    await _drain(mail_client)
    sent = next(p.get_payload(decode=True) for p in smtp_server.messages[-1].message.walk()
                if p.get_content_type() == "text/calendar")
    # The patient may not read the clinic's outbox.
    r = await mail_client.get("/admin/outbox", allow_redirects=False)
    assert r.status in (403, 404)
    mail_client.session.cookie_jar.clear()
    await login(mail_client, world.a.users["org_admin"].email)
    page = await (await mail_client.get("/admin/outbox")).text()
    links = re.findall(r'href="(/admin/outbox/[0-9a-f-]+/attachments/invite\.ics)"', page)
    assert len(links) == 1
    r = await mail_client.get(links[0])
    assert r.status == 200 and r.content_type == "text/calendar"
    assert r.headers["Content-Disposition"] == 'attachment; filename="invite.ics"'
    assert await r.read() == sent  # the bytes the patient received
    assert (await mail_client.get(links[0].replace("invite.ics", "other.pdf"))).status == 404
    # Another organization's admin cannot fetch it, and learns nothing about it.
    mail_client.session.cookie_jar.clear()
    await login(mail_client, world.b.users["org_admin"].email)
    assert (await mail_client.get(links[0])).status == 404
