"""The prescription journey through the HTTP API: prescriber → patient → pharmacy → courier."""

from __future__ import annotations

import base64
import time
from datetime import date, timedelta
from typing import Any

from aiohttp.test_utils import TestClient
from sqlalchemy import func, select, update

from clinic.db.base import utcnow
from clinic.db.clinical import AttributeKind, PatientAttribute
from clinic.db.models import AuditEvent, User
from clinic.security import totp
from clinic.security.secrets import SecretBox
from prescriptions.models import MedicationRequest
from tests.conftest import TEST_SECRET, Db
from tests.prescriptions.conftest import item, open_encounter
from tests.world import World, hdr, login, uid

PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\x00" * 64).decode()


async def as_user(client: TestClient, email: str) -> str:
    client.session.cookie_jar.clear()
    return await login(client, email)


async def prescribe_signed(client: TestClient, db: Db, world: World, *specs: dict[str, Any],
                           send: dict[str, Any] | None = None) -> dict[str, Any]:
    enc = await open_encounter(db, world)
    csrf = await as_user(client, world.a.users["clinician"].email)
    r = await client.post(f"/api/v1/encounters/{enc}/prescriptions", json={"items": list(specs or [item()])},
                          headers=hdr(csrf, Idempotency_Key=uid()))
    body = await r.json()
    assert r.status == 201, body
    r = await client.post(f"/api/v1/prescriptions/{body['id']}/sign", headers=hdr(csrf, Idempotency_Key=uid()))
    body = await r.json()
    assert r.status == 200 and body["status"] == "signed", body
    if send is not None:
        r = await client.post(f"/api/v1/prescriptions/{body['id']}/send", json=send,
                              headers=hdr(csrf, Idempotency_Key=uid()))
        body = await r.json()
        assert r.status == 200 and body["status"] == "sent", body
    return body


async def test_idempotent_create_and_field_errors(client: TestClient, db: Db, world: World) -> None:
    enc = await open_encounter(db, world)
    csrf = await as_user(client, world.a.users["clinician"].email)
    url = f"/api/v1/encounters/{enc}/prescriptions"
    key = uid()
    r1 = await client.post(url, json={"items": [item()]}, headers=hdr(csrf, Idempotency_Key=key))
    r2 = await client.post(url, json={"items": [item()]}, headers=hdr(csrf, Idempotency_Key=key))
    b1, b2 = await r1.json(), await r2.json()
    assert r1.status == r2.status == 201 and b1["id"] == b2["id"] and r2.headers.get("Idempotent-Replayed")
    async with db.uow() as uow:
        assert (await uow.session.execute(select(func.count(MedicationRequest.id)))).scalar_one() == 1
    r = await client.post(url, json={"items": [item(quantity="14")]}, headers=hdr(csrf))
    body = await r.json()
    assert r.status == 422 and "items.0.quantity" in body["error"]["fields"]
    r = await client.post(url, json={"items": [item(dose="-1", quantity="1")]}, headers=hdr(csrf))
    assert r.status == 422 and "items.0.dose" in (await r.json())["error"]["fields"]
    r = await client.post(url, json={"items": [item(code="unobtainium")]}, headers=hdr(csrf))
    assert r.status == 422 and "items.0.medication_code" in (await r.json())["error"]["fields"]
    r = await client.post(url, json={"items": [item(code="oxycodone-5mg-tab", freq="Q12H", days=3)]},
                          headers=hdr(csrf))
    body = await r.json()
    assert r.status == 403 and body["error"]["code"] == "policy_denied" and body["error"]["decision"]["reasons"]
    async with db.uow() as uow:
        assert (await uow.session.execute(select(func.count(MedicationRequest.id)))).scalar_one() == 1
    # wrong role: a pharmacist cannot prescribe
    csrf = await as_user(client, world.a.users["pharmacist"].email)
    r = await client.post(url, json={"items": [item()]}, headers=hdr(csrf))
    assert r.status in (403, 404)
    # signed prescriptions are immutable over HTTP too
    csrf = await as_user(client, world.a.users["clinician"].email)
    r = await client.post(f"/api/v1/prescriptions/{b1['id']}/sign", headers=hdr(csrf))
    assert r.status == 200
    r = await client.put(f"/api/v1/prescriptions/{b1['id']}", json={"items": [item(days=3)]}, headers=hdr(csrf))
    assert r.status == 409


async def test_nominated_pharmacy_flow(client: TestClient, db: Db, world: World) -> None:
    rx = await prescribe_signed(client, db, world, item(), item(code="ibuprofen-400mg-tab", freq="TID", days=3),
                                send={})
    rid = rx["id"]
    assert rx["pharmacy_id"] == str(world.a.pharmacy.id) and rx["routing"] == "nominated"
    # the other tenant's pharmacist cannot see it
    csrf_b = await as_user(client, world.b.users["pharmacist"].email)
    for path in (f"/api/v1/prescriptions/{rid}", f"/api/v1/prescriptions/{rid}/fhir"):
        assert (await client.get(path)).status == 404
    assert (await client.post(f"/api/v1/prescriptions/{rid}/accept", headers=hdr(csrf_b))).status == 404
    # the routed pharmacist sees it in the inbox, verifies, asks, rejects
    csrf = await as_user(client, world.a.users["pharmacist"].email)
    r = await client.get(f"/api/v1/pharmacies/{world.a.pharmacy.id}/inbox")
    assert [i["id"] for i in (await r.json())["items"]] == [rid]
    r = await client.get(f"/api/v1/prescriptions/{rid}/verify")
    assert (await r.json()) == {"ok": True, "reason": "signature valid"}
    r = await client.post(f"/api/v1/prescriptions/{rid}/queries", json={"question": "Penicillin history?"},
                          headers=hdr(csrf))
    assert r.status == 201
    r = await client.post(f"/api/v1/prescriptions/{rid}/reject", json={"reason": "out of stock"}, headers=hdr(csrf))
    assert r.status == 200 and (await r.json())["status"] == "rejected"
    assert (await client.get(f"/api/v1/prescriptions/{rid}")).status == 404
    # the prescriber answers the question
    csrf_doc = await as_user(client, world.a.users["clinician"].email)
    q = (await (await client.get("/api/v1/prescriber/queue")).json())["clarifications"]
    assert len(q) == 1 and q[0]["question"] == "Penicillin history?"
    r = await client.post(f"/api/v1/clarifications/{q[0]['id']}/answer", json={"answer": "none"},
                          headers=hdr(csrf_doc))
    assert r.status == 200
    # the patient finds another pharmacy and routes it there
    csrf_p = await as_user(client, world.a.users["patient"].email)
    r = await client.get("/api/v1/pharmacies?q=pharmacy b")
    found = (await r.json())["items"]
    assert [p["id"] for p in found] == [str(world.b.pharmacy.id)]
    r = await client.post(f"/api/v1/prescriptions/{rid}/send", json={"pharmacy_id": found[0]["id"]},
                          headers=hdr(csrf_p, Idempotency_Key=uid()))
    assert r.status == 200 and (await r.json())["pharmacy_id"] == str(world.b.pharmacy.id)
    # pharmacy B accepts and dispenses in two parts
    csrf_b = await as_user(client, world.b.users["pharmacist"].email)
    r = await client.post(f"/api/v1/prescriptions/{rid}/accept", headers=hdr(csrf_b, Idempotency_Key=uid()))
    assert r.status == 200 and (await r.json())["status"] == "accepted"
    full = await (await client.get(f"/api/v1/prescriptions/{rid}")).json()
    it0, it1 = full["items"]
    exp = (date.today() + timedelta(days=365)).isoformat()
    r = await client.post(f"/api/v1/prescriptions/{rid}/dispense", json={"lines": [
        {"item_id": it0["id"], "quantity": 10, "lot_number": "L1", "expiry": exp}]},
        headers=hdr(csrf_b, Idempotency_Key=uid()))
    assert r.status == 201
    assert (await (await client.get(f"/api/v1/prescriptions/{rid}")).json())["status"] == "dispensed_partial"
    r = await client.post(f"/api/v1/prescriptions/{rid}/dispense", json={"lines": [
        {"item_id": it0["id"], "quantity": 6, "lot_number": "L2", "expiry": exp}]}, headers=hdr(csrf_b))
    assert r.status == 422 and "lines.0.quantity" in (await r.json())["error"]["fields"]
    r = await client.post(f"/api/v1/prescriptions/{rid}/dispense", json={"lines": [
        {"item_id": it0["id"], "quantity": 5, "lot_number": "L2", "expiry": exp},
        {"item_id": it1["id"], "quantity": 9, "lot_number": "L3", "expiry": exp}]}, headers=hdr(csrf_b))
    assert r.status == 201
    r = await client.post(f"/api/v1/prescriptions/{rid}/ready", headers=hdr(csrf_b))
    body = await r.json()
    assert body["status"] == "dispensed" and body["fulfilment"] == "pickup" and len(body["dispenses"]) == 0
    full = await (await client.get(f"/api/v1/prescriptions/{rid}")).json()
    assert len(full["dispenses"]) == 3 and full["verification"]["ok"]
    # cancelling after dispensing is refused
    csrf_doc = await as_user(client, world.a.users["clinician"].email)
    r = await client.post(f"/api/v1/prescriptions/{rid}/cancel", json={"reason": "x"}, headers=hdr(csrf_doc))
    assert r.status == 409
    async with db.uow() as uow:
        reads = (await uow.session.execute(select(func.count(AuditEvent.seq))
                                           .where(AuditEvent.action == "prescription.read"))).scalar_one()
        assert reads >= 4


async def test_token_qr_and_open_claim_over_http(client: TestClient, db: Db, world: World) -> None:
    rx = await prescribe_signed(client, db, world, send={"open": True})
    assert rx["pharmacy_id"] is None and rx["routing"] == "open"
    # only patient or prescriber get a token
    csrf = await as_user(client, world.a.users["pharmacist"].email)
    assert (await client.post(f"/api/v1/prescriptions/{rx['id']}/token", headers=hdr(csrf))).status == 404
    csrf = await as_user(client, world.a.users["patient"].email)
    r = await client.post(f"/api/v1/prescriptions/{rx['id']}/token", headers=hdr(csrf))
    tok = await r.json()
    assert r.status == 200 and tok["token"] == f"Task/{rx['rx_number']}/$accept?ac={tok['access_code']}"
    assert tok["qr_svg"].startswith("<svg")
    async with db.uow() as uow:
        row = await uow.session.get(MedicationRequest, __import__("uuid").UUID(rx["id"]))
        assert row is not None and tok["access_code"] not in (row.access_code_hash or "")
    csrf = await as_user(client, world.b.users["pharmacist"].email)
    r = await client.post("/api/v1/prescriptions/claim", json={"token": tok["token"][:-2] + "00"}, headers=hdr(csrf))
    assert r.status == 404
    r = await client.post("/api/v1/prescriptions/claim", json={"rx_number": "160.1", "access_code": "ab"},
                          headers=hdr(csrf))
    assert r.status == 422 and "rx_number" in (await r.json())["error"]["fields"]
    r = await client.post("/api/v1/prescriptions/claim", json={"token": tok["token"]},
                          headers=hdr(csrf, Idempotency_Key=uid()))
    body = await r.json()
    assert r.status == 200 and body["status"] == "accepted" and body["pharmacy_id"] == str(world.b.pharmacy.id)
    csrf = await as_user(client, world.a.users["pharmacist"].email)
    r = await client.post("/api/v1/prescriptions/claim", json={"token": tok["token"]}, headers=hdr(csrf))
    assert r.status == 409


async def _deliverable(client: TestClient, db: Db, world: World, island: bool) -> dict[str, Any]:
    if island:
        assert world.a.patient is not None
        async with db.uow() as uow:
            uow.add(PatientAttribute(patient_id=world.a.patient.id, kind=AttributeKind.ISLAND_REMOTE,
                                     source="resident registration", source_date=date.today()))
            await uow.commit()
    rx = await prescribe_signed(client, db, world, send={})
    csrf = await as_user(client, world.a.users["pharmacist"].email)
    await client.post(f"/api/v1/prescriptions/{rx['id']}/accept", headers=hdr(csrf))
    full = await (await client.get(f"/api/v1/prescriptions/{rx['id']}")).json()
    exp = (date.today() + timedelta(days=365)).isoformat()
    r = await client.post(f"/api/v1/prescriptions/{rx['id']}/dispense", json={"lines": [
        {"item_id": full["items"][0]["id"], "quantity": 15, "lot_number": "L1", "expiry": exp}]}, headers=hdr(csrf))
    assert r.status == 201
    return {"rx": rx, "csrf": csrf}


ADDRESS = {"recipient_name": "Kim", "address": "1 Harbour Rd, Ulleung-gun", "postal_code": "40200",
           "country": "KR", "courier": "Island Post", "tracking_code": "T-1"}


async def test_delivery_refused_without_eligibility(client: TestClient, db: Db, world: World) -> None:
    ctx = await _deliverable(client, db, world, island=False)
    r = await client.post(f"/api/v1/prescriptions/{ctx['rx']['id']}/delivery", json=ADDRESS,
                          headers=hdr(ctx["csrf"]))
    body = await r.json()
    assert r.status == 403 and body["error"]["code"] == "policy_denied"


async def test_delivery_state_machine(client: TestClient, db: Db, world: World) -> None:
    notes: list[tuple[Any, ...]] = []
    from clinic.web.context import services

    services(client.app).extra["notifier"] = lambda *a: notes.append(a)
    ctx = await _deliverable(client, db, world, island=True)
    url = f"/api/v1/prescriptions/{ctx['rx']['id']}/delivery"
    r = await client.post(url, json={**ADDRESS, "postal_code": "4020"}, headers=hdr(ctx["csrf"]))
    assert r.status == 422 and "postal_code" in (await r.json())["error"]["fields"]
    r = await client.post(url, json=ADDRESS, headers=hdr(ctx["csrf"], Idempotency_Key=uid()))
    d = await r.json()
    assert r.status == 201 and d["status"] == "created", d
    step = f"/api/v1/deliveries/{d['id']}/status"
    r = await client.post(step, json={"status": "delivered"}, headers=hdr(ctx["csrf"]))
    assert r.status == 409 and (await r.json())["error"]["code"] == "illegal_transition"
    for s in ("picked_up", "in_transit"):
        r = await client.post(step, json={"status": s}, headers=hdr(ctx["csrf"]))
        assert r.status == 200 and (await r.json())["status"] == s
    r = await client.post(step, json={"status": "delivered", "proof_recipient": "Kim"}, headers=hdr(ctx["csrf"]))
    assert r.status == 422 and "proof_kind" in (await r.json())["error"]["fields"]
    r = await client.post(step, json={"status": "delivered", "proof_recipient": "Kim", "proof_kind": "signature",
                                      "proof": "data:image/png;base64," + PNG}, headers=hdr(ctx["csrf"]))
    body = await r.json()
    assert r.status == 200 and body["status"] == "delivered" and body["proof_sha256"]
    assert [e["status"] for e in body["events"]] == ["created", "picked_up", "in_transit", "delivered"]
    r = await client.post(step, json={"status": "returned"}, headers=hdr(ctx["csrf"]))
    assert r.status == 409
    # the patient can follow it; another pharmacy cannot
    await as_user(client, world.a.users["patient"].email)
    assert (await client.get(f"/api/v1/deliveries/{d['id']}")).status == 200
    await as_user(client, world.b.users["pharmacist"].email)
    assert (await client.get(f"/api/v1/deliveries/{d['id']}")).status == 404
    assert [n[1] for n in notes][-4:] == ["delivery.created", "delivery.picked_up", "delivery.in_transit",
                                          "delivery.delivered"]


async def test_fhir_bundle_validates(client: TestClient, db: Db, world: World) -> None:
    from fhir.resources.R4B.bundle import Bundle

    rx = await prescribe_signed(client, db, world, item(), item(code="paracetamol-500mg-tab", freq="PRN", days=3,
                                                                 prn_max_per_day=4), send={})
    csrf = await as_user(client, world.a.users["pharmacist"].email)
    await client.post(f"/api/v1/prescriptions/{rx['id']}/accept", headers=hdr(csrf))
    exp = (date.today() + timedelta(days=365)).isoformat()
    r = await client.post(f"/api/v1/prescriptions/{rx['id']}/dispense", json={"lines": [
        {"item_id": rx["items"][0]["id"], "quantity": 15, "lot_number": "L1", "expiry": exp}]}, headers=hdr(csrf))
    assert r.status == 201
    for who in ("pharmacist", "patient", "clinician2"):
        await as_user(client, world.a.users[who].email)
        r = await client.get(f"/api/v1/prescriptions/{rx['id']}/fhir")
        assert r.status == 200 and r.content_type == "application/fhir+json"
    doc = await r.json()
    b = Bundle.model_validate(doc)
    kinds = sorted(e.resource.__resource_type__ for e in b.entry)
    assert kinds.count("MedicationRequest") == 2 and kinds.count("MedicationDispense") == 1
    assert {"Patient", "Practitioner", "Organization", "Medication"} <= set(kinds)
    await as_user(client, world.b.users["patient"].email)
    assert (await client.get(f"/api/v1/prescriptions/{rx['id']}/fhir")).status == 404


async def test_renewal_and_step_up_endpoint(client: TestClient, db: Db, world: World) -> None:
    # renewal: the patient asks, the prescriber sees and decides
    rx = await prescribe_signed(client, db, world)
    csrf = await as_user(client, world.a.users["patient"].email)
    r = await client.post(f"/api/v1/prescriptions/{rx['id']}/renewal-requests", json={"message": "running out"},
                          headers=hdr(csrf))
    assert r.status == 201
    csrf = await as_user(client, world.a.users["clinician"].email)
    r = await client.get("/api/v1/prescriber/queue")
    ren = (await r.json())["renewals"]
    assert len(ren) == 1 and ren[0]["message"] == "running out"
    r = await client.post(f"/api/v1/renewal-requests/{ren[0]['id']}/decide", json={"approve": True},
                          headers=hdr(csrf))
    assert r.status == 200 and (await r.json())["status"] == "approved"
    # step-up re-verifies TOTP for the current session
    secret = totp.new_secret()
    async with db.uow() as uow:
        await uow.session.execute(update(User).where(User.id == world.a.users["clinician"].id).values(
            totp_secret_enc=SecretBox(TEST_SECRET, "totp").encrypt(secret.encode()), totp_enabled_at=utcnow()))
        await uow.commit()
    client.session.cookie_jar.clear()
    csrf = await login(client, world.a.users["clinician"].email)
    now = time.time()
    r = await client.post("/api/v1/auth/mfa", json={"code": totp.code_at(secret, now - 30)}, headers=hdr(csrf))
    assert r.status == 200
    r = await client.post("/api/v1/auth/step-up", json={"code": "000000"}, headers=hdr(csrf))
    assert r.status == 422
    r = await client.post("/api/v1/auth/step-up", json={"code": totp.code_at(secret, now)}, headers=hdr(csrf))
    assert r.status == 200
    async with db.uow() as uow:
        steps = (await uow.session.execute(select(func.count(AuditEvent.seq))
                                           .where(AuditEvent.action == "auth.mfa",
                                                  AuditEvent.outcome == "success"))).scalar_one()
        assert steps == 2


async def test_openapi_includes_prescriptions(client: TestClient) -> None:
    from openapi_spec_validator import validate

    doc = await (await client.get("/api/openapi.json")).json()
    validate(doc)
    assert "/api/v1/prescriptions/{id}/sign" in doc["paths"] and "/api/v1/auth/step-up" in doc["paths"]


async def test_printable_prescription_pdf_with_fresh_token(client: TestClient, db: Db, world: World) -> None:
    import io

    from pypdf import PdfReader

    rx = await prescribe_signed(client, db, world, send={"open": True})
    csrf = await as_user(client, world.a.users["patient"].email)
    old = await (await client.post(f"/api/v1/prescriptions/{rx['id']}/token", headers=hdr(csrf))).json()
    r = await client.post(f"/api/v1/prescriptions/{rx['id']}/token.pdf?lang=ko", headers=hdr(csrf))
    assert r.status == 200 and r.content_type == "application/pdf"
    text = "".join(p.extract_text() for p in PdfReader(io.BytesIO(await r.read())).pages)
    assert rx["rx_number"] in text and "처방전" in text and "Amoxicillin" in text
    # printing issued a new access code: the one shown earlier no longer claims the prescription
    csrf = await as_user(client, world.a.users["pharmacist"].email)
    r = await client.post("/api/v1/prescriptions/claim", json={"token": old["token"]}, headers=hdr(csrf))
    assert r.status == 404


async def test_sign_and_send_in_one_step(client: TestClient, db: Db, world: World) -> None:
    enc = await open_encounter(db, world)
    csrf = await as_user(client, world.a.users["clinician"].email)
    r = await client.post(f"/api/v1/encounters/{enc}/prescriptions", json={"items": [item()]},
                          headers=hdr(csrf, Idempotency_Key=uid()))
    rx = await r.json()
    key = uid()
    r = await client.post(f"/api/v1/prescriptions/{rx['id']}/sign-and-send", json={},
                          headers=hdr(csrf, Idempotency_Key=key))
    body = await r.json()
    assert r.status == 200 and body["status"] == "sent" and body["pharmacy_id"] == str(world.a.pharmacy.id)
    # a retry returns the first result instead of failing on the already-signed prescription
    r = await client.post(f"/api/v1/prescriptions/{rx['id']}/sign-and-send", json={},
                          headers=hdr(csrf, Idempotency_Key=key))
    assert r.status == 200 and (await r.json())["id"] == body["id"]
    r = await client.get(f"/api/v1/prescriptions/{rx['id']}/verify")
    assert r.status == 200 and (await r.json())["ok"] is True
