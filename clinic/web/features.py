"""What the app factory wires in. Feature modules add one line each, here and nowhere else.

``ROUTER_MODULES``: modules exposing ``router`` (an ``ApiRouter``) for the JSON API.
``FEATURE_INSTALLERS``: ``"module:function"`` callables ``install(app)`` that add pages, WebSockets and
services (``services(app).extra``); they run after the core wiring and before routes are frozen.
"""

from __future__ import annotations

ROUTER_MODULES: list[str] = [
    "clinic.web.routes.accounts",
    "clinic.web.routes.patients",
    "clinic.web.routes.scheduling",
    "clinic.web.routes.encounters",
    "clinic.web.routes.invites",
    "clinic.web.routes.practitioners",
    "prescriptions.api",
    "clinic.web.routes.policy",
    "clinic.web.routes.notes",
    "clinic.web.routes.records",
    "clinic.web.routes.payments",
    "signaling.api",
]

FEATURE_INSTALLERS: list[str] = [
    "clinic.jobs:install",
    "clinic.web.notifications:install",
    "clinic.web.live:install",
    "clinic.policy_web:install",
    "clinic.payments.web:install",
    "clinic.web.clinic_pages:install",
    "prescriptions.pages:install",
    "signaling.handler:install",
    "clinic.web.visit_pages:install",
]
