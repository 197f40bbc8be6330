"""Visits from check-in to completion: the waiting room, the consult queue, claiming and admission.

Every transition goes through :func:`_transition` (the state machine in ``clinic.encounters.state``), is
time-stamped in ``encounter_transition`` and audited, and announces itself after commit on the
``queue:<org>`` and ``encounter:<id>`` topics so open pages update without polling.
"""

from __future__ import annotations

import statistics
import unicodedata
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import select, update

from clinic.db.base import utcnow
from clinic.db.clinical import Patient, Practitioner
from clinic.db.encounters import ChatMessage, Encounter, EncounterTransition
from clinic.db.models import Membership, Role, User
from clinic.db.scheduling import Appointment, AppointmentKind, AppointmentStatus, VisitType
from clinic.db.uow import UnitOfWork
from clinic.encounters.state import EncounterStatus, TransitionError, allowed_targets, check_transition
from clinic.encounters.symptoms import triage_priority
from clinic.errors import Conflict, DomainError, Forbidden, Invalid, NotFound
from clinic.scheduling.states import Event
from clinic.scheduling.states import TransitionError as AppointmentTransitionError
from clinic.scheduling.states import transition as appointment_transition
from clinic.security.authz import Principal, Resource, allowed, authorize
from clinic.services.accounts import display_names

S = EncounterStatus
#: How early a patient may check in before the booked time.
CHECKIN_EARLY = timedelta(minutes=30)
#: Used for the wait estimate until the clinic has history of its own.
DEFAULT_CONSULT_MINUTES = 15.0


class Publisher(Protocol):
    async def publish(self, topic: str, message: dict[str, Any]) -> None: ...


class ConsultPolicy(Protocol):
    """What admission and mode changes ask the law (``clinic.services.policy.PolicyService`` fits).

    It decides, raises PolicyDenied with the reasons, or appends the record to ``encounter.policy_decisions``.
    """

    async def require_consult(self, uow: UnitOfWork, encounter: Encounter, *, mode: str, point: str,
                              practitioner_user_id: uuid.UUID | None = None, condition_code: str | None = None,
                              participants: str = "doctor-patient", at: datetime | None = None) -> dict[str, Any]: ...


def resource(e: Encounter) -> Resource:
    return Resource("Encounter", organization_id=e.organization_id, id=e.id, patient_id=e.patient_id)


def queue_topic(org_id: uuid.UUID) -> str:
    return f"queue:{org_id}"


def encounter_topic(encounter_id: uuid.UUID) -> str:
    return f"encounter:{encounter_id}"


def _announce(uow: UnitOfWork, hub: Publisher | None, e: Encounter, event: str, **extra: Any) -> None:
    if hub is None:
        return
    org, eid, status = e.organization_id, e.id, e.status.value

    async def send() -> None:
        msg = {"type": event, "encounter_id": str(eid), "status": status, **extra}
        await hub.publish(queue_topic(org), msg)
        await hub.publish(encounter_topic(eid), msg)

    uow.after_commit(send)


def _transition(uow: UnitOfWork, principal: Principal, e: Encounter, target: EncounterStatus,
                reason: str = "") -> None:
    try:
        check_transition(e.status, target)
    except TransitionError as exc:
        raise Conflict(str(exc), code="illegal_transition") from None
    previous = e.status
    now = utcnow()
    e.status = target
    e.transitions.append(EncounterTransition(from_status=previous.value, to_status=target.value, at=now,
                                             actor_id=principal.actor_id, reason=reason[:300]))
    uow.audit.record(principal, f"encounter.{target.value}", object_type="Encounter", object_id=e.id,
                     organization_id=e.organization_id, patient_id=e.patient_id,
                     detail={"from": previous.value, "reason": reason[:300]} if reason else {"from": previous.value})


async def _appointment_event(uow: UnitOfWork, e: Encounter, event: Event) -> None:
    if e.appointment_id is None:
        return
    a = await uow.session.get(Appointment, e.appointment_id)
    if a is None:
        return
    try:
        a.status = appointment_transition(a.status, event)
    except AppointmentTransitionError:
        pass  # the appointment already reflects it (e.g. cancelled through the booking API)


async def load(uow: UnitOfWork, principal: Principal, encounter_id: uuid.UUID, action: str = "encounter.read",
               *, lock: bool = False) -> Encounter:
    q = select(Encounter).where(Encounter.id == encounter_id)
    if lock:
        q = q.with_for_update()
    e = (await uow.session.execute(q)).scalar_one_or_none()
    if e is None:
        raise NotFound("encounter not found")
    authorize(principal, action, resource(e))
    return e


# --- creation from bookings -----------------------------------------------------------------------------------


async def open_for_appointment(uow: UnitOfWork, a: Appointment, *, created: bool = False,
                               flush: bool = True) -> Encounter:
    """Every booking (scheduled or on-demand) has one encounter; called by the booking service.

    ``created``: the appointment was inserted in this transaction, so it cannot have an encounter yet.
    ``flush=False`` leaves the insert to the caller's next flush.
    """
    existing = None if created else (await uow.session.execute(
        select(Encounter).where(Encounter.appointment_id == a.id))).scalar_one_or_none()
    if existing is not None:
        existing.scheduled_start = a.start if a.kind is AppointmentKind.SCHEDULED else None
        existing.assigned_practitioner_id = a.practitioner_user_id
        return existing
    e = Encounter(organization_id=a.organization_id, patient_id=a.patient_id, appointment_id=a.id,
                  assigned_practitioner_id=a.practitioner_user_id, status=S.BOOKED,
                  kind=a.kind.value, mode=a.mode.value,
                  scheduled_start=a.start if a.kind is AppointmentKind.SCHEDULED else None,
                  chief_complaint=a.reason[:2000])
    uow.add(e)
    if flush:
        await uow.session.flush()
    return e


async def on_appointment_ended(uow: UnitOfWork, principal: Principal, a: Appointment, target: EncounterStatus,
                               hub: Publisher | None = None) -> None:
    """Mirror a cancellation or no-show recorded on the appointment."""
    e = (await uow.session.execute(
        select(Encounter).where(Encounter.appointment_id == a.id))).scalar_one_or_none()
    if e is None or e.status.final or target not in allowed_targets(e.status):
        return
    _transition(uow, principal, e, target, reason="appointment " + a.status.value)
    _announce(uow, hub, e, "encounter.updated")


# --- check-in and the waiting room ---------------------------------------------------------------------------


def _norm(s: str) -> str:
    return "".join(ch for ch in unicodedata.normalize("NFKC", s).casefold() if not ch.isspace())


@dataclass(frozen=True)
class CheckIn:
    family_name: str
    given_name: str
    birth_date: date
    chief_complaint: str
    symptoms: tuple[str, ...] = ()
    triage_answers: dict[str, Any] = field(default_factory=dict)


async def check_in(uow: UnitOfWork, principal: Principal, encounter_id: uuid.UUID, data: CheckIn, *,
                   hub: Publisher | None = None, now: datetime | None = None) -> Encounter:
    now = now or utcnow()
    e = await load(uow, principal, encounter_id, "encounter.checkin", lock=True)
    patient = await uow.session.get(Patient, e.patient_id)
    assert patient is not None
    if e.status is not S.BOOKED:
        raise Conflict(f"cannot check in a visit that is {e.status.value}", code="illegal_transition")
    if e.scheduled_start is not None:
        if now < e.scheduled_start - CHECKIN_EARLY:
            raise Conflict("check-in opens 30 minutes before the appointment", code="too_early",
                           opens_at=(e.scheduled_start - CHECKIN_EARLY).isoformat())
    # Every visit here is a telemedicine visit: nobody enters the waiting room without the patient's consent to
    # the current telemedicine text (the visit page asks for it first; clinic staff may record it for the patient).
    await _require_consent(uow, e, "encounter.checkin", "consent is asked before check-in")
    # Identity confirmation: the person at the keyboard must know who the record belongs to.
    same_name = _norm(data.family_name) == _norm(patient.family_name) and \
        _norm(data.given_name) == _norm(patient.given_name)
    if not same_name or data.birth_date != patient.birth_date:
        raise Invalid("name or birth date does not match the booking", code="identity_mismatch",
                      fields={"birth_date": "does not match", "family_name": "does not match"},
                      audit={"action": "encounter.checkin", "object_type": "Encounter", "object_id": str(e.id)})
    e.chief_complaint = data.chief_complaint
    e.symptoms = list(data.symptoms)
    e.priority = min(e.priority, triage_priority(data.symptoms))
    e.checked_in_at = now
    _transition(uow, principal, e, S.CHECKED_IN)
    await _appointment_event(uow, e, Event.CHECK_IN)
    _announce(uow, hub, e, "queue.arrival")
    return e


async def leave_waiting_room(uow: UnitOfWork, principal: Principal, encounter_id: uuid.UUID, *,
                             hub: Publisher | None = None) -> Encounter:
    e = await load(uow, principal, encounter_id, "encounter.checkin", lock=True)
    _transition(uow, principal, e, S.ABANDONED, reason="left the waiting room")
    a = await _on_demand(uow, e)
    if a is not None:  # the request ends with the wait, so the patient can ask again later
        from clinic.services.booking import withdraw_on_demand

        await withdraw_on_demand(uow, principal, a, reason="left the waiting room")
    _announce(uow, hub, e, "encounter.updated")
    return e


async def _on_demand(uow: UnitOfWork, e: Encounter) -> Appointment | None:
    """The on-demand request behind ``e``, if it is one."""
    if e.appointment_id is None:
        return None
    a = await uow.session.get(Appointment, e.appointment_id)
    return a if a is not None and a.kind is AppointmentKind.ON_DEMAND else None


# --- the consult queue ------------------------------------------------------------------------------------------

#: What a queue viewer may do with an entry: the API calls (claim, release, transfer, priority) and opening
#: the visit page. The page shows exactly these controls; the services refuse anything else.
QUEUE_ACTIONS = ("claim", "open", "release", "transfer", "priority")


@dataclass(frozen=True)
class QueueEntry:
    encounter_id: uuid.UUID
    patient_id: uuid.UUID
    patient_name: str
    age: int
    status: str
    kind: str
    mode: str
    priority: int
    scheduled_start: datetime | None
    checked_in_at: datetime | None
    waiting_minutes: int
    chief_complaint: str
    symptoms: list[str]
    queue: str  # shared | personal
    assigned_practitioner_id: uuid.UUID | None
    assigned_practitioner_name: str
    claimed_by_id: uuid.UUID | None
    claimed_by_name: str
    #: What the viewer may do with this entry, a subset of QUEUE_ACTIONS.
    actions: list[str]


def queue_order_key(e: Encounter) -> tuple[int, datetime, datetime]:
    """Triage priority, then appointment time, then how long they have waited."""
    far = datetime.max.replace(tzinfo=utcnow().tzinfo)
    return (e.priority, e.scheduled_start or e.checked_in_at or far, e.checked_in_at or far)


async def queue(uow: UnitOfWork, principal: Principal, org_id: uuid.UUID, *, scope: str = "all",
                now: datetime | None = None) -> list[QueueEntry]:
    """Checked-in patients not yet seen, plus those in consultation, for the organization's clinicians.

    Each entry says, for this viewer, which actions will succeed (the same rules the services enforce)."""
    authorize(principal, "queue.read", Resource("Organization", organization_id=org_id))
    now = now or utcnow()
    rows = (await uow.session.execute(
        select(Encounter, Patient).join(Patient, Patient.id == Encounter.patient_id)
        .where(Encounter.organization_id == org_id, Encounter.status.in_([S.CHECKED_IN, S.IN_CONSULT]))
    )).all()
    me = principal.user_id
    names = await display_names(uow, [u for e, _ in rows for u in (e.claimed_by_id, e.assigned_practitioner_id)])
    out = []
    for e, p in sorted(rows, key=lambda r: queue_order_key(r[0])):
        personal = e.assigned_practitioner_id is not None
        if scope == "mine" and not (e.assigned_practitioner_id == me or e.claimed_by_id == me):
            continue
        if scope == "shared" and personal:
            continue
        waited = int((now - e.checked_in_at).total_seconds() // 60) if e.checked_in_at else 0
        out.append(QueueEntry(
            encounter_id=e.id, patient_id=p.id, patient_name=p.full_name, age=p.age_on(now.date()),
            status=e.status.value, kind=e.kind, mode=e.mode, priority=e.priority,
            scheduled_start=e.scheduled_start, checked_in_at=e.checked_in_at, waiting_minutes=max(0, waited),
            chief_complaint=e.chief_complaint, symptoms=list(e.symptoms),
            queue="personal" if personal else "shared", assigned_practitioner_id=e.assigned_practitioner_id,
            assigned_practitioner_name=names.get(e.assigned_practitioner_id, ""),
            claimed_by_id=e.claimed_by_id, claimed_by_name=names.get(e.claimed_by_id, ""),
            actions=queue_actions(principal, e),
        ))
    uow.audit.record(principal, "queue.read", object_type="Encounter", organization_id=org_id,
                     detail={"count": len(out), "scope": scope})
    return out


# --- who may do what with a waiting patient ----------------------------------------------------------------------
#
# One set of rules answers both "which controls does the queue offer this clinician?" and "why was this
# refused?", so the page never offers what the API will refuse. Each refusal has its own code:
#   not_checked_in     the patient has not checked in yet
#   not_waiting        the patient is in consultation already, or the visit has ended
#   already_claimed    another clinician has claimed the patient
#   assigned_to_other  the patient is in another clinician's personal queue (booked with or transferred to them)
#   not_claimed        release: nobody has claimed the patient
#   same_clinician     transfer: the patient is already with that clinician
#   unknown_clinician  transfer: the target is not a clinician of this clinic
# A patient booked with another clinician is not taken over from the queue: that clinician transfers them.

#: The refusal codes above (each has its sentence on the queue page).
REFUSAL_CODES = ("not_checked_in", "not_waiting", "already_claimed", "assigned_to_other", "not_claimed",
                 "same_clinician", "unknown_clinician")


def _is_clinician(principal: Principal, e: Encounter) -> bool:
    return principal.user_id is not None and principal.has_role(Role.CLINICIAN, e.organization_id) \
        and allowed(principal, "encounter.manage", resource(e))


def _status_refusal(e: Encounter, what: str) -> Conflict | None:
    """Claims, releases, transfers and triage are for patients in the waiting room."""
    if e.status is S.CHECKED_IN:
        return None
    if e.status is S.BOOKED:
        return Conflict(f"the patient has not checked in yet; only waiting patients can be {what}",
                        code="not_checked_in")
    if e.status is S.IN_CONSULT:
        return Conflict(f"the patient is already in consultation; only waiting patients can be {what}",
                        code="not_waiting")
    return Conflict(f"the visit has ended ({e.status.value.replace('_', ' ')}); only waiting patients can be {what}",
                    code="not_waiting")


def _holder_refusal(principal: Principal, e: Encounter, only_they: str) -> Conflict | None:
    """Another clinician holds the patient: they claimed them, or the visit is booked with them."""
    me = principal.user_id
    if e.claimed_by_id is not None and e.claimed_by_id != me:
        return Conflict(f"another clinician has claimed this patient; only they can {only_they}",
                        code="already_claimed")
    if e.claimed_by_id is None and e.assigned_practitioner_id not in (None, me):
        return Conflict(f"this patient is in another clinician's personal queue; only that clinician can {only_they}",
                        code="assigned_to_other")
    return None


def claim_refusal(principal: Principal, e: Encounter) -> DomainError | None:
    """Why ``principal`` may not claim ``e`` now, or None (also None when they already hold the patient)."""
    if not _is_clinician(principal, e):
        return Forbidden("only a clinician of this clinic can claim a patient", action="encounter.manage",
                         resource=resource(e))
    me = principal.user_id
    if e.claimed_by_id is not None and e.claimed_by_id != me:
        return Conflict("another clinician has already claimed this patient", code="already_claimed")
    if e.claimed_by_id == me and e.status in (S.CHECKED_IN, S.IN_CONSULT):
        return None
    if (refused := _status_refusal(e, "claimed")) is not None:
        return refused
    return _holder_refusal(principal, e, "claim them or transfer them to you")


def release_refusal(principal: Principal, e: Encounter) -> DomainError | None:
    if e.claimed_by_id is None:
        return Conflict("nobody has claimed this patient", code="not_claimed")
    if e.claimed_by_id != principal.user_id and not principal.has_role(Role.ORG_ADMIN, e.organization_id):
        return Conflict("another clinician has claimed this patient; only they can release them",
                        code="already_claimed")
    return _status_refusal(e, "released to the queue")


def transfer_refusal(principal: Principal, e: Encounter) -> DomainError | None:
    """Transfer (to any colleague) is for the clinician who holds the patient, or anyone for an unclaimed
    patient of the shared queue."""
    if not _is_clinician(principal, e):
        return Forbidden("only a clinician of this clinic can transfer a patient", action="encounter.manage",
                         resource=resource(e))
    return _status_refusal(e, "transferred") or _holder_refusal(principal, e, "transfer them")


def priority_refusal(principal: Principal, e: Encounter) -> DomainError | None:
    if not _is_clinician(principal, e):
        return Forbidden("only a clinician of this clinic can change the triage priority",
                         action="encounter.manage", resource=resource(e))
    return _status_refusal(e, "triaged") or _holder_refusal(principal, e, "change the priority")


def queue_actions(principal: Principal, e: Encounter) -> list[str]:
    """What the queue offers ``principal`` for ``e`` (see QUEUE_ACTIONS)."""
    out = []
    mine = e.claimed_by_id is not None and e.claimed_by_id == principal.user_id
    if not mine and claim_refusal(principal, e) is None:
        out.append("claim")
    if mine and _is_clinician(principal, e) and e.status in (S.CHECKED_IN, S.IN_CONSULT):
        out.append("open")
    if mine and release_refusal(principal, e) is None:
        out.append("release")
    if transfer_refusal(principal, e) is None:
        out.append("transfer")
    if priority_refusal(principal, e) is None:
        out.append("priority")
    return out


async def claim(uow: UnitOfWork, principal: Principal, encounter_id: uuid.UUID, *,
                hub: Publisher | None = None) -> Encounter:
    """Take a waiting patient. A conditional update is the lock: two clinicians can never both win.

    Claiming a patient one already holds (a second click, a second tab) returns the visit unchanged."""
    e = await load(uow, principal, encounter_id, "encounter.manage")
    if (refused := claim_refusal(principal, e)) is not None:
        raise refused
    if e.claimed_by_id == principal.user_id:
        return e
    now = utcnow()
    res = await uow.session.execute(
        update(Encounter)
        .where(Encounter.id == e.id, Encounter.claimed_by_id.is_(None), Encounter.status == S.CHECKED_IN)
        .values(claimed_by_id=principal.user_id, claimed_at=now)
        .execution_options(synchronize_session=False)
    )
    if res.rowcount != 1:  # type: ignore[attr-defined]
        await uow.session.refresh(e)
        if e.claimed_by_id == principal.user_id:
            return e  # the same clinician won in a parallel request
        raise claim_refusal(principal, e) or Conflict("another clinician has already claimed this patient",
                                                     code="already_claimed")
    await uow.session.refresh(e)
    if e.appointment_id is not None:
        a = await uow.session.get(Appointment, e.appointment_id)
        if a is not None and a.kind is AppointmentKind.ON_DEMAND and a.status is AppointmentStatus.PROPOSED:
            from clinic.services.booking import claim_on_demand

            await claim_on_demand(uow, principal, a.id)
            a.status = appointment_transition(a.status, Event.CHECK_IN)
            e.assigned_practitioner_id = principal.user_id
    uow.audit.record(principal, "encounter.claim", object_type="Encounter", object_id=e.id,
                     organization_id=e.organization_id, patient_id=e.patient_id)
    _announce(uow, hub, e, "queue.claimed", claimed_by=str(principal.user_id))
    return e


async def release(uow: UnitOfWork, principal: Principal, encounter_id: uuid.UUID, *,
                  hub: Publisher | None = None) -> Encounter:
    """Return a claimed, still waiting patient (the claimer, or an org admin).

    The patient goes back to the queue they came from: a booked visit to its clinician's, an on-demand
    request to the shared one, giving back the time its claim held."""
    e = await load(uow, principal, encounter_id, "encounter.manage", lock=True)
    if (refused := release_refusal(principal, e)) is not None:
        raise refused
    previous = e.claimed_by_id
    e.claimed_by_id = None
    e.claimed_at = None
    a = await _on_demand(uow, e)
    if a is not None:
        from clinic.services.booking import return_on_demand

        await return_on_demand(uow, principal, a)
        e.assigned_practitioner_id = None
    uow.audit.record(principal, "encounter.release", object_type="Encounter", object_id=e.id,
                     organization_id=e.organization_id, patient_id=e.patient_id,
                     detail={"claimed_by": str(previous)})
    _announce(uow, hub, e, "queue.released")
    return e


async def transfer(uow: UnitOfWork, principal: Principal, encounter_id: uuid.UUID, to_user_id: uuid.UUID, *,
                   hub: Publisher | None = None) -> Encounter:
    """Hand a waiting patient to a colleague's personal queue (unclaimed, for them to claim)."""
    e = await load(uow, principal, encounter_id, "encounter.manage", lock=True)
    if (refused := transfer_refusal(principal, e)) is not None:
        raise refused
    colleague = (await uow.session.execute(
        select(Membership).where(Membership.user_id == to_user_id, Membership.organization_id == e.organization_id,
                                 Membership.role == Role.CLINICIAN))).scalar_one_or_none()
    if colleague is None:
        raise Invalid("not a clinician of this clinic", code="unknown_clinician",
                      fields={"to_user_id": "not a clinician of this clinic"})
    if e.assigned_practitioner_id == to_user_id and e.claimed_by_id in (None, to_user_id):
        raise Invalid("the patient is already with this clinician", code="same_clinician",
                      fields={"to_user_id": "already assigned to this clinician"})
    previous = e.assigned_practitioner_id
    a = await _on_demand(uow, e)
    if a is not None:  # the colleague's time is held when they claim the patient, not the giver's until then
        from clinic.services.booking import return_on_demand

        await return_on_demand(uow, principal, a)
    e.assigned_practitioner_id = to_user_id
    e.claimed_by_id = None
    e.claimed_at = None
    uow.audit.record(principal, "encounter.transfer", object_type="Encounter", object_id=e.id,
                     organization_id=e.organization_id, patient_id=e.patient_id,
                     detail={"from": str(previous) if previous else None, "to": str(to_user_id)})
    _announce(uow, hub, e, "queue.transferred", to=str(to_user_id))
    return e


async def set_priority(uow: UnitOfWork, principal: Principal, encounter_id: uuid.UUID, priority: int, *,
                       hub: Publisher | None = None) -> Encounter:
    """Triage a waiting patient (1 most urgent … 5): the clinician who holds them, or anyone for an unclaimed
    patient of the shared queue."""
    if not 1 <= priority <= 5:
        raise Invalid("priority is 1 (most urgent) to 5", fields={"priority": "1..5"})
    e = await load(uow, principal, encounter_id, "encounter.manage", lock=True)
    if (refused := priority_refusal(principal, e)) is not None:
        raise refused
    previous = e.priority
    e.priority = priority
    uow.audit.record(principal, "encounter.triage", object_type="Encounter", object_id=e.id,
                     organization_id=e.organization_id, patient_id=e.patient_id,
                     detail={"priority": priority, "from": previous})
    _announce(uow, hub, e, "queue.updated")
    return e


# --- the consultation -------------------------------------------------------------------------------------------


async def _require_consent(uow: UnitOfWork, e: Encounter, action: str, when: str) -> None:
    from clinic.db.clinical import ConsentKind
    from clinic.services.patients import CONSENT_VERSIONS, current_consent

    if await current_consent(uow, e.patient_id, ConsentKind.TELEMEDICINE) is None:
        version = CONSENT_VERSIONS[ConsentKind.TELEMEDICINE]
        raise Conflict(f"the patient has not consented to telemedicine; {when}",
                       code="consent_required", fields={"telemedicine": f"consent to version {version} required"},
                       audit={"action": action, "object_type": "Encounter", "object_id": str(e.id),
                              "detail": {"refused": "consent_required"}})


async def admit(uow: UnitOfWork, principal: Principal, encounter_id: uuid.UUID, *,
                policy: ConsultPolicy | None = None, hub: Publisher | None = None) -> Encounter:
    """The claiming clinician lets the patient in from the waiting room; the law is asked first, and the
    patient's consent again (it can be withdrawn while they wait)."""
    e = await load(uow, principal, encounter_id, "encounter.manage", lock=True)
    if e.claimed_by_id != principal.user_id:
        raise Conflict("claim the patient before admitting them", code="not_claimed")
    if e.status is S.IN_CONSULT:
        return e  # re-admission after a reconnect is not a new event
    await _require_consent(uow, e, "encounter.admit", "the patient withdrew consent while waiting")
    if policy is not None:
        await policy.require_consult(uow, e, mode=e.mode, point="admission", practitioner_user_id=principal.user_id,
                                     participants=e.participants)
    now = utcnow()
    e.admitted_at = now
    e.started_at = e.started_at or now
    _transition(uow, principal, e, S.IN_CONSULT)
    await _set_status(uow, principal.user_id, "in_call")
    _announce(uow, hub, e, "encounter.admitted")
    return e


async def change_mode(uow: UnitOfWork, principal: Principal, encounter_id: uuid.UUID, mode: str, *,
                      policy: ConsultPolicy | None = None, hub: Publisher | None = None) -> Encounter:
    """Switch video/audio/chat mid-visit (bad connection or the law); the law is asked again."""
    if mode not in ("video", "audio", "chat"):
        raise Invalid("unknown mode", fields={"mode": "video, audio or chat"})
    e = await load(uow, principal, encounter_id, "encounter.read", lock=True)
    if e.status not in (S.CHECKED_IN, S.IN_CONSULT):
        raise Conflict(f"the visit is {e.status.value}", code="illegal_transition")
    if policy is not None:
        await policy.require_consult(uow, e, mode=mode, point="mode_change", participants=e.participants)
    previous = e.mode
    e.mode = mode
    uow.audit.record(principal, "encounter.mode", object_type="Encounter", object_id=e.id,
                     organization_id=e.organization_id, patient_id=e.patient_id,
                     detail={"from": previous, "to": mode})
    _announce(uow, hub, e, "encounter.mode", mode=mode)
    return e


async def complete(uow: UnitOfWork, principal: Principal, encounter_id: uuid.UUID, *,
                   hub: Publisher | None = None) -> Encounter:
    e = await load(uow, principal, encounter_id, "encounter.manage", lock=True)
    if e.claimed_by_id != principal.user_id:
        raise Forbidden("only the clinician running the visit can complete it", action="encounter.manage",
                        resource=resource(e))
    e.ended_at = utcnow()
    _transition(uow, principal, e, S.COMPLETED)
    await _appointment_event(uow, e, Event.FULFIL)
    if e.appointment_id is not None:
        from clinic.services.booking import free_unused_time

        a = await uow.session.get(Appointment, e.appointment_id)
        if a is not None:
            await free_unused_time(uow, a, e.ended_at)
    await _set_status(uow, principal.user_id, "online")
    _announce(uow, hub, e, "encounter.completed")
    return e


async def _set_status(uow: UnitOfWork, user_id: uuid.UUID | None, status: str) -> None:
    if user_id is None:
        return
    await uow.session.execute(update(Practitioner).where(Practitioner.user_id == user_id).values(status=status))


async def set_presence(uow: UnitOfWork, principal: Principal, status: str) -> None:
    """Online / in a call / away, as shown to waiting patients."""
    if status not in ("online", "in_call", "away"):
        raise Invalid("unknown status", fields={"status": "online, in_call or away"})
    await _set_status(uow, principal.user_id, status)


# --- what the waiting patient sees -------------------------------------------------------------------------------


@dataclass(frozen=True)
class WaitingStatus:
    encounter_id: uuid.UUID
    status: str
    position: int | None
    estimated_wait_minutes: int | None
    provider_name: str
    provider_status: str
    mode: str
    admitted: bool


async def average_consult_minutes(uow: UnitOfWork, org_id: uuid.UUID, sample: int = 50) -> float:
    rows = (await uow.session.execute(
        select(Encounter.started_at, Encounter.ended_at)
        .where(Encounter.organization_id == org_id, Encounter.status == S.COMPLETED,
               Encounter.started_at.is_not(None), Encounter.ended_at.is_not(None))
        .order_by(Encounter.ended_at.desc()).limit(sample)
    )).all()
    minutes = [(end - start).total_seconds() / 60 for start, end in rows if start and end and end > start]
    return statistics.median(minutes) if len(minutes) >= 3 else DEFAULT_CONSULT_MINUTES


async def waiting_status(uow: UnitOfWork, principal: Principal, encounter_id: uuid.UUID) -> WaitingStatus:
    e = await load(uow, principal, encounter_id, "encounter.read")
    practitioner_id = e.claimed_by_id or e.assigned_practitioner_id
    provider_name, provider_status = "", "away"
    if practitioner_id is not None:
        row = (await uow.session.execute(
            select(User.display_name, Practitioner.status).join(Practitioner, Practitioner.user_id == User.id)
            .where(User.id == practitioner_id))).first()
        if row is not None:
            provider_name, provider_status = row[0], row[1]
    position = eta = None
    if e.status is S.CHECKED_IN:
        waiting = (await uow.session.execute(
            select(Encounter).where(Encounter.organization_id == e.organization_id,
                                    Encounter.status == S.CHECKED_IN))).scalars().all()
        # Those ahead: same queue (the same clinician's, or the shared one), earlier in queue order.
        same = [w for w in waiting if w.assigned_practitioner_id == e.assigned_practitioner_id]
        ahead = [w for w in same if queue_order_key(w) < queue_order_key(e)]
        position = len(ahead) + 1
        avg = await average_consult_minutes(uow, e.organization_id)
        vt_minutes = avg
        if e.appointment_id is not None:
            a = await uow.session.get(Appointment, e.appointment_id)
            vt = await uow.session.get(VisitType, a.visit_type_id) if a is not None else None
            if vt is not None and avg == DEFAULT_CONSULT_MINUTES:
                vt_minutes = float(vt.duration_minutes)
        in_call = provider_status == "in_call"
        eta = round(len(ahead) * vt_minutes + (vt_minutes / 2 if in_call else 0))
    uow.audit.record(principal, "encounter.read", object_type="Encounter", object_id=e.id,
                     organization_id=e.organization_id, patient_id=e.patient_id, detail={"view": "waiting"})
    return WaitingStatus(encounter_id=e.id, status=e.status.value, position=position,
                         estimated_wait_minutes=eta, provider_name=provider_name, provider_status=provider_status,
                         mode=e.mode, admitted=e.status is S.IN_CONSULT)


# --- chat (waiting room and call) ----------------------------------------------------------------------------

MAX_CHAT = 2000


async def post_chat(uow: UnitOfWork, principal: Principal, encounter_id: uuid.UUID, text: str, *,
                    photo_id: uuid.UUID | None = None, hub: Publisher | None = None,
                    sender_role: str | None = None, sender_name: str = "") -> ChatMessage:
    text = text.strip()
    if not text and photo_id is None:
        raise Invalid("empty message", fields={"text": "required"})
    if len(text) > MAX_CHAT:
        raise Invalid("message too long", fields={"text": f"at most {MAX_CHAT} characters"})
    e = await load(uow, principal, encounter_id, "chat.write")
    if e.status.final and e.status is not S.COMPLETED:
        raise Conflict(f"the visit is {e.status.value}", code="visit_closed")
    role = sender_role or ("patient" if e.patient_id in principal.patient_ids else "clinician")
    if not sender_name and principal.user_id is not None:
        u = await uow.session.get(User, principal.user_id)
        sender_name = u.display_name if u else ""
    m = ChatMessage(encounter_id=e.id, sender_user_id=principal.user_id, sender_role=role,
                    sender_name=sender_name, text=text, photo_id=photo_id)
    uow.add(m)
    await uow.session.flush()
    uow.audit.record(principal, "chat.create", object_type="Communication", object_id=m.id,
                     organization_id=e.organization_id, patient_id=e.patient_id)
    if hub is not None:
        payload = chat_json(m)

        async def send() -> None:
            await hub.publish(encounter_topic(e.id), {"type": "chat", "message": payload})
            if role == "patient" and e.status is S.CHECKED_IN:
                await hub.publish(queue_topic(e.organization_id), {"type": "queue.chat",
                                                                   "encounter_id": str(e.id)})

        uow.after_commit(send)
    return m


def chat_json(m: ChatMessage) -> dict[str, Any]:
    return {"id": str(m.id), "sender_role": m.sender_role, "sender_name": m.sender_name, "text": m.text,
            "photo_id": str(m.photo_id) if m.photo_id else None, "ts": m.created_at.isoformat()}


async def list_chat(uow: UnitOfWork, principal: Principal, encounter_id: uuid.UUID) -> list[ChatMessage]:
    e = await load(uow, principal, encounter_id, "encounter.read")
    rows = (await uow.session.execute(
        select(ChatMessage).where(ChatMessage.encounter_id == e.id).order_by(ChatMessage.created_at)
    )).scalars().all()
    uow.audit.record(principal, "chat.read", object_type="Communication", organization_id=e.organization_id,
                     patient_id=e.patient_id, detail={"count": len(rows)})
    return list(rows)


async def encounters_for_patient(uow: UnitOfWork, principal: Principal, patient_id: uuid.UUID) -> list[Encounter]:
    from clinic.services.patients import load as load_patient

    p = await load_patient(uow, principal, patient_id, "encounter.read")
    rows = (await uow.session.execute(
        select(Encounter).where(Encounter.patient_id == p.id).order_by(Encounter.created_at.desc())
    )).scalars().all()
    uow.audit.record(principal, "encounter.list", object_type="Encounter", organization_id=p.organization_id,
                     patient_id=p.id, detail={"count": len(rows)})
    return list(rows)
