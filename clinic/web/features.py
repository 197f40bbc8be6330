"""Feature modules wired into the app factory (clinic, video, prescriptions, payments, policy)."""

from __future__ import annotations

from clinic.web.app import Feature

FEATURES: list[Feature] = []
