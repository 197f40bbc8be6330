"""Unit of work: one transaction, its audit entries, and what to announce after it commits."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any

from sqlalchemy import CursorResult, Executable, event
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session

from clinic.audit import AuditTrail

log = logging.getLogger(__name__)

AfterCommit = Callable[[], Awaitable[None]]

_LOADED = "telemed.loaded"


@event.listens_for(Session, "loaded_as_persistent")
def _hold(session: Session, instance: object) -> None:
    # The identity map only holds weak references: a row a service loaded and let go of (the patient checked
    # by the booking service, say) would be fetched again by the next service in the same transaction.
    # Holding every loaded row for the unit of work's short life makes repeat `session.get`s free.
    held = session.info.get(_LOADED)
    if held is not None:
        held.append(instance)


class UnitOfWork:
    def __init__(self, factory: async_sessionmaker[AsyncSession]) -> None:
        self._factory = factory
        self._after: list[AfterCommit] = []
        self._committed = False

    async def __aenter__(self) -> UnitOfWork:
        self.session: AsyncSession = self._factory()
        self.session.info[_LOADED] = []
        self.audit = AuditTrail(self.session)
        await self.session.begin()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            if et is not None:
                await self.session.rollback()
        finally:
            # close() discards an uncommitted transaction but, unlike rollback(), leaves loaded objects
            # readable, which read-only units of work rely on.
            await self.session.close()

    def after_commit(self, fn: AfterCommit) -> None:
        """Run ``fn`` once the transaction is durable (e.g. push a queue update to WebSockets)."""
        self._after.append(fn)

    async def commit(self) -> None:
        await self.audit.flush()
        await self.session.commit()
        self._committed = True
        callbacks, self._after = self._after, []
        for fn in callbacks:
            try:
                await fn()
            except Exception:
                import logging

                logging.getLogger(__name__).exception("after-commit callback failed")

    async def rollback(self) -> None:
        await self.session.rollback()
        self._after.clear()

    def add(self, obj: Any) -> None:
        self.session.add(obj)

    async def read(self, statement: Executable, params: dict[str, Any] | None = None) -> CursorResult[*tuple[Any, ...]]:
        """Plain rows for a column-only statement, on this transaction's connection but past the ORM: its
        per-statement work was about a third of a small query's CPU. Unlike ``session.execute`` this does
        not flush first, so it does not see changes still pending in the session."""
        return await (await self.session.connection()).execute(statement, params)


UowFactory = Callable[[], UnitOfWork]
