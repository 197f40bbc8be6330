"""Operational analytics for organization admins: waiting times, visits per clinician, no-show rate.

Rows are selected in SQL by plain range predicates (identical on SQLite and PostgreSQL) and aggregated
in Python, so percentiles mean the same thing on both databases: linear interpolation between the two
nearest ranks (the "inclusive" method of :func:`statistics.quantiles`, NumPy's default).

Days are the organization's local calendar days: a clinic asks about "Monday", not a UTC interval.
"""

from __future__ import annotations

import math
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import func, select

from clinic.db.base import UTCDateTime
from clinic.db.encounters import Encounter
from clinic.db.models import Organization
from clinic.db.scheduling import Appointment, AppointmentStatus
from clinic.db.uow import UnitOfWork
from clinic.encounters.state import EncounterStatus
from clinic.errors import Invalid, NotFound
from clinic.security.authz import Principal, Resource, authorize
from clinic.services.accounts import display_names

MAX_DAYS = 366
#: Appointments that never expected the patient to turn up do not count towards the no-show rate.
_NOT_EXPECTED = (AppointmentStatus.PROPOSED, AppointmentStatus.CANCELLED)


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th quantile (0 ≤ q ≤ 1) by linear interpolation between closest ranks; ``values`` non-empty."""
    if not values:
        raise ValueError("no values")
    xs = sorted(values)
    pos = (len(xs) - 1) * q
    lo = math.floor(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


@dataclass(frozen=True)
class DayWait:
    day: date
    count: int
    p50_seconds: float | None
    p90_seconds: float | None


@dataclass(frozen=True)
class ClinicianVisits:
    user_id: uuid.UUID
    name: str
    visits: int


@dataclass(frozen=True)
class Analytics:
    organization_id: uuid.UUID
    start: date
    end: date
    timezone: str
    waits: list[DayWait]
    wait_count: int
    wait_p50_seconds: float | None
    wait_p90_seconds: float | None
    visits: list[ClinicianVisits]
    appointments_expected: int
    no_shows: int
    no_show_rate: float | None


def _bounds(start: date, end: date, tz: ZoneInfo) -> tuple[datetime, datetime]:
    return (datetime.combine(start, time(), tzinfo=tz).astimezone(UTC),
            datetime.combine(end + timedelta(days=1), time(), tzinfo=tz).astimezone(UTC))


def _pcts(xs: list[float]) -> tuple[float | None, float | None]:
    return (percentile(xs, 0.5), percentile(xs, 0.9)) if xs else (None, None)


async def organization_analytics(uow: UnitOfWork, principal: Principal, org_id: uuid.UUID, start: date,
                                 end: date) -> Analytics:
    authorize(principal, "analytics.read", Resource("Organization", organization_id=org_id, id=org_id))
    org = await uow.session.get(Organization, org_id)
    if org is None:
        raise NotFound("organization not found")
    if end < start:
        raise Invalid("the range ends before it starts", fields={"to": "must not be before from"})
    if (end - start).days >= MAX_DAYS:
        raise Invalid("range too long", fields={"to": f"at most {MAX_DAYS} days after from"})
    tz = ZoneInfo(org.timezone)
    lo, hi = _bounds(start, end, tz)

    # Waiting time: from check-in to admission into the call (or its start, if admission was not recorded).
    rows = (await uow.session.execute(
        select(Encounter.checked_in_at, Encounter.admitted_at, Encounter.started_at)
        .where(Encounter.organization_id == org_id, Encounter.checked_in_at >= lo, Encounter.checked_in_at < hi)
    )).all()
    by_day: dict[date, list[float]] = {}
    for checked_in, admitted, started in rows:
        seen = admitted or started
        if checked_in is None or seen is None or seen < checked_in:
            continue  # still waiting, left before being seen, or inconsistent clocks
        by_day.setdefault(checked_in.astimezone(tz).date(), []).append((seen - checked_in).total_seconds())
    waits = []
    day = start
    while day <= end:
        xs = by_day.get(day, [])
        p50, p90 = _pcts(xs)
        waits.append(DayWait(day, len(xs), p50, p90))
        day += timedelta(days=1)
    all_waits = [w for xs in by_day.values() for w in xs]
    p50_all, p90_all = _pcts(all_waits)

    # Visits: completed encounters, dated by when the consultation began.
    began = func.coalesce(Encounter.started_at, Encounter.admitted_at, Encounter.checked_in_at,
                          type_=UTCDateTime())
    visit_rows = (await uow.session.execute(
        select(Encounter.claimed_by_id).where(
            Encounter.organization_id == org_id, Encounter.status == EncounterStatus.COMPLETED,
            Encounter.claimed_by_id.is_not(None), began >= lo, began < hi)
    )).scalars().all()
    counts = Counter(visit_rows)
    names = await display_names(uow, counts)
    visits = sorted((ClinicianVisits(uid, names.get(uid, ""), n) for uid, n in counts.items() if uid is not None),
                    key=lambda v: (-v.visits, v.name, str(v.user_id)))

    # No-shows among the appointments the patient was expected at.
    statuses = (await uow.session.execute(
        select(Appointment.status).where(Appointment.organization_id == org_id, Appointment.start >= lo,
                                         Appointment.start < hi, Appointment.status.not_in(_NOT_EXPECTED))
    )).scalars().all()
    expected = len(statuses)
    no_shows = sum(1 for s in statuses if s is AppointmentStatus.NOSHOW)

    uow.audit.record(principal, "analytics.read", object_type="Organization", object_id=org_id,
                     organization_id=org_id, detail={"from": start.isoformat(), "to": end.isoformat()})
    return Analytics(organization_id=org_id, start=start, end=end, timezone=org.timezone, waits=waits,
                     wait_count=len(all_waits), wait_p50_seconds=p50_all, wait_p90_seconds=p90_all, visits=visits,
                     appointments_expected=expected, no_shows=no_shows,
                     no_show_rate=no_shows / expected if expected else None)
