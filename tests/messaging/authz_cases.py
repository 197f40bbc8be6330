"""Authorization-matrix cases for invites and the outbox (discovered by tests/authz_cases.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tests.world import World

Case = Callable[[World], tuple[str, Any]]

CASES: dict[tuple[str, str], tuple[Case, str]] = {
    ("POST", "/api/v1/encounters/{id}/invites"): (
        lambda w: (f"/api/v1/encounters/{w.b.invite_encounter_id}/invites", {"channel": "sms"}), "object"),  # type: ignore[attr-defined]
    ("GET", "/api/v1/encounters/{id}/invites"): (
        lambda w: (f"/api/v1/encounters/{w.b.invite_encounter_id}/invites", None), "object"),  # type: ignore[attr-defined]
    ("POST", "/api/v1/invites/{id}/revoke"): (lambda w: (f"/api/v1/invites/{w.b.invite_id}/revoke", None),  # type: ignore[attr-defined]
                                              "object"),
    ("POST", "/api/v1/invites/{id}/resend"): (lambda w: (f"/api/v1/invites/{w.b.invite_id}/resend", None),  # type: ignore[attr-defined]
                                              "object"),
    ("GET", "/api/v1/organizations/{org_id}/outbox"): (
        lambda w: (f"/api/v1/organizations/{w.b.clinic.id}/outbox", None), "platform"),
}


async def prepare(world: World, db: Any) -> None:
    from datetime import timedelta

    from clinic.db.base import utcnow
    from clinic.db.encounters import VisitInvite
    from clinic.db.models import MagicLink, MagicLinkPurpose
    from tests.encounters.conftest import make_visit

    eid = await make_visit(db, world, tenant="b")
    async with db.uow() as uow:
        link = MagicLink(token_hash="1" * 64, user_id=world.b.users["patient"].id, purpose=MagicLinkPurpose.INVITE,
                         next_path="/", expires_at=utcnow() + timedelta(hours=1))
        uow.add(link)
        await uow.session.flush()
        inv = VisitInvite(encounter_id=eid, magic_link_id=link.id, channel="sms", recipient="+821012345678",
                          expires_at=link.expires_at)
        uow.add(inv)
        await uow.session.flush()
        world.b.invite_encounter_id = eid  # type: ignore[attr-defined]
        world.b.invite_id = inv.id  # type: ignore[attr-defined]
        await uow.commit()
