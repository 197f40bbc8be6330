"""Consultation notes API (FHIR Composition) and the visit's printable documents (PDF)."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Literal

from aiohttp import web
from pydantic import Field

from clinic.db.notes import NoteVersion
from clinic.db.uow import UnitOfWork
from clinic.services import notes as svc
from clinic.services import visit_documents as docs
from clinic.services.accounts import display_names
from clinic.web import i18n
from clinic.web.api import ApiContext, ApiRouter
from clinic.web.schemas import Input, Output

router = ApiRouter()
T = ("notes",)
TD = ("documents",)

_SECTION = Field(default="", max_length=20_000)


class DiagnosisIn(Input):
    code: str = Field(min_length=1, max_length=16)
    primary: bool | None = None


class NoteContentIn(Input):
    subjective: str = _SECTION
    objective: str = _SECTION
    assessment: str = _SECTION
    plan: str = _SECTION
    text: str = _SECTION
    diagnoses: list[DiagnosisIn] = Field(default_factory=list, max_length=svc.MAX_DIAGNOSES)

    def content(self) -> svc.NoteContent:
        return svc.NoteContent(
            subjective=self.subjective, objective=self.objective, assessment=self.assessment, plan=self.plan,
            text=self.text, diagnoses=tuple(svc.DiagnosisInput(d.code, d.primary) for d in self.diagnoses))


class DraftIn(NoteContentIn):
    #: The revision the client last saw (0 to create the note); a stale one is refused with 409.
    revision: int = Field(ge=0)


class SignIn(Input):
    revision: int = Field(ge=1)


class AmendmentIn(NoteContentIn):
    revision: int = Field(ge=1)
    reason: str = Field(min_length=1, max_length=1000)


class DiagnosisOut(Output):
    code: str
    display: str
    primary: bool


class NoteOut(Output):
    id: uuid.UUID
    organization_id: uuid.UUID
    encounter_id: uuid.UUID
    patient_id: uuid.UUID
    author_id: uuid.UUID
    status: str
    fhir_status: str
    #: Concurrency token to send back with the next write.
    revision: int
    #: Latest signed version (0 while a draft).
    version: int
    signed_at: datetime | None
    signed_by_id: uuid.UUID | None
    signed_by_name: str = ""
    #: Who signed the current version, and when (the first signing or the latest amendment).
    version_author_id: uuid.UUID | None = None
    version_author_name: str = ""
    version_signed_at: datetime | None = None
    subjective: str
    objective: str
    assessment: str
    plan: str
    text: str
    diagnoses: list[DiagnosisOut]
    content_sha256: str | None
    amendment_reason: str
    #: Last change of any kind (draft save, signing, amendment).
    updated_at: datetime | None = None


class VersionOut(Output):
    version: int
    author_id: uuid.UUID
    author_name: str = ""
    signed_at: datetime
    amendment_reason: str
    content_sha256: str
    previous_sha256: str
    subjective: str
    objective: str
    assessment: str
    plan: str
    text: str
    diagnoses: list[DiagnosisOut]


class HistoryOut(Output):
    note: NoteOut
    versions: list[VersionOut]


class NoteList(Output):
    items: list[NoteOut]


class Icd10Query(Input):
    q: str = Field(min_length=1, max_length=100, description="a code prefix (E11, j06.9) or description words")
    limit: int = Field(default=10, ge=1, le=50)


class Icd10Out(Output):
    code: str
    display: str


class Icd10List(Output):
    items: list[Icd10Out]


def _note_out(v: svc.NoteView, names: dict[uuid.UUID | None, str]) -> NoteOut:
    n = v.note
    return NoteOut(
        id=n.id, organization_id=n.organization_id, encounter_id=n.encounter_id, patient_id=n.patient_id,
        author_id=n.author_id, status=n.status.value, fhir_status=n.status.fhir, revision=n.revision,
        version=n.current_version, signed_at=n.signed_at, signed_by_id=n.signed_by_id,
        signed_by_name=names.get(n.signed_by_id, ""),
        version_author_id=v.version.author_id if v.version else None,
        version_author_name=names.get(v.version.author_id, "") if v.version else "",
        version_signed_at=v.version.signed_at if v.version else None,
        diagnoses=[DiagnosisOut(**d) for d in v.diagnoses],
        content_sha256=v.version.content_sha256 if v.version else None,
        amendment_reason=v.version.amendment_reason if v.version else "", updated_at=n.updated_at,
        **v.sections,
    )


def _version_out(v: NoteVersion, names: dict[uuid.UUID | None, str]) -> VersionOut:
    return VersionOut(version=v.version, author_id=v.author_id, author_name=names.get(v.author_id, ""),
                      signed_at=v.signed_at, amendment_reason=v.amendment_reason, content_sha256=v.content_sha256,
                      previous_sha256=v.previous_sha256, diagnoses=[DiagnosisOut(**d)
                                                                    for d in svc.version_diagnoses(v)],
                      **svc.version_sections(v))


async def note_out(uow: UnitOfWork, v: svc.NoteView) -> NoteOut:
    """A note as the API shows it, with the names of those who signed it (also rendered into the visit page)."""
    return _note_out(v, await display_names(uow, svc.people(v)))


@router.route("GET", "/encounters/{id}/note", response=NoteOut, tags=T)
async def get_note(ctx: ApiContext) -> NoteOut:
    """The visit's note: the draft for its clinicians, the latest signed version for the patient."""
    return await note_out(ctx.uow, await svc.get_for_encounter(ctx.uow, ctx.principal, ctx.path_uuid()))


@router.route("PUT", "/encounters/{id}/note", body=DraftIn, response=NoteOut, tags=T)
async def save_draft(ctx: ApiContext) -> NoteOut:
    """Autosave the draft (whole content); send the last revision seen, 0 to create. 409 when stale or signed."""
    v = await svc.save_draft(ctx.uow, ctx.principal, ctx.path_uuid(), ctx.body.revision, ctx.body.content())
    return await note_out(ctx.uow, v)


@router.route("POST", "/notes/{id}/sign", body=SignIn, response=NoteOut, tags=T)
async def sign_note(ctx: ApiContext) -> NoteOut:
    """Sign the draft revision the clinician reviewed; it becomes immutable version 1."""
    return await note_out(ctx.uow, await svc.sign(ctx.uow, ctx.principal, ctx.path_uuid(), ctx.body.revision))


@router.route("POST", "/notes/{id}/amendments", body=AmendmentIn, response=NoteOut, status=201, tags=T)
async def amend_note(ctx: ApiContext) -> NoteOut:
    """Amend a signed note: the full corrected content becomes a new version; earlier versions are kept."""
    b = ctx.body
    v = await svc.amend(ctx.uow, ctx.principal, ctx.path_uuid(), b.revision, b.reason, b.content())
    return await note_out(ctx.uow, v)


@router.route("GET", "/notes/{id}/history", response=HistoryOut, tags=T)
async def note_history(ctx: ApiContext) -> HistoryOut:
    """Every signed version, oldest first, with amendment reasons, signers and content hashes."""
    v = await svc.history(ctx.uow, ctx.principal, ctx.path_uuid())
    names = await display_names(ctx.uow, svc.people(v))
    return HistoryOut(note=_note_out(v, names), versions=[_version_out(x, names) for x in v.history])


@router.route("GET", "/patients/{id}/notes", response=NoteList, tags=T)
async def patient_notes(ctx: ApiContext) -> NoteList:
    """A patient's notes, newest first (signed ones only for the patient)."""
    views = await svc.list_for_patient(ctx.uow, ctx.principal, ctx.path_uuid())
    names = await display_names(ctx.uow, set().union(*(svc.people(v) for v in views)))
    return NoteList(items=[_note_out(v, names) for v in views])


@router.route("GET", "/icd10", query=Icd10Query, response=Icd10List, tags=T)
async def search_icd10(ctx: ApiContext) -> Icd10List:
    """Search ICD-10-CM billable codes by code prefix or description words (the note's diagnosis field)."""
    hits = svc.search_codes(ctx.principal, ctx.query.q, ctx.query.limit)
    return Icd10List(items=[Icd10Out(code=h.code, display=h.display) for h in hits])


# --- documents -----------------------------------------------------------------------------------------------


class DocumentQuery(Input):
    lang: Literal["ko", "en"] | None = None


class CertificateQuery(DocumentQuery):
    kind: Literal["certificate", "opinion"] = "certificate"
    purpose: str = Field(default="", max_length=200)
    opinion: str | None = Field(default=None, max_length=5000)
    period_start: date | None = None
    period_end: date | None = None
    onset_on: date | None = None


def _pdf(ctx: ApiContext, doc: docs.RenderedDocument) -> web.Response:
    return web.Response(body=doc.pdf, content_type="application/pdf",
                        headers={"Content-Disposition": f'inline; filename="{doc.filename}"',
                                 "Cache-Control": "no-store"})


def _locale(ctx: ApiContext) -> str:
    return str(ctx.query.lang or ctx.request.get("locale") or i18n.get_locale())


@router.route("GET", "/encounters/{id}/documents/visit-summary.pdf", query=DocumentQuery, tags=TD,
              raw_response="application/pdf")
async def visit_summary_pdf(ctx: ApiContext) -> web.Response:
    """Visit summary (signed note content, diagnoses, prescriptions) as PDF."""
    doc = await docs.visit_summary(ctx.uow, ctx.principal, ctx.path_uuid(), locale=_locale(ctx))
    return _pdf(ctx, doc)


@router.route("GET", "/encounters/{id}/documents/medical-certificate.pdf", query=CertificateQuery, tags=TD,
              raw_response="application/pdf")
async def medical_certificate_pdf(ctx: ApiContext) -> web.Response:
    """Medical certificate or opinion from the signed note; opinion and period are the examining clinician's."""
    q = ctx.query
    req = docs.CertificateRequest(purpose=q.purpose, opinion=q.opinion, period_start=q.period_start,
                                  period_end=q.period_end, onset_on=q.onset_on, kind=q.kind)
    doc = await docs.medical_certificate(ctx.uow, ctx.principal, ctx.path_uuid(), req, locale=_locale(ctx))
    return _pdf(ctx, doc)
