"""Authorization-matrix cases for the consent routes added with the patient journey (discovered by
tests/authz_cases.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tests.world import World

Case = Callable[[World], tuple[str, Any]]

CASES: dict[tuple[str, str], tuple[Case, str]] = {
    ("POST", "/api/v1/patients/{id}/consents/decline"): (
        lambda w: (f"/api/v1/patients/{w.b.patient.id}/consents/decline", {"kind": "telemedicine"}),  # type: ignore[union-attr]
        "object"),
}


async def prepare(world: World, db: Any) -> None:
    """The cases address tenant B's patient, which every world has."""
