"""Tenant A's roles against tenant B's payments (the same check the core matrix makes), and the pages."""

from __future__ import annotations

import pytest
from aiohttp.test_utils import TestClient

from clinic.web.app import API_SPECS
from tests.conftest import Db
from tests.payments.authz_cases import CASES, prepare
from tests.payments.conftest import Booking, book
from tests.world import World, hdr, login


async def test_cases_cover_every_payment_route(client: TestClient) -> None:
    ours = {(s.method, s.path) for s in client.app[API_SPECS]
            if s.handler.__module__.endswith("routes.payments") and not s.public}
    assert ours == set(CASES)


@pytest.mark.parametrize("actor", ["patient", "clinician", "pharmacist", "org_admin", "root"])
async def test_other_tenant_payments_never_leak(client: TestClient, world: World, db: Db, actor: str) -> None:
    await prepare(world, db)
    user = world.root if actor == "root" else world.a.users[actor]
    csrf = await login(client, user.email)
    b = world.b
    secrets = [str(b.patient.id), str(b.payment_id), str(b.pay_appointment_id)]  # type: ignore[union-attr, attr-defined]
    for (method, template), (build, kind) in CASES.items():
        path, body = build(world)
        r = await client.request(method, path, json=body, headers=hdr(csrf))
        text = await r.text()
        where = f"{actor} {method} {template} -> {r.status} {text[:200]}"
        assert r.status in ((200, 403, 404) if kind == "list" else (403, 404)), where
        for s in secrets:
            assert s not in text, f"leaked {s}: {where}"


async def test_clinicians_do_not_see_payments(client: TestClient, world: World, db: Db, booking: Booking) -> None:
    _, p = await book(db, world, booking, 10)
    await login(client, world.a.users["clinician"].email)
    r = await client.get(f"/api/v1/payments/{p.id}")
    assert r.status == 404


@pytest.mark.parametrize("lang", ["ko", "en"])
async def test_patient_pages(client: TestClient, world: World, db: Db, booking: Booking, lang: str) -> None:
    a, _ = await book(db, world, booking, 10)
    csrf = await login(client, world.a.users["patient"].email)
    await client.patch("/api/v1/me", json={"locale": lang}, headers=hdr(csrf))
    r = await client.get(f"/pay/{a.id}")
    html = await r.text()
    assert r.status == 200, html
    assert f'<html lang="{lang}">' in html and 'data-testid="pay-offline"' in html and "15000 KRW" in html
    assert ("결제" in html) == (lang == "ko")
    r = await client.get("/payments/receipts")
    html = await r.text()
    assert r.status == 200 and 'data-testid="receipt-row"' in html
    r = await client.get("/admin/payments")
    assert r.status == 403


async def test_stripe_pay_page_loads_stripe_js(stripe_client: TestClient, world: World, db: Db,
                                               booking: Booking) -> None:
    a, _ = await book(db, world, booking, 10)
    await login(stripe_client, world.a.users["patient"].email)
    r = await stripe_client.get(f"/pay/{a.id}")
    html = await r.text()
    assert r.status == 200 and "https://js.stripe.com/v3/" in html and 'data-publishable-key="pk_test_standin"' in html
    assert 'data-testid="pay-submit"' in html


async def test_admin_page(client: TestClient, world: World, db: Db, booking: Booking) -> None:
    await book(db, world, booking, 10)
    await login(client, world.a.users["org_admin"].email)
    r = await client.get("/admin/payments")
    html = await r.text()
    assert r.status == 200, html
    for testid in ("fees-table", "fee-save-consult", "export-form", "payment-row", "mark-paid", "waive"):
        assert f'data-testid="{testid}"' in html
    r = await client.get("/admin/payments?status=captured")
    assert 'data-testid="payments-empty"' in await r.text()
    r = await client.get("/pay/not-a-uuid")
    assert r.status == 422
