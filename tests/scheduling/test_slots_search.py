"""Slot search, service and HTTP, against the straightforward formulation it replaced.

The reference below is the previous search: ORM schedules with every rule and exception, the visit type and
organization fetched on their own, the old slot generator, and one validated ``SlotOut`` per item. Across
zones far from UTC, DST changes, holidays, exceptions near and far, claims (also from another organization)
and odd windows, the new search must give the same slots in the same order, and the same JSON.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import event, select

from clinic.db.models import Membership, Organization, Role
from clinic.db.scheduling import (
    Appointment,
    AppointmentStatus,
    AvailabilityException,
    AvailabilityRule,
    ExceptionKind,
    Schedule,
    SlotClaim,
    VisitMode,
    VisitType,
)
from clinic.db.uow import UnitOfWork
from clinic.errors import Invalid, NotFound
from clinic.scheduling.slots import GRID, Interval, RuleSpec, ScheduleSpec, Slot, generate_slots, grid_cells
from clinic.security.authz import Principal
from clinic.services import booking as svc
from clinic.web.routes.scheduling import SlotList, SlotOut, _slot_list
from tests.conftest import Db
from tests.scheduling.conftest import principal_of
from tests.scheduling.test_slots_equivalence import reference_slots
from tests.world import World, login, make_user

# --- the reference ------------------------------------------------------------------------------------------


def _instant(v: date | datetime, tz: str) -> datetime:
    if isinstance(v, datetime):
        return v.astimezone(UTC)
    return datetime.combine(v, time(0), tzinfo=ZoneInfo(tz)).astimezone(UTC)


async def reference_search(uow: UnitOfWork, org_id: uuid.UUID, *, visit_type_id: uuid.UUID, start: date | datetime,
                           end: date | datetime, tz: str | None = None,
                           practitioner_user_id: uuid.UUID | None = None,
                           now: datetime | None = None) -> tuple[str, list[Slot]]:
    if tz is None:
        org = await uow.session.get(Organization, org_id)
        tz = org.timezone if org is not None else "UTC"
    s0, e0 = _instant(start, tz), _instant(end, tz)
    svc.check_range(s0, e0)
    vt = await uow.session.get(VisitType, visit_type_id)
    if vt is None or vt.organization_id != org_id or not vt.active:
        raise NotFound("visit type not found")
    cond = [Schedule.organization_id == org_id, Schedule.active.is_(True)]
    if practitioner_user_id is not None:
        cond.append(Schedule.practitioner_user_id == practitioner_user_id)
    schedules = list((await uow.session.execute(select(Schedule).where(*cond))).scalars().all())
    busy: dict[uuid.UUID, list[Interval]] = {s.practitioner_user_id: [] for s in schedules}
    if schedules:
        rows = await uow.session.execute(select(SlotClaim.practitioner_user_id, SlotClaim.slot_start).where(
            SlotClaim.practitioner_user_id.in_(list(busy)),
            SlotClaim.slot_start >= s0 - timedelta(hours=4), SlotClaim.slot_start < e0 + timedelta(hours=4)))
        for pid, cell in rows:
            busy[pid].append(Interval(cell, cell + GRID))
    now = now or datetime.now(UTC)
    out: list[Slot] = []
    for s in schedules:
        out.extend(reference_slots(svc.schedule_spec(s), visit_type_id=vt.id, duration_minutes=vt.duration_minutes,
                                   window=Interval(s0, e0), now=now, busy=busy[s.practitioner_user_id]))
    out.sort(key=lambda sl: (sl.start, str(sl.practitioner_user_id)))
    return tz, out


def reference_body(tz: str, slots: list[Slot]) -> SlotList:
    zone = ZoneInfo(tz)
    return SlotList(timezone=tz, items=[
        SlotOut(start=s.start, end=s.end, local_start=s.start.astimezone(zone).isoformat(),
                practitioner_id=s.practitioner_user_id, visit_type_id=s.visit_type_id)
        for s in slots
    ])


def _rows(slots: list[Slot]) -> list[tuple[Any, ...]]:
    return [(s.start, s.end, s.practitioner_user_id, s.visit_type_id) for s in slots]


# --- a clinic with awkward schedules -------------------------------------------------------------------------


def _dst_change(zone: str, after: date) -> date:
    """The first day on or after ``after`` whose noon has another UTC offset than the day before's."""
    tz = ZoneInfo(zone)
    d = after
    while True:
        if (datetime.combine(d, time(12), tz).utcoffset()
                != datetime.combine(d - timedelta(days=1), time(12), tz).utcoffset()):
            return d
        d += timedelta(days=1)


@dataclass
class Clinic:
    org: uuid.UUID
    staff: Principal
    q15: uuid.UUID
    c30: uuid.UUID
    r20: uuid.UUID
    retired: uuid.UUID
    docs: dict[str, uuid.UUID]
    ny_change: date  # a DST change in New York, with exceptions and claims around it
    berlin_change: date


def _local(day: date, hh: int, mm: int, zone: str) -> datetime:
    return datetime.combine(day, time(hh, mm), ZoneInfo(zone)).astimezone(UTC)


@pytest.fixture
async def clinic(db: Db, world: World) -> Clinic:
    org = world.a.clinic.id
    soon = datetime.now(UTC).date() + timedelta(days=20)
    ny, berlin = _dst_change("America/New_York", soon), _dst_change("Europe/Berlin", soon)
    async with db.uow() as uow:
        vts = {code: VisitType(organization_id=org, code=code, name=code, duration_minutes=minutes, modes=["video"],
                               active=code != "retired")
               for code, minutes in (("q15", 15), ("c30", 30), ("r20", 20), ("retired", 15))}
        for vt in vts.values():
            uow.add(vt)
        docs = {"seoul": world.a.users["clinician"].id, "ny": world.a.users["clinician2"].id}
        for key in ("kiritimati", "pago", "inactive", "shared"):
            docs[key] = (await make_user(uow, f"{key}@t.example", Role.CLINICIAN, world.a.clinic)).id
        await uow.session.flush()
        specs: dict[str, tuple[str, str | None, list[Any]]] = {
            "seoul": ("Asia/Seoul", "KR", [(wd, time(9), time(12), []) for wd in range(7)]
                      + [(wd, time(13), time(18), []) for wd in range(7)]
                      + [(wd, time(18), time(20), [str(vts["r20"].id)]) for wd in range(7)]),
            "ny": ("America/New_York", None, [(wd, time(8), time(16, 30), []) for wd in range(7)]
                   + [(wd, time(1), time(3, 30), []) for wd in range(7)]),  # across the change at 02:00
            "kiritimati": ("Pacific/Kiritimati", None, [(wd, time(0), time(6), []) for wd in range(7)]
                           + [(wd, time(20), time(23, 55), []) for wd in range(7)]),
            "pago": ("Pacific/Pago_Pago", "US", [(wd, time(7), time(22), []) for wd in range(7)]),
            "inactive": ("Europe/Berlin", None, [(wd, time(9), time(17), []) for wd in range(7)]),
            "shared": ("Europe/Berlin", "DE", [(wd, time(0, 30), time(4), []) for wd in range(7)]
                       + [(wd, time(9), time(17), []) for wd in range(5)]),
        }
        schedules: dict[str, Schedule] = {}
        for key, (zone, country, rules) in specs.items():
            s = Schedule(organization_id=org, practitioner_user_id=docs[key], timezone=zone,
                         observe_public_holidays=country is not None, holiday_country=country or "KR",
                         active=key != "inactive")
            uow.add(s)
            await uow.session.flush()
            schedules[key] = s
            for wd, t0, t1, only in rules:
                uow.add(AvailabilityRule(schedule_id=s.id, weekday=wd, start=t0, end=t1, visit_type_ids=only,
                                         valid_to=ny + timedelta(days=30) if key == "seoul" and wd == 3 else None))

        def exc(key: str, kind: ExceptionKind, **kw: Any) -> None:
            uow.add(AvailabilityException(schedule_id=schedules[key].id, kind=kind, **kw))

        V, U, X = ExceptionKind.VACATION, ExceptionKind.UNAVAILABLE, ExceptionKind.EXTRA
        exc("ny", V, start_date=ny + timedelta(days=1), end_date=ny + timedelta(days=1))
        exc("ny", U, start_at=_local(ny, 10, 0, "America/New_York"), end_at=_local(ny, 11, 10, "America/New_York"))
        exc("ny", X, start_at=_local(ny + timedelta(days=2), 20, 0, "America/New_York"),
            end_at=_local(ny + timedelta(days=2), 23, 0, "America/New_York"))
        exc("ny", X, start_at=_local(ny, 9, 0, "America/New_York"),  # inside working hours, and past 16:30
            end_at=_local(ny, 18, 0, "America/New_York"))
        exc("ny", V, start_date=date(2020, 1, 1), end_date=date(2020, 12, 31))  # long past: never loaded
        exc("ny", V, start_date=ny + timedelta(days=90), end_date=ny + timedelta(days=95))
        exc("kiritimati", V, start_date=ny - timedelta(days=1), end_date=ny - timedelta(days=1))
        exc("kiritimati", U, start_at=_local(ny, 21, 7, "Pacific/Kiritimati"),
            end_at=_local(ny, 21, 7, "Pacific/Kiritimati") + timedelta(minutes=1, microseconds=3))
        exc("pago", X, start_date=ny + timedelta(days=3), end_date=ny + timedelta(days=3))
        exc("pago", U, start_date=ny + timedelta(days=1), end_date=ny + timedelta(days=1))
        exc("shared", V, start_date=berlin, end_date=berlin)
        exc("shared", X, start_at=_local(berlin + timedelta(days=1), 2, 0, "Europe/Berlin"),
            end_at=_local(berlin + timedelta(days=1), 3, 0, "Europe/Berlin"))

        # Claims: two in this clinic, one from an appointment in the other organization (time is per person).
        assert world.a.patient is not None and world.b.patient is not None
        uow.add(Membership(user_id=docs["shared"], organization_id=world.b.clinic.id, role=Role.CLINICIAN))
        vt_b = VisitType(organization_id=world.b.clinic.id, code="b", name="b", duration_minutes=60, modes=["video"])
        uow.add(vt_b)
        await uow.session.flush()
        for key, org_id, patient, vt_id, at, minutes in (
            ("seoul", org, world.a.patient.id, vts["c30"].id, _local(ny, 10, 0, "Asia/Seoul"), 30),
            ("ny", org, world.a.patient.id, vts["q15"].id, _local(ny, 8, 15, "America/New_York"), 15),
            ("shared", world.b.clinic.id, world.b.patient.id, vt_b.id,
             _local(berlin - timedelta(days=1), 9, 30, "Europe/Berlin"), 60),
        ):
            a = Appointment(organization_id=org_id, practitioner_user_id=docs[key], patient_id=patient,
                            visit_type_id=vt_id, start=at, end=at + timedelta(minutes=minutes),
                            status=AppointmentStatus.BOOKED, mode=VisitMode.VIDEO)
            uow.add(a)
            await uow.session.flush()
            for cell in grid_cells(a.start, a.end):
                uow.add(SlotClaim(appointment_id=a.id, practitioner_user_id=docs[key], slot_start=cell))
        await uow.commit()
    staff = await principal_of(db, world.a.users["clinician"])
    return Clinic(org=org, staff=staff, q15=vts["q15"].id, c30=vts["c30"].id, r20=vts["r20"].id,
                  retired=vts["retired"].id, docs=docs, ny_change=ny, berlin_change=berlin)


def _searches(c: Clinic) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    days = [c.ny_change + timedelta(days=k) for k in range(-2, 5)] + [
        c.berlin_change + timedelta(days=k) for k in range(-1, 3)]
    for i, d in enumerate(days):
        vt = (c.q15, c.c30, c.r20)[i % 3]
        for tz in (None, "America/New_York", "Pacific/Kiritimati", "Pacific/Pago_Pago", "Europe/Berlin"):
            out.append({"visit_type_id": vt, "start": d, "end": d + timedelta(days=1), "tz": tz})
        odd = datetime.combine(d, time(7, 13, 27, 500_000), timezone(timedelta(hours=5, minutes=30)))
        out.append({"visit_type_id": c.q15, "start": odd, "end": odd + timedelta(days=2, seconds=1)})
        out.append({"visit_type_id": vt, "start": d, "end": d + timedelta(days=2), "tz": "America/New_York",
                    "practitioner_user_id": c.docs["ny"]})
        # "now" inside the searched day
        out.append({"visit_type_id": c.q15, "start": d, "end": d + timedelta(days=1), "tz": "Asia/Seoul",
                    "now": datetime.combine(d, time(11, 2, 3), ZoneInfo("Asia/Seoul"))})
    out.append({"visit_type_id": c.c30, "start": c.ny_change - timedelta(days=10),
                "end": c.ny_change + timedelta(days=21), "tz": "America/New_York"})
    out.append({"visit_type_id": c.q15, "start": c.ny_change, "end": c.ny_change + timedelta(days=3),
                "practitioner_user_id": c.docs["inactive"]})
    return out


# --- the tests ----------------------------------------------------------------------------------------------


async def test_search_matches_the_reference(db: Db, clinic: Clinic) -> None:
    searches = _searches(clinic)
    nonempty = 0
    for kw in searches:
        async with db.uow() as uow:
            found = await svc.search_slots_local(uow, clinic.staff, clinic.org, **kw)
        async with db.uow() as uow:
            tz, want = await reference_search(uow, clinic.org, **kw)
        assert found.timezone == tz, kw
        assert _rows(found.slots) == _rows(want), kw
        nonempty += bool(want)
    assert nonempty > len(searches) // 2
    # With explicit instants, search_slots is the same search.
    kw = next(kw for kw in searches if isinstance(kw["start"], datetime))
    async with db.uow() as uow:
        got = await svc.search_slots(uow, clinic.staff, clinic.org, visit_type_id=kw["visit_type_id"],
                                     start=kw["start"], end=kw["end"])
        _, want = await reference_search(uow, clinic.org, **kw)
    assert _rows(got) == _rows(want) and want


async def test_search_errors_come_in_the_same_order(db: Db, clinic: Clinic) -> None:
    d = clinic.ny_change
    async with db.uow() as uow:
        with pytest.raises(Invalid):  # the range is checked before the visit type
            await svc.search_slots_local(uow, clinic.staff, clinic.org, visit_type_id=uuid.uuid4(), start=d,
                                         end=d + timedelta(days=40))
        for vt in (uuid.uuid4(), clinic.retired):
            with pytest.raises(NotFound):
                await svc.search_slots_local(uow, clinic.staff, clinic.org, visit_type_id=vt, start=d,
                                             end=d + timedelta(days=1))
        with pytest.raises(Invalid):
            await svc.search_slots(uow, clinic.staff, clinic.org, visit_type_id=clinic.q15,
                                   start=datetime(2031, 1, 1), end=datetime(2031, 1, 2))
        found = await svc.search_slots_local(uow, clinic.staff, clinic.org, visit_type_id=clinic.q15, start=d,
                                             end=d + timedelta(days=1), practitioner_user_id=uuid.uuid4())
        assert found.slots == [] and found.timezone == "Asia/Seoul"


async def test_search_reads_in_two_queries_unless_exceptions_are_near(db: Db, clinic: Clinic) -> None:
    selects: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            selects.append(statement)

    event.listen(db.engine.sync_engine, "before_cursor_execute", count)
    try:
        for day, n in ((clinic.ny_change + timedelta(days=40), 2), (clinic.ny_change, 3)):
            selects.clear()
            async with db.uow() as uow:
                found = await svc.search_slots_local(uow, clinic.staff, clinic.org, visit_type_id=clinic.q15,
                                                     start=day, end=day + timedelta(days=1))
            assert found.slots and len(selects) == n, selects
    finally:
        event.remove(db.engine.sync_engine, "before_cursor_execute", count)


async def test_search_sees_pending_changes_of_its_unit_of_work(db: Db, clinic: Clinic) -> None:
    d = clinic.ny_change + timedelta(days=40)
    kw: dict[str, Any] = {"visit_type_id": clinic.q15, "start": d, "end": d + timedelta(days=1),
                          "practitioner_user_id": clinic.docs["pago"]}
    async with db.uow() as uow:
        assert (await svc.search_slots_local(uow, clinic.staff, clinic.org, **kw)).slots
        s = (await uow.session.execute(
            select(Schedule).where(Schedule.practitioner_user_id == clinic.docs["pago"]))).scalar_one()
        s.active = False  # not flushed
        assert (await svc.search_slots_local(uow, clinic.staff, clinic.org, **kw)).slots == []


async def test_http_body_is_unchanged(client: TestClient, db: Db, world: World, clinic: Clinic) -> None:
    await login(client, world.a.users["patient"].email)
    d = clinic.ny_change
    all_params: list[dict[str, Any]] = [
        {"visit_type_id": clinic.q15, "from": d, "to": d + timedelta(days=1)},
        {"visit_type_id": clinic.c30, "from": d, "to": d + timedelta(days=2), "tz": "Pacific/Pago_Pago"},
        {"visit_type_id": clinic.q15, "from": d, "to": d + timedelta(days=1), "practitioner_id": clinic.docs["ny"],
         "tz": "America/New_York"},
        {"visit_type_id": clinic.q15, "from": datetime.combine(d, time(3, 7), timezone(timedelta(hours=-3))),
         "to": datetime.combine(d, time(23), timezone(timedelta(hours=-3)))},
    ]
    for params in all_params:
        r = await client.get(f"/api/v1/organizations/{clinic.org}/slots",
                             params={k: v.isoformat() if isinstance(v, date) else str(v) for k, v in params.items()})
        body = await r.json()
        assert r.status == 200, body
        async with db.uow() as uow:
            tz, want = await reference_search(
                uow, clinic.org, visit_type_id=params["visit_type_id"], start=params["from"], end=params["to"],
                tz=params.get("tz"), practitioner_user_id=params.get("practitioner_id"))
        assert want and body == json.loads(reference_body(tz, want).model_dump_json())


def _some_slots() -> list[Slot]:
    spec = ScheduleSpec("America/New_York", tuple(RuleSpec(wd, time(0, 30), time(4)) for wd in range(7)),
                        practitioner_user_id=uuid.UUID(int=11))
    other = ScheduleSpec("Asia/Kolkata", tuple(RuleSpec(wd, time(9), time(11)) for wd in range(7)),
                         practitioner_user_id=uuid.uuid4())
    w = Interval(datetime(2030, 3, 9, tzinfo=UTC), datetime(2030, 3, 12, tzinfo=UTC))  # across a DST change
    kw: dict[str, Any] = {"visit_type_id": uuid.uuid4(), "duration_minutes": 25, "window": w,
                          "now": datetime(2000, 1, 1, tzinfo=UTC)}
    out = generate_slots(spec, **kw) + generate_slots(other, **kw)
    out.sort(key=lambda s: (s.start, str(s.practitioner_user_id)))
    return out


@pytest.mark.parametrize("tz", ["UTC", "America/New_York", "Asia/Kathmandu", "Europe/Dublin"])
def test_slot_list_serializes_exactly_like_validated_items(tz: str) -> None:
    slots = _some_slots()
    want = reference_body(tz, slots)
    got = _slot_list(tz, slots)
    assert got.model_dump_json() == want.model_dump_json()
    assert got.model_dump(mode="json") == want.model_dump(mode="json")
    assert got.model_dump() == want.model_dump()
    assert got == want
    assert all(type(item) is SlotOut for item in got.items)
    sample = got.model_dump(mode="json")["items"][0]
    assert sample["start"].endswith("Z") and isinstance(sample["practitioner_id"], str)
