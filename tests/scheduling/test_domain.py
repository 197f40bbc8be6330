"""Slot generation, the cancellation window and the state machine, without a database."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, time, timedelta

import pytest

from clinic.db.scheduling import AppointmentStatus as S
from clinic.db.scheduling import ExceptionKind
from clinic.scheduling import (
    DateException,
    Event,
    Interval,
    RuleSpec,
    ScheduleSpec,
    TransitionError,
    allowed_events,
    can_cancel,
    generate_slots,
    grid_cells,
    is_on_grid,
    transition,
)
from clinic.scheduling.slots import valid_timezone

VT = uuid.uuid4()
PAST = datetime(2000, 1, 1, tzinfo=UTC)


def utc(*a: int) -> datetime:
    return datetime(*a, tzinfo=UTC)  # type: ignore[misc]


def every_day(start: time, end: time, **kw: object) -> tuple[RuleSpec, ...]:
    return tuple(RuleSpec(wd, start, end, **kw) for wd in range(7))  # type: ignore[arg-type]


def slots(spec: ScheduleSpec, start: datetime, end: datetime, *, duration: int = 30, now: datetime = PAST,
          busy: tuple[Interval, ...] = (), vt: uuid.UUID = VT) -> list[datetime]:
    return [s.start for s in generate_slots(spec, visit_type_id=vt, duration_minutes=duration,
                                             window=Interval(start, end), now=now, busy=busy)]


def test_weekly_rule_in_practitioner_zone() -> None:
    spec = ScheduleSpec("Asia/Seoul", (RuleSpec(0, time(9), time(10, 30)),))  # Mondays
    got = slots(spec, utc(2024, 3, 3), utc(2024, 3, 6))  # Sun..Tue
    assert got == [utc(2024, 3, 4, 0), utc(2024, 3, 4, 0, 30), utc(2024, 3, 4, 1)]  # 09:00 KST = 00:00 UTC


def test_dst_spring_forward_keeps_local_wall_clock() -> None:
    spec = ScheduleSpec("America/New_York", every_day(time(9), time(10)))
    got = slots(spec, utc(2024, 3, 9), utc(2024, 3, 11, 23))
    # 09:00 EST is 14:00 UTC on Saturday; 09:00 EDT is 13:00 UTC from Sunday (the change day) on.
    assert got == [utc(2024, 3, 9, 14), utc(2024, 3, 9, 14, 30), utc(2024, 3, 10, 13), utc(2024, 3, 10, 13, 30),
                   utc(2024, 3, 11, 13), utc(2024, 3, 11, 13, 30)]


def test_dst_window_across_the_gap_and_the_overlap_counts_real_time() -> None:
    # 01:00-04:00 local on the spring-forward night is only two real hours long.
    spring = ScheduleSpec("America/New_York", (RuleSpec(6, time(1), time(4)),))
    got = slots(spring, utc(2024, 3, 10), utc(2024, 3, 11), duration=60)
    assert got == [utc(2024, 3, 10, 6), utc(2024, 3, 10, 7)]  # 01:00 EST, 03:00 EDT
    # 00:00-03:00 local on the fall-back night is four real hours; no slot is produced twice.
    fall = ScheduleSpec("America/New_York", (RuleSpec(6, time(0), time(3)),))
    got = slots(fall, utc(2024, 11, 3), utc(2024, 11, 4), duration=60)
    assert got == [utc(2024, 11, 3, 4), utc(2024, 11, 3, 5), utc(2024, 11, 3, 6), utc(2024, 11, 3, 7)]
    assert len(set(got)) == len(got)


def test_seollal_2024_is_skipped_when_holidays_are_observed() -> None:
    rules = every_day(time(9), time(10))
    observed = ScheduleSpec("Asia/Seoul", rules, holiday_country="KR")
    ignored = ScheduleSpec("Asia/Seoul", rules)
    window = (utc(2024, 2, 7, 15), utc(2024, 2, 13, 15))  # local 8th..13th inclusive
    local_days = {s.astimezone(__import__("zoneinfo").ZoneInfo("Asia/Seoul")).date()
                  for s in slots(observed, *window)}
    assert local_days == {date(2024, 2, 8), date(2024, 2, 13)}  # 9, 10, 11 Seollal; 12 substitute holiday
    assert len(slots(ignored, *window)) == 6 * 2


def test_exceptions_vacation_unavailable_extra() -> None:
    spec = ScheduleSpec("Asia/Seoul", every_day(time(9), time(11)), exceptions=(
        DateException(ExceptionKind.VACATION, start_date=date(2024, 5, 6), end_date=date(2024, 5, 7)),
        DateException(ExceptionKind.UNAVAILABLE, at=Interval(utc(2024, 5, 8, 0, 45), utc(2024, 5, 8, 1, 15))),
        DateException(ExceptionKind.EXTRA, at=Interval(utc(2024, 5, 8, 10), utc(2024, 5, 8, 11))),
        DateException(ExceptionKind.EXTRA, at=Interval(utc(2024, 5, 6, 10), utc(2024, 5, 6, 11))),
    ))
    got = slots(spec, utc(2024, 5, 5, 15), utc(2024, 5, 8, 15))  # local 6th, 7th, 8th
    # 6th and 7th on vacation, which beats extra hours; the 8th loses 09:30 and 10:00 but gains 19:00-20:00.
    assert got == [utc(2024, 5, 8, 0), utc(2024, 5, 8, 1, 30), utc(2024, 5, 8, 10), utc(2024, 5, 8, 10, 30)]


def test_past_and_busy_are_removed() -> None:
    spec = ScheduleSpec("UTC", every_day(time(9), time(12)))
    busy = (Interval(utc(2024, 5, 6, 10, 15), utc(2024, 5, 6, 10, 30)),)
    got = slots(spec, utc(2024, 5, 6), utc(2024, 5, 7), now=utc(2024, 5, 6, 9, 10), busy=busy)
    # 09:00 has started; 10:00 overlaps the busy quarter.
    assert got == [utc(2024, 5, 6, 9, 30), utc(2024, 5, 6, 10, 30), utc(2024, 5, 6, 11), utc(2024, 5, 6, 11, 30)]
    assert slots(spec, utc(2024, 5, 6), utc(2024, 5, 7), now=utc(2024, 5, 7)) == []


def test_rule_validity_and_visit_type_filter() -> None:
    other = uuid.uuid4()
    spec = ScheduleSpec("UTC", (
        RuleSpec(0, time(9), time(10), valid_from=date(2024, 5, 13)),
        RuleSpec(0, time(14), time(15), visit_type_ids=frozenset({other})),
    ))
    assert slots(spec, utc(2024, 5, 6), utc(2024, 5, 7)) == []
    assert slots(spec, utc(2024, 5, 13), utc(2024, 5, 14)) == [utc(2024, 5, 13, 9), utc(2024, 5, 13, 9, 30)]
    assert slots(spec, utc(2024, 5, 6), utc(2024, 5, 7), vt=other) == [utc(2024, 5, 6, 14), utc(2024, 5, 6, 14, 30)]


def test_grid_and_timezone_helpers() -> None:
    assert is_on_grid(utc(2024, 5, 6, 9, 5)) and not is_on_grid(utc(2024, 5, 6, 9, 7))
    assert not is_on_grid(utc(2024, 5, 6, 9, 5).replace(microsecond=1))
    assert grid_cells(utc(2024, 5, 6, 9), utc(2024, 5, 6, 9, 15)) == [
        utc(2024, 5, 6, 9), utc(2024, 5, 6, 9, 5), utc(2024, 5, 6, 9, 10)]
    assert grid_cells(utc(2024, 5, 6, 9, 3), utc(2024, 5, 6, 9, 6)) == [utc(2024, 5, 6, 9), utc(2024, 5, 6, 9, 5)]
    assert valid_timezone("Asia/Kathmandu") and not valid_timezone("Mars/Olympus") and not valid_timezone("../etc")


def test_nepal_offset_stays_on_grid() -> None:
    spec = ScheduleSpec("Asia/Kathmandu", every_day(time(9), time(10)))  # UTC+05:45
    got = slots(spec, utc(2024, 5, 6), utc(2024, 5, 7))
    assert got[0] == utc(2024, 5, 6, 3, 15) and all(is_on_grid(s) for s in got)


@pytest.mark.parametrize(("hours_before", "window", "ok"), [(25, 24, True), (24, 24, True), (23, 24, False),
                                                            (0, 0, True), (-1, 0, False)])
def test_cancellation_window(hours_before: int, window: int, ok: bool) -> None:
    start = utc(2024, 5, 6, 9)
    assert can_cancel(start, start - timedelta(hours=hours_before), window) is ok


def test_state_machine() -> None:
    assert transition(S.BOOKED, Event.CANCEL) is S.CANCELLED
    assert transition(S.PROPOSED, Event.CONFIRM) is S.BOOKED
    assert transition(S.BOOKED, Event.NO_SHOW) is S.NOSHOW
    assert transition(S.CHECKED_IN, Event.FULFIL) is S.FULFILLED
    for terminal in (S.CANCELLED, S.NOSHOW, S.FULFILLED):
        assert allowed_events(terminal) == []
        with pytest.raises(TransitionError, match=f"that is {terminal.value}"):
            transition(terminal, Event.CANCEL)
    with pytest.raises(TransitionError, match="cannot no show"):
        transition(S.PROPOSED, Event.NO_SHOW)
