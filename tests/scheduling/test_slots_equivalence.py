"""The memoized, integer-second slot generator against the straightforward datetime formulation it replaced.

The reference below is the previous ``generate_slots`` verbatim (it stepped datetimes and re-derived every
window on every call); random schedules across DST-observing zones, holidays, exceptions, busy time and
windows with odd microseconds must produce exactly the same slots, in the same order, on a cold and a warm
cache alike.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterable
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from clinic.db.scheduling import ExceptionKind
from clinic.scheduling.slots import (
    DateException,
    Interval,
    RuleSpec,
    ScheduleSpec,
    Slot,
    _day_slots,
    _extra_slots,
    ceil_grid,
    generate_slots,
    grid_cells,
    is_public_holiday,
    local_instant,
)


def reference_slots(
    spec: ScheduleSpec, *, visit_type_id: uuid.UUID, duration_minutes: int, window: Interval, now: datetime,
    busy: Iterable[Interval] = (),
) -> list[Slot]:
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


ZONES = ["Asia/Seoul", "America/New_York", "Europe/Berlin", "Australia/Lord_Howe", "America/Santiago",
         "Asia/Kathmandu", "UTC", "Pacific/Chatham"]
# Around DST changes in the zones above, plus an ordinary stretch.
ANCHORS = [datetime(2024, 3, 9, tzinfo=UTC), datetime(2024, 3, 30, tzinfo=UTC), datetime(2024, 4, 6, tzinfo=UTC),
           datetime(2024, 9, 7, tzinfo=UTC), datetime(2024, 10, 26, tzinfo=UTC), datetime(2024, 11, 2, tzinfo=UTC),
           datetime(2025, 5, 5, tzinfo=UTC), datetime(2024, 12, 24, tzinfo=UTC)]
VTS = [uuid.UUID(int=1), uuid.UUID(int=2)]


def _instant(rng: random.Random, around: datetime, spread_h: int) -> datetime:
    return around + timedelta(seconds=rng.randrange(-spread_h * 3600, spread_h * 3600),
                              microseconds=rng.choice([0, 0, 0, 1, 500_000, 999_999]))


def _clock(rng: random.Random) -> time:
    return time(rng.randrange(24), rng.choice([0, 5, 15, 30, 45, 55, 7, 59]), rng.choice([0, 0, 0, 30]))


def _spec(rng: random.Random, anchor: datetime) -> ScheduleSpec:
    rules = []
    for _ in range(rng.randrange(0, 9)):
        a, b = sorted((_clock(rng), _clock(rng)))
        if a == b:
            continue
        rules.append(RuleSpec(
            rng.randrange(7), a, b,
            frozenset(rng.sample(VTS, rng.randrange(0, 3))),
            anchor.date() + timedelta(days=rng.randrange(-3, 3)) if rng.random() < 0.2 else None,
            anchor.date() + timedelta(days=rng.randrange(0, 6)) if rng.random() < 0.2 else None,
        ))
    exceptions = []
    for _ in range(rng.randrange(0, 5)):
        kind = rng.choice(list(ExceptionKind))
        if rng.random() < 0.4:
            d0 = anchor.date() + timedelta(days=rng.randrange(-2, 6))
            exceptions.append(DateException(kind, d0, d0 + timedelta(days=rng.randrange(0, 2))))
        else:
            s = _instant(rng, anchor + timedelta(days=2), 72)
            exceptions.append(DateException(kind, at=Interval(s, s + timedelta(minutes=rng.randrange(1, 600)))))
    return ScheduleSpec(rng.choice(ZONES), tuple(rules), tuple(exceptions),
                        rng.choice([None, None, "KR", "US", "DE"]), uuid.UUID(int=rng.randrange(1 << 64)))


def _case(rng: random.Random) -> tuple[ScheduleSpec, dict[str, object]]:
    anchor = rng.choice(ANCHORS)
    spec = _spec(rng, anchor)
    start = _instant(rng, anchor + timedelta(days=1), 48)
    end = start + timedelta(hours=rng.randrange(1, 24 * 5), microseconds=rng.choice([0, 1, 250_000]))
    busy = []
    for _ in range(rng.randrange(0, 8)):
        b = _instant(rng, start + (end - start) / 2, 48)
        busy.append(Interval(b, b + timedelta(minutes=rng.randrange(1, 90), microseconds=rng.choice([0, 3]))))
    now = rng.choice([datetime(2000, 1, 1, tzinfo=UTC), _instant(rng, start, 24)])
    return spec, {"visit_type_id": rng.choice(VTS), "duration_minutes": rng.choice([5, 10, 15, 30, 45, 60, 90, 240, 7]),
                  "window": Interval(start, end), "now": now, "busy": tuple(busy)}


def _rows(slots: list[Slot]) -> list[tuple[datetime, datetime, uuid.UUID | None, uuid.UUID | None, object]]:
    return [(s.start, s.end, s.practitioner_user_id, s.visit_type_id, s.start.tzinfo) for s in slots]


@pytest.mark.parametrize("seed", range(8))
def test_matches_the_reference_on_random_schedules(seed: int) -> None:
    rng = random.Random(seed)
    _day_slots.cache_clear()
    _extra_slots.cache_clear()
    nonempty = 0
    for _ in range(250):
        spec, kw = _case(rng)
        want = _rows(reference_slots(spec, **kw))  # type: ignore[arg-type]
        assert _rows(generate_slots(spec, **kw)) == want, (spec, kw)  # type: ignore[arg-type]
        assert _rows(generate_slots(spec, **kw)) == want, (spec, kw)  # type: ignore[arg-type]  # warm cache
        nonempty += bool(want)
    assert nonempty > 50  # the cases exercise something


def test_cached_slots_are_shared_but_results_are_fresh_lists() -> None:
    spec = ScheduleSpec("Asia/Seoul", tuple(RuleSpec(wd, time(9), time(12)) for wd in range(7)),
                        practitioner_user_id=uuid.UUID(int=7))
    w = Interval(datetime(2030, 1, 7, tzinfo=UTC), datetime(2030, 1, 8, tzinfo=UTC))
    past = datetime(2000, 1, 1, tzinfo=UTC)
    a = generate_slots(spec, visit_type_id=VTS[0], duration_minutes=15, window=w, now=past)
    b = generate_slots(spec, visit_type_id=VTS[0], duration_minutes=15, window=w, now=past)
    assert a == b and a is not b and len(a) == 12
    a.clear()
    assert generate_slots(spec, visit_type_id=VTS[0], duration_minutes=15, window=w, now=past) == b
    # Busy time and "now" are applied per call, never baked into the cache.
    busy = (Interval(b[3].start, b[3].end),)
    got = generate_slots(spec, visit_type_id=VTS[0], duration_minutes=15, window=w, now=b[5].start, busy=busy)
    assert [s.start for s in got] == [s.start for s in b[6:]]
    got = generate_slots(spec, visit_type_id=VTS[0], duration_minutes=15, window=w, now=past, busy=busy)
    assert [s.start for s in got] == [s.start for s in b if s != b[3]]


def test_spec_changes_are_not_served_from_the_cache() -> None:
    base = ScheduleSpec("Europe/Berlin", (RuleSpec(0, time(9), time(10)),), practitioner_user_id=uuid.UUID(int=8))
    w = Interval(datetime(2031, 6, 2, tzinfo=UTC), datetime(2031, 6, 3, tzinfo=UTC))  # a Monday
    kw: dict[str, object] = {"visit_type_id": VTS[0], "duration_minutes": 30, "window": w,
                             "now": datetime(2000, 1, 1, tzinfo=UTC)}
    assert len(generate_slots(base, **kw)) == 2  # type: ignore[arg-type]
    vacation = DateException(ExceptionKind.VACATION, date(2031, 6, 2), date(2031, 6, 2))
    assert generate_slots(ScheduleSpec(base.timezone, base.rules, (vacation,), None, base.practitioner_user_id),
                          **kw) == []  # type: ignore[arg-type]
    longer = ScheduleSpec(base.timezone, (RuleSpec(0, time(9), time(11)),), (), None, base.practitioner_user_id)
    assert len(generate_slots(longer, **kw)) == 4  # type: ignore[arg-type]
