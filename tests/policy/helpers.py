"""Shared builders for policy tests."""

from __future__ import annotations

import copy
from typing import Any

from clinic.policy import PolicyContext, PolicyEngine

ENGINE = PolicyEngine.from_directory()

BASE: dict[str, Any] = {
    "jurisdiction": "KR",
    "at": "2024-01-10T20:30:00+09:00",
    "action": "consult",
    "mode": "video",
    "participants": "doctor-patient",
    "patient": {
        "age": 40,
        "groups": [],
        "chronic": False,
        "prior_in_person": {"days_ago": 10, "same_condition": True, "same_institution": True},
    },
    "provider": {"institution_level": "clinic", "licensed_in": ["KR"], "telemedicine_share": 0.1},
    "drug": {"atc": "C08CA01", "categories": [], "days_supply": 30},
}

FIRST = None  # prior_in_person for a first visit


def build(**overrides: Any) -> dict[str, Any]:
    """BASE with overrides; nested dicts (patient, provider, drug) are merged key by key."""
    doc = copy.deepcopy(BASE)
    for key, value in overrides.items():
        if key in ("patient", "provider", "drug") and isinstance(value, dict):
            doc[key].update(value)
        else:
            doc[key] = value
    if doc.get("action") != "consult" and "mode" not in overrides:
        doc.pop("mode", None)
    return doc


def ctx(**overrides: Any) -> PolicyContext:
    return PolicyContext.from_json(build(**overrides))
