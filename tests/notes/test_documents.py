"""Visit summary and medical certificate PDFs: Korean text extractable, signed content only, access rules."""

from __future__ import annotations

import io
import uuid

from aiohttp.test_utils import TestClient
from pypdf import PdfReader
from sqlalchemy import select

from clinic.db.clinical import Patient
from clinic.db.models import AuditEvent
from clinic.encounters.state import EncounterStatus
from tests.conftest import Db
from tests.notes.conftest import DRAFT, as_user, make_encounter
from tests.world import World


def pdf_text(data: bytes) -> str:
    assert data.startswith(b"%PDF")
    return "\n".join(p.extract_text() for p in PdfReader(io.BytesIO(data)).pages)


async def _korean_patient(db: Db, world: World) -> None:
    async with db.uow() as uow:
        p = await uow.session.get(Patient, world.a.patient.id)  # type: ignore[union-attr]
        assert p is not None
        p.family_name, p.given_name = "김", "민지"
        await uow.commit()


async def _signed_visit(client: TestClient, world: World, db: Db, *, sign: bool = True) -> uuid.UUID:
    await _korean_patient(db, world)
    eid = await make_encounter(db, world, status=EncounterStatus.COMPLETED)
    doc = await as_user(client, world.a.users["clinician"])
    _, n = await doc.put(f"/api/v1/encounters/{eid}/note", {"revision": 0, **DRAFT})
    if sign:
        status, _ = await doc.post(f"/api/v1/notes/{n['id']}/sign", {"revision": n["revision"]})
        assert status == 200
    return eid


async def test_visit_summary_pdf_has_extractable_korean(client: TestClient, world: World, db: Db) -> None:
    eid = await _signed_visit(client, world, db)
    url = f"/api/v1/encounters/{eid}/documents/visit-summary.pdf?lang=ko"
    for role in ("patient", "clinician", "clinician2"):
        api = await as_user(client, world.a.users[role])
        r = await client.get(url, headers={"X-CSRF-Token": api.csrf})
        assert r.status == 200, (role, await r.text())
        assert r.content_type == "application/pdf"
        assert "visit-summary-" in r.headers["Content-Disposition"]
        text = pdf_text(await r.read())
        for expected in ("김", "민지", "I10", "진료 요약", "본태성 고혈압", "암로디핀 5mg"):
            assert expected in text, (expected, text)
    async with db.uow() as uow:
        details = list((await uow.session.execute(select(AuditEvent.detail).where(
            AuditEvent.action == "document.read", AuditEvent.object_id == str(eid)))).scalars())
    assert len(details) == 3 and all(d["kind"] == "visit-summary" and len(d["sha256"]) == 64 for d in details)


async def test_visit_summary_never_shows_a_draft(client: TestClient, world: World, db: Db) -> None:
    eid = await _signed_visit(client, world, db, sign=False)
    api = await as_user(client, world.a.users["patient"])
    status, pdf = await api.get(f"/api/v1/encounters/{eid}/documents/visit-summary.pdf?lang=ko")
    assert status == 200
    text = pdf_text(pdf)
    assert "김" in text and "두통" in text  # the visit itself (chief complaint)
    assert "본태성 고혈압" not in text and "I10" not in text


async def test_medical_certificate(client: TestClient, world: World, db: Db) -> None:
    eid = await _signed_visit(client, world, db, sign=False)
    base = f"/api/v1/encounters/{eid}/documents/medical-certificate.pdf"
    doc = await as_user(client, world.a.users["clinician"])
    status, err = await doc.get(base)
    assert status == 409 and err["error"]["code"] == "note_not_signed"
    _, n = await doc.get(f"/api/v1/encounters/{eid}/note")
    await doc.post(f"/api/v1/notes/{n['id']}/sign", {"revision": n["revision"]})

    status, pdf = await doc.get(base + "?lang=ko&purpose=회사 제출용&opinion=1주간 안정 가료를 요함"
                                "&period_start=2026-03-02&period_end=2026-03-08")
    assert status == 200
    text = pdf_text(pdf)
    for expected in ("진단서", "김", "민지", "I10", "회사 제출용", "1주간 안정 가료를 요함"):
        assert expected in text, (expected, text)
    status, err = await doc.get(base + "?period_start=2026-03-09&period_end=2026-03-08")
    assert status == 422

    # The patient may print it (opinion from the signed assessment) but not write the doctor's opinion.
    pat = await as_user(client, world.a.users["patient"])
    status, pdf = await pat.get(base + "?lang=ko&purpose=보험 청구용")
    assert status == 200
    text = pdf_text(pdf)
    assert "보험 청구용" in text and "본태성 고혈압" in text
    status, err = await pat.get(base + "?opinion=완치됨")
    assert status == 403 and err["error"]["code"] == "clinician_only" and "opinion" in err["error"]["fields"]
    other_doc = await as_user(client, world.a.users["clinician2"])
    status, _ = await other_doc.get(base + "?opinion=x")
    assert status == 403


async def test_documents_are_not_for_other_patients_or_tenants(client: TestClient, world: World, db: Db) -> None:
    eid = await _signed_visit(client, world, db)
    for tenant, role in (("a", "patient2"), ("a", "pharmacist"), ("a", "org_admin"), ("b", "clinician"),
                         ("b", "patient")):
        api = await as_user(client, world.user(tenant, role))
        for kind in ("visit-summary", "medical-certificate"):
            status, _ = await api.get(f"/api/v1/encounters/{eid}/documents/{kind}.pdf")
            assert status == 404, (tenant, role, kind)
