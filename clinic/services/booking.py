"""Visit types, practitioner schedules, slot search and the appointment lifecycle.

No double booking is enforced by the database (``SlotClaim``'s UNIQUE constraint); the checks made
here beforehand only produce friendlier errors and must never be relied on for correctness.

Notifications (e-mail, ICS) are not sent from here: every state change returns the appointment, with
``ics_sequence`` bumped, for the caller to announce.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import cache, lru_cache
from operator import attrgetter
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from sqlalchemy import (
    Boolean,
    ColumnElement,
    DateTime,
    Select,
    Text,
    and_,
    bindparam,
    cast,
    delete,
    exists,
    func,
    insert,
    or_,
    select,
    type_coerce,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import joinedload, raiseload
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from clinic.db.base import new_id, utcnow
from clinic.db.clinical import Patient, Practitioner
from clinic.db.models import Membership, Organization, Role
from clinic.db.scheduling import (
    SLOT_GRID_MINUTES,
    Appointment,
    AppointmentKind,
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
from clinic.encounters.state import EncounterStatus
from clinic.errors import Conflict, Forbidden, Invalid, NotFound
from clinic.scheduling.slots import (
    GRID,
    DateException,
    Interval,
    RuleSpec,
    ScheduleSpec,
    Slot,
    can_cancel,
    generate_slots,
    grid_cells,
    is_on_grid,
    valid_holiday_country,
    valid_timezone,
)
from clinic.scheduling.states import Event, TransitionError, transition
from clinic.security.authz import Principal, Resource, allowed, authorize, orgs_for, patients_for
from clinic.services.encounters import Publisher, on_appointment_ended, open_for_appointment

MAX_SEARCH_DAYS = 31
#: Key under which the app's services container may hold the jurisdiction policy engine's adapter.
POLICY_KEY = "booking_policy"


# --- policy hook -------------------------------------------------------------------------------------------


class BookingPolicy(Protocol):
    """What the jurisdiction policy engine must answer before a visit is booked; raise PolicyDenied to refuse."""

    async def check_booking(
        self, uow: UnitOfWork, patient: Patient, practitioner_user_id: uuid.UUID | None, visit_type: VisitType,
        start: datetime, mode: VisitMode,
    ) -> None: ...


class AllowAll:
    async def check_booking(
        self, uow: UnitOfWork, patient: Patient, practitioner_user_id: uuid.UUID | None, visit_type: VisitType,
        start: datetime, mode: VisitMode,
    ) -> None:
        return None


ALLOW_ALL: BookingPolicy = AllowAll()


# --- helpers -----------------------------------------------------------------------------------------------


def appointment_resource(a: Appointment) -> Resource:
    return Resource("Appointment", organization_id=a.organization_id, id=a.id, patient_id=a.patient_id)


def _org_resource(org_id: uuid.UUID, kind: str = "Organization") -> Resource:
    return Resource(kind, organization_id=org_id)


def is_staff(principal: Principal, org_id: uuid.UUID) -> bool:
    """Clinician or admin of the organization: the patient's own grant needs a patient id, so it cannot match."""
    return principal.kind == "system" or allowed(principal, "appointment.manage", _org_resource(org_id, "Appointment"))


def _transition(a: Appointment, event: Event) -> AppointmentStatus:
    try:
        return transition(a.status, event)
    except TransitionError as exc:
        raise Conflict(str(exc), code="illegal_transition") from None


async def _org(uow: UnitOfWork, org_id: uuid.UUID) -> Organization:
    org = await uow.session.get(Organization, org_id)
    if org is None:
        raise NotFound("organization not found")
    return org


# --- visit types -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class VisitTypeInput:
    code: str
    name: str
    duration_minutes: int
    modes: tuple[VisitMode, ...]
    fee_amount: int = 0
    currency: str = "KRW"
    name_ko: str = ""
    active: bool = True


def _check_visit_type(duration: int, modes: tuple[VisitMode, ...] | list[Any], fee: int, currency: str) -> None:
    fields: dict[str, str] = {}
    if not 5 <= duration <= 240 or duration % SLOT_GRID_MINUTES:
        fields["duration_minutes"] = "5 to 240, a multiple of 5"
    if not modes:
        fields["modes"] = "at least one of video, audio, chat"
    if fee < 0:
        fields["fee_amount"] = "must not be negative"
    if len(currency) != 3 or not currency.isalpha() or not currency.isupper():
        fields["currency"] = "ISO 4217 code"
    if fields:
        raise Invalid("invalid visit type", fields=fields)


async def create_visit_type(uow: UnitOfWork, principal: Principal, org_id: uuid.UUID,
                            data: VisitTypeInput) -> VisitType:
    authorize(principal, "visit_type.manage", _org_resource(org_id))
    await _org(uow, org_id)
    _check_visit_type(data.duration_minutes, data.modes, data.fee_amount, data.currency)
    dup = (await uow.session.execute(
        select(VisitType.id).where(VisitType.organization_id == org_id, VisitType.code == data.code)
    )).scalar_one_or_none()
    if dup is not None:
        raise Conflict("a visit type with this code exists", code="duplicate_code", fields={"code": "already used"})
    vt = VisitType(organization_id=org_id, code=data.code, name=data.name, name_ko=data.name_ko,
                   duration_minutes=data.duration_minutes, modes=[m.value for m in dict.fromkeys(data.modes)],
                   fee_amount=data.fee_amount, currency=data.currency, active=data.active)
    uow.add(vt)
    await uow.session.flush()
    uow.audit.record(principal, "visit_type.create", object_type="HealthcareService", object_id=vt.id,
                     organization_id=org_id, detail={"code": vt.code})
    return vt


async def _visit_type(uow: UnitOfWork, principal: Principal, vt_id: uuid.UUID, action: str) -> VisitType:
    vt = await uow.session.get(VisitType, vt_id)
    if vt is None:
        raise NotFound("visit type not found")
    authorize(principal, action, Resource("VisitType", organization_id=vt.organization_id, id=vt.id))
    return vt


async def get_visit_type(uow: UnitOfWork, principal: Principal, org_id: uuid.UUID, vt_id: uuid.UUID) -> VisitType:
    vt = await _visit_type(uow, principal, vt_id, "schedule.read")
    if vt.organization_id != org_id:
        raise NotFound("visit type not found")
    return vt


async def list_visit_types(uow: UnitOfWork, principal: Principal, org_id: uuid.UUID, *,
                           include_inactive: bool = False) -> list[VisitType]:
    authorize(principal, "schedule.read", _org_resource(org_id))
    cond: list[ColumnElement[bool]] = [VisitType.organization_id == org_id]
    if not include_inactive:
        cond.append(VisitType.active.is_(True))
    rows = (await uow.session.execute(select(VisitType).where(*cond).order_by(VisitType.code))).scalars().all()
    return list(rows)


async def update_visit_type(uow: UnitOfWork, principal: Principal, org_id: uuid.UUID, vt_id: uuid.UUID,
                            changes: dict[str, Any]) -> VisitType:
    vt = await _visit_type(uow, principal, vt_id, "visit_type.manage")
    if vt.organization_id != org_id:
        raise NotFound("visit type not found")
    allowed_fields = {"name", "name_ko", "duration_minutes", "modes", "fee_amount", "currency", "active"}
    unknown = set(changes) - allowed_fields
    if unknown:
        raise Invalid("unknown fields", fields={k: "not updatable" for k in sorted(unknown)})
    if "modes" in changes:
        changes["modes"] = [VisitMode(m).value for m in dict.fromkeys(changes["modes"])]
    merged = {"duration_minutes": vt.duration_minutes, "modes": vt.modes, "fee_amount": vt.fee_amount,
              "currency": vt.currency, **changes}
    _check_visit_type(merged["duration_minutes"], merged["modes"], merged["fee_amount"], merged["currency"])
    for k, v in changes.items():
        setattr(vt, k, v)
    uow.audit.record(principal, "visit_type.update", object_type="HealthcareService", object_id=vt.id,
                     organization_id=vt.organization_id, detail={"fields": sorted(changes)})
    return vt


# --- schedules ---------------------------------------------------------------------------------------------


async def _require_clinician(uow: UnitOfWork, org_id: uuid.UUID, user_id: uuid.UUID) -> None:
    found = (await uow.session.execute(
        select(Membership.id).where(Membership.organization_id == org_id, Membership.user_id == user_id,
                                    Membership.role == Role.CLINICIAN)
    )).scalar_one_or_none()
    if found is None:
        raise NotFound("practitioner not found in this organization")


def _authorize_schedule_manage(principal: Principal, org_id: uuid.UUID, user_id: uuid.UUID) -> None:
    authorize(principal, "schedule.manage", _org_resource(org_id, "Schedule"))
    # The grant lets any clinician of the organization in; only admins may edit a colleague's schedule.
    if principal.user_id != user_id and not (principal.kind == "system" or principal.has_role(Role.ORG_ADMIN, org_id)):
        raise Forbidden("clinicians may only manage their own schedule", action="schedule.manage",
                        resource=_org_resource(org_id, "Schedule"))


async def _schedule(uow: UnitOfWork, org_id: uuid.UUID, user_id: uuid.UUID) -> Schedule | None:
    return (await uow.session.execute(
        select(Schedule).where(Schedule.organization_id == org_id, Schedule.practitioner_user_id == user_id)
    )).scalar_one_or_none()


async def get_schedule(uow: UnitOfWork, principal: Principal, org_id: uuid.UUID, user_id: uuid.UUID) -> Schedule:
    authorize(principal, "schedule.read", _org_resource(org_id, "Schedule"))
    s = await _schedule(uow, org_id, user_id)
    if s is None:
        raise NotFound("schedule not found")
    return s


async def upsert_schedule(
    uow: UnitOfWork, principal: Principal, org_id: uuid.UUID, user_id: uuid.UUID, *,
    timezone: str | None = None, observe_public_holidays: bool | None = None, holiday_country: str | None = None,
    active: bool | None = None,
) -> Schedule:
    _authorize_schedule_manage(principal, org_id, user_id)
    org = await _org(uow, org_id)
    await _require_clinician(uow, org_id, user_id)
    fields: dict[str, str] = {}
    if timezone is not None and not valid_timezone(timezone):
        fields["timezone"] = "not an IANA time zone"
    if holiday_country is not None and not valid_holiday_country(holiday_country):
        fields["holiday_country"] = "no public-holiday calendar for this country"
    if fields:
        raise Invalid("invalid schedule", fields=fields)
    s = await _schedule(uow, org_id, user_id)
    created = s is None
    if s is None:
        prac = (await uow.session.execute(
            select(Practitioner).where(Practitioner.user_id == user_id))).scalar_one_or_none()
        s = Schedule(organization_id=org_id, practitioner_user_id=user_id,
                     timezone=timezone or (prac.timezone if prac else org.timezone),
                     observe_public_holidays=True if observe_public_holidays is None else observe_public_holidays,
                     holiday_country=(holiday_country or org.jurisdiction.split("-")[0]).upper(),
                     active=True if active is None else active)
        uow.add(s)
        await uow.session.flush()
        await uow.session.refresh(s, ["rules", "exceptions"])
    else:
        if timezone is not None:
            s.timezone = timezone
        if observe_public_holidays is not None:
            s.observe_public_holidays = observe_public_holidays
        if holiday_country is not None:
            s.holiday_country = holiday_country.upper()
        if active is not None:
            s.active = active
    uow.audit.record(principal, "schedule.create" if created else "schedule.update", object_type="Schedule",
                     object_id=s.id, organization_id=org_id, detail={"practitioner": str(user_id)})
    return s


async def _managed_schedule(uow: UnitOfWork, principal: Principal, org_id: uuid.UUID,
                            user_id: uuid.UUID) -> Schedule:
    _authorize_schedule_manage(principal, org_id, user_id)
    s = await _schedule(uow, org_id, user_id)
    if s is None:
        raise NotFound("schedule not found; create it first")
    return s


async def add_rule(
    uow: UnitOfWork, principal: Principal, org_id: uuid.UUID, user_id: uuid.UUID, *, weekday: int, start: time,
    end: time, visit_type_ids: list[uuid.UUID] | None = None, valid_from: date | None = None,
    valid_to: date | None = None,
) -> AvailabilityRule:
    s = await _managed_schedule(uow, principal, org_id, user_id)
    fields: dict[str, str] = {}
    if not 0 <= weekday <= 6:
        fields["weekday"] = "0 (Monday) to 6 (Sunday)"
    for name, t in (("start", start), ("end", end)):
        if t.second or t.microsecond or t.minute % 5 or t.tzinfo is not None:
            fields[name] = "local HH:MM on a 5-minute boundary"
    if start >= end:
        fields["end"] = "must be after start"
    if valid_from and valid_to and valid_from > valid_to:
        fields["valid_to"] = "must not be before valid_from"
    ids = list(dict.fromkeys(visit_type_ids or []))
    if ids:
        found = set((await uow.session.execute(
            select(VisitType.id).where(VisitType.id.in_(ids), VisitType.organization_id == org_id)
        )).scalars())
        if found != set(ids):
            fields["visit_type_ids"] = "unknown visit type for this organization"
    if fields:
        raise Invalid("invalid availability rule", fields=fields)
    r = AvailabilityRule(schedule_id=s.id, weekday=weekday, start=start, end=end,
                         visit_type_ids=[str(i) for i in ids], valid_from=valid_from, valid_to=valid_to)
    s.rules.append(r)
    await uow.session.flush()
    uow.audit.record(principal, "schedule.rule.create", object_type="Schedule", object_id=s.id,
                     organization_id=org_id, detail={"rule": str(r.id), "weekday": weekday})
    return r


async def remove_rule(uow: UnitOfWork, principal: Principal, org_id: uuid.UUID, user_id: uuid.UUID,
                      rule_id: uuid.UUID) -> None:
    s = await _managed_schedule(uow, principal, org_id, user_id)
    rule = next((r for r in s.rules if r.id == rule_id), None)
    if rule is None:
        raise NotFound("rule not found")
    s.rules.remove(rule)
    uow.audit.record(principal, "schedule.rule.delete", object_type="Schedule", object_id=s.id,
                     organization_id=org_id, detail={"rule": str(rule_id)})


async def add_exception(
    uow: UnitOfWork, principal: Principal, org_id: uuid.UUID, user_id: uuid.UUID, *, kind: ExceptionKind,
    start_date: date | None = None, end_date: date | None = None, start_at: datetime | None = None,
    end_at: datetime | None = None, note: str = "",
) -> AvailabilityException:
    s = await _managed_schedule(uow, principal, org_id, user_id)
    by_date = start_date is not None or end_date is not None
    by_time = start_at is not None or end_at is not None
    fields: dict[str, str] = {}
    if by_date == by_time:
        fields["start_date"] = "give either start_date and end_date, or start_at and end_at"
    elif by_date:
        if start_date is None or end_date is None:
            fields["end_date" if start_date else "start_date"] = "required with the other date"
        elif start_date > end_date:
            fields["end_date"] = "must not be before start_date"
        elif (end_date - start_date).days > 366:
            fields["end_date"] = "at most one year"
    else:
        if start_at is None or end_at is None:
            fields["end_at" if start_at else "start_at"] = "required with the other time"
        elif start_at.tzinfo is None or end_at.tzinfo is None:
            fields["start_at"] = "needs a UTC offset"
        elif start_at >= end_at:
            fields["end_at"] = "must be after start_at"
        elif end_at - start_at > timedelta(days=366):
            fields["end_at"] = "at most one year"
    if fields:
        raise Invalid("invalid availability exception", fields=fields)
    ex = AvailabilityException(schedule_id=s.id, kind=kind, start_date=start_date, end_date=end_date,
                               start_at=start_at, end_at=end_at, note=note)
    s.exceptions.append(ex)
    await uow.session.flush()
    uow.audit.record(principal, "schedule.exception.create", object_type="Schedule", object_id=s.id,
                     organization_id=org_id, detail={"exception": str(ex.id), "kind": kind.value})
    return ex


async def remove_exception(uow: UnitOfWork, principal: Principal, org_id: uuid.UUID, user_id: uuid.UUID,
                           exception_id: uuid.UUID) -> None:
    s = await _managed_schedule(uow, principal, org_id, user_id)
    ex = next((e for e in s.exceptions if e.id == exception_id), None)
    if ex is None:
        raise NotFound("exception not found")
    s.exceptions.remove(ex)
    uow.audit.record(principal, "schedule.exception.delete", object_type="Schedule", object_id=s.id,
                     organization_id=org_id, detail={"exception": str(exception_id)})


def _rule_spec(weekday: int, start: time, end: time, visit_type_ids: Iterable[Any], valid_from: date | None,
               valid_to: date | None) -> RuleSpec:
    return RuleSpec(weekday, start, end, frozenset(uuid.UUID(str(v)) for v in visit_type_ids), valid_from, valid_to)


def _exception_spec(kind: ExceptionKind, start_date: date | None, end_date: date | None, start_at: datetime | None,
                    end_at: datetime | None) -> DateException:
    return DateException(kind, start_date, end_date, Interval(start_at, end_at) if start_at and end_at else None)


def schedule_spec(s: Schedule) -> ScheduleSpec:
    return ScheduleSpec(
        timezone=s.timezone,
        rules=tuple(_rule_spec(r.weekday, r.start, r.end, r.visit_type_ids, r.valid_from, r.valid_to)
                    for r in s.rules),
        exceptions=tuple(_exception_spec(e.kind, e.start_date, e.end_date, e.start_at, e.end_at)
                         for e in s.exceptions),
        holiday_country=s.holiday_country if s.observe_public_holidays else None,
        practitioner_user_id=s.practitioner_user_id,
    )


# --- slots -------------------------------------------------------------------------------------------------


def check_range(start: datetime, end: datetime, max_days: int = MAX_SEARCH_DAYS) -> None:
    if start.tzinfo is None or end.tzinfo is None:
        raise Invalid("times need a UTC offset", fields={"from": "needs a UTC offset"})
    if start >= end:
        raise Invalid("empty range", fields={"to": "must be after from"})
    if end - start > timedelta(days=max_days):
        raise Invalid("range too long", fields={"to": f"at most {max_days} days after from"})


def _schedule_conditions(by_practitioner: bool) -> list[ColumnElement[bool]]:
    cond = [Schedule.organization_id == bindparam("org_id"), Schedule.active.is_(True)]
    if by_practitioner:
        cond.append(Schedule.practitioner_user_id == bindparam("practitioner_id"))
    return cond


@dataclass(frozen=True)
class _SearchQueries:
    schedules: Select[*tuple[Any, ...]]
    exceptions: Select[*tuple[Any, ...]]
    busy: Select[*tuple[Any, ...]]


@cache
def _search_queries(by_practitioner: bool) -> _SearchQueries:
    """Built once and bound per search: building them and deriving their SQL cache keys anew was a good part
    of every search's CPU."""
    R, E = AvailabilityRule, AvailabilityException
    active = _schedule_conditions(by_practitioner)
    # Only exceptions that can touch the search (see _reach), so years of past vacations are neither loaded
    # nor part of the spec cache keys.
    near = or_(and_(E.start_at < bindparam("reach_end"), E.end_at > bindparam("reach_start")),
               and_(E.start_date <= bindparam("reach_last_day"), E.end_date >= bindparam("reach_first_day")))
    # One plain row (no ORM objects) per schedule rule, each carrying the organization's zone, the visit
    # type's duration (NULL unless it is an active visit type of the organization) and whether the schedule
    # has exceptions near the search, which most searches then need not query; a lone row when there are no
    # schedules, none when there is no such organization. A rule's visit types come as JSON text, which keys
    # the spec cache and is parsed only when that misses.
    schedules = (
        select(Organization.timezone.label("org_timezone"), VisitType.duration_minutes,
               Schedule.practitioner_user_id, Schedule.timezone, Schedule.observe_public_holidays,
               Schedule.holiday_country, exists().where(E.schedule_id == Schedule.id, near).label("exceptions_near"),
               R.weekday, R.start, R.end, cast(R.visit_type_ids, Text), R.valid_from, R.valid_to)
        .select_from(Organization)
        .outerjoin(VisitType, and_(VisitType.id == bindparam("visit_type_id"),
                                   VisitType.organization_id == Organization.id, VisitType.active.is_(True)))
        .outerjoin(Schedule, and_(Schedule.organization_id == Organization.id, *active))
        .outerjoin(R, R.schedule_id == Schedule.id)
        .where(Organization.id == bindparam("org_id"))
        # A stable rule order keeps equal schedules equal specs, i.e. cache hits.
        .order_by(R.weekday, R.start, R.end, R.id)
    )
    exceptions = (
        select(Schedule.practitioner_user_id, E.kind, E.start_date, E.end_date, E.start_at, E.end_at)
        .join(Schedule, Schedule.id == E.schedule_id)
        .where(*active, near)
        .order_by(E.id)
    )
    return _SearchQueries(schedules, exceptions, _busy_query(active))


class _breaks_run(FunctionElement[bool]):
    """True unless claim ``later`` starts exactly one grid cell after claim ``earlier``; also where either is
    NULL, at a practitioner's first or last claim. SQLite keeps timestamps as text, so there it compares whole
    epoch seconds: flooring can only join claims whose cells touch anyway."""

    type = Boolean()
    inherit_cache = True


@compiles(_breaks_run, "postgresql")
def _breaks_run_postgresql(element: _breaks_run, compiler: SQLCompiler, **kw: Any) -> str:
    earlier, later = (compiler.process(c, **kw) for c in element.clauses)
    return f"({later} - {earlier}) IS DISTINCT FROM INTERVAL '{SLOT_GRID_MINUTES} minutes'"


@compiles(_breaks_run, "sqlite")
def _breaks_run_sqlite(element: _breaks_run, compiler: SQLCompiler, **kw: Any) -> str:
    earlier, later = (f"CAST(STRFTIME('%s', {compiler.process(c, **kw)}) AS INTEGER)" for c in element.clauses)
    return f"({later} - {earlier}) IS NOT {SLOT_GRID_MINUTES * 60}"


def _busy_query(active: list[ColumnElement[bool]]) -> Select[*tuple[Any, ...]]:
    """Claimed time as runs of claims, each claim one grid cell after the one before: only the claims that
    start or end a run, in order, instead of every cell. Reading a row costs the server more than the window
    costs the database. Claims are per practitioner, whichever organization the appointment holding them
    belongs to."""
    at, pid = SlotClaim.slot_start, SlotClaim.practitioner_user_id
    before, after = (f(at).over(partition_by=pid, order_by=at) for f in (func.lag, func.lead))
    claims = (
        # A plain timestamp, not UTCDateTime and its per-value processing: _busy adds what SQLite leaves out.
        select(pid.label("pid"), type_coerce(at, DateTime(timezone=True)).label("at"),
               _breaks_run(before, at).label("starts"), _breaks_run(at, after).label("ends"))
        .join(Schedule, Schedule.practitioner_user_id == pid)
        .where(*active, at >= bindparam("busy_from"), at < bindparam("busy_to"))
        .subquery()
    )
    c = claims.c
    return select(c.pid, c.at, c.ends).where(c.starts | c.ends).order_by(c.pid, c.at)


def _reach(start: date | datetime, end: date | datetime) -> dict[str, Any]:
    """Bounds that take in every exception able to touch a slot found between ``start`` and ``end``. They are
    needed before the zone bare dates are read in is known, hence the margins: local midnight lies within a
    day of UTC midnight, and a visit lasts at most four hours (a database constraint)."""

    def utc(v: date | datetime) -> datetime:
        if not isinstance(v, datetime):
            return datetime.combine(v, time(0), tzinfo=UTC)
        return v if v.tzinfo is not None else v.replace(tzinfo=UTC)  # naive: refused later, by check_range

    lo, hi = utc(start) - timedelta(days=2), utc(end) + timedelta(days=2)
    return {"reach_start": lo, "reach_end": hi, "reach_first_day": lo.astimezone(UTC).date() - timedelta(days=1),
            "reach_last_day": hi.astimezone(UTC).date() + timedelta(days=1)}


async def _busy(conn: AsyncConnection, queries: _SearchQueries, params: dict[str, Any], start: datetime,
                end: datetime) -> dict[uuid.UUID | None, list[Interval]]:
    out: dict[uuid.UUID | None, list[Interval]] = {}
    rows = iter((await conn.execute(
        queries.busy, {**params, "busy_from": start - timedelta(hours=4), "busy_to": end + timedelta(hours=4)})).all())
    # In order: each run's first claim, then its last unless that is the same claim.
    for pid, first, ends in rows:
        last = first if ends else next(rows)[1]
        if first.tzinfo is None:  # SQLite keeps UTC without an offset (see UTCDateTime)
            first, last = first.replace(tzinfo=UTC), last.replace(tzinfo=UTC)
        # A run's cells are contiguous, so its interval touches exactly the cells its claims' intervals did.
        out.setdefault(pid, []).append(Interval(first, last + GRID))
    return out


_RuleRow = tuple[int, time, time, str, date | None, date | None]
_ExceptionRow = tuple[ExceptionKind, date | None, date | None, datetime | None, datetime | None]


# Equal rows give the very same spec object, so the slot caches keyed on specs compare them by identity
# instead of field by field.
@lru_cache(maxsize=1024)
def _cached_spec(timezone: str, holiday_country: str | None, practitioner_user_id: uuid.UUID,
                 rules: tuple[_RuleRow, ...], exceptions: tuple[_ExceptionRow, ...]) -> ScheduleSpec:
    return ScheduleSpec(
        timezone=timezone,
        rules=tuple(_rule_spec(weekday, start, end, json.loads(vt_ids), valid_from, valid_to)
                    for weekday, start, end, vt_ids, valid_from, valid_to in rules),
        exceptions=tuple(_exception_spec(*e) for e in exceptions),
        holiday_country=holiday_country,
        practitioner_user_id=practitioner_user_id,
    )


_Schedule = tuple[str, str | None, list[_RuleRow]]


def _schedules(rows: Sequence[Sequence[Any]]) -> tuple[dict[uuid.UUID, _Schedule], bool]:
    """Each practitioner's zone, holiday country and rules, from the schedule-rule rows (one schedule each
    here), and whether any has exceptions near the search. One pass, reading rows by position: by name,
    a Row's attributes cost as much as the rest of this."""
    schedules: dict[uuid.UUID, _Schedule] = {}
    near = False
    for _, _, pid, tz, observe, country, exceptions_near, weekday, start, end, vt_ids, valid_from, valid_to in rows:
        if pid is None:
            continue
        near = near or exceptions_near
        schedule = schedules.get(pid)
        if schedule is None:
            schedule = schedules[pid] = (tz, country if observe else None, [])
        if weekday is not None:
            schedule[2].append((weekday, start, end, vt_ids, valid_from, valid_to))
    return schedules, near


def _specs(schedules: dict[uuid.UUID, _Schedule], exc_rows: Sequence[Sequence[Any]]) -> list[ScheduleSpec]:
    exceptions: dict[uuid.UUID, list[_ExceptionRow]] = {}
    for pid, kind, start_date, end_date, start_at, end_at in exc_rows:
        exceptions.setdefault(pid, []).append((kind, start_date, end_date, start_at, end_at))
    return [_cached_spec(tz, country, pid, tuple(rules), tuple(exceptions.get(pid, ())))
            for pid, (tz, country, rules) in schedules.items()]


async def _fetch_specs(conn: AsyncConnection, queries: _SearchQueries, params: dict[str, Any],
                       visit_type_id: uuid.UUID) -> tuple[Sequence[Any], list[ScheduleSpec]]:
    """The schedule rows (with the organization's zone and the visit type's duration) and the specs built
    from them; exceptions are read only when one is near the searched dates."""
    rows = (await conn.execute(queries.schedules, {**params, "visit_type_id": visit_type_id})).all()
    schedules, near = _schedules(rows)
    if not schedules:
        return rows, []
    exc_rows = (await conn.execute(queries.exceptions, params)).all() if near else []
    return rows, _specs(schedules, exc_rows)


@dataclass(frozen=True)
class SlotSearch:
    """Free slots, and the zone the search's bare dates were read in."""

    timezone: str
    slots: list[Slot]


def _day_start(v: date | datetime, tz: str) -> datetime:
    """A bare date means the start of that day in ``tz``."""
    if isinstance(v, datetime):
        return v
    return datetime.combine(v, time(0), tzinfo=ZoneInfo(tz)).astimezone(UTC)


async def search_slots_local(
    uow: UnitOfWork, principal: Principal, org_id: uuid.UUID, *, visit_type_id: uuid.UUID, start: date | datetime,
    end: date | datetime, tz: str | None = None, practitioner_user_id: uuid.UUID | None = None,
    now: datetime | None = None,
) -> SlotSearch:
    """Free slots of the organization's practitioners; bare dates are read in ``tz`` (default the
    organization's zone, which comes with the schedules). Not audited: it reveals no patient data, and
    auditing would serialise every search on the audit chain's lock."""
    authorize(principal, "schedule.read", _org_resource(org_id, "Schedule"))
    queries = _search_queries(practitioner_user_id is not None)
    params: dict[str, Any] = {"org_id": org_id, **_reach(start, end)}
    if practitioner_user_id is not None:
        params["practitioner_id"] = practitioner_user_id
    # Read as Core rows on the session's connection: the ORM's per-row processing added about a third to these
    # reads' CPU. Flushing first keeps what its autoflush gave: this unit of work's pending changes are seen.
    await uow.session.flush()
    conn = await uow.session.connection()
    rows, specs = await _fetch_specs(conn, queries, params, visit_type_id)
    org_tz, duration = (rows[0].org_timezone, rows[0].duration_minutes) if rows else ("UTC", None)
    tz = tz or org_tz
    start, end = _day_start(start, tz), _day_start(end, tz)
    check_range(start, end)
    if duration is None:
        raise NotFound("visit type not found")
    if not specs:
        return SlotSearch(tz, [])
    busy = await _busy(conn, queries, params, start, end)
    now = now or utcnow()
    window = Interval(start, end)
    # Ordered by (start, practitioner id as text): practitioners in text order, then a stable sort by start.
    specs.sort(key=lambda s: str(s.practitioner_user_id))
    out: list[Slot] = []
    for spec in specs:
        out.extend(generate_slots(spec, visit_type_id=visit_type_id, duration_minutes=duration, window=window,
                                  now=now, busy=busy.get(spec.practitioner_user_id, ())))
    out.sort(key=attrgetter("start"))
    return SlotSearch(tz, out)


async def search_slots(
    uow: UnitOfWork, principal: Principal, org_id: uuid.UUID, *, visit_type_id: uuid.UUID, start: datetime,
    end: datetime, practitioner_user_id: uuid.UUID | None = None, now: datetime | None = None,
) -> list[Slot]:
    """Free slots of the organization's practitioners between two instants (see ``search_slots_local``)."""
    found = await search_slots_local(uow, principal, org_id, visit_type_id=visit_type_id, start=start, end=end,
                                     tz="UTC", practitioner_user_id=practitioner_user_id, now=now)
    return found.slots


# --- appointments ------------------------------------------------------------------------------------------


# Booking reads the attributes telemedicine law depends on, never allergies or guardians: not loading those
# saves two round trips on the busiest write, and touching them by mistake raises instead of lying. Built once:
# building the loader options per booking cost more than the query.
_PATIENT_FOR_BOOKING = select(Patient).where(Patient.id == bindparam("id")).options(
    joinedload(Patient.attributes), raiseload(Patient.allergies), raiseload(Patient.guardians))


async def _patient(uow: UnitOfWork, patient_id: uuid.UUID, *, for_booking: bool = False) -> Patient:
    if for_booking:
        p = (await uow.session.execute(_PATIENT_FOR_BOOKING, {"id": patient_id})).unique().scalar_one_or_none()
    else:
        p = await uow.session.get(Patient, patient_id)
    if p is None or p.erased_at is not None:
        raise NotFound("patient not found")
    return p


async def _bookable_visit_type(uow: UnitOfWork, principal: Principal, vt_id: uuid.UUID, patient: Patient,
                               mode: VisitMode) -> VisitType:
    vt = await uow.session.get(VisitType, vt_id)
    if vt is None:
        raise NotFound("visit type not found")
    authorize(principal, "schedule.read", _org_resource(vt.organization_id, "Schedule"))
    if patient.organization_id != vt.organization_id:
        raise Forbidden("the patient is not registered with this organization", code="wrong_organization")
    if not vt.active:
        raise Conflict("this visit type is no longer offered", code="visit_type_inactive")
    if mode.value not in vt.modes:
        raise Invalid("mode not offered for this visit type", fields={"mode": f"one of {', '.join(vt.modes)}"})
    return vt


async def _check_offered(uow: UnitOfWork, org_id: uuid.UUID, practitioner_user_id: uuid.UUID, vt: VisitType,
                         start: datetime, now: datetime) -> None:
    if start.tzinfo is None or not is_on_grid(start):
        raise Invalid("start is not a slot boundary", fields={"start": "use a start returned by slot search"})
    if start <= now:
        raise Invalid("start is in the past", fields={"start": "must be in the future"})
    # The slot search's prebuilt statements and spec cache: one query, two with an exception nearby.
    await uow.session.flush()
    params = {"org_id": org_id, "practitioner_id": practitioner_user_id, **_reach(start, start + GRID)}
    _, specs = await _fetch_specs(await uow.session.connection(), _search_queries(True), params, vt.id)
    if not specs:
        raise NotFound("practitioner has no schedule in this organization")
    # Busy time is deliberately ignored here: the claim insert is the one authority on that.
    offered = generate_slots(specs[0], visit_type_id=vt.id, duration_minutes=vt.duration_minutes,
                             window=Interval(start, start + GRID), now=now)
    if not any(sl.start == start for sl in offered):
        raise Conflict("the practitioner does not offer this time", code="slot_unavailable")


_TAKEN = select(SlotClaim.id).where(SlotClaim.practitioner_user_id == bindparam("practitioner"),
                                    SlotClaim.slot_start.in_(bindparam("cells", expanding=True))).limit(1)


async def _refuse_if_taken(uow: UnitOfWork, practitioner_user_id: uuid.UUID, start: datetime,
                           end: datetime) -> None:
    """Fail fast on a slot someone already holds, before the policy check and the inserts; popular slots
    are contested, and the losers should cost little. The claim insert stays the authority (races)."""
    taken = (await uow.read(_TAKEN, {"practitioner": practitioner_user_id,
                                     "cells": grid_cells(start, end)})).first()
    if taken is not None:
        raise Conflict("slot already taken", code="slot_taken")


# Run on the connection, so plain Core (the ORM bulk path is the session's).
_CLAIM = insert(SlotClaim)


async def _claim(uow: UnitOfWork, a: Appointment) -> None:
    assert a.practitioner_user_id is not None
    # The appointment (and its encounter, at booking) go first: the claims reference it.
    await uow.session.flush()
    cells = [{"id": new_id(), "appointment_id": a.id, "practitioner_user_id": a.practitioner_user_id,
              "slot_start": cell} for cell in grid_cells(a.start, a.end)]
    try:
        # A Core executemany: nothing reads the claims back as objects, and the ORM's bookkeeping for them
        # was a good part of a booking's CPU.
        await (await uow.session.connection()).execute(_CLAIM, cells)
    except IntegrityError:
        raise Conflict("slot already taken", code="slot_taken") from None


async def _release(uow: UnitOfWork, a: Appointment) -> None:
    await uow.session.execute(delete(SlotClaim).where(SlotClaim.appointment_id == a.id))


async def book(
    uow: UnitOfWork, principal: Principal, *, patient_id: uuid.UUID, practitioner_user_id: uuid.UUID,
    visit_type_id: uuid.UUID, start: datetime, mode: VisitMode, reason: str = "",
    policy: BookingPolicy = ALLOW_ALL, now: datetime | None = None,
) -> Appointment:
    now = now or utcnow()
    patient = await _patient(uow, patient_id, for_booking=True)
    authorize(principal, "appointment.book",
              Resource("Appointment", organization_id=patient.organization_id, patient_id=patient.id))
    vt = await _bookable_visit_type(uow, principal, visit_type_id, patient, mode)
    await _check_offered(uow, vt.organization_id, practitioner_user_id, vt, start, now)
    await _refuse_if_taken(uow, practitioner_user_id, start, start + timedelta(minutes=vt.duration_minutes))
    await policy.check_booking(uow, patient, practitioner_user_id, vt, start, mode)
    # The id is set here so the appointment, its claims and its encounter go to the database in one flush.
    a = Appointment(id=new_id(), organization_id=vt.organization_id, practitioner_user_id=practitioner_user_id,
                    patient_id=patient.id, visit_type_id=vt.id, start=start,
                    end=start + timedelta(minutes=vt.duration_minutes), status=AppointmentStatus.BOOKED,
                    kind=AppointmentKind.SCHEDULED, mode=mode, reason=reason, created_by_id=principal.user_id)
    uow.add(a)
    await open_for_appointment(uow, a, created=True, flush=False)
    await _claim(uow, a)
    uow.audit.record(principal, "appointment.create", object_type="Appointment", object_id=a.id,
                     organization_id=a.organization_id, patient_id=a.patient_id,
                     detail={"start": a.start.isoformat(), "practitioner": str(practitioner_user_id)})
    return a


async def _load(uow: UnitOfWork, principal: Principal, appointment_id: uuid.UUID, action: str,
                *, lock: bool = False) -> Appointment:
    stmt = select(Appointment).where(Appointment.id == appointment_id)
    if lock:
        stmt = stmt.with_for_update()
    a = (await uow.session.execute(stmt)).scalar_one_or_none()
    if a is None:
        raise NotFound("appointment not found")
    authorize(principal, "appointment.read", appointment_resource(a))
    if action != "appointment.read":
        authorize(principal, action, appointment_resource(a), hide=False)
    return a


async def get_appointment(uow: UnitOfWork, principal: Principal, appointment_id: uuid.UUID) -> Appointment:
    a = await _load(uow, principal, appointment_id, "appointment.read")
    uow.audit.record(principal, "appointment.read", object_type="Appointment", object_id=a.id,
                     organization_id=a.organization_id, patient_id=a.patient_id)
    return a


async def list_appointments(
    uow: UnitOfWork, principal: Principal, *, patient_id: uuid.UUID | None = None,
    organization_id: uuid.UUID | None = None, practitioner_user_id: uuid.UUID | None = None,
    start: datetime | None = None, end: datetime | None = None, status: AppointmentStatus | None = None,
    limit: int = 100, offset: int = 0,
) -> list[Appointment]:
    orgs = orgs_for(principal, "appointment.read")
    own = patients_for(principal, "appointment.read")
    if organization_id is not None:
        orgs &= {organization_id}
    scope: list[ColumnElement[bool]] = []
    if orgs:
        scope.append(Appointment.organization_id.in_(orgs))
    if own:
        scope.append(Appointment.patient_id.in_(own))
    if not scope:
        return []
    cond: list[ColumnElement[bool]] = [or_(*scope)]
    if organization_id is not None:
        cond.append(Appointment.organization_id == organization_id)
    if patient_id is not None:
        cond.append(Appointment.patient_id == patient_id)
    if practitioner_user_id is not None:
        cond.append(Appointment.practitioner_user_id == practitioner_user_id)
    if start is not None:
        cond.append(Appointment.end > start)
    if end is not None:
        cond.append(Appointment.start < end)
    if status is not None:
        cond.append(Appointment.status == status)
    rows = (await uow.session.execute(
        select(Appointment).where(*cond).order_by(Appointment.start, Appointment.id).limit(limit).offset(offset)
    )).scalars().all()
    uow.audit.record(principal, "appointment.list", object_type="Appointment", organization_id=organization_id,
                     patient_id=patient_id, detail={"count": len(rows)})
    return list(rows)


async def _patient_window_check(uow: UnitOfWork, principal: Principal, a: Appointment, now: datetime,
                                what: str) -> None:
    if is_staff(principal, a.organization_id) or a.kind is AppointmentKind.ON_DEMAND:
        return
    org = await _org(uow, a.organization_id)
    if not can_cancel(a.start, now, org.cancellation_window_hours):
        raise Conflict(f"too late to {what}: the clinic needs {org.cancellation_window_hours} hours' notice",
                       code="cancellation_window")


async def reschedule(
    uow: UnitOfWork, principal: Principal, appointment_id: uuid.UUID, *, start: datetime,
    policy: BookingPolicy = ALLOW_ALL, now: datetime | None = None,
) -> Appointment:
    now = now or utcnow()
    a = await _load(uow, principal, appointment_id, "appointment.manage", lock=True)
    _transition(a, Event.RESCHEDULE)
    if a.practitioner_user_id is None:
        raise Conflict("an unassigned request cannot be rescheduled", code="illegal_transition")
    await _patient_window_check(uow, principal, a, now, "reschedule")
    patient = await _patient(uow, a.patient_id)
    vt = await _bookable_visit_type(uow, principal, a.visit_type_id, patient, a.mode)
    await _check_offered(uow, a.organization_id, a.practitioner_user_id, vt, start, now)
    await policy.check_booking(uow, patient, a.practitioner_user_id, vt, start, a.mode)
    previous = a.start
    await _release(uow, a)
    a.start, a.end = start, start + timedelta(minutes=vt.duration_minutes)
    a.ics_sequence += 1
    a.reminder_sent_at = None
    await _claim(uow, a)
    await open_for_appointment(uow, a)
    uow.audit.record(principal, "appointment.reschedule", object_type="Appointment", object_id=a.id,
                     organization_id=a.organization_id, patient_id=a.patient_id,
                     detail={"from": previous.isoformat(), "to": start.isoformat()})
    return a


async def cancel(uow: UnitOfWork, principal: Principal, appointment_id: uuid.UUID, *, reason: str = "",
                 now: datetime | None = None, hub: Publisher | None = None) -> Appointment:
    now = now or utcnow()
    a = await _load(uow, principal, appointment_id, "appointment.manage", lock=True)
    new = _transition(a, Event.CANCEL)
    await _patient_window_check(uow, principal, a, now, "cancel")
    a.status = new
    a.cancellation_reason = reason
    a.cancelled_at = now
    a.ics_sequence += 1
    await _release(uow, a)
    await on_appointment_ended(uow, principal, a, EncounterStatus.CANCELLED, hub)
    uow.audit.record(principal, "appointment.cancel", object_type="Appointment", object_id=a.id,
                     organization_id=a.organization_id, patient_id=a.patient_id,
                     detail={"by_staff": is_staff(principal, a.organization_id)})
    return a


async def mark_no_show(uow: UnitOfWork, principal: Principal, appointment_id: uuid.UUID, *,
                       now: datetime | None = None, hub: Publisher | None = None) -> Appointment:
    now = now or utcnow()
    a = await _load(uow, principal, appointment_id, "appointment.manage", lock=True)
    if not is_staff(principal, a.organization_id):
        raise Forbidden("only the clinic can record a no-show", action="appointment.manage",
                        resource=appointment_resource(a))
    if now < a.start:
        raise Conflict("the appointment has not started yet", code="not_started")
    a.status = _transition(a, Event.NO_SHOW)
    a.ics_sequence += 1
    await on_appointment_ended(uow, principal, a, EncounterStatus.NO_SHOW, hub)
    uow.audit.record(principal, "appointment.noshow", object_type="Appointment", object_id=a.id,
                     organization_id=a.organization_id, patient_id=a.patient_id)
    return a


# --- on-demand care ----------------------------------------------------------------------------------------


async def request_on_demand(
    uow: UnitOfWork, principal: Principal, org_id: uuid.UUID, *, patient_id: uuid.UUID, visit_type_id: uuid.UUID,
    mode: VisitMode, reason: str = "", policy: BookingPolicy = ALLOW_ALL, now: datetime | None = None,
) -> Appointment:
    """Ask for the next available clinician: a proposed appointment without a practitioner, for the queue."""
    now = now or utcnow()
    patient = await _patient(uow, patient_id)
    authorize(principal, "appointment.book",
              Resource("Appointment", organization_id=patient.organization_id, patient_id=patient.id))
    vt = await _bookable_visit_type(uow, principal, visit_type_id, patient, mode)
    if vt.organization_id != org_id:
        raise NotFound("visit type not found")
    open_already = (await uow.session.execute(
        select(Appointment.id).where(Appointment.organization_id == org_id, Appointment.patient_id == patient.id,
                                     Appointment.kind == AppointmentKind.ON_DEMAND,
                                     Appointment.status == AppointmentStatus.PROPOSED).limit(1)
    )).scalar_one_or_none()
    if open_already is not None:
        raise Conflict("the patient is already waiting for a clinician", code="already_waiting")
    await policy.check_booking(uow, patient, None, vt, now, mode)
    a = Appointment(organization_id=org_id, practitioner_user_id=None, patient_id=patient.id, visit_type_id=vt.id,
                    start=now, end=now + timedelta(minutes=vt.duration_minutes), status=AppointmentStatus.PROPOSED,
                    kind=AppointmentKind.ON_DEMAND, mode=mode, reason=reason, created_by_id=principal.user_id)
    uow.add(a)
    await uow.session.flush()
    await open_for_appointment(uow, a, created=True)
    uow.audit.record(principal, "appointment.on_demand", object_type="Appointment", object_id=a.id,
                     organization_id=org_id, patient_id=patient.id)
    return a


async def open_on_demand_requests(uow: UnitOfWork, org_id: uuid.UUID) -> list[Appointment]:
    """Waiting on-demand requests, oldest first. For the queue, which authorizes its own readers."""
    rows = (await uow.session.execute(
        select(Appointment).where(Appointment.organization_id == org_id,
                                  Appointment.kind == AppointmentKind.ON_DEMAND,
                                  Appointment.status == AppointmentStatus.PROPOSED)
        .order_by(Appointment.created_at, Appointment.id)
    )).scalars().all()
    return list(rows)


async def claim_on_demand(uow: UnitOfWork, principal: Principal, appointment_id: uuid.UUID, *,
                          now: datetime | None = None) -> Appointment:
    """A clinician takes a waiting request; it then holds their time like any booking (slot_taken if the
    clinician has a booked visit in the next minutes)."""
    now = now or utcnow()
    a = await _load(uow, principal, appointment_id, "appointment.manage", lock=True)
    if a.kind is not AppointmentKind.ON_DEMAND or principal.user_id is None \
            or not principal.has_role(Role.CLINICIAN, a.organization_id):
        raise Forbidden("only a clinician of the organization can take an on-demand request",
                        action="appointment.manage", resource=appointment_resource(a))
    a.status = _transition(a, Event.CONFIRM)
    vt = await uow.session.get(VisitType, a.visit_type_id)
    assert vt is not None
    a.practitioner_user_id = principal.user_id
    a.start, a.end = now, now + timedelta(minutes=vt.duration_minutes)
    await _claim(uow, a)
    uow.audit.record(principal, "appointment.claim", object_type="Appointment", object_id=a.id,
                     organization_id=a.organization_id, patient_id=a.patient_id)
    return a


async def return_on_demand(uow: UnitOfWork, principal: Principal, a: Appointment) -> None:
    """A taken on-demand request goes back to waiting (its clinician released it, or handed it to a colleague
    who has yet to take it): it stops holding the clinician's time, and whoever takes it next holds theirs."""
    if a.kind is not AppointmentKind.ON_DEMAND or a.practitioner_user_id is None:
        return
    previous = a.practitioner_user_id
    await _release(uow, a)
    a.status = _transition(a, Event.UNASSIGN)
    a.practitioner_user_id = None
    uow.audit.record(principal, "appointment.unassign", object_type="Appointment", object_id=a.id,
                     organization_id=a.organization_id, patient_id=a.patient_id, detail={"from": str(previous)})


async def withdraw_on_demand(uow: UnitOfWork, principal: Principal, a: Appointment, *, reason: str,
                             now: datetime | None = None) -> None:
    """The patient gave up waiting: the request ends (so they can ask again later) and frees any time held."""
    if a.kind is not AppointmentKind.ON_DEMAND or a.status not in (AppointmentStatus.PROPOSED,
                                                                  AppointmentStatus.CHECKED_IN):
        return
    await _release(uow, a)
    a.status = _transition(a, Event.CANCEL)
    a.cancellation_reason = reason
    a.cancelled_at = now or utcnow()
    uow.audit.record(principal, "appointment.cancel", object_type="Appointment", object_id=a.id,
                     organization_id=a.organization_id, patient_id=a.patient_id, detail={"reason": reason})


async def free_unused_time(uow: UnitOfWork, a: Appointment, ended_at: datetime) -> None:
    """A visit that ends early gives back the rest of its time, from the grid cell it ended in, so the
    clinician can take the next patient at once (nothing can be booked in the past, so the cells before are
    kept as the record of time used). The appointment keeps its planned end; the encounter, the real one."""
    await uow.session.execute(
        delete(SlotClaim).where(SlotClaim.appointment_id == a.id, SlotClaim.slot_start > ended_at - GRID))
