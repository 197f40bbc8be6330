"""Authorization-matrix cases for notes, visit documents, export/erasure and analytics (discovered by
``tests/authz_cases.py``). Tenant B gets a completed visit with a signed note."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from clinic.encounters.state import EncounterStatus
from clinic.security.authz import SYSTEM
from clinic.services import notes as svc
from tests.world import World

Case = Callable[[World], tuple[str, Any]]


def _b(w: World) -> Any:
    return w.b


def _enc(w: World) -> str:
    return f"/api/v1/encounters/{_b(w).notes_encounter_id}"


def _note(w: World) -> str:
    return f"/api/v1/notes/{_b(w).note_id}"


def _patient(w: World) -> str:
    return f"/api/v1/patients/{_b(w).patient.id}"


_CONTENT = {"assessment": "x", "diagnoses": [{"code": "I10"}]}

CASES: dict[tuple[str, str], tuple[Case, str]] = {
    ("GET", "/api/v1/encounters/{id}/note"): (lambda w: (_enc(w) + "/note", None), "object"),
    ("PUT", "/api/v1/encounters/{id}/note"): (lambda w: (_enc(w) + "/note", {"revision": 2, **_CONTENT}), "object"),
    ("POST", "/api/v1/notes/{id}/sign"): (lambda w: (_note(w) + "/sign", {"revision": 2}), "object"),
    ("POST", "/api/v1/notes/{id}/amendments"): (
        lambda w: (_note(w) + "/amendments", {"revision": 2, "reason": "evil", **_CONTENT}), "object"),
    ("GET", "/api/v1/notes/{id}/history"): (lambda w: (_note(w) + "/history", None), "object"),
    ("GET", "/api/v1/patients/{id}/notes"): (lambda w: (_patient(w) + "/notes", None), "object"),
    # Reference data (the ICD-10-CM code list) for clinicians: answers hold codes only, never tenant data.
    ("GET", "/api/v1/icd10"): (lambda w: ("/api/v1/icd10?q=hypertension&limit=5", None), "list"),
    ("GET", "/api/v1/encounters/{id}/documents/visit-summary.pdf"): (
        lambda w: (_enc(w) + "/documents/visit-summary.pdf", None), "object"),
    ("GET", "/api/v1/encounters/{id}/documents/medical-certificate.pdf"): (
        lambda w: (_enc(w) + "/documents/medical-certificate.pdf?purpose=x", None), "object"),
    ("GET", "/api/v1/patients/{id}/export"): (lambda w: (_patient(w) + "/export?format=fhir", None), "object"),
    ("POST", "/api/v1/patients/{id}/erasure-requests"): (
        lambda w: (_patient(w) + "/erasure-requests", {"confirm": True}), "object"),
    ("GET", "/api/v1/organizations/{org_id}/analytics"): (
        lambda w: (f"/api/v1/organizations/{w.b.clinic.id}/analytics?from=2030-01-01&to=2030-01-31", None),
        "object"),
}


async def prepare(world: World, db: Any) -> None:
    from tests.notes.conftest import make_encounter

    eid = await make_encounter(db, world, "b", status=EncounterStatus.COMPLETED)
    async with db.uow() as uow:
        draft = await svc.save_draft(uow, SYSTEM, eid, 0, svc.NoteContent(
            assessment="secret", diagnoses=(svc.DiagnosisInput("I10"),)))
        await svc.sign(uow, SYSTEM, draft.note.id, draft.note.revision)
        await uow.commit()
    b = _b(world)
    # Distinct attribute names: other feature packages set world.b.encounter_id for their own cases.
    b.notes_encounter_id, b.note_id = eid, draft.note.id
