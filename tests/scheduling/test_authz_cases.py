"""Tenant A's roles against tenant B's scheduling objects: every one refused, nothing leaked (the same check
``tests/core/test_authz_matrix.py`` makes once these cases are merged into ``tests/authz_cases.py``)."""

from __future__ import annotations

import pytest
from aiohttp.test_utils import TestClient

from clinic.web.app import API_SPECS
from tests.conftest import Db
from tests.scheduling.authz_cases import SCHEDULING_CASES, prepare_scheduling_objects
from tests.world import World, hdr, login


async def test_cases_cover_every_scheduling_route(client: TestClient) -> None:
    ours = {(s.method, s.path) for s in client.app[API_SPECS] if s.handler.__module__.endswith(".scheduling")}
    assert ours == set(SCHEDULING_CASES)


@pytest.mark.parametrize("actor", ["patient", "clinician", "pharmacist", "org_admin", "root"])
async def test_other_tenant_scheduling_objects_never_leak(client: TestClient, world: World, db: Db,
                                                          actor: str) -> None:
    await prepare_scheduling_objects(world, db)
    user = world.root if actor == "root" else world.a.users[actor]
    csrf = await login(client, user.email)
    secrets = [str(world.b.patient.id), str(world.b.appointment_id)]  # type: ignore[union-attr, attr-defined]
    for (method, template), (build, kind) in SCHEDULING_CASES.items():
        path, body = build(world)
        r = await client.request(method, path, json=body, headers=hdr(csrf))
        text = await r.text()
        where = f"{actor} {method} {template} -> {r.status} {text[:200]}"
        assert r.status in ((200, 403, 404) if kind == "list" else (403, 404)), where
        for s in secrets:
            assert s not in text, f"leaked {s}: {where}"
