"""Bookable slots from weekly rules, exceptions and public holidays, in the practitioner's time zone.

Rules are wall-clock times in the schedule's zone; each rule window is resolved to UTC instants for its
particular date (so a 09:00–12:00 rule stays 09:00–12:00 local across a DST change), and slots are then
stepped in real elapsed time inside the window (so a window spanning a DST change yields neither duplicated
nor phantom slots).
"""

from __future__ import annotations

import uuid
from bisect import bisect_left, bisect_right
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from functools import cached_property, lru_cache
from itertools import pairwise
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

    def __hash__(self) -> int:
        return self._hash

    # Specs key the slot caches, so a search hashes each one a few times; hashing every rule each time was
    # half of generate_slots' CPU when nobody was busy.
    @cached_property
    def _hash(self) -> int:
        return hash((self.timezone, self.rules, self.exceptions, self.holiday_country, self.practitioner_user_id))


# slots=True: generated slots are memoized (see _day_slots), so each one's footprint counts.
@dataclass(frozen=True, order=True, slots=True)
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


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_DAY = timedelta(days=1)


# Slot arithmetic runs on whole epoch seconds. These are exact (float ``timestamp()`` is not), so an instant
# with microseconds compares with a whole second exactly as the datetimes themselves would.
def _floor_s(dt: datetime) -> int:
    d = dt - _EPOCH
    return d.days * 86400 + d.seconds


def _ceil_s(dt: datetime) -> int:
    d = dt - _EPOCH
    return d.days * 86400 + d.seconds + (1 if d.microseconds else 0)


@dataclass(frozen=True, slots=True)
class _Candidates:
    """Slots one source (a local day's rules, or the extra hours) offers, before busy time, ``now`` and the
    search window are applied; ``starts`` parallels ``slots`` for bisecting."""

    starts: tuple[int, ...]
    slots: tuple[Slot, ...]


_NONE = _Candidates((), ())


def _candidates(spec: ScheduleSpec, visit_type_id: uuid.UUID, duration_minutes: int,
                windows: list[Interval]) -> _Candidates:
    tz = ZoneInfo(spec.timezone)
    d = duration_minutes * 60
    blocked = [(_floor_s(iv.start), _ceil_s(iv.end))
               for iv in (ex.interval(tz) for ex in spec.exceptions if ex.kind is not ExceptionKind.EXTRA)]
    starts: set[int] = set()
    for w in windows:
        first, last = _ceil_s(w.start), _floor_s(w.end)  # a slot may start at or after w.start, end by w.end
        near = [(b0, b1) for b0, b1 in blocked if b0 < last and b1 > first]
        t = -(-first // _GRID_S) * _GRID_S
        while t + d <= last:
            # [t, t+d) overlaps [b0, b1): both sides are exact, see _floor_s/_ceil_s.
            if not any(t < b1 and b0 < t + d for b0, b1 in near):
                starts.add(t)
            t += d
    if not starts:
        return _NONE
    ordered = sorted(starts)
    # Back-to-back slots share their boundary instants rather than holding two equal datetimes.
    instants: dict[int, datetime] = {}

    def at(ts: int) -> datetime:
        dt = instants.get(ts)
        if dt is None:
            dt = instants[ts] = _EPOCH + timedelta(seconds=ts)
        return dt

    pid = spec.practitioner_user_id
    return _Candidates(tuple(ordered), tuple(Slot(at(t), at(t + d), pid, visit_type_id) for t in ordered))


# An entry is one practitioner-day and visit type: ~8 kB for 12 hours of 15-minute visits, so ~8 MB when full
# of such days. Keyed on the whole spec, so any change to rules, exceptions or zone simply misses.
@lru_cache(maxsize=1024)
def _day_slots(spec: ScheduleSpec, visit_type_id: uuid.UUID, duration_minutes: int, day: date) -> _Candidates:
    """What a local day's weekly rules offer."""
    if spec.holiday_country and is_public_holiday(spec.holiday_country, day):
        return _NONE
    tz = ZoneInfo(spec.timezone)
    windows = [Interval(local_instant(day, r.start, tz), local_instant(day, r.end, tz))
               for r in spec.rules if r.applies(day, visit_type_id)]
    return _candidates(spec, visit_type_id, duration_minutes, windows) if windows else _NONE


@lru_cache(maxsize=256)
def _extra_slots(spec: ScheduleSpec, visit_type_id: uuid.UUID, duration_minutes: int) -> _Candidates:
    """What extra-hours exceptions offer, whatever the day (a search loads only the ones near its window)."""
    tz = ZoneInfo(spec.timezone)
    windows = [ex.interval(tz) for ex in spec.exceptions if ex.kind is ExceptionKind.EXTRA]
    return _candidates(spec, visit_type_id, duration_minutes, windows)


def _disjoint(parts: list[_Candidates]) -> list[_Candidates]:
    """The sources as a list of ordered, non-overlapping runs, so each can be bisected on its own."""
    parts = [p for p in parts if p.starts]
    if all(a.starts[-1] < b.starts[0] for a, b in pairwise(parts)):
        return parts
    # Overlapping sources (extra hours inside working hours, or a DST oddity): one slot per start.
    by_start = {t: s for p in parts for t, s in zip(p.starts, p.slots, strict=True)}
    ordered = sorted(by_start)
    return [_Candidates(tuple(ordered), tuple(by_start[t] for t in ordered))]


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
    public holidays, busy time and anything not strictly in the future.

    The busy-independent part is memoized per practitioner-day; only the window, ``now`` and busy time are
    applied per call. The returned (frozen) Slot objects may be shared between calls."""
    tz = ZoneInfo(spec.timezone)
    day = window.start.astimezone(tz).date() - _ONE_DAY
    last_day = window.end.astimezone(tz).date()
    parts: list[_Candidates] = []
    while day <= last_day:
        parts.append(_day_slots(spec, visit_type_id, duration_minutes, day))
        day += _ONE_DAY
    if any(ex.kind is ExceptionKind.EXTRA for ex in spec.exceptions):
        parts.append(_extra_slots(spec, visit_type_id, duration_minutes))
    # window.start <= t < window.end and t > now, for whole-second t.
    first, stop = max(_ceil_s(window.start), _floor_s(now) + 1), _ceil_s(window.end)
    cells = _busy_cells(busy)
    d = duration_minutes * 60
    out: list[Slot] = []
    for part in _disjoint(parts):
        lo = bisect_left(part.starts, first)
        hi = bisect_left(part.starts, stop, lo)
        if lo < hi:
            _add_free(out, part, lo, hi, d, cells)
    return out


def _busy_cells(busy: Iterable[Interval]) -> list[tuple[int, int]]:
    """The grid cells busy time touches, as ``[lo, hi)`` runs of epoch seconds on the grid, ordered by ``lo``."""
    runs = []
    for b in busy:
        lo = _floor_s(b.start)
        lo -= lo % _GRID_S
        hi = -(-_ceil_s(b.end) // _GRID_S) * _GRID_S
        if lo < hi:
            runs.append((lo, hi))
    runs.sort()
    return runs


def _add_free(out: list[Slot], part: _Candidates, lo: int, hi: int, d: int, cells: list[tuple[int, int]]) -> None:
    """Appends the part's slots ``lo:hi`` that hold no busy cell. A slot at t holds the grid cells from
    floor_grid(t) up to t + d, so it is busy iff it overlaps a run of cells ``[c0, c1)``: c0 - d < t < c1.
    Sweeping the runs in order takes the free stretches between them as slices."""
    starts, slots = part.starts, part.slots
    for c0, c1 in cells:
        k = bisect_right(starts, c0 - d, lo, hi)
        out.extend(slots[lo:k])
        lo = bisect_left(starts, c1, k, hi)
        if lo == hi:
            return
    out.extend(slots[lo:hi])
