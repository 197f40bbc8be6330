"""Alembic environment. Runs on a connection handed in by clinic.db.migrate (async engines)."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.engine import Connection

from clinic.db.migrate import target_metadata

config = context.config


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata(),
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        user_module_prefix="clinic.db.base.",
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    conn = config.attributes.get("connection")
    if conn is not None:
        _run(conn)
        return
    from clinic.db.engine import make_engine

    async def go() -> None:
        engine = make_engine(config.get_main_option("sqlalchemy.url") or "")
        async with engine.begin() as c:
            await c.run_sync(_run)
        await engine.dispose()

    asyncio.run(go())


if context.is_offline_mode():
    context.configure(url=config.get_main_option("sqlalchemy.url"), target_metadata=target_metadata(),
                      literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    run_migrations_online()
