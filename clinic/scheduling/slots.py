"""Bookable slots from weekly rules, exceptions and public holidays, in the practitioner's time zone.

Rules are wall-clock times in the schedule's zone; each rule window is resolved to UTC instants for its
particular date (so a 09:00–12:00 rule stays 09:00–12:00 local across a DST change), and slots are then
stepped in real elapsed time inside the window (so a window spanning a DST change yields neither duplicated
nor phantom slots).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import holidays

from clinic.db.scheduling import SLOT_GRID_MINUTES, ExceptionKind

GRID = timedelta(minutes=SLOT_GRID_MINUTES)
_GRID_S = SLOT_GRID_MINUTES * 60


@dataclass(frozen=True, order=True)
class Interval:
    start: datetime
    end: datetime

    def overlaps(self, other: Interval) -> bool:
        return self.start < other.end and other.start < self.end


Busy = Interval


@dataclass(frozen=True)
class RuleSpec:
    weekday: int
    start: time
    end: time
    visit_type_ids: frozenset[uuid.UUID] = frozenset()
    valid_from: date | None = None
    valid_to: date | None = None

    def applies(self, day: date, visit_type_id: uuid.UUID) -> bool:
        if day.weekday() != self.weekday:
            return False
        if self.valid_from is not None and day < self.valid_from:
            return False
        if self.valid_to is not None and day > self.valid_to:
            return False
        return not self.visit_type_ids or visit_type_id in self.visit_type_ids


@dataclass(frozen=True)
class DateException:
    """Whole local days (``start_date``..``end_date`` inclusive) or an exact interval (``at``)."""

    kind: ExceptionKind
    start_date: date | None = None
    end_date: date | None = None
    at: Interval | None = None

    def interval(self, tz: ZoneInfo) -> Interval:
        if self.at is not None:
            return self.at
        assert self.start_date is not None and self.end_date is not None
        return Interval(local_instant(self.start_date, time(0), tz),
                        local_instant(self.end_date + timedelta(days=1), time(0), tz))


@dataclass(frozen=True)
class ScheduleSpec:
    timezone: str
    rules: tuple[RuleSpec, ...] = ()
    exceptions: tuple[DateException, ...] = ()
    holiday_country: str | None = None  # None: work through public holidays
    practitioner_user_id: uuid.UUID | None = None


@dataclass(frozen=True, order=True)
class Slot:
    start: datetime
    end: datetime
    practitioner_user_id: uuid.UUID | None = field(default=None, compare=False)
    visit_type_id: uuid.UUID | None = field(default=None, compare=False)


def valid_timezone(name: str) -> bool:
    if not name or "\x00" in name or ".." in name or name.startswith("/"):
        return False
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


def valid_holiday_country(code: str) -> bool:
    return code.upper() in holidays.list_supported_countries()


@lru_cache(maxsize=256)
def public_holidays(country: str, year: int) -> frozenset[date]:
    return frozenset(holidays.country_holidays(country.upper(), years=year).keys())


def is_public_holiday(country: str, day: date) -> bool:
    return day in public_holidays(country, day.year)


def local_instant(day: date, t: time, tz: ZoneInfo) -> datetime:
    """The UTC instant of a wall-clock time; a time skipped by DST resolves to the instant just after the gap
    (PEP 495 fold=0 reads it with the pre-transition offset)."""
    return datetime.combine(day, t, tzinfo=tz).astimezone(UTC)


def is_on_grid(dt: datetime) -> bool:
    return dt.tzinfo is not None and dt.microsecond == 0 and int(dt.timestamp()) % _GRID_S == 0


def floor_grid(dt: datetime) -> datetime:
    ts = int(dt.timestamp())
    return datetime.fromtimestamp(ts - ts % _GRID_S, UTC)


def ceil_grid(dt: datetime) -> datetime:
    f = floor_grid(dt)
    return f if f == dt else f + GRID


def grid_cells(start: datetime, end: datetime) -> list[datetime]:
    """The grid cells an interval touches (the rows it must claim)."""
    out = []
    t = floor_grid(start)
    while t < end:
        out.append(t)
        t += GRID
    return out


def can_cancel(appointment_start: datetime, now: datetime, window_hours: int) -> bool:
    """Patients may cancel (or move) only until ``window_hours`` before the start."""
    return appointment_start - now >= timedelta(hours=window_hours)


def generate_slots(
    spec: ScheduleSpec,
    *,
    visit_type_id: uuid.UUID,
    duration_minutes: int,
    window: Interval,
    now: datetime,
    busy: Iterable[Interval] = (),
) -> list[Slot]:
    """Free slots whose start lies in ``window``: rules and extra hours, minus vacations, unavailability,
    public holidays, busy time and anything not strictly in the future."""
    tz = ZoneInfo(spec.timezone)
    duration = timedelta(minutes=duration_minutes)
    first_day = window.start.astimezone(tz).date() - timedelta(days=1)
    last_day = window.end.astimezone(tz).date()
    open_windows: list[Interval] = []
    day = first_day
    while day <= last_day:
        if not (spec.holiday_country and is_public_holiday(spec.holiday_country, day)):
            open_windows.extend(
                Interval(local_instant(day, r.start, tz), local_instant(day, r.end, tz))
                for r in spec.rules
                if r.applies(day, visit_type_id)
            )
        day += timedelta(days=1)
    blocked: list[Interval] = []
    for ex in spec.exceptions:
        (open_windows if ex.kind is ExceptionKind.EXTRA else blocked).append(ex.interval(tz))
    taken = {c for b in busy for c in grid_cells(b.start, b.end)}
    starts: set[datetime] = set()
    for w in open_windows:
        t = ceil_grid(w.start)
        while t + duration <= w.end:
            if window.start <= t < window.end and t > now:
                slot = Interval(t, t + duration)
                if not any(slot.overlaps(b) for b in blocked) and not any(
                    c in taken for c in grid_cells(slot.start, slot.end)
                ):
                    starts.add(t)
            t += duration
    return [Slot(s, s + duration, spec.practitioner_user_id, visit_type_id) for s in sorted(starts)]
