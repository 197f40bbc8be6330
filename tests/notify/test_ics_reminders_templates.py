from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from icalendar import Calendar

from clinic.notify import (
    ReminderCandidate,
    ReminderJob,
    appointment_ics,
    appointment_uid,
    build_email,
    due_reminders,
    render_email,
)

START = datetime(2025, 3, 4, 5, 30, tzinfo=UTC)
END = START + timedelta(minutes=20)
UID = appointment_uid(uuid.UUID("7d4c0f5e-0000-4000-8000-000000000001"), "clinic.example")


def _parse(ics: bytes) -> tuple[Calendar, Any]:
    cal = Calendar.from_ical(ics)
    [ev] = list(cal.walk("VEVENT"))
    return cal, ev


def test_request_round_trips_in_utc() -> None:
    kst = timezone(timedelta(hours=9))
    ics = appointment_ics(UID, START.astimezone(kst), END.astimezone(kst), "진료", "설명", "https://c/v/1",
                          "clinic@clinic.example", "pat@example.com", organizer_name="Clinic A")
    assert b"DTSTART:20250304T053000Z" in ics
    assert b"DTEND:20250304T055000Z" in ics
    cal, ev = _parse(ics)
    assert str(cal["METHOD"]) == "REQUEST" and str(cal["VERSION"]) == "2.0"
    assert ev.decoded("DTSTART") == START and ev.decoded("DTEND") == END
    assert str(ev["UID"]) == UID
    assert ev["SEQUENCE"] == 0 and str(ev["STATUS"]) == "CONFIRMED"
    assert str(ev["ORGANIZER"]) == "mailto:clinic@clinic.example"
    att = ev["ATTENDEE"]
    assert str(att) == "mailto:pat@example.com" and att.params["RSVP"] == "TRUE"
    assert str(ev["LOCATION"]) == "https://c/v/1"


def test_reschedule_keeps_uid_and_bumps_sequence() -> None:
    first = _parse(appointment_ics(UID, START, END, "s", "", "", "o@x.example", "a@x.example"))[1]
    later = START + timedelta(days=1)
    second = _parse(appointment_ics(UID, later, later + timedelta(minutes=20), "s", "", "", "o@x.example",
                                    "a@x.example", sequence=1))[1]
    assert str(first["UID"]) == str(second["UID"])
    assert second["SEQUENCE"] == 1 and second.decoded("DTSTART") == later


@pytest.mark.parametrize("kw", [{"status": "CANCELLED"}, {"method": "CANCEL"}])
def test_cancellation(kw: dict[str, str]) -> None:
    ics = appointment_ics(UID, START, END, "s", "", "", "o@x.example", "a@x.example", sequence=2, **kw)  # type: ignore[arg-type]
    cal, ev = _parse(ics)
    assert str(cal["METHOD"]) == "CANCEL" and str(ev["STATUS"]) == "CANCELLED" and ev["SEQUENCE"] == 2
    msg = build_email("a@x.example", "cancelled", "t", ics=ics)
    [part] = [p for p in msg.walk() if p.get_content_type() == "text/calendar"]
    assert part.get_param("method") == "CANCEL"


def test_ics_refuses_naive_and_inverted_times() -> None:
    with pytest.raises(ValueError):
        appointment_ics(UID, START.replace(tzinfo=None), END, "s", "", "", "o@x", "a@x")
    with pytest.raises(ValueError):
        appointment_ics(UID, END, START, "s", "", "", "o@x", "a@x")


NOW = datetime(2025, 3, 4, 0, 0, tzinfo=UTC)


def _c(minutes: int, reminded: bool = False) -> ReminderCandidate:
    return ReminderCandidate(uuid.uuid4(), NOW + timedelta(minutes=minutes), NOW if reminded else None)


def test_due_reminders_selects_window_not_yet_reminded() -> None:
    past, soon, edge, later, done = _c(-5), _c(30), _c(60), _c(61), _c(10, reminded=True)
    other_soon = _c(5)
    got = due_reminders([past, soon, edge, later, done, other_soon], NOW, timedelta(minutes=60))
    assert got == [other_soon, soon, edge]
    assert due_reminders([], NOW, timedelta(minutes=60)) == []
    assert due_reminders([_c(0)], NOW, timedelta(minutes=60)) == []  # starting right now: too late
    with pytest.raises(ValueError):
        due_reminders([soon], NOW.replace(tzinfo=None), timedelta(minutes=60))


async def test_reminder_job_sends_due_and_survives_a_failing_send() -> None:
    a, b, c = _c(10), _c(20), _c(500)
    bad = _c(15)
    seen: list[tuple[datetime, timedelta]] = []
    sent: list[uuid.UUID] = []

    async def fetch(now: datetime, lead: timedelta) -> list[ReminderCandidate]:
        seen.append((now, lead))
        return [a, b, c, bad]

    async def send(cand: ReminderCandidate) -> None:
        if cand is bad:
            raise RuntimeError("smtp exploded")
        sent.append(cand.appointment_id)

    run = await ReminderJob(fetch, send, timedelta(hours=1)).run_once(NOW)
    assert seen == [(NOW, timedelta(hours=1))]
    assert sent == [a.appointment_id, b.appointment_id] == run.sent
    assert run.failed == [bad.appointment_id]


@pytest.mark.parametrize("kind", ["invite", "confirmation", "reminder", "cancellation"])
@pytest.mark.parametrize("locale", ["ko", "en"])
def test_every_email_renders(kind: str, locale: str) -> None:
    ctx = {"organization": "Clinic <A>", "recipient_name": "김민지", "start": START, "end": END,
           "timezone": "Asia/Seoul", "visit_url": "https://c/v/1", "clinician": "이서준", "mode": "video",
           "manage_url": "https://c/m/1", "rebook_url": "https://c/book", "reason": "Clinician unavailable"}
    subject, text, html = render_email(kind, locale, ctx)
    assert subject and "\n" not in subject
    assert "김민지" in text and "김민지" in html
    assert "Clinic <A>" in text and "Clinic &lt;A&gt;" in html and "Clinic <A>" not in html
    if kind != "invite":
        assert "14:30" in text  # 05:30 UTC in Seoul
    if locale == "ko":
        assert "2025년 3월 4일" in text
    else:
        assert "March 4, 2025" in text


def test_email_requires_its_fields() -> None:
    with pytest.raises(ValueError, match="visit_url"):
        render_email("invite", "en", {"organization": "A", "recipient_name": "B"})
    with pytest.raises(ValueError):
        render_email("nonsense", "en", {})
