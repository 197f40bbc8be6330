"""The ``telemed`` command line: serve | migrate | seed-demo | create-user | audit verify | policy check."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import logging
import sys
from typing import Any

from clinic.config import Settings, SettingsError, load_settings


def _settings() -> Settings:
    try:
        return load_settings()
    except SettingsError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


async def _migrate(settings: Settings) -> None:
    from clinic.db.engine import engine_from_settings
    from clinic.db.migrate import upgrade

    engine = engine_from_settings(settings)
    try:
        await upgrade(engine)
    finally:
        await engine.dispose()


def cmd_migrate(args: argparse.Namespace) -> int:
    settings = _settings()
    asyncio.run(_migrate(settings))
    print(f"database migrated: {_redact(settings.effective_database_url)}")
    return 0


def _redact(url: str) -> str:
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        return f"{scheme}://{creds.split(':')[0]}:***@{host}" if ":" in creds else url
    return url


async def _with_uow(settings: Settings, fn: Any) -> Any:
    from clinic.db.engine import engine_from_settings, session_factory
    from clinic.db.uow import UnitOfWork

    engine = engine_from_settings(settings)
    try:
        async with UnitOfWork(session_factory(engine)) as uow:
            result = await fn(uow)
            await uow.commit()
            return result
    finally:
        await engine.dispose()


def cmd_seed_demo(args: argparse.Namespace) -> int:
    from clinic.demo import add_birth_dates, format_logins, read_logins, seed_demo, write_logins

    settings = _settings()
    logins = asyncio.run(_with_uow(settings, seed_demo))
    if logins is None:
        saved = read_logins(settings.data_dir)
        logins = asyncio.run(_with_uow(settings, lambda uow: add_birth_dates(uow, saved)))
    else:
        write_logins(settings.data_dir, logins)
    print(format_logins(logins, settings.effective_base_url))
    return 0


def cmd_create_user(args: argparse.Namespace) -> int:
    import uuid

    from clinic.db.models import Role
    from clinic.errors import DomainError
    from clinic.security.authz import SYSTEM
    from clinic.services.accounts import create_user

    settings = _settings()
    password = args.password
    if password is None:
        password = getpass.getpass("password: ") if sys.stdin.isatty() else sys.stdin.readline().rstrip("\n")
    org = uuid.UUID(args.org) if args.org else None

    async def go(uow: Any) -> Any:
        return await create_user(uow, SYSTEM, email=args.email, display_name=args.name or args.email,
                                 password=password, role=Role(args.role), organization_id=org)

    try:
        user = asyncio.run(_with_uow(settings, go))
    except DomainError as exc:
        print(f"error: {exc.message} {exc.fields or ''}".strip(), file=sys.stderr)
        return 2
    print(f"created {user.email} ({args.role}) id={user.id}")
    return 0


def cmd_audit_verify(args: argparse.Namespace) -> int:
    from clinic.audit import seal_all, verify_chain
    from clinic.db.engine import engine_from_settings, session_factory

    settings = _settings()

    async def go(uow: Any) -> Any:
        return await verify_chain(uow.session)

    async def seal() -> int:
        engine = engine_from_settings(settings)
        try:
            return await seal_all(session_factory(engine))
        finally:
            await engine.dispose()

    # Chain what has committed but not been sealed yet, so the verification covers it (a read-only replica
    # cannot: --no-seal verifies what is sealed and reports the rest).
    sealed = 0 if args.no_seal else asyncio.run(seal())
    res = asyncio.run(_with_uow(settings, go))
    if res.ok:
        extra = f" ({sealed} sealed just now)" if sealed else ""
        waiting = f"; {res.unsealed} not sealed yet, so not verified" if res.unsealed else ""
        print(f"audit chain OK: {res.checked} entries verified{extra}{waiting}")
        return 0
    print(f"audit chain BROKEN at entry seq={res.broken_seq} id={res.broken_id}: {res.reason}", file=sys.stderr)
    return 1


def cmd_policy_check(args: argparse.Namespace) -> int:
    from clinic.policy.cli import main as policy_main

    return policy_main(sys.stdin, sys.stdout)


def cmd_demo_visit(args: argparse.Namespace) -> int:
    from clinic.errors import DomainError
    from signaling.demo import create_demo_visit

    settings = _settings()
    base = (args.base_url or settings.effective_base_url).rstrip("/")

    async def go(uow: Any) -> Any:
        return await create_demo_visit(uow, settings, base)

    try:
        visit = asyncio.run(_with_uow(settings, go))
    except DomainError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps({"patient_url": visit.patient_url, "doctor_url": visit.doctor_url}))
    else:
        print(f"patient: {visit.patient_url}\ndoctor:  {visit.doctor_url}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from clinic import serve

    overrides = {}
    if args.host:
        overrides["host"] = args.host
    if args.port:
        overrides["port"] = args.port
    try:
        settings = load_settings(**overrides)
        if settings.workers > 1 and not settings.redis_url:
            raise SettingsError("TELEMED_WORKERS: more than one worker needs TELEMED_REDIS_URL "
                                "(live pages and sign-outs must reach every worker)")
    except SettingsError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.worker_index is not None:
        serve.run_worker(settings, args.worker_index)
        return 0
    if args.migrate:
        asyncio.run(_migrate(settings))
    workers = f", {settings.workers} workers" if settings.workers > 1 else ""
    print(f"serving on {settings.effective_base_url}  (database: {_redact(settings.effective_database_url)}"
          f"{workers})", flush=True)
    if settings.workers == 1:
        serve.run_worker(settings, None)
        return 0
    tail = [*(["--host", args.host] if args.host else []), *(["--port", str(args.port)] if args.port else [])]
    return serve.supervise(settings, tail)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="telemed", description="Telemedicine platform")
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("serve", help="run the web server")
    s.add_argument("--host")
    s.add_argument("--port", type=int)
    s.add_argument("--migrate", action="store_true", help="apply migrations first")
    s.add_argument("--worker-index", type=int, help=argparse.SUPPRESS)  # set by the supervisor
    s.set_defaults(fn=cmd_serve)
    sub.add_parser("migrate", help="apply database migrations").set_defaults(fn=cmd_migrate)
    sub.add_parser("seed-demo", help="create demo organizations and users").set_defaults(fn=cmd_seed_demo)
    dv = sub.add_parser("demo-visit", help="create a demo video visit and print sign-in links for both sides")
    dv.add_argument("--base-url", help="public URL of the server (default: the configured base URL)")
    dv.add_argument("--json", action="store_true", help='print {"patient_url": ..., "doctor_url": ...}')
    dv.set_defaults(fn=cmd_demo_visit)
    cu = sub.add_parser("create-user", help="create a user with a role")
    cu.add_argument("--email", required=True)
    cu.add_argument("--name")
    cu.add_argument("--role", required=True,
                    choices=["patient", "clinician", "pharmacist", "org_admin", "platform_admin"])
    cu.add_argument("--org", help="organization id (not for platform_admin)")
    cu.add_argument("--password", help="read from the terminal or stdin when omitted")
    cu.set_defaults(fn=cmd_create_user)
    au = sub.add_parser("audit", help="audit log tools")
    ausub = au.add_subparsers(dest="audit_cmd", required=True)
    verify = ausub.add_parser("verify", help="seal committed entries into the hash chain, then verify it")
    verify.add_argument("--no-seal", action="store_true", help="verify only what is sealed (read-only)")
    verify.set_defaults(fn=cmd_audit_verify)
    po = sub.add_parser("policy", help="jurisdiction policy engine")
    posub = po.add_subparsers(dest="policy_cmd", required=True)
    posub.add_parser("check", help="decide one JSON case from stdin").set_defaults(fn=cmd_policy_check)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    rc: int = args.fn(args)
    return rc


if __name__ == "__main__":
    raise SystemExit(main())


__all__ = ["json", "main"]
