"""Consultation notes (FHIR Composition): autosaved drafts, signing, amendments as new versions.

* A draft is saved whole (``PUT``) with the ``revision`` the client last saw; a stale revision is a 409,
  so two tabs never silently overwrite each other.
* Only the clinician who holds the encounter (``Encounter.claimed_by_id``) writes and signs its note:
  the note is that clinician's record of their consultation (KR Medical Service Act Art. 22(1): the
  clinician "records and signs").
* Signing freezes the content into :class:`NoteVersion` 1. Every later change is an amendment that
  inserts version N+1 with a reason; earlier versions are never updated (Art. 22(2)-(3)).
* Patients read signed content only; drafts are the clinician's work in progress.
* Every read and write is audited in the caller's transaction.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm.exc import StaleDataError

from clinic import icd10
from clinic.db.base import new_id, utcnow
from clinic.db.clinical import Patient
from clinic.db.encounters import Encounter
from clinic.db.notes import ClinicalNote, NoteDiagnosis, NoteStatus, NoteVersion
from clinic.db.uow import UnitOfWork
from clinic.encounters.state import EncounterStatus
from clinic.errors import Conflict, Forbidden, Invalid, NotFound, Unauthenticated
from clinic.security.authz import Principal, Resource, allowed, authorize, orgs_for

SECTIONS = ("subjective", "objective", "assessment", "plan", "text")
MAX_DIAGNOSES = 20


@dataclass(frozen=True)
class DiagnosisInput:
    code: str
    primary: bool | None = None


@dataclass(frozen=True)
class NoteContent:
    subjective: str = ""
    objective: str = ""
    assessment: str = ""
    plan: str = ""
    text: str = ""
    diagnoses: tuple[DiagnosisInput, ...] = ()

    def sections(self) -> dict[str, str]:
        return {s: getattr(self, s) for s in SECTIONS}


@dataclass
class NoteView:
    """What a caller may see of a note: the draft (clinicians of the organization) or the latest version."""

    note: ClinicalNote
    sections: dict[str, str]
    diagnoses: list[dict[str, Any]]
    version: NoteVersion | None = None
    history: list[NoteVersion] = field(default_factory=list)

    @property
    def is_draft(self) -> bool:
        return self.note.status is NoteStatus.DRAFT


# --- pure helpers ----------------------------------------------------------------------------------------------


def validate_diagnoses(items: Sequence[DiagnosisInput]) -> list[dict[str, Any]]:
    """Resolve ICD-10-CM codes (stored dotted, with the release's display) and settle the primary one.

    Errors name the offending field (``diagnoses.1.code``) so the form can mark it.
    """
    if len(items) > MAX_DIAGNOSES:
        raise Invalid("too many diagnoses", fields={"diagnoses": f"at most {MAX_DIAGNOSES}"})
    errors: dict[str, str] = {}
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    for i, d in enumerate(items):
        hit = icd10.lookup(d.code)
        if hit is None:
            errors[f"diagnoses.{i}.code"] = "not a billable ICD-10-CM code"
            continue
        if hit.code in seen:
            errors[f"diagnoses.{i}.code"] = "listed twice"
            continue
        seen.add(hit.code)
        out.append({"code": hit.code, "display": hit.display, "primary": bool(d.primary)})
    if errors:
        raise Invalid("invalid diagnosis code", code="invalid_diagnosis", fields=errors)
    primaries = sum(1 for d in out if d["primary"])
    if primaries > 1:
        raise Invalid("only one primary diagnosis", fields={"diagnoses": "mark at most one as primary"})
    if out and primaries == 0:
        out[0]["primary"] = True  # the first listed is the main one unless the clinician says otherwise
    # Primary first, then in the clinician's order: the order documents (and FHIR Condition ranks) use.
    return sorted(out, key=lambda d: not d["primary"])


def content_hash(*, note_id: uuid.UUID, version: int, encounter_id: uuid.UUID, patient_id: uuid.UUID,
                 author_id: uuid.UUID, signed_at: datetime, reason: str, sections: dict[str, str],
                 diagnoses: Sequence[dict[str, Any]], previous: str) -> str:
    """SHA-256 over a canonical JSON of everything a version asserts, chained to the previous version."""
    body = {
        "note_id": str(note_id), "version": version, "encounter_id": str(encounter_id),
        "patient_id": str(patient_id), "author_id": str(author_id), "signed_at": signed_at.isoformat(),
        "reason": reason, "sections": {s: sections.get(s, "") for s in SECTIONS},
        "diagnoses": [{"code": d["code"], "display": d["display"], "primary": bool(d["primary"])}
                      for d in diagnoses],
        "previous": previous,
    }
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def version_diagnoses(v: NoteVersion) -> list[dict[str, Any]]:
    return [{"code": d.code, "display": d.display, "primary": d.primary} for d in v.diagnoses]


def version_sections(v: NoteVersion) -> dict[str, str]:
    return {s: getattr(v, s) for s in SECTIONS}


def verify_version(note: ClinicalNote, v: NoteVersion) -> bool:
    """Recompute a stored version's hash from its rows: False means it was changed after signing."""
    return v.content_sha256 == content_hash(
        note_id=note.id, version=v.version, encounter_id=note.encounter_id, patient_id=note.patient_id,
        author_id=v.author_id, signed_at=v.signed_at, reason=v.amendment_reason, sections=version_sections(v),
        diagnoses=version_diagnoses(v), previous=v.previous_sha256)


def latest_version(note: ClinicalNote) -> NoteVersion | None:
    return max(note.versions, key=lambda v: v.version) if note.versions else None


def note_resource(note: ClinicalNote) -> Resource:
    return Resource("ClinicalNote", organization_id=note.organization_id, id=note.id, patient_id=note.patient_id)


def _encounter_resource(e: Encounter) -> Resource:
    return Resource("Encounter", organization_id=e.organization_id, id=e.id, patient_id=e.patient_id)


def sees_drafts(principal: Principal, note_or_encounter: ClinicalNote | Encounter) -> bool:
    """Drafts are visible to those who may write notes in the organization (its clinicians), not patients."""
    res = (note_resource(note_or_encounter) if isinstance(note_or_encounter, ClinicalNote)
           else _encounter_resource(note_or_encounter))
    return allowed(principal, "note.write", res)


def _audit(uow: UnitOfWork, principal: Principal, action: str, note: ClinicalNote, **detail: Any) -> None:
    uow.audit.record(principal, action, object_type="Composition", object_id=note.id,
                     organization_id=note.organization_id, patient_id=note.patient_id,
                     detail={"encounter_id": str(note.encounter_id), **detail})


def _require_holder(principal: Principal, e: Encounter, *also: uuid.UUID | None) -> None:
    if principal.kind == "system":
        return
    if principal.user_id is None or principal.user_id not in {e.claimed_by_id, *also} - {None}:
        raise Forbidden("only the clinician who holds this visit may write its note", code="not_note_author")


_WRITABLE = {EncounterStatus.IN_CONSULT, EncounterStatus.COMPLETED, EncounterStatus.ABANDONED}


def _require_consulted(e: Encounter) -> None:
    # An abandoned visit may have been a dropped call (documentable) or a patient who left the waiting
    # room (nothing to document): only the former was ever admitted.
    if e.status not in _WRITABLE or (e.status is EncounterStatus.ABANDONED and e.admitted_at is None
                                     and e.started_at is None):
        raise Conflict(f"no consultation took place (visit is {e.status.value})", code="encounter_not_started")


def _stale(note: ClinicalNote) -> Conflict:
    return Conflict("the note was changed elsewhere; reload it", code="stale_revision",
                    fields={"revision": f"current revision is {note.revision}"})


async def _flush(uow: UnitOfWork, note: ClinicalNote) -> None:
    try:
        await uow.session.flush()
    except StaleDataError:
        # Another transaction bumped the revision between our read and our write.
        raise Conflict("the note was changed elsewhere; reload it", code="stale_revision") from None


# --- loading -----------------------------------------------------------------------------------------------------


async def _load_encounter(uow: UnitOfWork, principal: Principal, encounter_id: uuid.UUID, action: str) -> Encounter:
    e = await uow.session.get(Encounter, encounter_id)
    if e is None:
        raise NotFound("encounter not found")
    authorize(principal, action, _encounter_resource(e))
    return e


async def note_for_encounter(uow: UnitOfWork, encounter_id: uuid.UUID, *, lock: bool = False) -> ClinicalNote | None:
    q = select(ClinicalNote).where(ClinicalNote.encounter_id == encounter_id)
    if lock:
        q = q.with_for_update()
    return (await uow.session.execute(q)).scalar_one_or_none()


async def load_note(uow: UnitOfWork, principal: Principal, note_id: uuid.UUID, action: str = "note.read",
                    *, lock: bool = False) -> ClinicalNote:
    q = select(ClinicalNote).where(ClinicalNote.id == note_id)
    if lock:
        q = q.with_for_update()
    note = (await uow.session.execute(q)).scalar_one_or_none()
    if note is None:
        raise NotFound("note not found")
    authorize(principal, action, note_resource(note))
    if note.status is NoteStatus.DRAFT and not sees_drafts(principal, note):
        raise NotFound("note not found")  # a patient must not even learn that a draft exists
    return note


def view(principal: Principal, note: ClinicalNote) -> NoteView:
    v = latest_version(note)
    if v is None:
        return NoteView(note, {s: getattr(note, s) for s in SECTIONS}, list(note.draft_diagnoses))
    return NoteView(note, version_sections(v), version_diagnoses(v), v)


# --- reads ---------------------------------------------------------------------------------------------------------


async def get_for_encounter(uow: UnitOfWork, principal: Principal, encounter_id: uuid.UUID) -> NoteView:
    e = await _load_encounter(uow, principal, encounter_id, "note.read")
    note = await note_for_encounter(uow, e.id)
    if note is None or (note.status is NoteStatus.DRAFT and not sees_drafts(principal, e)):
        raise NotFound("note not found")
    _audit(uow, principal, "note.read", note, version=note.current_version)
    return view(principal, note)


async def history(uow: UnitOfWork, principal: Principal, note_id: uuid.UUID) -> NoteView:
    note = await load_note(uow, principal, note_id)
    _audit(uow, principal, "note.history", note, versions=len(note.versions))
    out = view(principal, note)
    out.history = sorted(note.versions, key=lambda v: v.version)
    return out


async def list_for_patient(uow: UnitOfWork, principal: Principal, patient_id: uuid.UUID) -> list[NoteView]:
    p = await uow.session.get(Patient, patient_id)
    if p is None or p.erased_at is not None:
        raise NotFound("patient not found")
    res = Resource("Patient", organization_id=p.organization_id, id=p.id, patient_id=p.id)
    authorize(principal, "note.read", res)
    q = select(ClinicalNote).where(ClinicalNote.patient_id == p.id)
    if not allowed(principal, "note.write", res):
        q = q.where(ClinicalNote.status != NoteStatus.DRAFT)
    notes = (await uow.session.execute(q.order_by(ClinicalNote.created_at.desc()))).scalars().all()
    uow.audit.record(principal, "note.list", object_type="Composition", organization_id=p.organization_id,
                     patient_id=p.id, detail={"count": len(notes)})
    return [view(principal, n) for n in notes]


def people(v: NoteView) -> set[uuid.UUID]:
    """The users a view names: the note's author and signer and every version's author."""
    n = v.note
    return {n.author_id, *([n.signed_by_id] if n.signed_by_id else []), *(x.author_id for x in n.versions)}


def search_codes(principal: Principal, query: str, limit: int) -> list[icd10.IcdCode]:
    """ICD-10-CM look-up for the diagnosis field. The code list is public reference data, offered to those
    who write notes (clinicians of some organization), not to every account."""
    if not principal.authenticated:
        raise Unauthenticated("sign in required")
    if principal.kind != "system" and not orgs_for(principal, "note.write"):
        raise Forbidden("only clinicians look up diagnosis codes", action="note.write")
    return icd10.search(query, limit)


# --- writes --------------------------------------------------------------------------------------------------------


async def save_draft(uow: UnitOfWork, principal: Principal, encounter_id: uuid.UUID, revision: int,
                     content: NoteContent) -> NoteView:
    """Autosave: create (``revision`` 0) or replace the draft; refuses stale revisions and signed notes."""
    e = await _load_encounter(uow, principal, encounter_id, "note.write")
    _require_holder(principal, e)
    _require_consulted(e)
    diagnoses = validate_diagnoses(content.diagnoses)
    note = await note_for_encounter(uow, e.id, lock=True)
    if note is None:
        if revision != 0:
            raise Conflict("the note does not exist yet; save with revision 0", code="stale_revision",
                           fields={"revision": "current revision is 0"})
        assert principal.user_id is not None or principal.kind == "system"
        note = ClinicalNote(organization_id=e.organization_id, encounter_id=e.id, patient_id=e.patient_id,
                            author_id=principal.user_id or e.claimed_by_id, draft_diagnoses=diagnoses,
                            **content.sections())
        uow.add(note)
        try:
            await uow.session.flush()
        except IntegrityError:
            # The other tab created it first (UNIQUE encounter_id); the client must reload.
            raise Conflict("the note was created elsewhere; reload it", code="stale_revision") from None
        await uow.session.refresh(note, ["versions"])
        _audit(uow, principal, "note.create", note, revision=note.revision)
        return view(principal, note)
    if note.status is not NoteStatus.DRAFT:
        raise Conflict("the note is signed; changes are amendments", code="note_signed")
    if note.revision != revision:
        raise _stale(note)
    for k, v in content.sections().items():
        setattr(note, k, v)
    note.draft_diagnoses = diagnoses
    await _flush(uow, note)
    _audit(uow, principal, "note.draft_save", note, revision=note.revision)
    return view(principal, note)


def _new_version(note: ClinicalNote, *, number: int, author_id: uuid.UUID, sections: dict[str, str],
                 diagnoses: list[dict[str, Any]], reason: str, previous: str) -> NoteVersion:
    now = utcnow()
    digest = content_hash(note_id=note.id, version=number, encounter_id=note.encounter_id,
                          patient_id=note.patient_id, author_id=author_id, signed_at=now, reason=reason,
                          sections=sections, diagnoses=diagnoses, previous=previous)
    v = NoteVersion(id=new_id(), note_id=note.id, version=number, author_id=author_id, signed_at=now,
                    amendment_reason=reason, content_sha256=digest, previous_sha256=previous, **sections)
    for i, d in enumerate(diagnoses):
        v.diagnoses.append(NoteDiagnosis(position=i, code=d["code"], display=d["display"], primary=d["primary"]))
    return v


def _signer(principal: Principal, e: Encounter) -> uuid.UUID:
    signer = principal.user_id or e.claimed_by_id
    if signer is None:
        raise Forbidden("a note is signed by a clinician", code="not_note_author")
    return signer


async def sign(uow: UnitOfWork, principal: Principal, note_id: uuid.UUID, revision: int) -> NoteView:
    """Sign exactly the draft revision the clinician saw; it becomes immutable version 1."""
    note = await load_note(uow, principal, note_id, "note.write", lock=True)
    e = await uow.session.get(Encounter, note.encounter_id)
    assert e is not None
    _require_holder(principal, e)
    _require_consulted(e)
    if note.status is not NoteStatus.DRAFT:
        raise Conflict("the note is already signed", code="note_signed")
    if note.revision != revision:
        raise _stale(note)
    diagnoses = list(note.draft_diagnoses)
    if not diagnoses:
        # Enforcement Rule of the Medical Service Act Art. 14(1): the record states the diagnosis.
        raise Invalid("a signed note needs a diagnosis", code="diagnosis_required",
                      fields={"diagnoses": "add at least one ICD-10 code"})
    signer = _signer(principal, e)
    sections = {s: getattr(note, s) for s in SECTIONS}
    v = _new_version(note, number=1, author_id=signer, sections=sections, diagnoses=diagnoses, reason="",
                     previous="")
    note.versions.append(v)
    note.status = NoteStatus.SIGNED
    note.current_version = 1
    note.signed_at = v.signed_at
    note.signed_by_id = signer
    for s in SECTIONS:  # the signed content now lives only in the immutable version
        setattr(note, s, "")
    note.draft_diagnoses = []
    await _flush(uow, note)
    _audit(uow, principal, "note.sign", note, version=1, sha256=v.content_sha256)
    return view(principal, note)


async def amend(uow: UnitOfWork, principal: Principal, note_id: uuid.UUID, revision: int, reason: str,
                content: NoteContent) -> NoteView:
    """Record a corrected full content as the next version; every earlier version stays as it was."""
    note = await load_note(uow, principal, note_id, "note.write", lock=True)
    e = await uow.session.get(Encounter, note.encounter_id)
    assert e is not None
    _require_holder(principal, e, note.author_id, note.signed_by_id)
    if note.status is NoteStatus.DRAFT:
        raise Conflict("the note is not signed yet; edit the draft instead", code="note_not_signed")
    if note.revision != revision:
        raise _stale(note)
    if not reason.strip():
        raise Invalid("an amendment needs a reason", fields={"reason": "required"})
    diagnoses = validate_diagnoses(content.diagnoses)
    if not diagnoses:
        raise Invalid("a signed note needs a diagnosis", code="diagnosis_required",
                      fields={"diagnoses": "add at least one ICD-10 code"})
    prev = latest_version(note)
    assert prev is not None
    sections = content.sections()
    if sections == version_sections(prev) and diagnoses == version_diagnoses(prev):
        raise Invalid("the amendment changes nothing", code="no_change")
    number = prev.version + 1
    v = _new_version(note, number=number, author_id=_signer(principal, e), sections=sections,
                     diagnoses=diagnoses, reason=reason.strip(), previous=prev.content_sha256)
    note.versions.append(v)
    note.status = NoteStatus.AMENDED
    note.current_version = number
    await _flush(uow, note)
    _audit(uow, principal, "note.amend", note, version=number, sha256=v.content_sha256, reason=reason.strip())
    return view(principal, note)
