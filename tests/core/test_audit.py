"""The audit chain: written with the change, hash-linked, and verifiable from the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from aiohttp.test_utils import TestClient
from sqlalchemy import select, text

from clinic.audit import verify_chain
from clinic.db.models import AuditEvent
from tests.conftest import TEST_SECRET, Db
from tests.world import World, login


async def _entries(db: Db) -> list[AuditEvent]:
    async with db.uow() as uow:
        return list((await uow.session.execute(select(AuditEvent).order_by(AuditEvent.seq))).scalars())


async def test_reads_and_writes_are_audited(client: TestClient, world: World, db: Db) -> None:
    await login(client, world.a.users["clinician"].email)
    r = await client.get(f"/api/v1/patients/{world.a.patient.id}")  # type: ignore[union-attr]
    assert r.status == 200
    rows = await _entries(db)
    reads = [e for e in rows if e.action == "patient.read" and e.object_id == str(world.a.patient.id)]  # type: ignore[union-attr]
    assert reads and reads[-1].actor_id == str(world.a.users["clinician"].id)
    assert reads[-1].outcome == "success" and reads[-1].source_ip


async def test_denied_access_is_audited(client: TestClient, world: World, db: Db) -> None:
    await login(client, world.a.users["clinician"].email)
    r = await client.get(f"/api/v1/patients/{world.b.patient.id}")  # type: ignore[union-attr]
    assert r.status == 404
    rows = await _entries(db)
    assert any(e.outcome == "denied" and e.object_id == str(world.b.patient.id) for e in rows)  # type: ignore[union-attr]


async def test_change_and_audit_commit_together(db: Db, world: World) -> None:
    from clinic.security.authz import SYSTEM
    from clinic.services.patients import PatientInput, create_patient

    before = len(await _entries(db))
    async with db.uow() as uow:
        await create_patient(uow, SYSTEM, world.a.clinic.id, PatientInput("Roll", "Back", birth_date=__import__(
            "datetime").date(1990, 1, 1)))
        await uow.audit.flush()
        await uow.rollback()
    assert len(await _entries(db)) == before


async def test_chain_detects_change_removal_and_reorder(client: TestClient, world: World, db: Db) -> None:
    await login(client, world.a.users["clinician"].email)
    for _ in range(3):
        await client.get(f"/api/v1/patients/{world.a.patient.id}")  # type: ignore[union-attr]
    async with db.uow() as uow:
        assert (await verify_chain(uow.session)).ok
    rows = await _entries(db)
    victim = rows[len(rows) // 2]

    async with db.engine.begin() as conn:
        await conn.execute(text("UPDATE audit_event SET outcome='success-ish' WHERE seq=:s"), {"s": victim.seq})
    async with db.uow() as uow:
        res = await verify_chain(uow.session)
    assert not res.ok and res.broken_seq == victim.seq and "changed" in res.reason

    async with db.engine.begin() as conn:
        await conn.execute(text("UPDATE audit_event SET outcome=:o WHERE seq=:s"),
                           {"o": victim.outcome, "s": victim.seq})
        await conn.execute(text("DELETE FROM audit_event WHERE seq=:s"), {"s": victim.seq})
    async with db.uow() as uow:
        res = await verify_chain(uow.session)
    assert not res.ok and res.broken_seq == rows[len(rows) // 2 + 1].seq


async def test_cli_audit_verify_fails_on_tampering(client: TestClient, world: World, db: Db, tmp_path: Path) -> None:
    await login(client, world.a.users["clinician"].email)
    await client.get(f"/api/v1/patients/{world.a.patient.id}")  # type: ignore[union-attr]
    env = {**os.environ, "TELEMED_DATABASE_URL": db.url, "TELEMED_SECRET_KEY": TEST_SECRET,
           "TELEMED_DATA_DIR": str(tmp_path)}
    cmd = [sys.executable, "-m", "clinic.cli", "audit", "verify"]
    ok = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stderr
    assert "audit chain OK" in ok.stdout
    rows = await _entries(db)
    async with db.engine.begin() as conn:
        await conn.execute(text("UPDATE audit_event SET actor_label='mallory' WHERE seq=:s"), {"s": rows[1].seq})
    bad = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 1
    assert f"seq={rows[1].seq}" in bad.stderr
