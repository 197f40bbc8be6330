"""Patients API (FHIR Patient and its allergies, legal attributes, guardians and consents)."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Literal

from pydantic import Field

from clinic.db.clinical import AttributeKind, Consent, ConsentKind, Sex
from clinic.services import patients as svc
from clinic.web.api import ApiContext, ApiRouter
from clinic.web.schemas import Input, Output

router = ApiRouter()
T = ("patients",)

JURISDICTION = r"^[A-Z]{2}(-[A-Z0-9]{1,3})?$"


class AllergyOut(Output):
    id: uuid.UUID
    substance: str
    atc_code: str
    reaction: str
    severity: str


class AttributeOut(Output):
    id: uuid.UUID
    kind: AttributeKind
    value: str
    source: str
    source_date: date
    valid_until: date | None


class GuardianOut(Output):
    id: uuid.UUID
    name: str
    relationship_code: str
    phone: str
    email: str


class PatientOut(Output):
    id: uuid.UUID
    organization_id: uuid.UUID
    family_name: str
    given_name: str
    birth_date: date
    sex: Sex
    phone: str
    email: str
    address: str
    postal_code: str
    jurisdiction: str
    locale: str | None
    nominated_pharmacy_id: uuid.UUID | None
    allergies: list[AllergyOut]
    attributes: list[AttributeOut]
    guardians: list[GuardianOut]


class PatientSummary(Output):
    id: uuid.UUID
    organization_id: uuid.UUID
    family_name: str
    given_name: str
    birth_date: date
    sex: Sex
    jurisdiction: str


class PatientList(Output):
    items: list[PatientSummary]


class PatientIn(Input):
    organization_id: uuid.UUID
    family_name: str = Field(min_length=1, max_length=100)
    given_name: str = Field(min_length=1, max_length=100)
    birth_date: date
    sex: Sex = Sex.UNKNOWN
    phone: str = Field(default="", max_length=32)
    email: str = Field(default="", max_length=254)
    address: str = Field(default="", max_length=500)
    postal_code: str = Field(default="", max_length=20)
    jurisdiction: str = Field(default="KR", pattern=JURISDICTION)
    locale: Literal["ko", "en"] | None = None


class PatientUpdate(Input):
    family_name: str | None = Field(default=None, min_length=1, max_length=100)
    given_name: str | None = Field(default=None, min_length=1, max_length=100)
    birth_date: date | None = None
    sex: Sex | None = None
    phone: str | None = Field(default=None, max_length=32)
    email: str | None = Field(default=None, max_length=254)
    address: str | None = Field(default=None, max_length=500)
    postal_code: str | None = Field(default=None, max_length=20)
    jurisdiction: str | None = Field(default=None, pattern=JURISDICTION)
    locale: Literal["ko", "en"] | None = None


class PatientQuery(Input):
    organization_id: uuid.UUID | None = None
    q: str = Field(default="", max_length=100)
    limit: int = Field(default=50, ge=1, le=200)
    offset: int = Field(default=0, ge=0, le=100_000)


class AllergyIn(Input):
    substance: str = Field(min_length=1, max_length=200)
    atc_code: str = Field(default="", pattern=r"^([A-Z]([0-9]{2}([A-Z]([A-Z]([0-9]{2})?)?)?)?)?$")
    reaction: str = Field(default="", max_length=300)
    severity: Literal["mild", "moderate", "severe"] = "moderate"


class AttributeIn(Input):
    kind: AttributeKind
    value: str = Field(default="", max_length=200)
    source: str = Field(min_length=1, max_length=300)
    source_date: date
    valid_until: date | None = None


class GuardianIn(Input):
    name: str = Field(min_length=1, max_length=200)
    relationship_code: str = Field(default="guardian", max_length=32)
    phone: str = Field(default="", max_length=32)
    email: str = Field(default="", max_length=254)


class ConsentIn(Input):
    kind: ConsentKind
    version: str | None = Field(default=None, max_length=32,
                                description="the version the patient read; refused (409) when it is no longer current")
    encounter_id: uuid.UUID | None = Field(default=None, description="the visit at which consent was given")


class ConsentOut(Output):
    id: uuid.UUID
    kind: ConsentKind
    version: str
    current: bool = Field(description="granted to the current version of the text (older ones are asked again)")
    text_sha256: str = Field(description="SHA-256 of the text as shown (title and paragraphs, in the language read)")
    granted_at: datetime
    revoked_at: datetime | None
    encounter_id: uuid.UUID | None


class ConsentList(Output):
    items: list[ConsentOut]


class ConsentTextQuery(Input):
    lang: Literal["ko", "en"] | None = Field(default=None, description="default: the request's language")


class ConsentTextOut(Output):
    kind: ConsentKind
    version: str
    locale: str
    title: str
    paragraphs: list[str]
    sha256: str


class ConsentTextList(Output):
    items: list[ConsentTextOut]


class ConsentDeclineOut(Output):
    kind: ConsentKind
    version: str
    declined_at: datetime
    encounter_id: uuid.UUID | None


def _consent_out(c: Consent) -> ConsentOut:
    return ConsentOut(id=c.id, kind=c.kind, version=c.version, current=c.version == svc.CONSENT_VERSIONS[c.kind],
                      text_sha256=c.text_sha256, granted_at=c.granted_at, revoked_at=c.revoked_at,
                      encounter_id=c.encounter_id)


def _text_out(t: svc.ConsentText) -> ConsentTextOut:
    return ConsentTextOut(kind=t.kind, version=t.version, locale=t.locale, title=t.title,
                          paragraphs=list(t.paragraphs), sha256=t.sha256)


@router.route("GET", "/patients", query=PatientQuery, response=PatientList, tags=T)
async def list_patients(ctx: ApiContext) -> PatientList:
    """Patients visible to the caller (their organization's, or their own record)."""
    q = ctx.query
    rows = await svc.list_patients(ctx.uow, ctx.principal, organization_id=q.organization_id, q=q.q,
                                   limit=q.limit, offset=q.offset)
    return PatientList(items=[PatientSummary.model_validate(p) for p in rows])


@router.route("POST", "/patients", body=PatientIn, response=PatientOut, status=201, tags=T, idempotent=True)
async def create_patient(ctx: ApiContext) -> PatientOut:
    """Register a patient in an organization."""
    data = ctx.body.model_dump()
    org_id = data.pop("organization_id")
    p = await svc.create_patient(ctx.uow, ctx.principal, org_id, svc.PatientInput(**data))
    await ctx.uow.session.refresh(p, ["allergies", "attributes", "guardians"])
    return PatientOut.model_validate(p)


@router.route("GET", "/patients/{id}", response=PatientOut, tags=T)
async def get_patient(ctx: ApiContext) -> PatientOut:
    """One patient record."""
    return PatientOut.model_validate(await svc.get_patient(ctx.uow, ctx.principal, ctx.path_uuid()))


@router.route("PATCH", "/patients/{id}", body=PatientUpdate, response=PatientOut, tags=T)
async def update_patient(ctx: ApiContext) -> PatientOut:
    """Change demographics or location."""
    changes = {k: v for k, v in ctx.body.model_dump(exclude_unset=True).items() if v is not None}
    return PatientOut.model_validate(await svc.update_patient(ctx.uow, ctx.principal, ctx.path_uuid(), changes))


@router.route("POST", "/patients/{id}/allergies", body=AllergyIn, response=AllergyOut, status=201, tags=T)
async def add_allergy(ctx: ApiContext) -> AllergyOut:
    """Record an allergy or intolerance."""
    a = await svc.add_allergy(ctx.uow, ctx.principal, ctx.path_uuid(), **ctx.body.model_dump())
    return AllergyOut.model_validate(a)


@router.route("POST", "/patients/{id}/attributes", body=AttributeIn, response=AttributeOut, status=201, tags=T)
async def add_attribute(ctx: ApiContext) -> AttributeOut:
    """Record a legally relevant fact (island residence, long-term-care grade, …) with its source."""
    a = await svc.add_attribute(ctx.uow, ctx.principal, ctx.path_uuid(), **ctx.body.model_dump())
    return AttributeOut.model_validate(a)


@router.route("POST", "/patients/{id}/guardians", body=GuardianIn, response=GuardianOut, status=201, tags=T)
async def add_guardian(ctx: ApiContext) -> GuardianOut:
    """Add a guardian (for minors)."""
    g = await svc.add_guardian(ctx.uow, ctx.principal, ctx.path_uuid(), **ctx.body.model_dump())
    return GuardianOut.model_validate(g)


@router.route("GET", "/consent-texts", query=ConsentTextQuery, response=ConsentTextList, tags=T, public=True)
async def consent_texts(ctx: ApiContext) -> ConsentTextList:
    """The current text and version of every consent, as patients read them before agreeing."""
    return ConsentTextList(items=[_text_out(svc.consent_text(kind, ctx.query.lang)) for kind in ConsentKind])


@router.route("GET", "/patients/{id}/consents", response=ConsentList, tags=T)
async def list_consents(ctx: ApiContext) -> ConsentList:
    """Consents, newest first, including revoked ones."""
    rows = await svc.list_consents(ctx.uow, ctx.principal, ctx.path_uuid())
    return ConsentList(items=[_consent_out(c) for c in rows])


@router.route("POST", "/patients/{id}/consents", body=ConsentIn, response=ConsentOut, status=201, tags=T)
async def grant_consent(ctx: ApiContext) -> ConsentOut:
    """Grant a consent to the current text (versioned, time-stamped, with the hash of the text as shown).

    409 ``consent_version_changed`` when ``version`` is not the current one; granting again while a current grant
    is active returns it."""
    b = ctx.body
    c = await svc.grant_consent(ctx.uow, ctx.principal, ctx.path_uuid(), b.kind, version=b.version,
                                encounter_id=b.encounter_id)
    return _consent_out(c)


@router.route("POST", "/patients/{id}/consents/decline", body=ConsentIn, response=ConsentDeclineOut, tags=T)
async def decline_consent(ctx: ApiContext) -> ConsentDeclineOut:
    """Record that the patient read a consent and declined it (audited; nothing is granted)."""
    b = ctx.body
    d = await svc.decline_consent(ctx.uow, ctx.principal, ctx.path_uuid(), b.kind, version=b.version,
                                  encounter_id=b.encounter_id)
    return ConsentDeclineOut.model_validate(d)


@router.route("POST", "/consents/{id}/revoke", response=ConsentOut, tags=T)
async def revoke_consent(ctx: ApiContext) -> ConsentOut:
    """Revoke a consent."""
    return _consent_out(await svc.revoke_consent(ctx.uow, ctx.principal, ctx.path_uuid()))
