"""Authorization-matrix cases for the policy API (discovered by tests/authz_cases.py).

Neither route touches tenant data: rule sets are public law and the simulator takes hypothetical facts.
Both are "list" cases: staff get 200 (with nothing of tenant B in it), everyone else a refusal.
"""

from __future__ import annotations

from typing import Any

from tests.world import World

Case = Any

SIMULATE_BODY = {"jurisdiction": "KR", "at": "2026-11-24T10:00:00+09:00", "action": "consult", "mode": "video",
                 "patient": {"age": 40}}

CASES: dict[tuple[str, str], tuple[Case, str]] = {
    ("GET", "/api/v1/policy/rule-sets"): (lambda w: ("/api/v1/policy/rule-sets", None), "list"),
    ("POST", "/api/v1/policy/simulate"): (lambda w: ("/api/v1/policy/simulate", SIMULATE_BODY), "list"),
}


async def prepare(world: World, db: Any) -> None:
    """Nothing to create: the routes address no tenant objects."""
