"""Feature modules wired into the app factory. Each entry is ``install(app)``: it adds routes,
pages and services to the app (see ``clinic.web.app.add_api``)."""

from __future__ import annotations

from clinic.web.app import Feature

FEATURES: list[Feature] = []
