"""Authorization-matrix cases for practitioner profiles (discovered by tests/authz_cases.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tests.world import World

Case = Callable[[World], tuple[str, Any]]


def _p(w: World) -> str:
    return f"/api/v1/practitioners/{w.b.users['clinician'].id}"


CASES: dict[tuple[str, str], tuple[Case, str]] = {
    ("GET", "/api/v1/organizations/{org_id}/practitioners"): (
        lambda w: (f"/api/v1/organizations/{w.b.clinic.id}/practitioners", None), "object"),
    ("GET", "/api/v1/practitioners/{user_id}"): (lambda w: (_p(w), None), "object"),
    ("PATCH", "/api/v1/practitioners/{user_id}"): (lambda w: (_p(w), {"specialty": "x"}), "object"),
    ("POST", "/api/v1/practitioners/{user_id}/licenses"): (
        lambda w: (_p(w) + "/licenses", {"jurisdiction": "KR", "number": "1"}), "object"),
    ("DELETE", "/api/v1/practitioners/{user_id}/licenses/{id}"): (
        lambda w: (_p(w) + f"/licenses/{w.b.license_id}", None), "object"),  # type: ignore[attr-defined]
}


async def prepare(world: World, db: Any) -> None:
    from sqlalchemy import select

    from clinic.db.clinical import License, Practitioner

    async with db.uow() as uow:
        pr = (await uow.session.execute(select(Practitioner).where(
            Practitioner.user_id == world.b.users["clinician"].id))).scalar_one()
        lic = License(practitioner_id=pr.id, jurisdiction="KR", number="B-1")
        uow.add(lic)
        await uow.session.flush()
        world.b.license_id = lic.id  # type: ignore[attr-defined]
        await uow.commit()
