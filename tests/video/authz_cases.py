"""Authorization-matrix cases for the video-visit routes (discovered by tests/authz_cases.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tests.world import World

Case = Callable[[World], tuple[str, Any]]


def _e(w: World) -> str:
    return f"/api/v1/encounters/{w.b.video_encounter_id}"  # type: ignore[attr-defined]


CASES: dict[tuple[str, str], tuple[Case, str]] = {
    ("POST", "/api/v1/encounters/{id}/room-token"): (lambda w: (_e(w) + "/room-token", None), "object"),
    ("POST", "/api/v1/encounters/{id}/guests"): (
        lambda w: (_e(w) + "/guests", {"role": "caregiver", "display_name": "Mallory"}), "object"),
}


async def prepare(world: World, db: Any) -> None:
    from tests.encounters.conftest import make_visit

    world.b.video_encounter_id = await make_visit(db, world, tenant="b")  # type: ignore[attr-defined]
