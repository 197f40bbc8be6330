"""Sign-in, second factor, rate limiting, magic links and API tokens through the real app."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import select

from clinic.db.base import utcnow
from clinic.db.models import ApiToken, MagicLink, MagicLinkPurpose, Organization, User, WebSession
from clinic.errors import Invalid
from clinic.security import totp
from clinic.security.authz import SYSTEM
from clinic.security.secrets import hash_token
from clinic.services import accounts
from tests.conftest import Db
from tests.world import PASSWORD, World, hdr, login


async def _require_2fa(db: Db, org_id: object) -> None:
    async with db.uow() as uow:
        org = await uow.session.get(Organization, org_id)
        assert org is not None
        org.require_2fa = True
        await uow.commit()


async def test_password_login_and_me(client: TestClient, world: World) -> None:
    await login(client, world.a.users["patient"].email)
    r = await client.get("/api/v1/me")
    body = await r.json()
    assert r.status == 200 and body["email"] == world.a.users["patient"].email
    assert body["patient_ids"] == [str(world.a.patient.id)]  # type: ignore[union-attr]


async def test_session_cookie_flags(client: TestClient, world: World) -> None:
    r = await client.post("/api/v1/auth/login", json={"email": world.a.users["patient"].email, "password": PASSWORD})
    raw = r.headers.getall("Set-Cookie")
    cookie = next(c for c in raw if c.startswith("tm_session="))
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert "Secure" not in cookie  # plain http in tests; Secure is set behind TLS (see test_config)


async def test_wrong_password_is_401_and_audited(client: TestClient, world: World, db: Db) -> None:
    r = await client.post("/api/v1/auth/login", json={"email": world.a.users["patient"].email, "password": "nope"})
    assert r.status == 401 and (await r.json())["error"]["code"] == "bad_credentials"
    async with db.uow() as uow:
        from clinic.db.models import AuditEvent

        rows = (await uow.session.execute(select(AuditEvent).where(AuditEvent.action == "auth.login"))).scalars().all()
        assert any(e.outcome == "failure" for e in rows)


async def test_login_rate_limited(client: TestClient, world: World) -> None:
    email = world.a.users["patient"].email
    statuses = []
    for _ in range(7):
        r = await client.post("/api/v1/auth/login", json={"email": email, "password": "wrong-password"})
        statuses.append(r.status)
    assert statuses[:5] == [401] * 5
    assert statuses[5] == 429 and "Retry-After" in r.headers
    # even the right password is refused while blocked
    r = await client.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert r.status == 429


async def test_clinician_must_enroll_totp_when_org_requires(client: TestClient, world: World, db: Db) -> None:
    await _require_2fa(db, world.a.clinic.id)
    r = await client.post("/api/v1/auth/login", json={"email": world.a.users["clinician"].email, "password": PASSWORD})
    body = await r.json()
    assert body["needs_enrollment"] is True
    csrf = body["csrf_token"]
    # until the second factor is done, nothing clinical is reachable
    r = await client.get(f"/api/v1/patients?organization_id={world.a.clinic.id}")
    assert r.status == 401 and (await r.json())["error"]["code"] == "mfa_required"
    r = await client.post("/api/v1/auth/totp/enroll", headers=hdr(csrf))
    secret = (await r.json())["secret"]
    r = await client.post("/api/v1/auth/totp/confirm", json={"code": "000000"}, headers=hdr(csrf))
    assert r.status == 422
    code = totp.code_at(secret, time.time())
    r = await client.post("/api/v1/auth/totp/confirm", json={"code": code}, headers=hdr(csrf))
    assert r.status == 200, await r.text()
    r = await client.get(f"/api/v1/patients?organization_id={world.a.clinic.id}")
    assert r.status == 200
    async with db.uow() as uow:
        u = await uow.session.get(User, world.a.users["clinician"].id)
        assert u is not None and u.totp_enabled_at is not None
        assert u.totp_secret_enc and secret not in u.totp_secret_enc  # encrypted at rest


async def test_totp_code_cannot_be_replayed(db: Db, world: World, settings) -> None:  # type: ignore[no-untyped-def]
    from clinic.security.ratelimit import MemoryRateLimiter

    limiter = MemoryRateLimiter(5, 60)
    async with db.uow() as uow:
        user = await uow.session.get(User, world.a.users["pharmacist"].id)
        assert user is not None
        secret, _ = await accounts.begin_totp_enrollment(uow, settings, user)
        res = await accounts.login_with_password(uow, settings, limiter, email=user.email, password=PASSWORD, ip="t")
        ws = (await uow.session.execute(select(WebSession).where(WebSession.token_hash == hash_token(
            res.session_token)))).scalar_one()
        code = totp.code_at(secret, time.time())
        await accounts.confirm_totp_enrollment(uow, settings, limiter, ws, user, code, ip="t")
        with pytest.raises(Invalid) as exc:
            await accounts.verify_second_factor(uow, settings, limiter, ws, user, code, ip="t")
        assert exc.value.code == "bad_code"


async def test_demo_org_without_2fa_says_so(client: TestClient, world: World) -> None:
    await login(client, world.a.users["clinician"].email)
    r = await client.get("/account")
    html = await r.text()
    assert r.status == 200 and 'data-testid="2fa-off-banner"' in html


async def test_magic_link_single_use_and_expiry(client: TestClient, world: World, db: Db, settings) -> None:  # type: ignore[no-untyped-def]
    async with db.uow() as uow:
        user = await uow.session.get(User, world.a.users["patient"].id)
        assert user is not None
        token, _link = await accounts.issue_magic_link(uow, settings, user=user, purpose=MagicLinkPurpose.INVITE,
                                                      next_path="/account", created_by=SYSTEM,
                                                      organization_id=world.a.clinic.id)
        old, old_link = await accounts.issue_magic_link(uow, settings, user=user, purpose=MagicLinkPurpose.INVITE,
                                                        next_path="/account", created_by=SYSTEM)
        old_link.expires_at = utcnow() - timedelta(seconds=1)
        await uow.commit()
    async with db.uow() as uow:
        stored = (await uow.session.execute(select(MagicLink.token_hash))).scalars().all()
        assert token not in stored and hash_token(token) in stored  # only the hash is kept
    r = await client.get(f"/m/{token}", allow_redirects=False)
    assert r.status == 302 and r.headers["Location"] == "/account"
    r = await client.get("/api/v1/me")
    assert r.status == 200
    client.session.cookie_jar.clear()
    r = await client.get(f"/m/{token}", allow_redirects=False)
    assert r.status == 410
    r = await client.get(f"/m/{old}", allow_redirects=False)
    assert r.status == 410
    r = await client.get("/m/garbage", allow_redirects=False)
    assert r.status == 404


async def test_api_token_scoped_and_hashed(client: TestClient, world: World, db: Db) -> None:
    csrf = await login(client, world.a.users["org_admin"].email)
    r = await client.post(f"/api/v1/organizations/{world.a.clinic.id}/tokens",
                          json={"name": "lab", "scopes": ["patient.read", "patient.list"]}, headers=hdr(csrf))
    assert r.status == 201, await r.text()
    created = await r.json()
    token = created["token"]
    async with db.uow() as uow:
        rows = (await uow.session.execute(select(ApiToken))).scalars().all()
        assert all(t.token_hash != token for t in rows) and any(t.token_hash == hash_token(token) for t in rows)
    client.session.cookie_jar.clear()
    auth = {"Authorization": f"Bearer {token}"}
    r = await client.get(f"/api/v1/patients/{world.a.patient.id}", headers=auth)  # type: ignore[union-attr]
    assert r.status == 200
    # outside its scopes: refused
    r = await client.patch(f"/api/v1/patients/{world.a.patient.id}", json={"given_name": "X"}, headers=auth)  # type: ignore[union-attr]
    assert r.status in (403, 404)
    # another tenant: refused
    r = await client.get(f"/api/v1/patients/{world.b.patient.id}", headers=auth)  # type: ignore[union-attr]
    assert r.status == 404
    # unknown scope
    csrf = await login(client, world.a.users["org_admin"].email)
    r = await client.post(f"/api/v1/organizations/{world.a.clinic.id}/tokens",
                          json={"name": "x", "scopes": ["everything"]}, headers=hdr(csrf))
    assert r.status == 422 and "scopes" in (await r.json())["error"]["fields"]
    # revoked tokens stop working
    r = await client.delete(f"/api/v1/tokens/{created['id']}", headers=hdr(csrf))
    assert r.status == 204
    client.session.cookie_jar.clear()
    r = await client.get(f"/api/v1/patients/{world.a.patient.id}", headers=auth)  # type: ignore[union-attr]
    assert r.status == 401 and (await r.json())["error"]["code"] == "invalid_token"


async def test_login_page_form_flow(client: TestClient, world: World) -> None:
    r = await client.get("/login")
    html = await r.text()
    assert r.status == 200 and 'name="csrf_token"' in html
    import re

    csrf = re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)  # type: ignore[union-attr]
    r = await client.post("/login", data={"email": world.a.users["clinician"].email, "password": PASSWORD,
                                          "csrf_token": csrf, "next": "/account"}, allow_redirects=False)
    assert r.status == 302 and r.headers["Location"] == "/account"
    # a form post without the token is refused
    client.session.cookie_jar.clear()
    await client.get("/login")
    r = await client.post("/login", data={"email": "x@y.z", "password": "p"}, allow_redirects=False)
    assert r.status == 403
