"""The application factory: wires settings, database, services, middleware and routes together."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry

from clinic import __version__
from clinic.config import Settings
from clinic.db.engine import engine_from_settings, session_factory
from clinic.realtime import connect_redis
from clinic.security import sessioncache
from clinic.security.ratelimit import RateLimiter, make_limiter
from clinic.security.sessioncache import SessionCache
from clinic.services.accounts import SignedIn
from clinic.web import health, middleware, pages
from clinic.web.api import ApiRouter, RouteSpec, mount, openapi_document
from clinic.web.context import SERVICES, Services, services
from clinic.web.render import JINJA, STATIC_DIR, make_environment

log = logging.getLogger("telemed")

# Request storage uses plain string keys deliberately (templates read them by name).
warnings.filterwarnings("ignore", category=web.NotAppKeyWarning)

API_SPECS: web.AppKey[list[RouteSpec]] = web.AppKey("telemed_api_specs", list)

#: Feature modules plug in here: each gets the app after core wiring, and may add routes and services.
Feature = Callable[[web.Application], None]


def _routers() -> list[ApiRouter]:
    import importlib

    from clinic.web.features import ROUTER_MODULES

    return [importlib.import_module(m).router for m in ROUTER_MODULES]


def _features() -> list[Feature]:
    import importlib

    from clinic.web.features import FEATURE_INSTALLERS

    out: list[Feature] = []
    for dotted in FEATURE_INSTALLERS:
        mod, _, attr = dotted.partition(":")
        out.append(getattr(importlib.import_module(mod), attr or "install"))
    return out


async def openapi_handler(request: web.Request) -> web.Response:
    doc = openapi_document(request.app[API_SPECS], title="Telemed API", version=__version__)
    return web.json_response(doc)


def create_app(settings: Settings, *, extra_routers: list[ApiRouter] | None = None,
               overrides: dict[str, Any] | None = None) -> web.Application:
    engine = engine_from_settings(settings)
    session_cache: SessionCache[SignedIn] = SessionCache(settings.session_cache_seconds)
    redis = connect_redis(settings)

    def limiter(name: str) -> RateLimiter:
        return make_limiter(settings.login_max_attempts, settings.login_window_seconds, redis=redis,
                            namespace=f"{settings.redis_prefix}:ratelimit:{name}")

    svc = Services(
        settings=settings,
        engine=engine,
        sessionmaker=session_factory(engine, info={sessioncache.INFO_KEY: session_cache}),
        session_cache=session_cache,
        login_limiter=limiter("login"),
        mfa_limiter=limiter("mfa"),
        metrics=CollectorRegistry(),
        redis=redis,
    )
    svc.extra.update(overrides or {})
    app = web.Application(
        client_max_size=settings.max_upload_bytes,
        middlewares=[
            middleware.security_headers,
            health.measure,
            middleware.errors,
            middleware.identity,
            middleware.language,
            middleware.csrf,
        ],
    )
    app[SERVICES] = svc
    app[JINJA] = make_environment()
    health.install_metrics(app)
    health.add_routes(app)
    pages.add_routes(app)
    app.router.add_static("/static/", STATIC_DIR, name="static", append_version=True)
    app.router.add_get("/api/openapi.json", openapi_handler)
    routers = _routers() + list(extra_routers or [])
    for feature in _features():
        feature(app)
    app[API_SPECS] = mount(app, routers)
    app.on_cleanup.append(_close)
    return app


async def _close(app: web.Application) -> None:
    svc = services(app)
    for fn in reversed(svc.on_shutdown):
        try:
            await fn()
        except Exception:
            log.exception("shutdown hook failed")
    await svc.engine.dispose()
    if svc.redis is not None:
        await svc.redis.aclose()
