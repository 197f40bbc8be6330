"""Latency of slot search and booking under 100 concurrent patients, against a real PostgreSQL.

    python benchmarks/booking_bench.py [--clients 100] [--rounds 10] [--think 2] [--workers 2] [--no-email]
                                       [--pg URL]

A throwaway database is created and migrated, a clinic with 10 clinicians (08:00-20:00 every day, 15-minute
visits) and one patient account per client is seeded. Every client signs in over HTTP and then, per round,
searches one day of slots and books a randomly chosen one. Clients deliberately collide on popular slots, so
some bookings answer 409 ``slot_taken``; both outcomes are timed, and the final check confirms no
practitioner time was double-booked. Every patient has an e-mail address, so every booking also composes its
confirmation with the calendar invitation and hands it to a real SMTP server (aiosmtpd, discarding) started
here; ``--no-email`` leaves that out.
The server runs as `telemed serve` in its own processes (``--workers``, default 2, with Redis for their
fan-out) and the clients in this one; all share the machine's cores with PostgreSQL. Two warm-up rounds
(``--warmup``) are not measured. Besides latencies it prints the server's CPU per request and the clients' CPU.

``--think S`` gives every client S seconds of (randomised) think time between its search-and-book cycles, which
is what 100 concurrent people at their screens look like; ``--think 0`` is a closed loop that measures the
server at saturation instead.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time as clock
import uuid
from datetime import UTC, date, datetime, timedelta
from datetime import time as dtime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import aiohttp
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import create_async_engine

from clinic.db.clinical import Patient, Practitioner
from clinic.db.engine import make_engine, session_factory
from clinic.db.migrate import upgrade
from clinic.db.models import Membership, Organization, OrgKind, Role, User
from clinic.db.scheduling import Appointment, AvailabilityRule, Schedule, SlotClaim, VisitType
from clinic.db.uow import UnitOfWork
from clinic.security.passwords import hash_password

PASSWORD = "bench-password-123"
CLINICIANS = 10


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    k = max(0, min(len(s) - 1, round(p / 100 * (len(s) - 1))))
    return s[k]


def report(name: str, values: list[float]) -> None:
    if not values:
        print(f"{name:<28} n=0")
        return
    print(f"{name:<28} n={len(values):<5} p50={pct(values, 50):7.1f} ms  p95={pct(values, 95):7.1f} ms  "
          f"p99={pct(values, 99):7.1f} ms  mean={statistics.fmean(values):7.1f} ms")


async def admin_exec(admin_url: str, sql: str) -> None:
    engine = create_async_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            await conn.execute(text(sql))
    finally:
        await engine.dispose()


async def seed(url: str, clients: int, *, with_email: bool = True
               ) -> tuple[uuid.UUID, uuid.UUID, list[tuple[str, uuid.UUID]]]:
    engine = make_engine(url)
    factory = session_factory(engine)
    pw = hash_password(PASSWORD)
    async with UnitOfWork(factory) as uow:
        org = Organization(name="Bench Clinic", kind=OrgKind.CLINIC, require_2fa=False)
        uow.add(org)
        await uow.session.flush()
        vt = VisitType(organization_id=org.id, code="consult", name="Consultation", duration_minutes=15,
                       modes=["video", "audio"], fee_amount=15000, currency="KRW")
        uow.add(vt)
        for i in range(CLINICIANS):
            u = User(email=f"doc{i}@bench.example", display_name=f"doc{i}", password_hash=pw)
            uow.add(u)
            await uow.session.flush()
            uow.add(Membership(user_id=u.id, organization_id=org.id, role=Role.CLINICIAN))
            uow.add(Practitioner(user_id=u.id))
            s = Schedule(organization_id=org.id, practitioner_user_id=u.id, timezone="Asia/Seoul",
                         observe_public_holidays=False)
            uow.add(s)
            await uow.session.flush()
            for wd in range(7):
                uow.add(AvailabilityRule(schedule_id=s.id, weekday=wd, start=dtime(8), end=dtime(20)))
        patients: list[tuple[str, uuid.UUID]] = []
        for i in range(clients):
            u = User(email=f"pat{i}@bench.example", display_name=f"pat{i}", password_hash=pw)
            uow.add(u)
            await uow.session.flush()
            uow.add(Membership(user_id=u.id, organization_id=org.id, role=Role.PATIENT))
            p = Patient(organization_id=org.id, user_id=u.id, family_name="Bench", given_name=str(i),
                        birth_date=date(1985, 1, 1), email=f"pat{i}@bench.example" if with_email else "")
            uow.add(p)
            await uow.session.flush()
            patients.append((u.email, p.id))
        await uow.commit()
    await engine.dispose()
    return org.id, vt.id, patients


async def run(args: argparse.Namespace) -> None:
    base = args.pg.rsplit("/", 1)[0]
    name = f"telemed_bench_{uuid.uuid4().hex[:8]}"
    await admin_exec(args.pg, f'CREATE DATABASE "{name}"')
    url = f"{base}/{name}"
    try:
        engine = make_engine(url)
        await upgrade(engine)
        await engine.dispose()
        org_id, vt_id, patients = await seed(url, args.clients, with_email=args.email)
        with tempfile.TemporaryDirectory() as tmp:
            port, smtp_port = free_port(), free_port()
            # Every booking's confirmation e-mail (with its calendar invitation) goes to a real SMTP server
            # that accepts and discards: composing and delivering it is part of what a booking costs.
            smtp = subprocess.Popen([sys.executable, "-m", "aiosmtpd", "-n", "-l",  # noqa: ASYNC220
                                     f"127.0.0.1:{smtp_port}", "-c", "aiosmtpd.handlers.Sink"])
            env = {**os.environ, "TELEMED_DATABASE_URL": url, "TELEMED_DATA_DIR": tmp, "TELEMED_PORT": str(port),
                   "TELEMED_SECRET_KEY": "bench-secret-" + "x" * 40, "TELEMED_LOGIN_MAX_ATTEMPTS": "1000",
                   "TELEMED_LOG_LEVEL": "WARNING",
                   "TELEMED_WORKERS": str(args.workers), "TELEMED_REDIS_URL": args.redis if args.workers > 1 else "",
                   "TELEMED_SMTP_HOST": "127.0.0.1", "TELEMED_SMTP_PORT": str(smtp_port),
                   "TELEMED_MAIL_FROM": "Bench Clinic <clinic@bench.example>"}
            proc = subprocess.Popen([sys.executable, "-m", "clinic.cli", "serve"], env=env)  # noqa: ASYNC220
            try:
                for _ in range(300):
                    try:
                        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                            break
                    except OSError:
                        if proc.poll() is not None:
                            raise RuntimeError("the server did not start") from None
                        await asyncio.sleep(0.1)
                await all_workers_up(f"http://127.0.0.1:{port}", args.workers)
                await drive(f"http://127.0.0.1:{port}", args, org_id, vt_id, patients, proc.pid)
            finally:
                proc.terminate()
                proc.wait(timeout=30)
                smtp.terminate()
                smtp.wait(timeout=30)
        engine = make_engine(url)
        async with engine.connect() as conn:
            n = (await conn.execute(select(func.count()).select_from(Appointment))).scalar_one()
            claims = (await conn.execute(select(func.count()).select_from(SlotClaim))).scalar_one()
            dupes = (await conn.execute(text(
                "SELECT count(*) FROM (SELECT a.id FROM appointment a JOIN appointment b ON a.id < b.id "
                "AND a.practitioner_user_id = b.practitioner_user_id AND a.start_at < b.end_at "
                "AND b.start_at < a.end_at AND a.status = 'booked' AND b.status = 'booked') x"))).scalar_one()
            mail = {status: count for status, count in (await conn.execute(text(
                "SELECT status, count(*) FROM outbox_message WHERE channel = 'email' GROUP BY status"))).all()}
        await engine.dispose()
        print(f"appointments={n} slot_claims={claims} overlapping_booked_pairs={dupes} "
              f"confirmation e-mails by status: {mail or 'none'}")
    finally:
        await admin_exec(args.pg, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def free_port() -> int:
    with socket.socket() as sk:
        sk.bind(("127.0.0.1", 0))
        return int(sk.getsockname()[1])


async def all_workers_up(root: str, workers: int) -> None:
    """Connections are spread over the workers listening when they open: wait until every worker listens."""
    if workers == 1:
        return
    seen: set[int] = set()
    while len(seen) < workers:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as http:
            async with http.get(f"{root}/healthz") as r:
                seen.add((await r.json())["worker"])
        await asyncio.sleep(0.05)


def cpu_seconds(pid: int | None = None, command: str = "") -> tuple[float, float]:
    """User and system CPU time, from Linux /proc, of a process and its children (the workers), or of every
    process running ``command`` (PostgreSQL's backends; this machine's, so other work on it counts too)."""
    tick = os.sysconf("SC_CLK_TCK")
    user = system = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            head, tail = stat.read_text().rsplit(")", 1)
        except OSError:
            continue
        fields = tail.split()
        mine = (stat.parent.name == str(pid) or fields[1] == str(pid)) if pid is not None else \
            head.split("(", 1)[1] == command
        if mine:
            user += int(fields[11]) / tick
            system += int(fields[12]) / tick
    return user, system


async def drive(root: str, args: argparse.Namespace, org_id: uuid.UUID, vt_id: uuid.UUID,
                patients: list[tuple[str, uuid.UUID]], server_pid: int) -> None:
    day = datetime.now(UTC).date() + timedelta(days=3)
    search_ms: list[float] = []
    cycle_ms: list[float] = []
    book_ok_ms: list[float] = []
    book_conflict_ms: list[float] = []
    errors: dict[int, int] = {}
    rng = random.Random(42)
    start_gate = asyncio.Event()
    all_ready = asyncio.Event()
    ready = [0]
    sent = [0]

    async def client(email: str, patient_id: uuid.UUID) -> None:
        jar = aiohttp.CookieJar(unsafe=True)
        async with aiohttp.ClientSession(base_url=root, cookie_jar=jar) as http:
            async with http.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD}) as r:
                body = await r.json()
                assert r.status == 200, body
                csrf = body["csrf_token"]
            ready[0] += 1
            if ready[0] == len(patients):
                all_ready.set()
            await start_gate.wait()
            for i in range(args.warmup + args.rounds):
                # Warm-up rounds fill what a running server has warm (per-connection prepared statements,
                # slot-grid cache, pool); they count towards throughput and CPU, not the latency figures.
                measured = i >= args.warmup
                if args.think:
                    await asyncio.sleep(rng.uniform(0.5, 1.5) * args.think)
                d = day + timedelta(days=i % 7)
                params = {"visit_type_id": str(vt_id), "from": d.isoformat(),
                          "to": (d + timedelta(days=1)).isoformat()}
                t0 = c0 = clock.perf_counter()
                async with http.get(f"/api/v1/organizations/{org_id}/slots", params=params) as r:
                    data: dict[str, Any] = await r.json()
                sent[0] += 1
                if measured:
                    search_ms.append((clock.perf_counter() - t0) * 1000)
                if r.status != 200:
                    errors[r.status] = errors.get(r.status, 0) + 1
                    continue
                items = data["items"]
                if not items:
                    continue
                # Prefer the earliest slots, as people do, so clients really compete.
                slot = items[min(len(items) - 1, int(rng.expovariate(1 / 8)))]
                t0 = clock.perf_counter()
                async with http.post("/api/v1/appointments", headers={
                    "X-CSRF-Token": csrf, "Idempotency-Key": f"bench-{uuid.uuid4().hex}"}, json={
                        "patient_id": str(patient_id), "practitioner_id": slot["practitioner_id"],
                        "visit_type_id": str(vt_id), "start": slot["start"], "mode": "video"}) as r:
                    await r.read()
                ms = (clock.perf_counter() - t0) * 1000
                sent[0] += 1
                if not measured:
                    continue
                cycle_ms.append((clock.perf_counter() - c0) * 1000)
                if r.status == 201:
                    book_ok_ms.append(ms)
                elif r.status == 409:
                    book_conflict_ms.append(ms)
                else:
                    errors[r.status] = errors.get(r.status, 0) + 1

    tasks = [asyncio.create_task(client(e, p)) for e, p in patients]
    # Sign-ins (CPU-bound argon2) are not what is measured: start the clock once every client is in.
    await all_ready.wait()
    start_gate.set()
    cpu0 = cpu_seconds(server_pid)
    pg0 = sum(cpu_seconds(command="postgres"))
    own0 = clock.process_time()
    t0 = clock.perf_counter()
    await asyncio.gather(*tasks)
    wall = clock.perf_counter() - t0
    own = clock.process_time() - own0
    requests = sent[0]
    cpu1 = cpu_seconds(server_pid)
    pg = sum(cpu_seconds(command="postgres")) - pg0
    user, system = cpu1[0] - cpu0[0], cpu1[1] - cpu0[1]
    cpu = user + system
    print(f"clients={len(patients)} rounds={args.rounds} (+{args.warmup} warm-up) think={args.think}s wall={wall:.1f}s "
          f"throughput={requests / wall:.0f} req/s  server CPU {cpu / max(requests, 1) * 1000:.1f} ms/request "
          f"({cpu / wall * 100:.0f}% of a core, {system / max(cpu, 1e-9) * 100:.0f}% of it in the kernel); "
          f"PostgreSQL {pg / wall * 100:.0f}%; these clients used {own / wall * 100:.0f}% of a core")
    report("slot search (1 day, 10 docs)", search_ms)
    report("booking 201", book_ok_ms)
    report("booking 409 slot_taken", book_conflict_ms)
    report("booking (all)", book_ok_ms + book_conflict_ms)
    report("search + booking (cycle)", cycle_ms)
    if errors:
        print("unexpected statuses:", errors)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clients", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2, help="unmeasured rounds first")
    ap.add_argument("--workers", type=int, default=2, help="server processes (TELEMED_WORKERS)")
    ap.add_argument("--redis", default=os.environ.get("TELEMED_REDIS_URL", "redis://127.0.0.1:6379/0"),
                    help="Redis for the workers' live-page fan-out")
    ap.add_argument("--no-email", dest="email", action="store_false",
                    help="patients without an e-mail address, so bookings send no confirmation")
    ap.add_argument("--think", type=float, default=2.0, help="mean seconds between a client's cycles (0: closed loop)")
    ap.add_argument("--pg", default=os.environ.get("TELEMED_TEST_PG_URL",
                                                   "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"))
    asyncio.run(run(ap.parse_args()))


if __name__ == "__main__":
    main()
