"""Authorization-matrix cases contributed by feature packages (see tests/core/test_authz_matrix.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tests.prescriptions.authz_cases import PRESCRIPTION_CASES, prepare_prescription_objects
from tests.scheduling.authz_cases import SCHEDULING_CASES, prepare_scheduling_objects
from tests.world import World

Case = Callable[[World], tuple[str, Any]]

FEATURE_CASES: dict[tuple[str, str], tuple[Case, str]] = {**SCHEDULING_CASES, **PRESCRIPTION_CASES}


async def prepare_feature_objects(world: World, db: Any) -> None:
    await prepare_scheduling_objects(world, db)
    await prepare_prescription_objects(world, db)
