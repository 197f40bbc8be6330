"""Prescribing and home delivery, through the app, are decided by the engine the app installed."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from aiohttp.test_utils import TestClient

from clinic.db.clinical import AttributeKind, PatientAttribute
from clinic.policy import Decision, PolicyContext
from clinic.policy_web import policy_service
from tests.conftest import Db
from tests.prescriptions.conftest import item, open_encounter
from tests.prescriptions.test_http import ADDRESS, as_user, prescribe_signed
from tests.world import World, hdr, uid


@pytest.fixture
def asked(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> list[PolicyContext]:
    """Every context the installed PolicyService decides (the real engine still answers)."""
    service = policy_service(client.app)
    real = service.decide
    seen: list[PolicyContext] = []

    def spy(ctx: PolicyContext) -> Decision:
        seen.append(ctx)
        return real(ctx)

    monkeypatch.setattr(service, "decide", spy)
    return seen


async def test_prescribe_obeys_the_installed_engine(client: TestClient, db: Db, world: World,
                                                    asked: list[PolicyContext]) -> None:
    enc = await open_encounter(db, world)
    csrf = await as_user(client, world.a.users["clinician"].email)
    url = f"/api/v1/encounters/{enc}/prescriptions"
    r = await client.post(url, json={"items": [item(code="oxycodone-5mg-tab", freq="Q12H", days=3)]},
                          headers=hdr(csrf, Idempotency_Key=uid()))
    body = await r.json()
    assert r.status == 403 and body["error"]["code"] == "policy_denied", body
    assert [c.action for c in asked] == ["prescribe"] and asked[0].jurisdiction == "KR"
    assert any(reason["rule"].startswith("kr-") for reason in body["error"]["decision"]["reasons"])
    r = await client.post(url, json={"items": [item()]}, headers=hdr(csrf, Idempotency_Key=uid()))
    body = await r.json()
    assert r.status == 201, body
    [decision] = body["policy_decisions"]
    assert decision["point"] == "prescribe" and decision["allowed"] is True
    assert decision["rule_set_hash"] == policy_service(client.app).engine.get(decision["rule_set_id"]).sha256
    assert [c.action for c in asked] == ["prescribe", "prescribe"]


async def test_delivery_obeys_the_installed_engine(client: TestClient, db: Db, world: World,
                                                   asked: list[PolicyContext]) -> None:
    rx = await prescribe_signed(client, db, world, send={})
    csrf = await as_user(client, world.a.users["pharmacist"].email)
    assert (await client.post(f"/api/v1/prescriptions/{rx['id']}/accept", headers=hdr(csrf))).status == 200
    full = await (await client.get(f"/api/v1/prescriptions/{rx['id']}")).json()
    exp = (date.today() + timedelta(days=365)).isoformat()
    r = await client.post(f"/api/v1/prescriptions/{rx['id']}/dispense", json={"lines": [
        {"item_id": full["items"][0]["id"], "quantity": 15, "lot_number": "L1", "expiry": exp}]}, headers=hdr(csrf))
    assert r.status == 201, await r.json()
    asked.clear()
    r = await client.post(f"/api/v1/prescriptions/{rx['id']}/delivery", json=ADDRESS, headers=hdr(csrf))
    body = await r.json()
    assert r.status == 403 and body["error"]["code"] == "policy_denied", body
    assert [c.action for c in asked] == ["deliver"]
    # An island resident qualifies for home delivery under KR law.
    assert world.a.patient is not None
    async with db.uow() as uow:
        uow.add(PatientAttribute(patient_id=world.a.patient.id, kind=AttributeKind.ISLAND_REMOTE,
                                 source="resident registration", source_date=date.today()))
        await uow.commit()
    r = await client.post(f"/api/v1/prescriptions/{rx['id']}/delivery", json=ADDRESS, headers=hdr(csrf))
    body = await r.json()
    assert r.status == 201, body
    assert [c.action for c in asked] == ["deliver", "deliver"]
