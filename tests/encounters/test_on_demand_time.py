"""An on-demand patient holds a clinician's time only while that clinician has them: releasing or transferring
gives the time back, a visit that ends early frees the rest of it, and a patient who stops waiting can ask
again."""

from __future__ import annotations

import uuid

from sqlalchemy import func, select

from clinic.db.encounters import Encounter
from clinic.db.scheduling import Appointment, AppointmentStatus, SlotClaim
from clinic.errors import Conflict
from clinic.scheduling.slots import GRID
from clinic.scheduling.states import Event, transition
from clinic.security.authz import Principal
from clinic.services import booking
from clinic.services import encounters as svc
from tests.conftest import Db
from tests.encounters.test_queue_rules import _checked_in, _principal
from tests.world import World


async def _held(db: Db, who: uuid.UUID | None) -> int:
    async with db.uow() as uow:
        return int((await uow.session.execute(
            select(func.count()).select_from(SlotClaim).where(SlotClaim.practitioner_user_id == who))).scalar_one())


async def _state(db: Db, eid: uuid.UUID) -> tuple[Encounter, Appointment]:
    async with db.uow() as uow:
        e = await uow.session.get(Encounter, eid)
        assert e is not None and e.appointment_id is not None
        a = await uow.session.get(Appointment, e.appointment_id)
        assert a is not None
        return e, a


async def _do(db: Db, fn: object, *args: object) -> None:
    async with db.uow() as uow:
        await fn(uow, *args)  # type: ignore[operator]
        await uow.commit()


async def _doctors(db: Db, world: World) -> tuple[Principal, Principal]:
    kim, lee = [await _principal(db, world.a.users[r]) for r in ("clinician", "clinician2")]
    return kim, lee


async def test_released_request_gives_the_time_back_and_returns_to_the_shared_queue(db: Db, world: World) -> None:
    kim, lee = await _doctors(db, world)
    eid = await _checked_in(db, world, personal=False)
    await _do(db, svc.claim, kim, eid)
    assert await _held(db, kim.user_id) > 0
    await _do(db, svc.release, kim, eid)
    assert await _held(db, kim.user_id) == 0
    e, a = await _state(db, eid)
    assert e.assigned_practitioner_id is None and e.claimed_by_id is None  # the shared queue again
    assert a.status is AppointmentStatus.PROPOSED and a.practitioner_user_id is None
    # Anyone may take it now, and then their time is held.
    await _do(db, svc.claim, lee, eid)
    assert await _held(db, lee.user_id) > 0
    e, a = await _state(db, eid)
    assert a.practitioner_user_id == lee.user_id and a.status is AppointmentStatus.CHECKED_IN


async def test_transferred_request_holds_the_colleagues_time_once_they_claim(db: Db, world: World) -> None:
    kim, lee = await _doctors(db, world)
    eid = await _checked_in(db, world, personal=False)
    await _do(db, svc.claim, kim, eid)
    await _do(db, svc.transfer, kim, eid, lee.user_id)
    assert await _held(db, kim.user_id) == 0
    assert await _held(db, lee.user_id) == 0  # nothing held until Lee takes the patient
    e, _ = await _state(db, eid)
    assert e.assigned_practitioner_id == lee.user_id  # in Lee's personal queue
    await _do(db, svc.claim, lee, eid)
    assert await _held(db, lee.user_id) > 0


async def test_a_visit_that_ends_early_frees_the_rest_so_the_next_patient_can_be_taken(db: Db, world: World
                                                                                        ) -> None:
    kim, _ = await _doctors(db, world)
    first = await _checked_in(db, world, personal=False)
    second = await _checked_in(db, world, personal=False, who="patient2")
    await _do(db, svc.claim, kim, first)
    try:
        await _do(db, svc.claim, kim, second)
    except Conflict as exc:  # the first patient holds Kim's next minutes
        assert exc.code == "slot_taken"
    else:
        raise AssertionError("a second on-demand claim overlapped the first")
    await _do(db, svc.admit, kim, first)
    await _do(db, svc.complete, kim, first)
    e, a = await _state(db, first)
    assert e.ended_at is not None
    async with db.uow() as uow:
        starts = list((await uow.session.execute(
            select(SlotClaim.slot_start).where(SlotClaim.appointment_id == a.id))).scalars())
    assert all(s + GRID <= e.ended_at for s in starts)  # only whole cells of time already used stay held
    await _do(db, svc.claim, kim, second)
    e2, a2 = await _state(db, second)
    assert e2.claimed_by_id == kim.user_id and a2.practitioner_user_id == kim.user_id


async def test_a_patient_who_stops_waiting_can_ask_again(db: Db, world: World) -> None:
    patient = await _principal(db, world.a.users["patient"])
    kim, _ = await _doctors(db, world)
    eid = await _checked_in(db, world, personal=False)
    await _do(db, svc.claim, kim, eid)  # even once a clinician has taken them
    await _do(db, svc.leave_waiting_room, patient, eid)
    e, a = await _state(db, eid)
    assert e.status.value == "abandoned"
    assert a.status is AppointmentStatus.CANCELLED and a.cancellation_reason == "left the waiting room"
    assert await _held(db, kim.user_id) == 0
    async with db.uow() as uow:
        again = await booking.request_on_demand(uow, patient, world.a.clinic.id, patient_id=a.patient_id,
                                                visit_type_id=a.visit_type_id, mode=a.mode)
        await uow.commit()
    assert again.id != a.id and again.status is AppointmentStatus.PROPOSED


def test_only_a_taken_request_goes_back_to_waiting() -> None:
    assert transition(AppointmentStatus.CHECKED_IN, Event.UNASSIGN) is AppointmentStatus.PROPOSED
    for status in (AppointmentStatus.BOOKED, AppointmentStatus.PROPOSED, AppointmentStatus.FULFILLED):
        try:
            transition(status, Event.UNASSIGN)
        except Exception:
            continue
        raise AssertionError(f"{status} could be unassigned")


async def test_consent_withdrawn_while_waiting_stops_admission(db: Db, world: World) -> None:
    from clinic.db.clinical import ConsentKind
    from clinic.services import patients

    kim, _ = await _doctors(db, world)
    eid = await _checked_in(db, world, personal=True)
    await _do(db, svc.claim, kim, eid)
    async with db.uow() as uow:
        consent = await patients.current_consent(uow, world.a.patient.id, ConsentKind.TELEMEDICINE)  # type: ignore[union-attr]
        assert consent is not None
    patient = await _principal(db, world.a.users["patient"])
    await _do(db, patients.revoke_consent, patient, consent.id)
    try:
        await _do(db, svc.admit, kim, eid)
    except Conflict as exc:
        assert exc.code == "consent_required"
    else:
        raise AssertionError("admitted without consent")
    e, _ = await _state(db, eid)
    assert e.status.value == "checked_in" and e.admitted_at is None
