"""The audit chain: written with the change, hash-linked, and verifiable from the CLI."""

from __future__ import annotations

import asyncio
import itertools
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient
from sqlalchemy import select, text

from clinic.audit import seal_all, verify_chain
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
    assert await seal_all(db.factory) > 0
    async with db.uow() as uow:
        res = await verify_chain(uow.session)
    assert res.ok and res.unsealed == 0
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
    assert "audit chain OK" in ok.stdout and "sealed just now" in ok.stdout
    rows = await _entries(db)
    async with db.engine.begin() as conn:
        await conn.execute(text("UPDATE audit_event SET actor_label='mallory' WHERE seq=:s"), {"s": rows[1].seq})
    bad = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 1
    assert f"seq={rows[1].seq}" in bad.stderr


async def _record(db: Db, n: int, label: str) -> None:
    from clinic.security.authz import SYSTEM

    async with db.uow() as uow:
        for i in range(n):
            uow.audit.record(SYSTEM, "test.write", object_type="Test", object_id=f"{label}-{i}")
        await uow.commit()


async def test_entries_commit_unsealed_and_are_chained_in_order(db: Db, world: World) -> None:
    await seal_all(db.factory)
    await _record(db, 3, "first")
    await _record(db, 2, "second")
    fresh = [e for e in await _entries(db) if e.action == "test.write"]
    assert [e.object_id for e in fresh] == ["first-0", "first-1", "first-2", "second-0", "second-1"]
    assert all(e.hash is None and e.chain_pos is None for e in fresh)
    async with db.uow() as uow:
        before = await verify_chain(uow.session)
    assert before.ok and before.unsealed == 5

    assert await seal_all(db.factory) == 5
    assert await seal_all(db.factory) == 0  # nothing is sealed twice
    rows = await _entries(db)
    positions = [e.chain_pos for e in rows]
    assert sorted(p for p in positions if p is not None) == list(range(1, len(rows) + 1))
    sealed = sorted((e for e in rows if e.action == "test.write"), key=lambda e: e.chain_pos or 0)
    assert [e.object_id for e in sealed] == ["first-0", "first-1", "first-2", "second-0", "second-1"]
    assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(sealed))
    async with db.uow() as uow:
        after = await verify_chain(uow.session)
    assert after.ok and after.unsealed == 0 and after.checked == len(rows)


async def test_concurrent_writers_and_sealers_build_one_chain(db: Db, world: World) -> None:
    """Writers never wait for the chain; sealers racing each other still link every entry exactly once."""

    async def sealer() -> None:
        for _ in range(5):
            await seal_all(db.factory)
            await asyncio.sleep(0)

    await asyncio.gather(*(_record(db, 3, f"w{i}") for i in range(20)), sealer(), sealer(), sealer())
    await seal_all(db.factory)
    rows = await _entries(db)
    assert len([e for e in rows if e.action == "test.write"]) == 60
    assert sorted(e.chain_pos or 0 for e in rows) == list(range(1, len(rows) + 1))
    async with db.uow() as uow:
        res = await verify_chain(uow.session)
    assert res.ok and res.unsealed == 0 and res.checked == len(rows)


async def test_the_server_seals_in_the_background_and_on_stop(aiohttp_client: Any, db: Db, world: World,
                                                              tmp_path: Path) -> None:

    from clinic.web.app import create_app
    from tests.conftest import make_settings

    await seal_all(db.factory)
    client = await aiohttp_client(create_app(make_settings(db.url, tmp_path, run_jobs=True)))
    await login(client, world.a.users["clinician"].email)
    assert (await client.get(f"/api/v1/patients/{world.a.patient.id}")).status == 200  # type: ignore[union-attr]
    for _ in range(100):  # the sealer runs every second
        async with db.uow() as uow:
            if (await verify_chain(uow.session)).unsealed == 0:
                break
        await asyncio.sleep(0.1)
    async with db.uow() as uow:
        res = await verify_chain(uow.session)
    assert res.ok and res.unsealed == 0
    reads = [e for e in await _entries(db) if e.action == "patient.read"]
    assert reads and reads[-1].chain_pos is not None

    await _record(db, 1, "late")
    await client.close()  # stopping seals what is left
    async with db.uow() as uow:
        res = await verify_chain(uow.session)
    assert res.ok and res.unsealed == 0
