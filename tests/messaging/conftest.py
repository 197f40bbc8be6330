from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient

from clinic.web.app import create_app
from tests.conftest import make_settings
from tests.notify.conftest import SmtpServer, smtp_server  # noqa: F401 - re-exported fixture
from tests.scheduling.conftest import booking  # noqa: F401 - re-exported fixture


@pytest.fixture
async def mail_client(aiohttp_client, db_url: str, tmp_path: Path, world, smtp_server: SmtpServer  # type: ignore[no-untyped-def]  # noqa: F811
                      ) -> AsyncIterator[TestClient]:
    settings = make_settings(db_url, tmp_path, smtp_host="127.0.0.1", smtp_port=smtp_server.port,
                             mail_from="clinic@demo.example", base_url="https://clinic.example",
                             secure_cookies="never")
    app = create_app(settings)
    yield await aiohttp_client(app)
