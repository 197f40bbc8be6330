"""Authorization-matrix cases for the encounter routes (discovered by tests/authz_cases.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tests.world import World

Case = Callable[[World], tuple[str, Any]]


def _e(w: World) -> str:
    return f"/api/v1/encounters/{w.b.encounter_id}"  # type: ignore[attr-defined]


CASES: dict[tuple[str, str], tuple[Case, str]] = {
    ("GET", "/api/v1/encounters/{id}"): (lambda w: (_e(w), None), "object"),
    ("GET", "/api/v1/patients/{id}/encounters"): (lambda w: (f"/api/v1/patients/{w.b.patient.id}/encounters", None),  # type: ignore[union-attr]
                                                  "object"),
    ("POST", "/api/v1/encounters/{id}/check-in"): (lambda w: (_e(w) + "/check-in", {
        "family_name": "Test", "given_name": "patientb", "birth_date": "1980-01-01", "chief_complaint": "x"}),
        "object"),
    ("GET", "/api/v1/encounters/{id}/waiting"): (lambda w: (_e(w) + "/waiting", None), "object"),
    ("POST", "/api/v1/encounters/{id}/leave"): (lambda w: (_e(w) + "/leave", None), "object"),
    ("GET", "/api/v1/organizations/{org_id}/queue"): (lambda w: (f"/api/v1/organizations/{w.b.clinic.id}/queue", None),
                                                     "object"),
    ("POST", "/api/v1/encounters/{id}/claim"): (lambda w: (_e(w) + "/claim", None), "object"),
    ("POST", "/api/v1/encounters/{id}/release"): (lambda w: (_e(w) + "/release", None), "object"),
    ("POST", "/api/v1/encounters/{id}/transfer"): (
        lambda w: (_e(w) + "/transfer", {"to_user_id": str(w.a.users["clinician"].id)}), "object"),
    ("POST", "/api/v1/encounters/{id}/priority"): (lambda w: (_e(w) + "/priority", {"priority": 1}), "object"),
    ("POST", "/api/v1/encounters/{id}/admit"): (lambda w: (_e(w) + "/admit", None), "object"),
    ("POST", "/api/v1/encounters/{id}/mode"): (lambda w: (_e(w) + "/mode", {"mode": "audio"}), "object"),
    ("POST", "/api/v1/encounters/{id}/complete"): (lambda w: (_e(w) + "/complete", None), "object"),
    ("GET", "/api/v1/encounters/{id}/chat"): (lambda w: (_e(w) + "/chat", None), "object"),
    ("POST", "/api/v1/encounters/{id}/chat"): (lambda w: (_e(w) + "/chat", {"text": "hi"}), "object"),
    ("POST", "/api/v1/encounters/{id}/photos"): (lambda w: (_e(w) + "/photos", None), "object"),
    ("GET", "/api/v1/photos/{id}"): (lambda w: (f"/api/v1/photos/{w.b.photo_id}", None), "object"),  # type: ignore[attr-defined]
    ("POST", "/api/v1/me/presence"): (lambda w: ("/api/v1/me/presence", {"status": "online"}), "self"),
}


async def prepare(world: World, db: Any) -> None:
    from clinic.db.encounters import StoredPhoto
    from tests.encounters.conftest import make_visit

    eid = await make_visit(db, world, tenant="b")
    world.b.encounter_id = eid  # type: ignore[attr-defined]
    async with db.uow() as uow:
        ph = StoredPhoto(encounter_id=eid, purpose="chat", width=1, height=1, size_bytes=1, sha256="0" * 64)
        uow.add(ph)
        await uow.session.flush()
        world.b.photo_id = ph.id  # type: ignore[attr-defined]
        await uow.commit()
