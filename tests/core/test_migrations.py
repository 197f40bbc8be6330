"""The Alembic migrations produce exactly the schema the models describe, on both databases."""

from __future__ import annotations

from clinic.db.migrate import pending_diff
from tests.conftest import Db


async def test_models_and_migrations_agree(db: Db) -> None:
    diff = await pending_diff(db.engine)
    assert diff == [], f"models and migrations disagree; regenerate or add a revision: {diff}"


async def test_migration_is_reversible_to_base(db_url: str) -> None:
    from alembic import command
    from sqlalchemy.engine import Connection

    from clinic.db.engine import make_engine
    from clinic.db.migrate import alembic_config, upgrade

    engine = make_engine(db_url)

    def down(conn: Connection) -> None:
        cfg = alembic_config()
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "base")

    async with engine.begin() as conn:
        await conn.run_sync(down)
    await upgrade(engine)
    assert await pending_diff(engine) == []
    await engine.dispose()
