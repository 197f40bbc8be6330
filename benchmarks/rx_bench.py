"""Sign + store + route latency of prescriptions, on SQLite and PostgreSQL.

    python benchmarks/rx_bench.py [--n 300] [--pg postgresql+asyncpg://postgres@127.0.0.1:5432/test] [--json]

Each prescription is created as a draft beforehand (not timed); the timed part is one transaction that
signs it (Ed25519 over the canonical document, key decrypted from the key store), stores it with its
audit entry, and routes it to the nominated pharmacy in the same transaction — what a clinician waits for
after pressing "sign and send" (``POST /api/v1/prescriptions/{id}/sign-and-send``).
Target: p95 ≤ 20 ms (no PDF rendering involved).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from clinic.db.base import utcnow
from clinic.db.clinical import InPersonVisit
from clinic.db.encounters import Encounter
from clinic.db.engine import make_engine, session_factory
from clinic.db.migrate import upgrade
from clinic.db.models import User
from clinic.db.uow import UnitOfWork
from clinic.encounters.state import EncounterStatus
from clinic.policy import PolicyEngine
from clinic.services import accounts
from clinic.services.policy import PolicyService
from prescriptions import service as svc
from prescriptions.formulary import load_starter
from prescriptions.signing import LocalKeyStore
from tests.world import build_world

SECRET = "bench-secret-" + "x" * 40


def pct(xs: list[float], p: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, round(p / 100 * (len(s) - 1)))]


async def run(url: str, n: int) -> dict[str, Any]:
    engine = make_engine(url)
    await upgrade(engine)
    factory = session_factory(engine)
    policy = PolicyService(PolicyEngine.from_directory())
    ks = LocalKeyStore(SECRET)
    async with UnitOfWork(factory) as uow:
        w = await build_world(uow)
        await load_starter(uow)
        assert w.a.other_patient is not None and w.a.patient is not None
        for _ in range(50):
            uow.add(InPersonVisit(patient_id=w.a.other_patient.id, organization_id=w.a.clinic.id,
                                  visit_date=utcnow().date()))
        enc = Encounter(organization_id=w.a.clinic.id, patient_id=w.a.patient.id,
                        claimed_by_id=w.a.users["clinician"].id, status=EncounterStatus.IN_CONSULT,
                        started_at=utcnow())
        uow.add(enc)
        await uow.commit()
    async with UnitOfWork(factory) as uow:
        user = await uow.session.get(User, w.a.users["clinician"].id)
        assert user is not None
        doc = await accounts.build_principal(uow, user, mfa_at=utcnow())
    # Distinct drug classes per draft would be needed to avoid duplicate-therapy warnings; overriding is simpler.
    codes = ["amoxicillin-500mg-cap", "paracetamol-500mg-tab", "ibuprofen-400mg-tab"]
    ids: list[uuid.UUID] = []
    for i in range(n):
        code = codes[i % len(codes)]
        async with UnitOfWork(factory) as uow:
            item = svc.ItemInput(medication_code=code, dose=Decimal(1), frequency="TID", duration_days=5,
                                 quantity=Decimal(15))
            try:
                rx = await svc.create_prescription(uow, doc, policy, encounter_id=enc.id, items=[item])
            except Exception:
                rx = await svc.create_prescription(uow, doc, policy, encounter_id=enc.id, items=[item],
                                                   overrides={f"duplicate_therapy:{code}": "benchmark"})
            await uow.commit()
            ids.append(rx.id)
    timings: list[float] = []
    for rx_id in ids:
        t0 = time.perf_counter()
        # One transaction, as POST /prescriptions/{id}/sign-and-send does.
        async with UnitOfWork(factory) as uow:
            await svc.sign(uow, doc, rx_id, ks, step_up_minutes=5)
            await svc.send(uow, doc, rx_id)
            await uow.commit()
        timings.append((time.perf_counter() - t0) * 1000)
    await engine.dispose()
    return {"n": n, "p50_ms": round(statistics.median(timings), 2), "p95_ms": round(pct(timings, 95), 2),
            "p99_ms": round(pct(timings, 99), 2), "max_ms": round(max(timings), 2)}


async def pg_database(admin_url: str) -> tuple[str, str]:
    name = f"rx_bench_{uuid.uuid4().hex[:8]}"
    eng = create_async_engine(admin_url, isolation_level="AUTOCOMMIT")
    async with eng.connect() as c:
        await c.execute(text(f'CREATE DATABASE "{name}"'))
    await eng.dispose()
    return admin_url.rsplit("/", 1)[0] + "/" + name, name


async def drop_pg(admin_url: str, name: str) -> None:
    eng = create_async_engine(admin_url, isolation_level="AUTOCOMMIT")
    async with eng.connect() as c:
        await c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    await eng.dispose()


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--pg", default="postgresql+asyncpg://postgres@127.0.0.1:5432/test")
    ap.add_argument("--no-pg", action="store_true")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        results["sqlite"] = await run(f"sqlite+aiosqlite:///{Path(tmp) / 'bench.db'}", args.n)
    if not args.no_pg:
        url, name = await pg_database(args.pg)
        try:
            results["postgresql"] = await run(url, args.n)
        finally:
            await drop_pg(args.pg, name)
    if args.json:
        print(json.dumps(results))
        return
    for backend, r in results.items():
        ok = "OK" if r["p95_ms"] <= 20 else "OVER TARGET"
        print(f"{backend:>10}: sign+store+route n={r['n']}  p50 {r['p50_ms']} ms  p95 {r['p95_ms']} ms  "
              f"p99 {r['p99_ms']} ms  max {r['max_ms']} ms  [{ok}: p95 ≤ 20 ms]")


if __name__ == "__main__":
    asyncio.run(main())
