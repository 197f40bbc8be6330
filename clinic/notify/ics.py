"""iCalendar (RFC 5545 / iTIP RFC 5546) objects for appointment invitations.

The UID must stay the same for the life of an appointment and SEQUENCE must grow with every
reschedule: that is how calendar clients update (or, with METHOD:CANCEL, remove) the event they
already hold instead of adding a second one.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Literal

from icalendar import Calendar, Event, vCalAddress, vText

PRODID = "-//telemed//appointments//EN"

Method = Literal["REQUEST", "CANCEL", "PUBLISH"]
Status = Literal["CONFIRMED", "TENTATIVE", "CANCELLED"]


def appointment_uid(appointment_id: uuid.UUID | str, domain: str = "telemed") -> str:
    """A UID that is stable per appointment (derive it, never store a random one)."""
    return f"appointment-{appointment_id}@{domain}"


def _utc(value: datetime, name: str) -> datetime:
    if value.tzinfo is None:
        raise ValueError(f"{name} must be timezone-aware")
    return value.astimezone(UTC)


def _address(email: str, *, cn: str | None, **params: str) -> vCalAddress:
    addr = vCalAddress(f"mailto:{email}")
    if cn:
        addr.params["CN"] = vText(cn)
    for k, v in params.items():
        addr.params[k.replace("_", "-").upper()] = vText(v)
    return addr


def appointment_ics(
    uid: str,
    start_utc: datetime,
    end_utc: datetime,
    summary: str,
    description: str,
    location_url: str,
    organizer_email: str,
    attendee_email: str,
    method: Method = "REQUEST",
    sequence: int = 0,
    status: Status = "CONFIRMED",
    *,
    organizer_name: str | None = None,
    attendee_name: str | None = None,
    stamp: datetime | None = None,
) -> bytes:
    """One VEVENT in a VCALENDAR; a cancellation is METHOD:CANCEL with STATUS:CANCELLED.

    Either ``status="CANCELLED"`` or ``method="CANCEL"`` makes a cancellation: clients only remove
    the event when both agree, so the other is aligned rather than trusting callers to pass both.
    """
    start = _utc(start_utc, "start_utc")
    end = _utc(end_utc, "end_utc")
    if end <= start:
        raise ValueError("end_utc must be after start_utc")
    if sequence < 0:
        raise ValueError("sequence must be >= 0")
    if status == "CANCELLED" or method == "CANCEL":
        method, status = "CANCEL", "CANCELLED"

    cal = Calendar()
    cal.add("prodid", PRODID)
    cal.add("version", "2.0")
    cal.add("calscale", "GREGORIAN")
    cal.add("method", method)

    ev = Event()
    ev.add("uid", uid)
    ev.add("dtstamp", _utc(stamp, "stamp") if stamp else datetime.now(UTC))
    ev.add("dtstart", start)
    ev.add("dtend", end)
    ev.add("sequence", sequence)
    ev.add("status", status)
    ev.add("summary", summary)
    if description:
        ev.add("description", description)
    if location_url:
        ev.add("location", location_url)
        ev.add("url", location_url)
    ev.add("transp", "OPAQUE")
    ev["organizer"] = _address(organizer_email, cn=organizer_name)
    ev.add(
        "attendee",
        _address(
            attendee_email,
            cn=attendee_name,
            role="REQ-PARTICIPANT",
            partstat="NEEDS-ACTION",
            rsvp="TRUE",
            cutype="INDIVIDUAL",
        ),
    )
    cal.add_component(ev)
    return cal.to_ical()
