"""Append-only, hash-chained audit log.

Entries are collected during a unit of work and inserted at commit, inside the same transaction, so a
change and its audit entry land together or not at all. Linking them into the hash chain ("sealing") is a
separate, serialised step that runs right after, in the background (``seal``): chaining inside every
transaction meant one global lock held from the chain's head read until commit, which every audited
request in every server process queued behind. An entry is unsealed for about a second; sealed entries
are ordered by ``chain_pos``, the order they were sealed in, which commit order makes differ from ``seq``.
Sealers are serialised by an advisory lock on PostgreSQL and by BEGIN IMMEDIATE on SQLite.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, bindparam, func, insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from clinic.db.base import new_id, utcnow
from clinic.db.models import AuditEvent
from clinic.security.authz import Principal

GENESIS = "0" * 64
_PG_LOCK_KEY = 0x7E1E_AD17  # arbitrary constant; identifies "audit chain append" among advisory locks
SEAL_BATCH = 2000


@dataclass
class PendingAudit:
    action: str
    object_type: str
    object_id: str
    organization_id: str
    patient_id: str
    outcome: str
    detail: dict[str, Any]
    actor_kind: str
    actor_id: str
    actor_label: str
    source_ip: str
    at: datetime = field(default_factory=utcnow)
    id: uuid.UUID = field(default_factory=new_id)


def _s(v: object) -> str:
    return "" if v is None else str(v)


def entry_hash(e: AuditEvent | PendingAudit, prev_hash: str) -> str:
    body = {
        "id": str(e.id),
        "at": e.at.isoformat(),
        "actor_kind": e.actor_kind,
        "actor_id": e.actor_id,
        "actor_label": e.actor_label,
        "action": e.action,
        "object_type": e.object_type,
        "object_id": e.object_id,
        "organization_id": e.organization_id,
        "patient_id": e.patient_id,
        "source_ip": e.source_ip,
        "outcome": e.outcome,
        "detail": e.detail,
        "prev_hash": prev_hash,
    }
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


_TABLE = cast(Table, AuditEvent.__table__)
_INSERT = insert(_TABLE)


class AuditTrail:
    """Collects entries for one transaction and appends them to the chain at flush."""

    def __init__(self, session: AsyncSession) -> None:
        self._session = session
        self._pending: list[PendingAudit] = []

    def record(
        self,
        principal: Principal,
        action: str,
        *,
        object_type: str = "",
        object_id: object = None,
        organization_id: object = None,
        patient_id: object = None,
        outcome: str = "success",
        detail: dict[str, Any] | None = None,
    ) -> None:
        self._pending.append(
            PendingAudit(
                action=action,
                object_type=object_type,
                object_id=_s(object_id),
                organization_id=_s(organization_id),
                patient_id=_s(patient_id),
                outcome=outcome,
                detail=json.loads(json.dumps(detail or {}, default=str)),
                actor_kind=principal.kind,
                actor_id=principal.actor_id if principal.kind != "anonymous" else "",
                actor_label=principal.label,
                source_ip=principal.source_ip,
            )
        )

    @property
    def pending(self) -> list[PendingAudit]:
        return list(self._pending)

    async def flush(self) -> None:
        """Insert the pending entries, unsealed; ``seal`` chains them once committed."""
        if not self._pending:
            return
        rows = [{"id": p.id, "at": p.at, "actor_kind": p.actor_kind, "actor_id": p.actor_id,
                 "actor_label": p.actor_label, "action": p.action, "object_type": p.object_type,
                 "object_id": p.object_id, "organization_id": p.organization_id, "patient_id": p.patient_id,
                 "source_ip": p.source_ip, "outcome": p.outcome, "detail": p.detail}
                for p in self._pending]
        # A Core executemany on the table, not the ORM's bulk insert (a third of the CPU): rows are sent in
        # list order, so seq order is the transaction's order, which sealing keeps.
        await (await self._session.connection()).execute(_INSERT, rows)
        self._pending.clear()


_HEAD = select(_TABLE.c.chain_pos, _TABLE.c.hash).where(_TABLE.c.chain_pos.is_not(None)) \
    .order_by(_TABLE.c.chain_pos.desc()).limit(1)
_UNSEALED = select(_TABLE).where(_TABLE.c.chain_pos.is_(None)).order_by(_TABLE.c.seq).limit(bindparam("batch"))
_SEAL = (update(_TABLE).where(_TABLE.c.seq == bindparam("b_seq"))
         .values(prev_hash=bindparam("b_prev"), hash=bindparam("b_hash"), chain_pos=bindparam("b_pos")))


async def seal(session: AsyncSession, batch: int = SEAL_BATCH) -> int:
    """Chain up to ``batch`` committed, unsealed entries onto the chain's head, oldest first; returns how
    many. The caller commits."""
    if session.get_bind().dialect.name == "postgresql":
        await session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_LOCK_KEY})
    # Separate statements after the lock: in READ COMMITTED each statement sees what committed before it
    # began, so these see the previous sealer's work however long the lock took.
    conn = await session.connection()
    head = (await conn.execute(_HEAD)).first()
    pos, prev = (head.chain_pos, head.hash) if head is not None else (0, GENESIS)
    # Plain rows, not ORM objects: the sealer shares its process with requests.
    todo = (await conn.execute(_UNSEALED, {"batch": batch})).all()
    params: list[dict[str, Any]] = []
    for e in todo:
        pos += 1
        h = entry_hash(cast(AuditEvent, e), prev)
        params.append({"b_seq": e.seq, "b_prev": prev, "b_hash": h, "b_pos": pos})
        prev = h
    if params:
        await conn.execute(_SEAL, params)
    return len(params)


async def seal_all(session_factory: async_sessionmaker[AsyncSession]) -> int:
    """Seal everything committed so far, a batch per transaction; returns how many entries were sealed."""
    total = 0
    while True:
        async with session_factory() as session, session.begin():
            n = await seal(session)
        total += n
        if n < SEAL_BATCH:
            return total


async def unsealed(session: AsyncSession) -> int:
    """How many committed entries are waiting for the sealer."""
    return (await session.execute(select(func.count()).select_from(AuditEvent)
                                  .where(AuditEvent.chain_pos.is_(None)))).scalar_one()


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    checked: int
    broken_seq: int | None = None
    broken_id: str | None = None
    reason: str = ""
    #: Entries not sealed yet, hence not covered by this verification.
    unsealed: int = 0


async def _iter_chain(session: AsyncSession, batch: int = 2000) -> AsyncIterator[AuditEvent]:
    last = 0
    while True:
        rows = (
            await session.execute(
                select(AuditEvent).where(AuditEvent.chain_pos > last).order_by(AuditEvent.chain_pos).limit(batch)
            )
        ).scalars().all()
        if not rows:
            return
        for r in rows:
            yield r
        last = rows[-1].chain_pos or 0


async def verify_chain(session: AsyncSession) -> VerifyResult:
    """Recompute the sealed chain; report the first entry whose link or content does not hold.

    A changed entry fails its own hash; a removed or reordered entry breaks the next entry's
    prev_hash link.
    """
    prev = GENESIS
    n = 0
    async for e in _iter_chain(session):
        n += 1
        if e.prev_hash != prev:
            return VerifyResult(False, n, e.seq, str(e.id), "prev_hash does not match the preceding entry "
                                "(an entry was removed, inserted or reordered)")
        if entry_hash(e, prev) != e.hash:
            return VerifyResult(False, n, e.seq, str(e.id), "content does not match its hash (entry was changed)")
        prev = e.hash or ""
    return VerifyResult(True, n, unsealed=await unsealed(session))
