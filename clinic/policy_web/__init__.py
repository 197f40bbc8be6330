"""Wires the jurisdiction policy engine into the app: one engine per process and rule text, the
``PolicyService`` every decision point uses, the booking hook and the admin page.

Installed through ``clinic.web.features.FEATURE_INSTALLERS`` as ``clinic.policy_web:install``.
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from clinic.policy import RULESET_DIR, PolicyEngine
from clinic.services.booking import POLICY_KEY as BOOKING_POLICY_KEY
from clinic.services.policy import PolicyService
from clinic.web.context import services

#: ``services(app).extra`` key of the PolicyService (prescriptions and the encounter service read it).
SERVICE_KEY = "policy"

_ENGINES: dict[tuple[bool, tuple[tuple[str, int, int], ...]], PolicyEngine] = {}


def _fingerprint(directory: Path) -> tuple[tuple[str, int, int], ...]:
    return tuple((f.name, f.stat().st_mtime_ns, f.stat().st_size) for f in sorted(directory.glob("*.toml")))


def load_engine(fallback_default: bool = False, directory: Path = RULESET_DIR) -> PolicyEngine:
    """The validated rule sets, parsed once per process for the same files.

    Parsing and linking every rule file takes a noticeable fraction of a second; apps are created per
    test and per worker, and the engine is immutable, so sharing it is safe. The file fingerprint means an
    edited rule file is picked up by the next app rather than silently ignored.
    """
    key = (fallback_default, _fingerprint(directory))
    engine = _ENGINES.get(key)
    if engine is None:
        engine = PolicyEngine.from_directory(directory, fallback_default=fallback_default)
        _ENGINES.clear()  # stale fingerprints are never asked for again
        _ENGINES[key] = engine
    return engine


def policy_service(app: web.Application) -> PolicyService:
    svc: PolicyService = services(app).extra[SERVICE_KEY]
    return svc


def install(app: web.Application) -> None:
    from clinic.policy_web.booking import EngineBookingPolicy
    from clinic.policy_web.pages import add_routes

    extra = services(app).extra
    settings = services(app).settings
    # setdefault: components passed to create_app(overrides=...) (tests, embedders) win over the defaults.
    service: PolicyService = extra.setdefault(
        SERVICE_KEY, PolicyService(load_engine(fallback_default=settings.policy_fallback_default)))
    extra.setdefault(BOOKING_POLICY_KEY, EngineBookingPolicy(service))
    add_routes(app)
