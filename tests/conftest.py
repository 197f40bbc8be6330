"""Shared fixtures: real SQLite and real PostgreSQL databases, migrated with Alembic, and the app."""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from clinic.config import Settings, load_settings
from clinic.db.engine import make_engine, session_factory
from clinic.db.migrate import upgrade
from clinic.db.uow import UnitOfWork

PG_ADMIN_URL = os.environ.get("TELEMED_TEST_PG_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")
TEST_SECRET = "test-secret-key-" + "x" * 40


def _pg_base() -> str:
    return PG_ADMIN_URL.rsplit("/", 1)[0]


_template: dict[str, str] = {}


async def _sqlite_template(root: Path) -> Path:
    path = root / "template.db"
    if not path.exists():
        engine = make_engine(f"sqlite+aiosqlite:///{path}")
        await upgrade(engine)
        await engine.dispose()
    return path


async def _pg_exec(sql: str) -> None:
    engine = create_async_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            await conn.execute(text(sql))
    finally:
        await engine.dispose()


async def _pg_template() -> str:
    if "pg" in _template:
        return _template["pg"]
    name = f"telemed_tpl_{os.getpid()}"
    try:
        await _pg_exec(f'DROP DATABASE IF EXISTS "{name}"')
        await _pg_exec(f'CREATE DATABASE "{name}"')
    except OSError as exc:  # connection refused
        raise RuntimeError(f"PostgreSQL test database unreachable at {PG_ADMIN_URL}: {exc}") from exc
    engine = make_engine(f"{_pg_base()}/{name}")
    await upgrade(engine)
    await engine.dispose()
    _template["pg"] = name
    return name


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return asyncio.run(_sqlite_template(tmp_path_factory.mktemp("tpl")))


def _backends() -> list[Any]:
    # PostgreSQL always runs unless explicitly switched off; in CI switching it off is refused.
    if os.environ.get("TELEMED_TEST_NO_PG") and os.environ.get("CI") != "true":
        return ["sqlite"]
    return ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture(params=_backends())
def db_url(request: pytest.FixtureRequest, tmp_path: Path, sqlite_template: Path) -> Iterator[str]:
    if request.param == "sqlite":
        path = tmp_path / "telemed.db"
        shutil.copy(sqlite_template, path)
        yield f"sqlite+aiosqlite:///{path}"
        return
    tpl = asyncio.run(_pg_template())
    name = f"telemed_t_{uuid.uuid4().hex[:12]}"
    asyncio.run(_pg_exec(f'CREATE DATABASE "{name}" TEMPLATE "{tpl}"'))
    yield f"{_pg_base()}/{name}"
    asyncio.run(_pg_exec(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def sqlite_url(tmp_path: Path, sqlite_template: Path) -> str:
    path = tmp_path / "telemed.db"
    shutil.copy(sqlite_template, path)
    return f"sqlite+aiosqlite:///{path}"


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if "pg" in _template:
        try:
            asyncio.run(_pg_exec(f'DROP DATABASE IF EXISTS "{_template["pg"]}" WITH (FORCE)'))
        except Exception:
            pass


def make_settings(db_url: str, tmp_path: Path, **over: Any) -> Settings:
    env = {"TELEMED_SECRET_KEY": TEST_SECRET}
    over.setdefault("run_jobs", False)
    return load_settings(env, data_dir=tmp_path / "var", database_url=db_url, **over)


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    return make_settings(db_url, tmp_path)


@dataclass
class Db:
    url: str

    def __post_init__(self) -> None:
        self.engine = make_engine(self.url)
        self.factory = session_factory(self.engine)

    def uow(self) -> UnitOfWork:
        return UnitOfWork(self.factory)


@pytest.fixture
async def db(db_url: str) -> AsyncIterator[Db]:
    d = Db(db_url)
    yield d
    await d.engine.dispose()


@pytest.fixture
async def world(db: Db) -> Any:
    """Two tenants with every role (tests/world.py); feature packages may override it."""
    from tests.world import build_world

    async with db.uow() as uow:
        w = await build_world(uow)
        await uow.commit()
    return w


@pytest.fixture
async def client(aiohttp_client: Any, settings: Settings, world: Any) -> Any:
    """The real app (all features installed) on the test database, with ``world`` in it."""
    from clinic.web.app import create_app

    return await aiohttp_client(create_app(settings))
