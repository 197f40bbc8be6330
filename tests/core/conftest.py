from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp.test_utils import TestClient

from clinic.config import Settings
from clinic.web.app import create_app
from tests.conftest import Db
from tests.world import World, build_world


@pytest.fixture
async def world(db: Db) -> World:
    async with db.uow() as uow:
        w = await build_world(uow)
        await uow.commit()
    return w


@pytest.fixture
async def client(aiohttp_client, settings: Settings, world: World) -> AsyncIterator[TestClient]:  # type: ignore[no-untyped-def]
    app = create_app(settings)
    yield await aiohttp_client(app)
