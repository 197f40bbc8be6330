"""Encounters API: check-in, the waiting room, the consult queue, claiming, admission, chat and photos."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any, Literal

from aiohttp import BodyPartReader, web
from pydantic import Field

from clinic.db.clinical import ConsentKind
from clinic.db.encounters import Encounter, StoredPhoto
from clinic.errors import Conflict, Invalid, NotFound
from clinic.photos import PhotoStore, clean_image
from clinic.services import encounters as svc
from clinic.services.patients import has_consent
from clinic.web.api import ApiContext, ApiRouter
from clinic.web.context import services
from clinic.web.schemas import Input, Ok, Output

router = ApiRouter()
T = ("encounters",)


def _hub(ctx: ApiContext) -> Any:
    return services(ctx.app).extra.get("hub")


def _policy(ctx: ApiContext) -> Any:
    return services(ctx.app).extra.get("policy")


class TransitionOut(Output):
    from_status: str
    to_status: str
    at: datetime


class EncounterOut(Output):
    id: uuid.UUID
    organization_id: uuid.UUID
    patient_id: uuid.UUID
    appointment_id: uuid.UUID | None
    assigned_practitioner_id: uuid.UUID | None
    claimed_by_id: uuid.UUID | None
    status: str
    fhir_status: str
    kind: str
    mode: str
    priority: int
    scheduled_start: datetime | None
    chief_complaint: str
    symptoms: list[str]
    checked_in_at: datetime | None
    admitted_at: datetime | None
    started_at: datetime | None
    ended_at: datetime | None
    policy_decisions: list[dict[str, Any]]
    transitions: list[TransitionOut]


def _out(e: Encounter) -> EncounterOut:
    return EncounterOut(
        id=e.id, organization_id=e.organization_id, patient_id=e.patient_id, appointment_id=e.appointment_id,
        assigned_practitioner_id=e.assigned_practitioner_id, claimed_by_id=e.claimed_by_id, status=e.status.value,
        fhir_status=e.status.fhir, kind=e.kind, mode=e.mode, priority=e.priority, scheduled_start=e.scheduled_start,
        chief_complaint=e.chief_complaint, symptoms=list(e.symptoms), checked_in_at=e.checked_in_at,
        admitted_at=e.admitted_at, started_at=e.started_at, ended_at=e.ended_at,
        policy_decisions=list(e.policy_decisions),
        transitions=[TransitionOut(from_status=t.from_status, to_status=t.to_status, at=t.at) for t in e.transitions],
    )


class EncounterList(Output):
    items: list[EncounterOut]


SYMPTOMS = Literal["fever", "high_fever", "cough", "sore_throat", "runny_nose", "headache", "rash", "vomiting",
                   "diarrhea", "abdominal_pain", "severe_pain", "dizziness", "fatigue", "chest_pain",
                   "shortness_of_breath", "severe_bleeding", "confusion", "fainting", "other"]


class CheckInIn(Input):
    family_name: str = Field(min_length=1, max_length=100)
    given_name: str = Field(min_length=1, max_length=100)
    birth_date: date
    chief_complaint: str = Field(min_length=1, max_length=2000)
    symptoms: list[SYMPTOMS] = Field(default_factory=list, max_length=20)


class WaitingOut(Output):
    encounter_id: uuid.UUID
    status: str
    position: int | None
    estimated_wait_minutes: int | None
    provider_name: str
    provider_status: str
    mode: str
    admitted: bool


class QueueQuery(Input):
    scope: Literal["all", "mine", "shared"] = "all"


class QueueEntryOut(Output):
    """One waiting (or in-consultation) patient, as the requesting clinician may act on them."""

    encounter_id: uuid.UUID
    patient_id: uuid.UUID
    patient_name: str
    age: int
    status: Literal["checked_in", "in_consult"]
    kind: str
    mode: str
    priority: int = Field(description="triage priority: 1 (most urgent) … 5")
    scheduled_start: datetime | None
    checked_in_at: datetime | None
    waiting_minutes: int
    chief_complaint: str
    symptoms: list[str] = Field(description="check-in questionnaire codes (see the check-in body)")
    queue: Literal["shared", "personal"] = Field(
        description="shared: any clinician may claim; personal: booked with or transferred to one clinician")
    assigned_practitioner_id: uuid.UUID | None
    assigned_practitioner_name: str
    claimed_by_id: uuid.UUID | None
    claimed_by_name: str
    actions: list[Literal["claim", "open", "release", "transfer", "priority"]] = Field(
        description="what the requester may do now: the claim, release, transfer and priority calls, and open "
                    "(the visit page, for the clinician who claimed the patient)")


class QueueOut(Output):
    items: list[QueueEntryOut]


class TransferIn(Input):
    to_user_id: uuid.UUID


class PriorityIn(Input):
    priority: int = Field(ge=1, le=5)


class ModeIn(Input):
    mode: Literal["video", "audio", "chat"]


class ChatIn(Input):
    text: str = Field(min_length=1, max_length=svc.MAX_CHAT)


class ChatOut(Output):
    id: uuid.UUID
    sender_role: str
    sender_name: str
    text: str
    photo_id: uuid.UUID | None
    created_at: datetime


class ChatList(Output):
    items: list[ChatOut]


class PresenceIn(Input):
    status: Literal["online", "in_call", "away"]


class PhotoOut(Output):
    id: uuid.UUID
    purpose: str
    width: int
    height: int
    size_bytes: int
    url: str


@router.route("GET", "/encounters/{id}", response=EncounterOut, tags=T)
async def get_encounter(ctx: ApiContext) -> EncounterOut:
    """One visit with its time-stamped transitions and the policy decisions enforced on it."""
    e = await svc.load(ctx.uow, ctx.principal, ctx.path_uuid())
    ctx.uow.audit.record(ctx.principal, "encounter.read", object_type="Encounter", object_id=e.id,
                         organization_id=e.organization_id, patient_id=e.patient_id)
    return _out(e)


@router.route("GET", "/patients/{id}/encounters", response=EncounterList, tags=T)
async def patient_encounters(ctx: ApiContext) -> EncounterList:
    """A patient's visits, newest first."""
    rows = await svc.encounters_for_patient(ctx.uow, ctx.principal, ctx.path_uuid())
    return EncounterList(items=[_out(e) for e in rows])


@router.route("POST", "/encounters/{id}/check-in", body=CheckInIn, response=EncounterOut, tags=T, idempotent=True)
async def check_in(ctx: ApiContext) -> EncounterOut:
    """Confirm identity (name and birth date), answer the questionnaire, and enter the waiting room.

    Refused with 409 ``consent_required`` until the patient has consented to the current telemedicine text
    (``POST /patients/{id}/consents``), ``too_early`` more than 30 minutes before a booked time, and 422
    ``identity_mismatch`` when the name or birth date does not match the record."""
    b = ctx.body
    e = await svc.check_in(ctx.uow, ctx.principal, ctx.path_uuid(),
                           svc.CheckIn(b.family_name, b.given_name, b.birth_date, b.chief_complaint,
                                       tuple(b.symptoms)), hub=_hub(ctx))
    return _out(e)


@router.route("GET", "/encounters/{id}/waiting", response=WaitingOut, tags=T)
async def waiting(ctx: ApiContext) -> WaitingOut:
    """Queue position, estimated wait and the clinician's status, as the waiting patient sees them."""
    w = await svc.waiting_status(ctx.uow, ctx.principal, ctx.path_uuid())
    return WaitingOut.model_validate(w)


@router.route("POST", "/encounters/{id}/leave", response=EncounterOut, tags=T)
async def leave(ctx: ApiContext) -> EncounterOut:
    """The patient leaves the waiting room without being seen."""
    return _out(await svc.leave_waiting_room(ctx.uow, ctx.principal, ctx.path_uuid(), hub=_hub(ctx)))


@router.route("GET", "/organizations/{org_id}/queue", query=QueueQuery, response=QueueOut, tags=T)
async def get_queue(ctx: ApiContext) -> QueueOut:
    """The consult queue: triage priority, then appointment time, then waiting time."""
    rows = await svc.queue(ctx.uow, ctx.principal, ctx.path_uuid("org_id"), scope=ctx.query.scope)
    return QueueOut(items=[QueueEntryOut.model_validate(r) for r in rows])


@router.route("POST", "/encounters/{id}/claim", response=EncounterOut, tags=T)
async def claim(ctx: ApiContext) -> EncounterOut:
    """Take a waiting patient (exclusive: a second clinician gets 409 already_claimed).

    Also 409 ``assigned_to_other`` (another clinician's personal queue) and ``not_checked_in``/``not_waiting``."""
    return _out(await svc.claim(ctx.uow, ctx.principal, ctx.path_uuid(), hub=_hub(ctx)))


@router.route("POST", "/encounters/{id}/release", response=EncounterOut, tags=T)
async def release(ctx: ApiContext) -> EncounterOut:
    """Return a claimed patient to the queue.

    409 ``not_claimed``, ``already_claimed`` (someone else holds them) or ``not_waiting``."""
    return _out(await svc.release(ctx.uow, ctx.principal, ctx.path_uuid(), hub=_hub(ctx)))


@router.route("POST", "/encounters/{id}/transfer", body=TransferIn, response=EncounterOut, tags=T)
async def transfer(ctx: ApiContext) -> EncounterOut:
    """Hand a waiting patient to a colleague's personal queue.

    For the clinician who holds the patient, or any clinician for an unclaimed patient of the shared queue:
    409 ``already_claimed``/``assigned_to_other``/``not_waiting``, 422 ``unknown_clinician``/``same_clinician``."""
    return _out(await svc.transfer(ctx.uow, ctx.principal, ctx.path_uuid(), ctx.body.to_user_id, hub=_hub(ctx)))


@router.route("POST", "/encounters/{id}/priority", body=PriorityIn, response=EncounterOut, tags=T)
async def priority(ctx: ApiContext) -> EncounterOut:
    """Change the triage priority (1 most urgent … 5).

    Who may, and the refusals: as for transfer."""
    return _out(await svc.set_priority(ctx.uow, ctx.principal, ctx.path_uuid(), ctx.body.priority, hub=_hub(ctx)))


@router.route("POST", "/encounters/{id}/admit", response=EncounterOut, tags=T)
async def admit(ctx: ApiContext) -> EncounterOut:
    """Let the claimed patient in from the waiting room (checked against the law in force)."""
    return _out(await svc.admit(ctx.uow, ctx.principal, ctx.path_uuid(), policy=_policy(ctx), hub=_hub(ctx)))


@router.route("POST", "/encounters/{id}/mode", body=ModeIn, response=EncounterOut, tags=T)
async def mode(ctx: ApiContext) -> EncounterOut:
    """Switch between video, audio only and chat (checked against the law in force)."""
    return _out(await svc.change_mode(ctx.uow, ctx.principal, ctx.path_uuid(), ctx.body.mode,
                                      policy=_policy(ctx), hub=_hub(ctx)))


@router.route("POST", "/encounters/{id}/complete", response=EncounterOut, tags=T)
async def complete(ctx: ApiContext) -> EncounterOut:
    """Finish the visit."""
    e = await svc.complete(ctx.uow, ctx.principal, ctx.path_uuid(), hub=_hub(ctx))
    hook = services(ctx.app).extra.get("on_encounter_completed")
    if hook is not None:
        await hook(ctx.uow, e)
    return _out(e)


@router.route("GET", "/encounters/{id}/chat", response=ChatList, tags=T)
async def chat_list(ctx: ApiContext) -> ChatList:
    """Messages exchanged in the waiting room and the call."""
    rows = await svc.list_chat(ctx.uow, ctx.principal, ctx.path_uuid())
    return ChatList(items=[ChatOut.model_validate(m) for m in rows])


@router.route("POST", "/encounters/{id}/chat", body=ChatIn, response=ChatOut, status=201, tags=T)
async def chat_post(ctx: ApiContext) -> ChatOut:
    """Send a message to the other side (persisted to the encounter)."""
    m = await svc.post_chat(ctx.uow, ctx.principal, ctx.path_uuid(), ctx.body.text, hub=_hub(ctx))
    return ChatOut.model_validate(m)


def _store(ctx: ApiContext) -> PhotoStore:
    s = services(ctx.app)
    store = s.extra.get("photo_store")
    if store is None:
        store = PhotoStore(s.settings.data_dir / "photos", s.settings.secret_key)
        s.extra["photo_store"] = store
    return store


@router.route("POST", "/encounters/{id}/photos", response=PhotoOut, status=201, tags=T, upload="multipart/form-data")
async def upload_photo(ctx: ApiContext) -> PhotoOut:
    """Upload a photo (check-in photo or one shared in chat): JPEG/PNG/WebP, re-encoded, stored encrypted."""
    e = await svc.load(ctx.uow, ctx.principal, ctx.path_uuid(), "chat.write")
    settings = services(ctx.app).settings
    if not ctx.request.content_type.startswith("multipart/"):
        raise Invalid("send multipart/form-data with a 'photo' file", fields={"photo": "required"})
    reader = await ctx.request.multipart()
    purpose, raw = "chat", b""
    while (part := await reader.next()) is not None:
        if not isinstance(part, BodyPartReader):
            continue
        if part.name == "purpose":
            purpose = (await part.text())[:16]
        elif part.name == "photo":
            raw = await part.read(decode=False)
            if len(raw) > settings.max_upload_bytes:
                raise Invalid("image too large", fields={"photo": f"at most {settings.max_upload_bytes} bytes"})
    if purpose not in ("checkin", "chat"):
        raise Invalid("unknown purpose", fields={"purpose": "checkin or chat"})
    if not raw:
        raise Invalid("no photo", fields={"photo": "required"})
    if purpose == "checkin" and not await has_consent(ctx.uow, e.patient_id, ConsentKind.CHECKIN_PHOTO):
        raise Conflict("the patient has not consented to a check-in photo", code="consent_required")
    img = clean_image(raw, settings.max_upload_bytes)
    row = StoredPhoto(encounter_id=e.id, uploaded_by_id=ctx.principal.user_id, purpose=purpose,
                      width=img.width, height=img.height, size_bytes=len(img.data), sha256=img.sha256)
    ctx.uow.add(row)
    await ctx.uow.session.flush()
    _store(ctx).put(str(row.id), img.data)
    ctx.uow.audit.record(ctx.principal, "photo.create", object_type="Media", object_id=row.id,
                         organization_id=e.organization_id, patient_id=e.patient_id, detail={"purpose": purpose})
    if purpose == "chat":
        await svc.post_chat(ctx.uow, ctx.principal, e.id, "", photo_id=row.id, hub=_hub(ctx))
    return PhotoOut(id=row.id, purpose=purpose, width=img.width, height=img.height, size_bytes=len(img.data),
                    url=f"/api/v1/photos/{row.id}")


@router.route("GET", "/photos/{id}", tags=T, raw_response="image/jpeg")
async def get_photo(ctx: ApiContext) -> web.Response:
    """A stored photo (decrypted for authorized readers only)."""
    row = await ctx.uow.session.get(StoredPhoto, ctx.path_uuid())
    if row is None:
        raise NotFound("photo not found")
    e = await svc.load(ctx.uow, ctx.principal, row.encounter_id)
    ctx.uow.audit.record(ctx.principal, "photo.read", object_type="Media", object_id=row.id,
                         organization_id=e.organization_id, patient_id=e.patient_id)
    return web.Response(body=_store(ctx).get(str(row.id)), content_type="image/jpeg",
                        headers={"Cache-Control": "private, no-store"})


@router.route("POST", "/me/presence", body=PresenceIn, response=Ok, tags=T)
async def presence(ctx: ApiContext) -> Ok:
    """Set the clinician's status shown to waiting patients."""
    await svc.set_presence(ctx.uow, ctx.principal, ctx.body.status)
    return Ok()
