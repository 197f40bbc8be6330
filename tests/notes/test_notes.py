"""Consultation notes: autosave with optimistic concurrency, signing, amendments as versions, visibility."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import select

from clinic.db.models import AuditEvent
from clinic.db.notes import ClinicalNote, ImmutableRecordError, NoteDiagnosis, NoteVersion
from clinic.encounters.state import EncounterStatus
from clinic.services import notes as svc
from tests.conftest import Db
from tests.notes.conftest import DRAFT, as_user, make_encounter
from tests.world import World


def _note_url(eid: uuid.UUID) -> str:
    return f"/api/v1/encounters/{eid}/note"


async def _snapshot(db: Db, note_id: str, version: int) -> dict[str, Any]:
    """Every stored column of one version and its diagnoses, read with Core (no ORM identity map involved)."""
    vt, dt = NoteVersion.__table__, NoteDiagnosis.__table__
    async with db.uow() as uow:
        row = dict((await uow.session.execute(select(vt).where(
            vt.c.note_id == uuid.UUID(note_id), vt.c.version == version))).mappings().one())
        dx = [dict(r) for r in (await uow.session.execute(
            select(dt).where(dt.c.version_id == row["id"]).order_by(dt.c.position))).mappings()]
        note = await uow.session.get(ClinicalNote, uuid.UUID(note_id))
        v = await uow.session.get(NoteVersion, row["id"])
        assert note is not None and v is not None
        return {"row": row, "diagnoses": dx, "verifies": svc.verify_version(note, v)}


async def test_draft_autosave_and_stale_revision(client: TestClient, world: World, db: Db) -> None:
    eid = await make_encounter(db, world)
    doc = await as_user(client, world.a.users["clinician"])
    status, n = await doc.get(_note_url(eid))
    assert status == 404
    status, n = await doc.put(_note_url(eid), {"revision": 0, **DRAFT})
    assert status == 200, n
    assert n["status"] == "draft" and n["fhir_status"] == "preliminary" and n["version"] == 0
    assert n["diagnoses"] == [{"code": "I10", "display": "Essential (primary) hypertension", "primary": True}]
    first = n["revision"]
    status, n = await doc.put(_note_url(eid), {"revision": first, **DRAFT, "plan": "tab A"})
    assert status == 200 and n["revision"] == first + 1 and n["plan"] == "tab A"
    # The second tab still holds the first revision: refused, nothing overwritten.
    status, err = await doc.put(_note_url(eid), {"revision": first, **DRAFT, "plan": "tab B"})
    assert status == 409 and err["error"]["code"] == "stale_revision"
    assert "revision" in err["error"]["fields"]
    status, err = await doc.put(_note_url(eid), {"revision": 0, **DRAFT})
    assert status == 409 and err["error"]["code"] == "stale_revision"
    status, n = await doc.get(_note_url(eid))
    assert status == 200 and n["plan"] == "tab A" and n["revision"] == first + 1


async def test_only_the_clinician_holding_the_visit_writes(client: TestClient, world: World, db: Db) -> None:
    eid = await make_encounter(db, world)
    other = await as_user(client, world.a.users["clinician2"])
    status, err = await other.put(_note_url(eid), {"revision": 0, **DRAFT})
    assert status == 403 and err["error"]["code"] == "not_note_author"
    booked = await make_encounter(db, world, status=EncounterStatus.BOOKED)
    doc = await as_user(client, world.a.users["clinician"])
    status, err = await doc.put(_note_url(booked), {"revision": 0, **DRAFT})
    assert status == 409 and err["error"]["code"] == "encounter_not_started"
    status, err = await (await as_user(client, world.a.users["patient"])).put(_note_url(eid), {"revision": 0, **DRAFT})
    assert status in (403, 404)


async def test_invalid_icd10_code_is_422_with_the_field(client: TestClient, world: World, db: Db) -> None:
    eid = await make_encounter(db, world)
    doc = await as_user(client, world.a.users["clinician"])
    body = {"revision": 0, **DRAFT, "diagnoses": [{"code": "I10"}, {"code": "X99.999"}]}
    status, err = await doc.put(_note_url(eid), body)
    assert status == 422 and err["error"]["fields"] == {"diagnoses.1.code": "not a billable ICD-10-CM code"}
    status, err = await doc.put(_note_url(eid), {"revision": 0, **DRAFT,
                                                 "diagnoses": [{"code": "I10", "primary": True},
                                                               {"code": "e11.9", "primary": True}]})
    assert status == 422 and "diagnoses" in err["error"]["fields"]
    status, n = await doc.put(_note_url(eid), {"revision": 0, **DRAFT,
                                               "diagnoses": [{"code": "I10"}, {"code": "e119", "primary": True}]})
    assert status == 200
    assert [(d["code"], d["primary"]) for d in n["diagnoses"]] == [("E11.9", True), ("I10", False)]


async def test_sign_locks_and_amendment_adds_a_version(client: TestClient, world: World, db: Db) -> None:
    eid = await make_encounter(db, world, status=EncounterStatus.COMPLETED)
    doc = await as_user(client, world.a.users["clinician"])
    _, n = await doc.put(_note_url(eid), {"revision": 0, **DRAFT, "diagnoses": []})
    nid = n["id"]
    status, err = await doc.post(f"/api/v1/notes/{nid}/sign", {"revision": n["revision"]})
    assert status == 422 and err["error"]["code"] == "diagnosis_required"
    _, n = await doc.put(_note_url(eid), {"revision": n["revision"], **DRAFT})
    status, err = await doc.post(f"/api/v1/notes/{nid}/sign", {"revision": n["revision"] - 1})
    assert status == 409 and err["error"]["code"] == "stale_revision"
    status, signed = await doc.post(f"/api/v1/notes/{nid}/sign", {"revision": n["revision"]})
    assert status == 200, signed
    assert signed["status"] == "signed" and signed["fhir_status"] == "final" and signed["version"] == 1
    assert signed["assessment"] == DRAFT["assessment"] and len(signed["content_sha256"]) == 64

    # Locked: the draft route refuses, signing again refuses.
    status, err = await doc.put(_note_url(eid), {"revision": signed["revision"], **DRAFT, "plan": "changed"})
    assert status == 409 and err["error"]["code"] == "note_signed"
    status, err = await doc.post(f"/api/v1/notes/{nid}/sign", {"revision": signed["revision"]})
    assert status == 409 and err["error"]["code"] == "note_signed"

    before = await _snapshot(db, nid, 1)
    assert before["verifies"]
    amendment = {**DRAFT, "plan": "암로디핀 10mg으로 증량", "diagnoses": [{"code": "I10"}, {"code": "R51.9"}],
                 "reason": "용량 기재 오류 정정", "revision": signed["revision"]}
    status, err = await doc.post(f"/api/v1/notes/{nid}/amendments", {**amendment, "reason": ""})
    assert status == 422
    status, amended = await doc.post(f"/api/v1/notes/{nid}/amendments", amendment)
    assert status == 201, amended
    assert amended["status"] == "amended" and amended["version"] == 2 and amended["plan"] == "암로디핀 10mg으로 증량"
    assert amended["amendment_reason"] == "용량 기재 오류 정정"
    # A second tab amending from the old revision is refused rather than stacking a blind version.
    status, err = await doc.post(f"/api/v1/notes/{nid}/amendments", amendment)
    assert status == 409 and err["error"]["code"] == "stale_revision"
    status, err = await doc.post(f"/api/v1/notes/{nid}/amendments",
                                 {**amendment, "revision": amended["revision"], "plan": amended["plan"]})
    assert status == 422 and err["error"]["code"] == "no_change"

    after = await _snapshot(db, nid, 1)
    assert after == before  # version 1: every column and diagnosis row exactly as signed
    v2 = await _snapshot(db, nid, 2)
    assert v2["verifies"] and v2["row"]["previous_sha256"] == before["row"]["content_sha256"]

    status, hist = await doc.get(f"/api/v1/notes/{nid}/history")
    assert status == 200
    assert [v["version"] for v in hist["versions"]] == [1, 2]
    assert hist["versions"][0]["plan"] == DRAFT["plan"] and hist["versions"][0]["amendment_reason"] == ""
    assert hist["versions"][0]["content_sha256"] == before["row"]["content_sha256"]
    assert hist["versions"][1]["amendment_reason"] == "용량 기재 오류 정정"
    assert [d["code"] for d in hist["versions"][1]["diagnoses"]] == ["I10", "R51.9"]

    # Another clinician of the clinic reads it but may not amend someone else's record.
    other = await as_user(client, world.a.users["clinician2"])
    status, _ = await other.get(f"/api/v1/notes/{nid}/history")
    assert status == 200
    status, err = await other.post(f"/api/v1/notes/{nid}/amendments", {**amendment, "revision": amended["revision"],
                                                                       "plan": "x"})
    assert status == 403 and err["error"]["code"] == "not_note_author"

    async with db.uow() as uow:
        actions = set((await uow.session.execute(
            select(AuditEvent.action).where(AuditEvent.object_id == nid))).scalars())
    assert {"note.create", "note.draft_save", "note.sign", "note.amend", "note.history"} <= actions


async def test_signed_versions_cannot_be_updated_through_the_orm(world: World, db: Db) -> None:
    from clinic.security.authz import SYSTEM

    eid = await make_encounter(db, world)
    async with db.uow() as uow:
        v = await svc.save_draft(uow, SYSTEM, eid, 0, svc.NoteContent(assessment="a",
                                                                       diagnoses=(svc.DiagnosisInput("I10"),)))
        v = await svc.sign(uow, SYSTEM, v.note.id, v.note.revision)
        await uow.commit()
    async with db.uow() as uow:
        row = (await uow.session.execute(select(NoteVersion).where(NoteVersion.note_id == v.note.id))).scalar_one()
        row.assessment = "rewritten history"
        with pytest.raises(ImmutableRecordError):
            await uow.session.flush()
    async with db.uow() as uow:
        row = (await uow.session.execute(select(NoteVersion).where(NoteVersion.note_id == v.note.id))).scalar_one()
        await uow.session.delete(row.diagnoses[0])
        with pytest.raises(ImmutableRecordError):
            await uow.session.flush()


async def test_patient_reads_signed_notes_only(client: TestClient, world: World, db: Db) -> None:
    eid = await make_encounter(db, world)
    doc = await as_user(client, world.a.users["clinician"])
    _, n = await doc.put(_note_url(eid), {"revision": 0, **DRAFT})
    nid = n["id"]

    pat = await as_user(client, world.a.users["patient"])
    for path in (_note_url(eid), f"/api/v1/notes/{nid}/history"):
        status, _ = await pat.get(path)
        assert status == 404, path  # not even the existence of a draft
    status, listed = await pat.get(f"/api/v1/patients/{world.a.patient.id}/notes")  # type: ignore[union-attr]
    assert status == 200 and listed["items"] == []

    doc = await as_user(client, world.a.users["clinician"])
    status, listed = await doc.get(f"/api/v1/patients/{world.a.patient.id}/notes")  # type: ignore[union-attr]
    assert status == 200 and [x["status"] for x in listed["items"]] == ["draft"]
    await doc.post(f"/api/v1/notes/{nid}/sign", {"revision": n["revision"]})

    pat = await as_user(client, world.a.users["patient"])
    status, seen = await pat.get(_note_url(eid))
    assert status == 200 and seen["status"] == "signed" and seen["assessment"] == DRAFT["assessment"]
    status, hist = await pat.get(f"/api/v1/notes/{nid}/history")
    assert status == 200 and len(hist["versions"]) == 1
    status, _ = await pat.put(_note_url(eid), {"revision": seen["revision"], **DRAFT})
    assert status in (403, 404)

    # The other patient of the same clinic sees nothing.
    other = await as_user(client, world.a.users["patient2"])
    status, _ = await other.get(_note_url(eid))
    assert status == 404


async def test_other_tenant_cannot_see_or_touch_notes(client: TestClient, world: World, db: Db) -> None:
    eid = await make_encounter(db, world)
    doc = await as_user(client, world.a.users["clinician"])
    _, n = await doc.put(_note_url(eid), {"revision": 0, **DRAFT})
    for role in ("clinician", "org_admin", "patient"):
        api = await as_user(client, world.b.users[role])
        for method, path, body in (("GET", _note_url(eid), None),
                                   ("PUT", _note_url(eid), {"revision": n["revision"], **DRAFT}),
                                   ("POST", f"/api/v1/notes/{n['id']}/sign", {"revision": n["revision"]}),
                                   ("GET", f"/api/v1/notes/{n['id']}/history", None)):
            status, body_out = await api.call(method, path, body)
            assert status == 404, (role, method, path, body_out)


async def test_concurrent_autosaves_from_the_same_revision_one_wins(world: World, db: Db) -> None:
    import asyncio

    from clinic.errors import Conflict
    from clinic.security.authz import SYSTEM

    eid = await make_encounter(db, world)
    async with db.uow() as uow:
        v = await svc.save_draft(uow, SYSTEM, eid, 0, svc.NoteContent(plan="start"))
        await uow.commit()
    rev = v.note.revision

    async def save(plan: str) -> str:
        async with db.uow() as uow:
            try:
                await svc.save_draft(uow, SYSTEM, eid, rev, svc.NoteContent(plan=plan))
                await uow.commit()
                return "ok"
            except Conflict as exc:
                return exc.code

    results = sorted(await asyncio.gather(save("tab A"), save("tab B")))
    assert results == ["ok", "stale_revision"]
    async with db.uow() as uow:
        note = await svc.note_for_encounter(uow, eid)
        assert note is not None and note.revision == rev + 1 and note.plan in ("tab A", "tab B")
