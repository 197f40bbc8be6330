"""How long after a check-in the doctor's open queue page receives it (target: ≤ 200 ms).

    python benchmarks/queue_latency_bench.py [--visits 30] [--sqlite]

A throwaway PostgreSQL database (or SQLite file) is migrated and seeded with a clinic, a clinician and one
patient per visit. The real server runs in its own process (`telemed serve`); a clinician keeps
`/ws/queue` open (as the console page does) while patients check in over the JSON API one after another.
The figure is the time from sending the check-in request to the WebSocket snapshot that contains it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import aiohttp
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from clinic.db.clinical import ConsentKind, Patient, Practitioner
from clinic.db.encounters import Encounter
from clinic.db.engine import make_engine, session_factory
from clinic.db.migrate import upgrade
from clinic.db.models import Membership, Organization, OrgKind, Role, User
from clinic.db.uow import UnitOfWork
from clinic.encounters.state import EncounterStatus
from clinic.security.authz import SYSTEM
from clinic.security.passwords import hash_password
from clinic.services.patients import grant_consent

PASSWORD = "bench-password-123"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def admin_exec(url: str, sql: str) -> None:
    engine = create_async_engine(url, isolation_level="AUTOCOMMIT")
    async with engine.connect() as conn:
        await conn.execute(text(sql))
    await engine.dispose()


async def seed(url: str, visits: int) -> tuple[uuid.UUID, list[tuple[str, uuid.UUID, Patient]]]:
    engine = make_engine(url)
    pw = hash_password(PASSWORD)
    out = []
    async with UnitOfWork(session_factory(engine)) as uow:
        org = Organization(name="Bench", kind=OrgKind.CLINIC, require_2fa=False)
        uow.add(org)
        await uow.session.flush()
        doc = User(email="doc@bench.example", display_name="doc", password_hash=pw)
        uow.add(doc)
        await uow.session.flush()
        uow.add(Membership(user_id=doc.id, organization_id=org.id, role=Role.CLINICIAN))
        uow.add(Practitioner(user_id=doc.id))
        for i in range(visits):
            u = User(email=f"p{i}@bench.example", display_name=f"p{i}", password_hash=pw)
            uow.add(u)
            await uow.session.flush()
            uow.add(Membership(user_id=u.id, organization_id=org.id, role=Role.PATIENT))
            p = Patient(organization_id=org.id, user_id=u.id, family_name="Bench", given_name=str(i),
                        birth_date=date(1980, 1, 1))
            uow.add(p)
            await uow.session.flush()
            # Check-in requires the patient's consent to telemedicine (given on the visit page beforehand).
            await grant_consent(uow, SYSTEM, p.id, ConsentKind.TELEMEDICINE)
            e = Encounter(organization_id=org.id, patient_id=p.id, status=EncounterStatus.BOOKED, kind="on_demand")
            uow.add(e)
            await uow.session.flush()
            out.append((u.email, e.id, p))
        await uow.commit()
    await engine.dispose()
    return org.id, out


async def run(args: argparse.Namespace) -> None:
    tmp = Path(tempfile.mkdtemp())
    if args.sqlite:
        url = f"sqlite+aiosqlite:///{tmp / 'bench.db'}"
        name = None
    else:
        name = f"telemed_qbench_{uuid.uuid4().hex[:8]}"
        await admin_exec(args.pg, f'CREATE DATABASE "{name}"')
        url = f"{args.pg.rsplit('/', 1)[0]}/{name}"
    proc = None
    try:
        engine = make_engine(url)
        await upgrade(engine)
        await engine.dispose()
        org_id, visits = await seed(url, args.visits)
        port = free_port()
        env = {**os.environ, "TELEMED_DATABASE_URL": url, "TELEMED_DATA_DIR": str(tmp), "TELEMED_PORT": str(port),
               "TELEMED_SECRET_KEY": "bench-" + "x" * 40, "TELEMED_LOGIN_MAX_ATTEMPTS": "1000",
               "TELEMED_RUN_JOBS": "false", "TELEMED_LOG_LEVEL": "WARNING"}
        proc = subprocess.Popen([sys.executable, "-m", "clinic.cli", "serve"], env=env)  # noqa: ASYNC220
        base = f"http://127.0.0.1:{port}"
        for _ in range(300):
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
            except OSError:
                await asyncio.sleep(0.1)
        latencies: list[float] = []
        async with aiohttp.ClientSession(base_url=base, cookie_jar=aiohttp.CookieJar(unsafe=True)) as doc:
            r = await doc.post("/api/v1/auth/login", json={"email": "doc@bench.example", "password": PASSWORD})
            assert r.status == 200
            async with doc.ws_connect(f"/ws/queue?organization_id={org_id}") as ws:
                await ws.receive_json()
                for email, eid, p in visits:
                    async with aiohttp.ClientSession(base_url=base, cookie_jar=aiohttp.CookieJar(unsafe=True)) as pat:
                        r = await pat.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
                        csrf = (await r.json())["csrf_token"]
                        t0 = time.perf_counter()
                        r = await pat.post(f"/api/v1/encounters/{eid}/check-in", headers={"X-CSRF-Token": csrf},
                                           json={"family_name": p.family_name, "given_name": p.given_name,
                                                 "birth_date": p.birth_date.isoformat(), "chief_complaint": "cough"})
                        assert r.status == 200, await r.text()
                        while True:
                            msg = json.loads((await ws.receive(timeout=10)).data)
                            if any(i["encounter_id"] == str(eid) for i in msg.get("items", [])):
                                latencies.append((time.perf_counter() - t0) * 1000)
                                break
        s = sorted(latencies)
        p95 = s[max(0, round(0.95 * (len(s) - 1)))]
        print(f"database={'sqlite' if args.sqlite else 'postgresql'} visits={len(s)}")
        print(f"check-in → doctor's queue page: p50={statistics.median(s):.1f} ms  p95={p95:.1f} ms  "
              f"max={s[-1]:.1f} ms (includes the check-in request itself)")
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=10)
        if name:
            await admin_exec(args.pg, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--visits", type=int, default=30)
    ap.add_argument("--sqlite", action="store_true")
    ap.add_argument("--pg", default=os.environ.get("TELEMED_TEST_PG_URL",
                                                   "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"))
    asyncio.run(run(ap.parse_args()))


if __name__ == "__main__":
    main()
