"""The brief per-process memory of resolved sign-ins: bounded, and evicted by the commits that change it."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select, update

from clinic.db.base import utcnow
from clinic.db.engine import session_factory
from clinic.db.models import Membership, Organization, Role, User, WebSession
from clinic.db.uow import UnitOfWork
from clinic.security.sessioncache import INFO_KEY, SessionCache
from clinic.web.context import services
from tests.world import hdr, login


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_entries_expire_after_ttl() -> None:
    clock = Clock()
    cache: SessionCache[str] = SessionCache(5, clock=clock)
    u = uuid.uuid4()
    cache.put("k", u, "v")
    clock.t += 4.9
    assert cache.get("k") == "v"
    clock.t += 0.2
    assert cache.get("k") is None
    assert len(cache) == 0


def test_bounded_least_recently_used_goes_first() -> None:
    cache: SessionCache[int] = SessionCache(60, maxsize=2)
    cache.put("a", uuid.uuid4(), 1)
    cache.put("b", uuid.uuid4(), 2)
    assert cache.get("a") == 1  # touch: "b" is now the oldest
    cache.put("c", uuid.uuid4(), 3)
    assert cache.get("b") is None
    assert (cache.get("a"), cache.get("c")) == (1, 3)


def test_evict_users_drops_every_session_of_those_users() -> None:
    cache: SessionCache[str] = SessionCache(60)
    u1, u2 = uuid.uuid4(), uuid.uuid4()
    cache.put("s1", u1, "a")
    cache.put("s2", u1, "b")
    cache.put("s3", u2, "c")
    cache.evict_users([u1])
    assert (cache.get("s1"), cache.get("s2"), cache.get("s3")) == (None, None, "c")


def test_zero_ttl_disables() -> None:
    cache: SessionCache[str] = SessionCache(0)
    cache.put("k", uuid.uuid4(), "v")
    assert cache.get("k") is None


async def test_commits_evict_the_users_they_touch(db: Any, world: Any) -> None:
    cache: SessionCache[str] = SessionCache(60)
    factory = session_factory(db.engine, info={INFO_KEY: cache})
    doc, pat = world.a.users["clinician"], world.a.users["patient"]

    def fill() -> None:
        cache.put("doc", doc.id, "doc")
        cache.put("pat", pat.id, "pat")

    fill()
    async with UnitOfWork(factory) as uow:  # a membership added: that user's roles changed
        uow.add(Membership(user_id=pat.id, organization_id=world.a.pharmacy.id, role=Role.PHARMACIST))
        await uow.commit()
    assert (cache.get("doc"), cache.get("pat")) == ("doc", None)

    fill()
    async with UnitOfWork(factory) as uow:  # rolled back: nothing changed, nothing evicted
        u = await uow.session.get(User, doc.id)
        assert u is not None
        u.is_active = False
        await uow.session.flush()
    assert (cache.get("doc"), cache.get("pat")) == ("doc", "pat")

    async with UnitOfWork(factory) as uow:  # bookkeeping only: the refresh stamp evicts nothing
        ws = WebSession(token_hash="h" * 64, user_id=doc.id, expires_at=utcnow(), csrf_secret="c")
        uow.add(ws)
        await uow.commit()
    fill()
    async with UnitOfWork(factory) as uow:
        row = await uow.session.get(WebSession, ws.id)
        assert row is not None
        row.last_seen_at = utcnow()
        await uow.commit()
    assert (cache.get("doc"), cache.get("pat")) == ("doc", "pat")

    async with UnitOfWork(factory) as uow:  # the session revoked
        row = await uow.session.get(WebSession, ws.id)
        assert row is not None
        row.revoked_at = utcnow()
        await uow.commit()
    assert (cache.get("doc"), cache.get("pat")) == (None, "pat")

    fill()
    async with UnitOfWork(factory) as uow:  # an organization setting reaches many members: everything goes
        org = await uow.session.get(Organization, world.a.clinic.id)
        assert org is not None
        org.require_2fa = True
        await uow.commit()
    assert len(cache) == 0

    fill()
    async with UnitOfWork(factory) as uow:  # a bulk statement cannot be attributed: everything goes
        await uow.session.execute(update(User).where(User.id == pat.id).values(locale="ko"))
        await uow.commit()
    assert len(cache) == 0

    fill()
    async with UnitOfWork(factory) as uow:  # reads evict nothing
        await uow.session.execute(select(User))
        await uow.commit()
    assert len(cache) == 2


async def test_sign_out_applies_to_the_next_request(client: Any, world: Any) -> None:
    csrf = await login(client, world.a.users["patient"].email)
    assert (await client.get("/api/v1/me")).status == 200
    assert len(services(client.server.app).session_cache) == 1
    cookie = client.session.cookie_jar.filter_cookies(client.make_url("/"))["tm_session"].value
    resp = await client.post("/api/v1/auth/logout", headers=hdr(csrf))
    assert resp.status == 200
    # Replay the old cookie: the cached sign-in must be gone already.
    client.session.cookie_jar.update_cookies({"tm_session": cookie})
    resp = await client.get("/api/v1/me")
    assert resp.status == 401, await resp.text()


async def test_role_change_by_an_admin_applies_to_the_next_request(client: Any, world: Any, db: Any) -> None:
    await login(client, world.a.users["clinician"].email)
    queue = f"/api/v1/organizations/{world.a.clinic.id}/queue"
    assert (await client.get(queue)).status == 200
    # An admin's change through the same server (its session factory) evicts the clinician's sign-in.
    app_factory = services(client.server.app).sessionmaker
    async with UnitOfWork(app_factory) as uow:
        m = (await uow.session.execute(select(Membership).where(
            Membership.user_id == world.a.users["clinician"].id))).scalar_one()
        await uow.session.delete(m)
        await uow.commit()
    resp = await client.get(queue)
    assert resp.status in (403, 404), await resp.text()
