"""Every API route × every role × an object of another tenant: nothing may leak.

Each route needs a case here; a new route without one fails ``test_every_route_has_a_case``.
A case builds a request aimed at tenant B's objects; it is sent by each role of tenant A (and by the
platform admin, who holds no clinical rights). The response must be a refusal, or — for list routes —
a success that contains none of tenant B's identifiers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from clinic.web.app import API_SPECS
from tests.world import ROLES, World, hdr, login

Case = Callable[[World], tuple[str, Any]]
B = "b"


def _b(w: World) -> Any:
    return w.b


CASES: dict[tuple[str, str], tuple[Case, str]] = {
    # (method, path) → (request builder, kind) ; kind "object" must be refused, "list" may succeed empty
    ("GET", "/api/v1/me"): (lambda w: ("/api/v1/me", None), "self"),
    ("PATCH", "/api/v1/me"): (lambda w: ("/api/v1/me", {"display_name": "Me"}), "self"),
    ("POST", "/api/v1/me/password"): (lambda w: ("/api/v1/me/password", {"current_password": "x",
                                                                         "new_password": "y" * 12}), "self"),
    ("GET", "/api/v1/organizations"): (lambda w: ("/api/v1/organizations", None), "list"),
    ("POST", "/api/v1/organizations"): (lambda w: ("/api/v1/organizations", {"name": "Evil", "kind": "clinic"}),
                                        "platform"),
    ("GET", "/api/v1/organizations/{org_id}"): (lambda w: (f"/api/v1/organizations/{w.b.clinic.id}", None),
                                                "platform"),
    ("PATCH", "/api/v1/organizations/{org_id}"): (
        lambda w: (f"/api/v1/organizations/{w.b.clinic.id}", {"require_2fa": False}), "platform"),
    ("GET", "/api/v1/organizations/{org_id}/members"): (
        lambda w: (f"/api/v1/organizations/{w.b.clinic.id}/members", None), "object"),
    ("POST", "/api/v1/organizations/{org_id}/members"): (
        lambda w: (f"/api/v1/organizations/{w.b.clinic.id}/members",
                   {"email": "new@x.example", "display_name": "N", "role": "clinician"}), "platform"),
    ("POST", "/api/v1/organizations/{org_id}/tokens"): (
        lambda w: (f"/api/v1/organizations/{w.b.clinic.id}/tokens", {"name": "t", "scopes": ["patient.read"]}),
        "object"),
    ("GET", "/api/v1/organizations/{org_id}/tokens"): (
        lambda w: (f"/api/v1/organizations/{w.b.clinic.id}/tokens", None), "object"),
    ("DELETE", "/api/v1/tokens/{id}"): (lambda w: (f"/api/v1/tokens/{w.b.token_id}", None), "object"),  # type: ignore[attr-defined]
    ("GET", "/api/v1/audit"): (lambda w: (f"/api/v1/audit?organization_id={w.b.clinic.id}", None), "platform"),
    ("GET", "/api/v1/patients"): (lambda w: (f"/api/v1/patients?organization_id={w.b.clinic.id}", None), "list"),
    ("POST", "/api/v1/patients"): (lambda w: ("/api/v1/patients", {
        "organization_id": str(w.b.clinic.id), "family_name": "X", "given_name": "Y", "birth_date": "1990-01-01"}),
        "object"),
    ("GET", "/api/v1/patients/{id}"): (lambda w: (f"/api/v1/patients/{w.b.patient.id}", None), "object"),
    ("PATCH", "/api/v1/patients/{id}"): (lambda w: (f"/api/v1/patients/{w.b.patient.id}", {"given_name": "Z"}),
                                         "object"),
    ("POST", "/api/v1/patients/{id}/allergies"): (
        lambda w: (f"/api/v1/patients/{w.b.patient.id}/allergies", {"substance": "penicillin"}), "object"),
    ("POST", "/api/v1/patients/{id}/attributes"): (
        lambda w: (f"/api/v1/patients/{w.b.patient.id}/attributes",
                   {"kind": "disabled", "source": "registry", "source_date": "2024-01-01"}), "object"),
    ("POST", "/api/v1/patients/{id}/guardians"): (
        lambda w: (f"/api/v1/patients/{w.b.patient.id}/guardians", {"name": "G"}), "object"),
    ("GET", "/api/v1/patients/{id}/consents"): (lambda w: (f"/api/v1/patients/{w.b.patient.id}/consents", None),
                                                "object"),
    ("POST", "/api/v1/patients/{id}/consents"): (
        lambda w: (f"/api/v1/patients/{w.b.patient.id}/consents", {"kind": "telemedicine"}), "object"),
    ("POST", "/api/v1/consents/{id}/revoke"): (lambda w: (f"/api/v1/consents/{w.b.consent_id}/revoke", None),  # type: ignore[attr-defined]
                                               "object"),
}

# Routes that act on the caller's own session or account, or are public by design.
SELF_SERVICE = {"/api/v1/auth/login", "/api/v1/auth/mfa", "/api/v1/auth/totp/enroll", "/api/v1/auth/totp/confirm",
                "/api/v1/auth/logout"}

# Extra cases contributed by feature test packages (they import and extend this dict).
EXTRA_CASES: dict[tuple[str, str], tuple[Case, str]] = {}


def _all_cases() -> dict[tuple[str, str], tuple[Case, str]]:
    out = dict(CASES)
    try:
        from tests.authz_cases import FEATURE_CASES

        out.update(FEATURE_CASES)
    except ImportError:
        pass
    return out


async def _prepare(world: World, db: Any, client: TestClient) -> None:
    """Give tenant B the objects some routes address (a token, a consent)."""
    from clinic.db.clinical import Consent, ConsentKind
    from clinic.db.models import ApiToken

    async with db.uow() as uow:
        tok = ApiToken(token_hash="0" * 64, prefix="tm_x", name="b", organization_id=world.b.clinic.id,
                       created_by_id=world.b.users["org_admin"].id, scopes=["patient.read"])
        con = Consent(patient_id=world.b.patient.id, kind=ConsentKind.TELEMEDICINE, version="1")  # type: ignore[union-attr]
        uow.add(tok)
        uow.add(con)
        await uow.session.flush()
        world.b.token_id = tok.id  # type: ignore[attr-defined]
        world.b.consent_id = con.id  # type: ignore[attr-defined]
        await uow.commit()
    try:
        from tests.authz_cases import prepare_feature_objects

        await prepare_feature_objects(world, db)
    except ImportError:
        pass


def _secrets_of_b(world: World) -> list[str]:
    out = [str(world.b.patient.id), str(world.b.other_patient.id),  # type: ignore[union-attr]
           world.b.patient.email, world.b.other_patient.email]  # type: ignore[union-attr]
    out += [u.email for u in world.b.users.values()]
    return out


async def test_every_route_has_a_case(client: TestClient) -> None:
    specs = client.app[API_SPECS]
    cases = _all_cases()
    missing = [(s.method, s.path) for s in specs if (s.method, s.path) not in cases and s.path not in SELF_SERVICE
               and not s.public]
    assert not missing, f"add authorization-matrix cases for: {missing}"


async def test_unauthenticated_refused_everywhere(client: TestClient, world: World) -> None:
    for spec in client.app[API_SPECS]:
        if spec.public:
            continue
        path = spec.path.replace("{id}", "00000000-0000-4000-8000-000000000000").replace(
            "{org_id}", str(world.b.clinic.id))
        path = __import__("re").sub(r"{\w+}", "00000000-0000-4000-8000-000000000000", path)
        r = await client.request(spec.method, path, json={} if spec.body else None)
        assert r.status == 401, (spec.method, spec.path, r.status)
        assert (await r.json())["error"]["code"] in ("unauthenticated",)


@pytest.mark.parametrize("actor", [*ROLES, "root"])
async def test_other_tenant_objects_never_leak(client: TestClient, world: World, db: Any, actor: str) -> None:
    await _prepare(world, db, client)
    user = world.root if actor == "root" else world.a.users[actor]
    csrf = await login(client, user.email)
    secrets = _secrets_of_b(world)
    for (method, template), (build, kind) in _all_cases().items():
        if kind == "self":
            continue
        if kind == "platform" and actor == "root":
            continue  # platform admins may manage organizations (but see no clinical data: checked below)
        path, body = build(world)
        r = await client.request(method, path, json=body, headers=hdr(csrf))
        text = await r.text()
        where = f"{actor} {method} {template} -> {r.status} {text[:200]}"
        if kind == "list":
            assert r.status in (200, 403, 404), where
        else:
            assert r.status in (403, 404), where
        for s in secrets:
            assert s not in text, f"leaked {s}: {where}"
