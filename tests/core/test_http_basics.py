"""Health, OpenAPI, the error envelope and bad input on the JSON API."""

from __future__ import annotations

import json

from aiohttp.test_utils import TestClient

from tests.world import World, hdr, login


async def test_health_ready_metrics(client: TestClient) -> None:
    r = await client.get("/healthz")
    assert r.status == 200 and (await r.json())["status"] == "ok"
    r = await client.get("/readyz")
    assert r.status == 200 and (await r.json())["database"] == "ok"
    r = await client.get("/metrics")
    text = await r.text()
    assert r.status == 200 and "telemed_http_requests_total" in text


async def test_openapi_is_valid_openapi3(client: TestClient) -> None:
    from openapi_spec_validator import validate

    r = await client.get("/api/openapi.json")
    doc = await r.json()
    assert doc["openapi"].startswith("3.")
    validate(doc)
    assert "/api/v1/patients/{id}" in doc["paths"]
    assert "ErrorEnvelope" in doc["components"]["schemas"]
    # request schemas forbid unknown fields, so the document says so too
    body_schema = doc["components"]["schemas"]["PatientIn"]
    assert body_schema.get("additionalProperties") is False


async def test_error_envelope_on_unknown_route(client: TestClient) -> None:
    r = await client.get("/api/v1/nope")
    body = await r.json()
    assert r.status == 404 and body["error"]["code"] == "not_found"


async def test_unauthenticated_is_401_envelope(client: TestClient) -> None:
    r = await client.get("/api/v1/me")
    body = await r.json()
    assert r.status == 401
    assert set(body["error"]) == {"code", "message", "fields"}


async def test_malformed_json_unknown_fields_wrong_types_oversize(client: TestClient, world: World) -> None:
    csrf = await login(client, world.a.users["clinician"].email)
    url = "/api/v1/patients"
    r = await client.post(url, data=b"{not json", headers=hdr(csrf, Content_Type="application/json"))
    assert r.status == 400 and (await r.json())["error"]["code"] == "malformed_json"
    base = {"organization_id": str(world.a.clinic.id), "family_name": "K", "given_name": "M",
            "birth_date": "1990-01-01"}
    r = await client.post(url, json={**base, "shoe_size": 44}, headers=hdr(csrf))
    body = await r.json()
    assert r.status == 422 and "shoe_size" in body["error"]["fields"]
    r = await client.post(url, json={**base, "birth_date": "yesterday"}, headers=hdr(csrf))
    assert r.status == 422 and "birth_date" in (await r.json())["error"]["fields"]
    r = await client.post(url, json={**base, "birth_date": "2999-01-01"}, headers=hdr(csrf))
    assert r.status == 422 and "birth_date" in (await r.json())["error"]["fields"]
    big = json.dumps({**base, "address": "x" * 2_000_000})
    r = await client.post(url, data=big, headers=hdr(csrf, Content_Type="application/json"))
    assert r.status == 413 and (await r.json())["error"]["code"] == "payload_too_large"
    r = await client.get("/api/v1/patients/not-a-uuid")
    assert r.status == 422 and (await r.json())["error"]["code"] == "bad_id"
    r = await client.get("/api/v1/patients?limit=100000")
    assert r.status == 422 and "limit" in (await r.json())["error"]["fields"]
    # nothing was half-written by any of the refused requests
    r = await client.get(f"/api/v1/patients?organization_id={world.a.clinic.id}&q=K")
    assert [p for p in (await r.json())["items"] if p["family_name"] == "K"] == []


async def test_csrf_required_for_cookie_sessions(client: TestClient, world: World) -> None:
    await login(client, world.a.users["clinician"].email)
    r = await client.patch("/api/v1/me", json={"display_name": "X"})
    assert r.status == 403 and (await r.json())["error"]["code"] == "csrf_failed"


async def test_idempotency_key_replays_first_result(client: TestClient, world: World) -> None:
    csrf = await login(client, world.a.users["clinician"].email)
    body = {"organization_id": str(world.a.clinic.id), "family_name": "Idem", "given_name": "Potent",
            "birth_date": "1990-01-01"}
    h = hdr(csrf, Idempotency_Key="create-patient-0001")
    r1 = await client.post("/api/v1/patients", json=body, headers=h)
    r2 = await client.post("/api/v1/patients", json=body, headers=h)
    assert r1.status == 201 and r2.status == 201
    assert (await r1.json())["id"] == (await r2.json())["id"]
    assert r2.headers.get("Idempotent-Replayed") == "true"
    r3 = await client.post("/api/v1/patients", json={**body, "given_name": "Other"}, headers=h)
    assert r3.status == 409 and (await r3.json())["error"]["code"] == "idempotency_key_reused"
    r = await client.get(f"/api/v1/patients?q=Idem&organization_id={world.a.clinic.id}")
    assert len((await r.json())["items"]) == 1


async def test_security_headers(client: TestClient) -> None:
    r = await client.get("/login")
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    assert "frame-ancestors 'none'" in r.headers["Content-Security-Policy"]
    assert r.headers["Referrer-Policy"] == "no-referrer"
