"""Periodic background work (audit sealing, reminders, mail retries, prescription expiry, recording retention).

Jobs are registered on the app by feature installers and run while the server runs; each pass is a
plain coroutine that can also be called directly (tests, or an operator's cron via the CLI).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web

from clinic.audit import seal_all
from clinic.web.context import services

log = logging.getLogger("telemed.jobs")

#: How long an audit entry may wait to be chained (see clinic.audit).
SEAL_INTERVAL_SECONDS = 1.0

JobFn = Callable[[web.Application], Awaitable[object]]


@dataclass(frozen=True)
class Job:
    name: str
    interval_seconds: float
    fn: JobFn


JOBS: web.AppKey[list[Job]] = web.AppKey("telemed_jobs", list)
_TASKS: web.AppKey[list[asyncio.Task[None]]] = web.AppKey("telemed_job_tasks", list)


def register_job(app: web.Application, name: str, interval_seconds: float, fn: JobFn) -> None:
    app.setdefault(JOBS, []).append(Job(name, interval_seconds, fn))


async def _loop(app: web.Application, job: Job) -> None:
    while True:
        try:
            await job.fn(app)
        except asyncio.CancelledError:
            raise
        except Exception:  # a failing pass is logged and retried next interval, never kills the server
            log.exception("job %s failed", job.name)
        await asyncio.sleep(job.interval_seconds)


async def _start(app: web.Application) -> None:
    if not services(app).settings.run_jobs:
        return
    app[_TASKS] = [asyncio.create_task(_loop(app, j), name=f"job:{j.name}") for j in app.get(JOBS, [])]


async def _stop(app: web.Application) -> None:
    for t in app.get(_TASKS, []):
        t.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await t


async def seal_pass(app: web.Application) -> int:
    return await seal_all(services(app).sessionmaker)


async def _last_seal(app: web.Application) -> None:
    # A clean stop leaves nothing unsealed; the process that seals is the one that runs the jobs.
    if services(app).settings.run_jobs:
        await seal_pass(app)


def install(app: web.Application) -> None:
    app.setdefault(JOBS, [])
    register_job(app, "audit-seal", SEAL_INTERVAL_SECONDS, seal_pass)
    app.on_startup.append(_start)
    app.on_cleanup.append(_stop)
    app.on_cleanup.append(_last_seal)
