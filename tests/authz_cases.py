"""Authorization-matrix cases contributed by feature test packages (see tests/core/test_authz_matrix.py).

Each ``tests/<feature>/authz_cases.py`` exports ``CASES`` (route → request builder and kind) and an async
``prepare(world, db)`` that gives tenant B the objects its cases address. They are discovered here, so
feature packages never edit this file.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from tests.world import World

Case = Callable[[World], tuple[str, Any]]
_TESTS = Path(__file__).resolve().parent


def _modules() -> list[ModuleType]:
    out = []
    for path in sorted(_TESTS.glob("*/authz_cases.py")):
        out.append(importlib.import_module(f"tests.{path.parent.name}.authz_cases"))
    return out


FEATURE_CASES: dict[tuple[str, str], tuple[Case, str]] = {}
for _m in _modules():
    FEATURE_CASES.update(_m.CASES)


async def prepare_feature_objects(world: World, db: Any) -> None:
    for m in _modules():
        await m.prepare(world, db)
