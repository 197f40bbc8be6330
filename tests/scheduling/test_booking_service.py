"""The booking service on real databases: the no-double-booking guarantee under concurrency, and the rules."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, time, timedelta

import pytest
from sqlalchemy import func, select

from clinic.db.clinical import Patient
from clinic.db.scheduling import Appointment, AppointmentKind, AppointmentStatus, ExceptionKind, SlotClaim, VisitMode
from clinic.errors import Conflict, DomainError, Forbidden, Invalid, NotFound, PolicyDenied
from clinic.security.authz import Principal
from clinic.services import booking as svc
from tests.conftest import Db
from tests.scheduling.conftest import Booking, principal_of
from tests.world import World

N = 50


async def _extra_patients(db: Db, world: World, n: int) -> list[uuid.UUID]:
    async with db.uow() as uow:
        ps = [Patient(organization_id=world.a.clinic.id, family_name="Race", given_name=f"p{i}",
                      birth_date=datetime(1990, 1, 1).date()) for i in range(n)]
        for p in ps:
            uow.add(p)
        await uow.session.flush()
        ids = [p.id for p in ps]
        await uow.commit()
    return ids


async def _attempt(db: Db, who: Principal, **kw: object) -> uuid.UUID | str:
    try:
        async with db.uow() as uow:
            a = await svc.book(uow, who, **kw)  # type: ignore[arg-type]
            await uow.commit()
            return a.id
    except DomainError as exc:
        return exc.code


async def test_fifty_concurrent_bookings_of_one_slot_exactly_one_wins(db: Db, world: World, booking: Booking) -> None:
    staff = await principal_of(db, world.a.users["clinician"])
    patients = await _extra_patients(db, world, N)
    start = booking.at(10)
    # Mixed durations starting at the same and at overlapping times: claims must still collide.
    attempts = [
        _attempt(db, staff, patient_id=pid, practitioner_user_id=booking.doc,
                 visit_type_id=booking.consult if i % 2 else booking.quick, start=start, mode=VisitMode.VIDEO)
        for i, pid in enumerate(patients)
    ]
    results = await asyncio.gather(*attempts)
    winners = [r for r in results if isinstance(r, uuid.UUID)]
    assert len(winners) == 1, results
    assert sorted(set(results) - set(winners)) == ["slot_taken"]
    async with db.uow() as uow:
        n_appt = (await uow.session.execute(select(func.count()).select_from(Appointment))).scalar_one()
        n_claims = (await uow.session.execute(select(func.count()).select_from(SlotClaim))).scalar_one()
    assert n_appt == 1 and n_claims in (3, 6)


async def test_overlapping_bookings_race_for_shared_cells(db: Db, world: World, booking: Booking) -> None:
    """A 30-minute visit at 10:00 and 15-minute visits at 10:15 share cells: exactly one side wins."""
    staff = await principal_of(db, world.a.users["clinician"])
    patients = await _extra_patients(db, world, N)
    attempts = [
        _attempt(db, staff, patient_id=pid, practitioner_user_id=booking.doc,
                 visit_type_id=booking.consult if i % 2 else booking.quick,
                 start=booking.at(10) if i % 2 else booking.at(10, 15), mode=VisitMode.VIDEO)
        for i, pid in enumerate(patients)
    ]
    results = await asyncio.gather(*attempts)
    assert len([r for r in results if isinstance(r, uuid.UUID)]) == 1
    async with db.uow() as uow:
        rows = (await uow.session.execute(select(Appointment))).scalars().all()
        claims = (await uow.session.execute(select(SlotClaim.slot_start))).scalars().all()
    assert len(rows) == 1 and len(claims) == len(set(claims))


async def test_book_search_cancel_reschedule_no_show(db: Db, world: World, booking: Booking) -> None:
    patient = await principal_of(db, world.a.users["patient"])
    staff = await principal_of(db, world.a.users["clinician"])
    org = world.a.clinic.id
    assert world.a.patient is not None
    day_start, day_end = booking.at(0), booking.at(0) + timedelta(days=1)
    async with db.uow() as uow:
        free = await svc.search_slots(uow, patient, org, visit_type_id=booking.consult, start=day_start, end=day_end)
    assert [s.start for s in free][:2] == [booking.at(9), booking.at(9, 30)] and len(free) == 16
    async with db.uow() as uow:
        a = await svc.book(uow, patient, patient_id=world.a.patient.id, practitioner_user_id=booking.doc,
                           visit_type_id=booking.consult, start=booking.at(9, 30), mode=VisitMode.AUDIO,
                           reason="cough")
        await uow.commit()
    async with db.uow() as uow:
        free = await svc.search_slots(uow, patient, org, visit_type_id=booking.quick, start=day_start, end=day_end)
    starts = {s.start for s in free}
    assert booking.at(9, 15) in starts and booking.at(9, 30) not in starts and booking.at(9, 45) not in starts
    # reschedule releases the old cells and claims the new ones, in one transaction
    async with db.uow() as uow:
        a = await svc.reschedule(uow, patient, a.id, start=booking.at(11))
        await uow.commit()
    assert a.ics_sequence == 1 and a.start == booking.at(11)
    async with db.uow() as uow:
        other = await svc.book(uow, staff, patient_id=world.a.other_patient.id,  # type: ignore[union-attr]
                               practitioner_user_id=booking.doc, visit_type_id=booking.consult,
                               start=booking.at(9, 30), mode=VisitMode.VIDEO)
        await uow.commit()
    # the patient cannot cancel inside the window, staff can
    late = a.start - timedelta(hours=2)
    async with db.uow() as uow:
        with pytest.raises(Conflict) as ei:
            await svc.cancel(uow, patient, a.id, now=late)
        assert ei.value.code == "cancellation_window"
    async with db.uow() as uow:
        a = await svc.cancel(uow, staff, a.id, reason="doctor ill", now=late)
        await uow.commit()
    assert a.status is AppointmentStatus.CANCELLED and a.ics_sequence == 2
    async with db.uow() as uow:
        with pytest.raises(Conflict) as ei:
            await svc.cancel(uow, staff, a.id)
        assert ei.value.code == "illegal_transition" and "cancelled" in ei.value.message
    # no-show: staff only, only after the start
    async with db.uow() as uow:
        with pytest.raises(Conflict) as ei:
            await svc.mark_no_show(uow, staff, other.id)
        assert ei.value.code == "not_started"
    owner = await principal_of(db, world.a.users["patient2"])
    async with db.uow() as uow:
        with pytest.raises(Forbidden):
            await svc.mark_no_show(uow, owner, other.id, now=other.start + timedelta(minutes=20))
    async with db.uow() as uow:
        with pytest.raises(NotFound):  # not the patient's appointment: its existence is not revealed
            await svc.get_appointment(uow, patient, other.id)
    async with db.uow() as uow:
        other = await svc.mark_no_show(uow, staff, other.id, now=other.start + timedelta(minutes=20))
        await uow.commit()
    assert other.status is AppointmentStatus.NOSHOW


async def test_refusals(db: Db, world: World, booking: Booking) -> None:
    patient_b = await principal_of(db, world.b.users["patient"])
    patient_a = await principal_of(db, world.a.users["patient"])
    assert world.a.patient and world.b.patient and world.a.other_patient
    base = {"practitioner_user_id": booking.doc, "visit_type_id": booking.consult, "mode": VisitMode.VIDEO}
    cases: list[tuple[Principal, dict[str, object], type[DomainError], str]] = [
        (patient_b, {"patient_id": world.b.patient.id, "start": booking.at(10)}, Forbidden, "forbidden"),
        (patient_a, {"patient_id": world.a.other_patient.id, "start": booking.at(10)}, Forbidden, "forbidden"),
        (patient_a, {"patient_id": world.a.patient.id, "start": booking.at(10, 2)}, Invalid, "invalid"),
        (patient_a, {"patient_id": world.a.patient.id, "start": booking.at(8)}, Conflict, "slot_unavailable"),
        (patient_a, {"patient_id": world.a.patient.id, "start": booking.at(10, 15)}, Conflict, "slot_unavailable"),
        (patient_a, {"patient_id": world.a.patient.id, "start": datetime(2020, 1, 1, tzinfo=UTC)}, Invalid,
         "invalid"),
        (patient_a, {"patient_id": world.a.patient.id, "start": booking.at(10), "mode": VisitMode.CHAT}, Invalid,
         "invalid"),
    ]
    for who, kw, exc, code in cases:
        async with db.uow() as uow:
            with pytest.raises(exc) as ei:
                await svc.book(uow, who, **{**base, **kw})  # type: ignore[arg-type]
            assert ei.value.code == code, kw


async def test_holidays_exceptions_and_schedule_permissions(db: Db, world: World, booking: Booking) -> None:
    org = world.a.clinic.id
    doc = await principal_of(db, world.a.users["clinician"])
    doc2 = await principal_of(db, world.a.users["clinician2"])
    admin_b = await principal_of(db, world.b.users["org_admin"])
    async with db.uow() as uow:
        with pytest.raises(Forbidden):
            await svc.add_rule(uow, doc2, org, booking.doc, weekday=0, start=time(9), end=time(10))
        with pytest.raises(Forbidden):
            await svc.upsert_schedule(uow, admin_b, org, booking.doc)
        with pytest.raises(Invalid) as ei:
            await svc.add_rule(uow, doc, org, booking.doc, weekday=7, start=time(10), end=time(9, 3))
        assert set(ei.value.fields) == {"weekday", "end"}
        with pytest.raises(Invalid):
            await svc.upsert_schedule(uow, doc, org, booking.doc, timezone="Mars/Base")
    async with db.uow() as uow:
        await svc.add_exception(uow, doc, org, booking.doc, kind=ExceptionKind.VACATION,
                                start_date=booking.day, end_date=booking.day, note="conference")
        await uow.commit()
    async with db.uow() as uow:
        free = await svc.search_slots(uow, doc, org, visit_type_id=booking.consult, start=booking.at(0),
                                      end=booking.at(0) + timedelta(days=2))
    assert free and all(s.start >= booking.at(0) + timedelta(days=1) for s in free)
    # Seollal 2024: with holidays observed, a search across it finds nothing on 9-12 February.
    async with db.uow() as uow:
        await svc.upsert_schedule(uow, doc, org, booking.doc, observe_public_holidays=True, holiday_country="KR")
        await uow.commit()
    async with db.uow() as uow:
        s = await svc.get_schedule(uow, doc, org, booking.doc)
        spec = svc.schedule_spec(s)
    from clinic.scheduling import Interval, generate_slots

    got = generate_slots(spec, visit_type_id=booking.consult, duration_minutes=30,
                         window=Interval(datetime(2024, 2, 8, 15, tzinfo=UTC), datetime(2024, 2, 12, 15, tzinfo=UTC)),
                         now=datetime(2024, 1, 1, tzinfo=UTC))
    assert got == []


async def test_policy_hook_and_on_demand(db: Db, world: World, booking: Booking) -> None:
    patient = await principal_of(db, world.a.users["patient"])
    doc = await principal_of(db, world.a.users["clinician"])
    assert world.a.patient is not None
    seen: list[object] = []

    class Deny:
        async def check_booking(self, uow, patient, practitioner_user_id, visit_type, start, mode) -> None:  # type: ignore[no-untyped-def]
            seen.append((patient.id, practitioner_user_id, visit_type.code, start, mode))
            raise PolicyDenied("first visit must be in person")

    async with db.uow() as uow:
        with pytest.raises(PolicyDenied):
            await svc.book(uow, patient, patient_id=world.a.patient.id, practitioner_user_id=booking.doc,
                           visit_type_id=booking.consult, start=booking.at(10), mode=VisitMode.VIDEO, policy=Deny())
    assert seen and seen[0][1] == booking.doc
    async with db.uow() as uow:
        req = await svc.request_on_demand(uow, patient, world.a.clinic.id, patient_id=world.a.patient.id,
                                          visit_type_id=booking.quick, mode=VisitMode.VIDEO, reason="rash")
        await uow.commit()
    assert req.kind is AppointmentKind.ON_DEMAND and req.practitioner_user_id is None
    async with db.uow() as uow:
        with pytest.raises(Conflict):
            await svc.request_on_demand(uow, patient, world.a.clinic.id, patient_id=world.a.patient.id,
                                        visit_type_id=booking.quick, mode=VisitMode.VIDEO)
        assert [r.id for r in await svc.open_on_demand_requests(uow, world.a.clinic.id)] == [req.id]
        assert await svc.open_on_demand_requests(uow, world.b.clinic.id) == []
    async with db.uow() as uow:
        taken = await svc.claim_on_demand(uow, doc, req.id)
        await uow.commit()
    assert taken.status is AppointmentStatus.BOOKED and taken.practitioner_user_id == booking.doc
    async with db.uow() as uow:
        assert await svc.open_on_demand_requests(uow, world.a.clinic.id) == []
