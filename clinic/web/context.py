"""The per-app service container. Everything request handlers need hangs off the app, never a global."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import web
from prometheus_client import CollectorRegistry
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from clinic.config import Settings
from clinic.db.uow import UnitOfWork
from clinic.security.ratelimit import RateLimiter
from clinic.security.sessioncache import SessionCache

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from clinic.services.accounts import SignedIn


@dataclass
class Services:
    settings: Settings
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    login_limiter: RateLimiter
    mfa_limiter: RateLimiter
    metrics: CollectorRegistry
    #: Resolved browser sessions, reused for ``settings.session_cache_seconds``; see clinic.security.sessioncache.
    session_cache: SessionCache[SignedIn]
    #: Shared by the server processes of a deployment (``settings.redis_url``); None for a single process.
    redis: Redis | None = None
    #: Named components added by feature modules (hub, mailer, policy, relay, payments …).
    extra: dict[str, Any] = field(default_factory=dict)
    on_shutdown: list[Callable[[], Awaitable[None]]] = field(default_factory=list)

    def uow_factory(self) -> UnitOfWork:
        return UnitOfWork(self.sessionmaker)


SERVICES: web.AppKey[Services] = web.AppKey("telemed_services", Services)


def services(app: web.Application) -> Services:
    return app[SERVICES]
