"""Every notes/documents/records/analytics route has an authorization-matrix case (run by tests/core)."""

from __future__ import annotations

from aiohttp.test_utils import TestClient

from clinic.web.app import API_SPECS
from tests.notes.authz_cases import CASES


async def test_cases_cover_every_route(client: TestClient) -> None:
    ours = {(s.method, s.path) for s in client.app[API_SPECS]
            if s.handler.__module__ in ("clinic.web.routes.notes", "clinic.web.routes.records")}
    assert ours == set(CASES)
