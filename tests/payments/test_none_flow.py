"""The default provider: the clinic collects money itself and records it; receipts, insurance, export."""

from __future__ import annotations

import asyncio
import csv
import io
from datetime import timedelta

from aiohttp.test_utils import TestClient
from pypdf import PdfReader

from clinic.db.payments import PaymentStatus as S
from tests.conftest import Db
from tests.payments.conftest import Booking, book, load_payment
from tests.world import World, hdr, login


async def test_mark_paid_once_and_receipt_in_korean(client: TestClient, db: Db, world: World,
                                                    booking: Booking) -> None:
    _, p = await book(db, world, booking, 10)
    assert p.status is S.REQUIRES_PAYMENT and p.amount == 15000 and p.provider == "none"
    csrf = await login(client, world.a.users["patient"].email)
    r = await client.post(f"/api/v1/payments/{p.id}/pay", json={}, headers=hdr(csrf))
    assert r.status == 409 and (await r.json())["error"]["code"] == "offline_payment"
    r = await client.post(f"/api/v1/payments/{p.id}/mark-paid", json={"method": "cash"}, headers=hdr(csrf))
    assert r.status == 403
    client.session.cookie_jar.clear()
    csrf = await login(client, world.a.users["org_admin"].email)
    r = await client.post(f"/api/v1/payments/{p.id}/mark-paid", json={"method": "cash", "reference": "R-1"},
                          headers=hdr(csrf))
    body = await r.json()
    assert r.status == 200 and body["status"] == "captured" and body["captured_amount"] == 15000, body
    r = await client.post(f"/api/v1/payments/{p.id}/mark-paid", json={"method": "cash"}, headers=hdr(csrf))
    assert r.status == 409 and (await r.json())["error"]["code"] == "already_paid"
    r = await client.post(f"/api/v1/payments/{p.id}/waive", json={"reason": "x"}, headers=hdr(csrf))
    assert r.status == 409
    r = await client.get(f"/api/v1/payments/{p.id}/receipt.pdf?lang=ko")
    assert r.status == 200 and r.content_type == "application/pdf"
    text = "".join(page.extract_text() for page in PdfReader(io.BytesIO(await r.read())).pages)
    assert "영수증" in text and "진료" in text and "15,000" in text
    # Offline refund is recorded (the clinic hands the money back itself).
    r = await client.post(f"/api/v1/payments/{p.id}/refund", json={"amount": 15000}, headers=hdr(csrf))
    assert r.status == 200 and (await r.json())["status"] == "refunded"


async def test_waive_and_invoice(client: TestClient, db: Db, world: World, booking: Booking) -> None:
    _, p = await book(db, world, booking, 10)
    csrf = await login(client, world.a.users["org_admin"].email)
    r = await client.get(f"/api/v1/payments/{p.id}/receipt.pdf?lang=ko")
    text = "".join(page.extract_text() for page in PdfReader(io.BytesIO(await r.read())).pages)
    assert "청구서" in text or "Invoice" not in text
    r = await client.post(f"/api/v1/payments/{p.id}/waive", json={"reason": "hardship"}, headers=hdr(csrf))
    assert r.status == 200 and (await r.json())["status"] == "waived"
    r = await client.post(f"/api/v1/payments/{p.id}/mark-paid", json={"method": "cash"}, headers=hdr(csrf))
    assert r.status == 409


async def test_free_visit_needs_no_payment(db: Db, world: World, booking: Booking) -> None:
    _, p = await book(db, world, booking, 10, visit_type=booking.quick)
    assert p.status is S.WAIVED and p.method == "no_charge"


async def test_concurrent_mark_paid_only_one_wins(client: TestClient, db: Db, world: World,
                                                  booking: Booking) -> None:
    _, p = await book(db, world, booking, 10)
    csrf = await login(client, world.a.users["org_admin"].email)

    async def attempt() -> int:
        r = await client.post(f"/api/v1/payments/{p.id}/mark-paid", json={"method": "cash"}, headers=hdr(csrf))
        return r.status

    results = await asyncio.gather(*(attempt() for _ in range(10)))
    assert sorted(results) == [200] + [409] * 9
    assert (await load_payment(db, p.id)).captured_amount == 15000


async def test_insurance_changes_the_patients_share_and_export(client: TestClient, db: Db, world: World,
                                                               booking: Booking) -> None:
    a, p = await book(db, world, booking, 10)
    await book(db, world, booking, 11, patient="patient2")
    csrf = await login(client, world.a.users["org_admin"].email)
    r = await client.put(f"/api/v1/payments/{p.id}/insurance",
                         json={"payer": "국민건강보험공단", "coverage": "0.7", "claim_code": "CLM-001"},
                         headers=hdr(csrf))
    body = await r.json()
    assert r.status == 200 and body["amount"] == 4500 and body["fee_amount"] == 15000, body
    r = await client.put(f"/api/v1/payments/{p.id}/insurance", json={"coverage": "1.5"}, headers=hdr(csrf))
    assert r.status == 422
    r = await client.post(f"/api/v1/payments/{p.id}/mark-paid", json={"method": "card_terminal"}, headers=hdr(csrf))
    assert r.status == 200
    r = await client.put(f"/api/v1/payments/{p.id}/insurance", json={"coverage": "0.5"}, headers=hdr(csrf))
    assert r.status == 409
    org = world.a.clinic.id
    day = booking.day.isoformat()
    r = await client.get(f"/api/v1/organizations/{org}/billing/export.csv?from={day}&to={day}")
    assert r.status == 200 and r.content_type == "text/csv"
    rows = list(csv.DictReader(io.StringIO((await r.read()).decode("utf-8-sig"))))
    assert len(rows) == 2
    first = next(x for x in rows if x["appointment_id"] == str(a.id))
    assert first["fee"] == "15000" and first["currency"] == "KRW" and first["insurance_amount"] == "10500"
    assert first["patient_amount"] == "4500" and first["paid_amount"] == "4500"
    assert first["insurance_payer"] == "국민건강보험공단" and first["coverage"] == "0.7"
    assert first["claim_code"] == "CLM-001" and first["payment_status"] == "captured"
    assert first["payment_method"] == "card_terminal" and first["visit_date"] == day
    other = next(x for x in rows if x["appointment_id"] != str(a.id))
    assert other["payment_status"] == "requires_payment" and other["paid_amount"] == "0"
    before = (booking.day - timedelta(days=3)).isoformat()
    r = await client.get(f"/api/v1/organizations/{org}/billing/export.csv?from={before}&to={before}")
    assert len((await r.read()).decode("utf-8-sig").strip().splitlines()) == 1  # header only
    r = await client.get(f"/api/v1/organizations/{org}/billing/export.csv?from={day}&to={before}")
    assert r.status == 422


async def test_patient_sees_only_own_payments(client: TestClient, db: Db, world: World, booking: Booking) -> None:
    a, p = await book(db, world, booking, 10)
    _, q = await book(db, world, booking, 11, patient="patient2")
    csrf = await login(client, world.a.users["patient"].email)
    r = await client.get("/api/v1/payments")
    ids = [x["id"] for x in (await r.json())["items"]]
    assert ids == [str(p.id)]
    r = await client.get(f"/api/v1/payments/{q.id}")
    assert r.status == 404
    r = await client.get(f"/api/v1/appointments/{a.id}/payment")
    assert r.status == 200 and (await r.json())["id"] == str(p.id)
    assert csrf
