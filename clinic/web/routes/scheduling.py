"""Scheduling API: visit types, practitioner schedules, slot search, appointments and on-demand requests."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, time
from functools import lru_cache
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

from aiohttp import web
from pydantic import AwareDatetime, Field, TypeAdapter, field_validator, model_validator

from clinic.db.scheduling import AppointmentKind, AppointmentStatus, ExceptionKind, VisitMode
from clinic.scheduling.slots import valid_holiday_country, valid_timezone
from clinic.services import booking as svc
from clinic.web.api import ApiContext, ApiRouter
from clinic.web.context import services
from clinic.web.schemas import Input, Output

router = ApiRouter()
T = ("scheduling",)

HHMM = r"^([01][0-9]|2[0-3]):[0-5][0-9]$"
When = Annotated[AwareDatetime | date, Field(union_mode="left_to_right")]


def _policy(ctx: ApiContext) -> svc.BookingPolicy:
    policy: svc.BookingPolicy = services(ctx.app).extra.get(svc.POLICY_KEY, svc.ALLOW_ALL)
    return policy


def _tz(value: str | None) -> str | None:
    if value is not None and not valid_timezone(value):
        raise ValueError("not an IANA time zone")
    return value


def _instant(v: date | datetime, tz: str) -> datetime:
    """A bare date means the start of that day in ``tz``."""
    if isinstance(v, datetime):
        return v.astimezone(UTC)
    return datetime.combine(v, time(0), tzinfo=ZoneInfo(tz)).astimezone(UTC)


class RangeQuery(Input):
    start: When | None = Field(default=None, alias="from")
    end: When | None = Field(default=None, alias="to")
    tz: str | None = Field(default=None, max_length=64, description="IANA zone for bare dates and local times")

    @field_validator("tz")
    @classmethod
    def _check_tz(cls, v: str | None) -> str | None:
        return _tz(v)

    @model_validator(mode="after")
    def _ordered(self) -> RangeQuery:
        if self.start is not None and self.end is not None:
            tz = self.tz or "UTC"
            if _instant(self.start, tz) >= _instant(self.end, tz):
                raise ValueError("'to' must be after 'from'")
        return self


# --- visit types -------------------------------------------------------------------------------------------


class VisitTypeOut(Output):
    id: uuid.UUID
    organization_id: uuid.UUID
    code: str
    name: str
    name_ko: str
    duration_minutes: int
    modes: list[VisitMode]
    fee_amount: int
    currency: str
    active: bool


class VisitTypeList(Output):
    items: list[VisitTypeOut]


class VisitTypeIn(Input):
    code: str = Field(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9_\-]*$")
    name: str = Field(min_length=1, max_length=200)
    name_ko: str = Field(default="", max_length=200)
    duration_minutes: int = Field(ge=5, le=240, multiple_of=5)
    modes: list[VisitMode] = Field(min_length=1, max_length=3)
    fee_amount: int = Field(default=0, ge=0, le=1_000_000_000, description="In the currency's smallest unit")
    currency: str = Field(default="KRW", pattern=r"^[A-Z]{3}$")
    active: bool = True


class VisitTypeUpdate(Input):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    name_ko: str | None = Field(default=None, max_length=200)
    duration_minutes: int | None = Field(default=None, ge=5, le=240, multiple_of=5)
    modes: list[VisitMode] | None = Field(default=None, min_length=1, max_length=3)
    fee_amount: int | None = Field(default=None, ge=0, le=1_000_000_000)
    currency: str | None = Field(default=None, pattern=r"^[A-Z]{3}$")
    active: bool | None = None


class VisitTypeQuery(Input):
    include_inactive: bool = False


@router.route("GET", "/organizations/{org_id}/visit-types", query=VisitTypeQuery, response=VisitTypeList, tags=T)
async def list_visit_types(ctx: ApiContext) -> VisitTypeList:
    """Visit types the organization offers."""
    rows = await svc.list_visit_types(ctx.uow, ctx.principal, ctx.path_uuid("org_id"),
                                      include_inactive=ctx.query.include_inactive)
    return VisitTypeList(items=[VisitTypeOut.model_validate(v) for v in rows])


@router.route("POST", "/organizations/{org_id}/visit-types", body=VisitTypeIn, response=VisitTypeOut, status=201,
              tags=T, idempotent=True)
async def create_visit_type(ctx: ApiContext) -> VisitTypeOut:
    """Offer a new visit type (organization admins)."""
    b = ctx.body
    vt = await svc.create_visit_type(ctx.uow, ctx.principal, ctx.path_uuid("org_id"), svc.VisitTypeInput(
        code=b.code, name=b.name, name_ko=b.name_ko, duration_minutes=b.duration_minutes, modes=tuple(b.modes),
        fee_amount=b.fee_amount, currency=b.currency, active=b.active))
    return VisitTypeOut.model_validate(vt)


@router.route("GET", "/organizations/{org_id}/visit-types/{id}", response=VisitTypeOut, tags=T)
async def get_visit_type(ctx: ApiContext) -> VisitTypeOut:
    """One visit type."""
    vt = await svc.get_visit_type(ctx.uow, ctx.principal, ctx.path_uuid("org_id"), ctx.path_uuid())
    return VisitTypeOut.model_validate(vt)


@router.route("PATCH", "/organizations/{org_id}/visit-types/{id}", body=VisitTypeUpdate, response=VisitTypeOut,
              tags=T)
async def update_visit_type(ctx: ApiContext) -> VisitTypeOut:
    """Change a visit type (organization admins)."""
    changes = {k: v for k, v in ctx.body.model_dump(exclude_unset=True).items() if v is not None}
    vt = await svc.update_visit_type(ctx.uow, ctx.principal, ctx.path_uuid("org_id"), ctx.path_uuid(), changes)
    return VisitTypeOut.model_validate(vt)


@router.route("DELETE", "/organizations/{org_id}/visit-types/{id}", tags=T)
async def retire_visit_type(ctx: ApiContext) -> None:
    """Stop offering a visit type; booked appointments keep it, so it is deactivated, not deleted."""
    await svc.update_visit_type(ctx.uow, ctx.principal, ctx.path_uuid("org_id"), ctx.path_uuid(), {"active": False})


# --- schedules ---------------------------------------------------------------------------------------------


class RuleOut(Output):
    id: uuid.UUID
    weekday: int
    start: time
    end: time
    visit_type_ids: list[uuid.UUID]
    valid_from: date | None
    valid_to: date | None


class ExceptionOut(Output):
    id: uuid.UUID
    kind: ExceptionKind
    start_date: date | None
    end_date: date | None
    start_at: datetime | None
    end_at: datetime | None
    note: str


class ScheduleOut(Output):
    id: uuid.UUID
    organization_id: uuid.UUID
    practitioner_user_id: uuid.UUID
    timezone: str
    observe_public_holidays: bool
    holiday_country: str
    active: bool
    rules: list[RuleOut]
    exceptions: list[ExceptionOut]


class OrgQuery(Input):
    organization_id: uuid.UUID


class ScheduleIn(Input):
    organization_id: uuid.UUID
    timezone: str | None = Field(default=None, max_length=64, description="IANA zone; default the practitioner's")
    observe_public_holidays: bool | None = None
    holiday_country: str | None = Field(default=None, pattern=r"^[A-Za-z]{2}$")
    active: bool | None = None

    @field_validator("timezone")
    @classmethod
    def _check_tz(cls, v: str | None) -> str | None:
        return _tz(v)

    @field_validator("holiday_country")
    @classmethod
    def _country(cls, v: str | None) -> str | None:
        if v is not None and not valid_holiday_country(v):
            raise ValueError("no public-holiday calendar for this country")
        return v


class RuleIn(Input):
    organization_id: uuid.UUID
    weekday: int = Field(ge=0, le=6, description="0 = Monday")
    start: str = Field(pattern=HHMM, description="Local HH:MM")
    end: str = Field(pattern=HHMM, description="Local HH:MM")
    visit_type_ids: list[uuid.UUID] = Field(default_factory=list, max_length=50)
    valid_from: date | None = None
    valid_to: date | None = None

    @model_validator(mode="after")
    def _ordered(self) -> RuleIn:
        if time.fromisoformat(self.start) >= time.fromisoformat(self.end):
            raise ValueError("end must be after start")
        if self.valid_from and self.valid_to and self.valid_from > self.valid_to:
            raise ValueError("valid_to must not be before valid_from")
        return self


class ExceptionIn(Input):
    organization_id: uuid.UUID
    kind: ExceptionKind
    start_date: date | None = None
    end_date: date | None = None
    start_at: AwareDatetime | None = None
    end_at: AwareDatetime | None = None
    note: str = Field(default="", max_length=500)


def _schedule_out(s: Any) -> ScheduleOut:
    return ScheduleOut.model_validate(s)


@router.route("GET", "/practitioners/{user_id}/schedule", query=OrgQuery, response=ScheduleOut, tags=T)
async def get_schedule(ctx: ApiContext) -> ScheduleOut:
    """A practitioner's weekly availability and exceptions in one organization."""
    s = await svc.get_schedule(ctx.uow, ctx.principal, ctx.query.organization_id, ctx.path_uuid("user_id"))
    return _schedule_out(s)


@router.route("PUT", "/practitioners/{user_id}/schedule", body=ScheduleIn, response=ScheduleOut, tags=T)
async def put_schedule(ctx: ApiContext) -> ScheduleOut:
    """Create or change a schedule (the clinician themself, or an organization admin)."""
    b = ctx.body
    s = await svc.upsert_schedule(ctx.uow, ctx.principal, b.organization_id, ctx.path_uuid("user_id"),
                                  timezone=b.timezone, observe_public_holidays=b.observe_public_holidays,
                                  holiday_country=b.holiday_country, active=b.active)
    return _schedule_out(s)


@router.route("POST", "/practitioners/{user_id}/schedule/rules", body=RuleIn, response=RuleOut, status=201, tags=T)
async def add_rule(ctx: ApiContext) -> RuleOut:
    """Add a weekly availability window."""
    b = ctx.body
    r = await svc.add_rule(ctx.uow, ctx.principal, b.organization_id, ctx.path_uuid("user_id"), weekday=b.weekday,
                           start=time.fromisoformat(b.start), end=time.fromisoformat(b.end),
                           visit_type_ids=b.visit_type_ids, valid_from=b.valid_from, valid_to=b.valid_to)
    return RuleOut.model_validate(r)


@router.route("DELETE", "/practitioners/{user_id}/schedule/rules/{id}", query=OrgQuery, tags=T)
async def remove_rule(ctx: ApiContext) -> None:
    """Remove a weekly availability window (booked appointments are kept)."""
    await svc.remove_rule(ctx.uow, ctx.principal, ctx.query.organization_id, ctx.path_uuid("user_id"),
                          ctx.path_uuid())


@router.route("POST", "/practitioners/{user_id}/schedule/exceptions", body=ExceptionIn, response=ExceptionOut,
              status=201, tags=T)
async def add_exception(ctx: ApiContext) -> ExceptionOut:
    """Block out days or hours (vacation, unavailable) or add extra hours."""
    b = ctx.body
    ex = await svc.add_exception(ctx.uow, ctx.principal, b.organization_id, ctx.path_uuid("user_id"), kind=b.kind,
                                 start_date=b.start_date, end_date=b.end_date, start_at=b.start_at,
                                 end_at=b.end_at, note=b.note)
    return ExceptionOut.model_validate(ex)


@router.route("DELETE", "/practitioners/{user_id}/schedule/exceptions/{id}", query=OrgQuery, tags=T)
async def remove_exception(ctx: ApiContext) -> None:
    """Remove an availability exception."""
    await svc.remove_exception(ctx.uow, ctx.principal, ctx.query.organization_id, ctx.path_uuid("user_id"),
                               ctx.path_uuid())


# --- slots -------------------------------------------------------------------------------------------------


class SlotQuery(RangeQuery):
    visit_type_id: uuid.UUID
    practitioner_id: uuid.UUID | None = None
    start: When = Field(alias="from")
    end: When = Field(alias="to")


class SlotOut(Output):
    start: datetime
    end: datetime
    local_start: str = Field(description="Start in the requested time zone, ISO 8601 with offset")
    practitioner_id: uuid.UUID
    visit_type_id: uuid.UUID


class SlotList(Output):
    timezone: str
    items: list[SlotOut]


# Pydantic's own JSON for each value, so the body is byte for byte what dumping a SlotList would give. (A
# UUID's is its str() in quotes, which is what pydantic writes.)
_INSTANT = TypeAdapter(datetime)
_TEXT = TypeAdapter(str)


def _json(adapter: TypeAdapter[Any], value: object) -> str:
    return adapter.dump_json(value).decode()


@lru_cache(maxsize=4096)
def _item_head(start: datetime, end: datetime, tz: str) -> str:
    """A slot item up to the practitioner id's value: the same for every practitioner free at that time, and
    for every search showing it in that zone. (Slot instants are always UTC, so equal ones print alike.)"""
    local = start.astimezone(ZoneInfo(tz)).isoformat()
    return (f'{{"start":{_json(_INSTANT, start)},"end":{_json(_INSTANT, end)},"local_start":{_json(_TEXT, local)},'
            '"practitioner_id":')


def _slot_json(tz: str, slots: list[svc.Slot]) -> bytes:
    """The SlotList body, written without a SlotOut per slot: validating and dumping those was the largest
    part of a search's CPU. Slots come by start, several practitioners each."""
    items: list[str] = []
    # Keyed by identity: a UUID hashes in Python, and all of a practitioner's slots share its ids.
    tails: dict[tuple[int, int], str] = {}
    start: datetime | None = None
    end: datetime | None = None
    head = ""
    for s in slots:
        if s.start != start or s.end != end:
            start, end = s.start, s.end
            head = _item_head(start, end, tz)
        key = (id(s.practitioner_user_id), id(s.visit_type_id))
        tail = tails.get(key)
        if tail is None:
            tail = tails[key] = f'"{s.practitioner_user_id}","visit_type_id":"{s.visit_type_id}"}}'
        items.append(head + tail)
    return f'{{"timezone":{_json(_TEXT, tz)},"items":[{",".join(items)}]}}'.encode()


def _slot_list(tz: str, slots: list[svc.Slot]) -> SlotList:
    """The body ``_slot_json`` writes, as the response model the route documents."""
    return SlotList.model_validate_json(_slot_json(tz, slots))


@router.route("GET", "/organizations/{org_id}/slots", query=SlotQuery, response=SlotList, tags=T)
async def search_slots(ctx: ApiContext) -> web.Response:
    """Free slots for a visit type; bare dates in ``from``/``to`` are read in ``tz`` (default the clinic's)."""
    q = ctx.query
    found = await svc.search_slots_local(ctx.uow, ctx.principal, ctx.path_uuid("org_id"),
                                         visit_type_id=q.visit_type_id, start=q.start, end=q.end, tz=q.tz,
                                         practitioner_user_id=q.practitioner_id)
    return web.Response(body=_slot_json(found.timezone, found.slots), content_type="application/json")


# --- appointments ------------------------------------------------------------------------------------------


class AppointmentOut(Output):
    id: uuid.UUID
    organization_id: uuid.UUID
    practitioner_id: uuid.UUID | None = Field(validation_alias="practitioner_user_id")
    patient_id: uuid.UUID
    visit_type_id: uuid.UUID
    start: datetime
    end: datetime
    status: AppointmentStatus
    kind: AppointmentKind
    mode: VisitMode
    reason: str
    cancellation_reason: str
    ics_sequence: int
    created_at: datetime


class AppointmentList(Output):
    items: list[AppointmentOut]


class BookIn(Input):
    patient_id: uuid.UUID
    practitioner_id: uuid.UUID
    visit_type_id: uuid.UUID
    start: AwareDatetime
    mode: VisitMode
    reason: str = Field(default="", max_length=2000)


class RescheduleIn(Input):
    start: AwareDatetime


class CancelIn(Input):
    reason: str = Field(default="", max_length=2000)


class OnDemandIn(Input):
    patient_id: uuid.UUID
    visit_type_id: uuid.UUID
    mode: VisitMode
    reason: str = Field(default="", max_length=2000)


class AppointmentQuery(RangeQuery):
    patient_id: uuid.UUID | None = None
    organization_id: uuid.UUID | None = None
    practitioner_id: uuid.UUID | None = None
    # A Literal, not the enum: query parameters are documented inline, where a $ref would dangle.
    status: Literal["proposed", "booked", "arrived", "checked_in", "fulfilled", "cancelled", "noshow"] | None = None
    limit: int = Field(default=100, ge=1, le=500)
    offset: int = Field(default=0, ge=0, le=100_000)


def _out(a: Any) -> AppointmentOut:
    return AppointmentOut.model_validate(a)


@router.route("POST", "/appointments", body=BookIn, response=AppointmentOut, status=201, tags=T, idempotent=True)
async def book(ctx: ApiContext) -> AppointmentOut:
    """Book a slot (the patient for themself, or staff for a patient of their organization)."""
    b = ctx.body
    a = await svc.book(ctx.uow, ctx.principal, patient_id=b.patient_id, practitioner_user_id=b.practitioner_id,
                       visit_type_id=b.visit_type_id, start=b.start.astimezone(UTC), mode=b.mode, reason=b.reason,
                       policy=_policy(ctx))
    await _tell(ctx, a, payment="booked", email="confirmation")
    return _out(a)


@router.route("GET", "/appointments", query=AppointmentQuery, response=AppointmentList, tags=T)
async def list_appointments(ctx: ApiContext) -> AppointmentList:
    """Appointments the caller may see: a patient their own, staff their organization's."""
    q = ctx.query
    tz = q.tz or "UTC"
    rows = await svc.list_appointments(
        ctx.uow, ctx.principal, patient_id=q.patient_id, organization_id=q.organization_id,
        practitioner_user_id=q.practitioner_id,
        status=AppointmentStatus(q.status) if q.status else None, limit=q.limit, offset=q.offset,
        start=_instant(q.start, tz) if q.start is not None else None,
        end=_instant(q.end, tz) if q.end is not None else None)
    return AppointmentList(items=[_out(a) for a in rows])


@router.route("GET", "/appointments/{id}", response=AppointmentOut, tags=T)
async def get_appointment(ctx: ApiContext) -> AppointmentOut:
    """One appointment."""
    return _out(await svc.get_appointment(ctx.uow, ctx.principal, ctx.path_uuid()))


@router.route("POST", "/appointments/{id}/reschedule", body=RescheduleIn, response=AppointmentOut, tags=T,
              idempotent=True)
async def reschedule(ctx: ApiContext) -> AppointmentOut:
    """Move to another free slot of the same practitioner."""
    a = await svc.reschedule(ctx.uow, ctx.principal, ctx.path_uuid(), start=ctx.body.start.astimezone(UTC),
                             policy=_policy(ctx))
    await _tell(ctx, a, payment=None, email="confirmation")
    return _out(a)


@router.route("POST", "/appointments/{id}/cancel", body=CancelIn, response=AppointmentOut, tags=T)
async def cancel(ctx: ApiContext) -> AppointmentOut:
    """Cancel (patients only until the clinic's cancellation window)."""
    a = await svc.cancel(ctx.uow, ctx.principal, ctx.path_uuid(), reason=ctx.body.reason,
                         hub=services(ctx.app).extra.get("hub"))
    await _tell(ctx, a, payment="cancelled", email="cancellation")
    return _out(a)


async def _tell(ctx: ApiContext, a: Any, *, payment: Literal["booked", "cancelled"] | None,
                email: Literal["confirmation", "cancellation"] | None) -> None:
    """Tell the rest of the clinic: payments (authorize, or release per the cancellation window) and the
    patient (confirmation or cancellation e-mail with the calendar invitation, sent after commit)."""
    extra = services(ctx.app).extra
    pay_hook = extra.get(f"on_appointment_{payment}") if payment else None
    if pay_hook is not None:
        await pay_hook(ctx.uow, a, ctx.principal)
    mail_hook = extra.get("appointment_events") if email else None
    if mail_hook is not None:
        await mail_hook(ctx.uow, a, email)


@router.route("POST", "/appointments/{id}/no-show", response=AppointmentOut, tags=T)
async def no_show(ctx: ApiContext) -> AppointmentOut:
    """Record that the patient did not attend (clinic staff, after the start)."""
    a = await svc.mark_no_show(ctx.uow, ctx.principal, ctx.path_uuid(), hub=services(ctx.app).extra.get("hub"))
    await _tell(ctx, a, payment="cancelled", email=None)
    return _out(a)


@router.route("POST", "/organizations/{org_id}/on-demand", body=OnDemandIn, response=AppointmentOut, status=201,
              tags=T, idempotent=True)
async def request_on_demand(ctx: ApiContext) -> AppointmentOut:
    """Ask to see the next available clinician now."""
    b = ctx.body
    a = await svc.request_on_demand(ctx.uow, ctx.principal, ctx.path_uuid("org_id"), patient_id=b.patient_id,
                                    visit_type_id=b.visit_type_id, mode=b.mode, reason=b.reason,
                                    policy=_policy(ctx))
    await _tell(ctx, a, payment="booked", email=None)
    return _out(a)
