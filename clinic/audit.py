"""Append-only, hash-chained audit log.

Entries are collected during a unit of work and chained at commit, inside the same transaction,
so a change and its audit entry land together or not at all. The chain is serialised with an
advisory lock on PostgreSQL and by BEGIN IMMEDIATE on SQLite.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from clinic.db.base import new_id, utcnow
from clinic.db.models import AuditEvent
from clinic.security.authz import Principal

GENESIS = "0" * 64
_PG_LOCK_KEY = 0x7E1E_AD17  # arbitrary constant; identifies "audit chain append" among advisory locks


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
        if not self._pending:
            return
        if self._session.get_bind().dialect.name == "postgresql":
            await self._session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_LOCK_KEY})
        prev = (
            await self._session.execute(select(AuditEvent.hash).order_by(AuditEvent.seq.desc()).limit(1))
        ).scalar_one_or_none() or GENESIS
        rows: list[dict[str, Any]] = []
        for p in self._pending:
            h = entry_hash(p, prev)
            rows.append({"id": p.id, "at": p.at, "actor_kind": p.actor_kind, "actor_id": p.actor_id,
                         "actor_label": p.actor_label, "action": p.action, "object_type": p.object_type,
                         "object_id": p.object_id, "organization_id": p.organization_id, "patient_id": p.patient_id,
                         "source_ip": p.source_ip, "outcome": p.outcome, "detail": p.detail, "prev_hash": prev,
                         "hash": h})
            prev = h
        # Core executemany, not one ORM flush per entry: rows are sent in list order, so seq order is chain order.
        await self._session.execute(insert(AuditEvent), rows)
        self._pending.clear()


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    checked: int
    broken_seq: int | None = None
    broken_id: str | None = None
    reason: str = ""


async def _iter_chain(session: AsyncSession, batch: int = 2000) -> AsyncIterator[AuditEvent]:
    last = -1
    while True:
        rows = (
            await session.execute(
                select(AuditEvent).where(AuditEvent.seq > last).order_by(AuditEvent.seq).limit(batch)
            )
        ).scalars().all()
        if not rows:
            return
        for r in rows:
            yield r
        last = rows[-1].seq


async def verify_chain(session: AsyncSession) -> VerifyResult:
    """Recompute the chain; report the first entry whose link or content does not hold.

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
        if entry_hash(e, e.prev_hash) != e.hash:
            return VerifyResult(False, n, e.seq, str(e.id), "content does not match its hash (entry was changed)")
        prev = e.hash
    return VerifyResult(True, n)
