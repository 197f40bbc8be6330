"""The policy API: rule-set listing, and a simulator that answers exactly like ``telemed policy check``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from clinic.policy import PolicyEngine
from tests.world import World, hdr, login

ROOT = Path(__file__).resolve().parents[2]
ENGINE = PolicyEngine.from_directory()

CASES: list[dict[str, Any]] = [
    # KR pilot, June 2023: a hospital-level first visit is refused.
    {"jurisdiction": "KR", "at": "2023-07-05T10:00:00+09:00", "action": "consult", "mode": "video",
     "patient": {"age": 40}, "provider": {"institution_level": "hospital"}},
    # KR, December 2026: the 30% cap.
    {"jurisdiction": "KR", "at": "2026-12-02T10:00:00+09:00", "action": "consult", "mode": "video",
     "patient": {"age": 40}, "provider": {"telemedicine_share": 0.31}},
    # KR, December 2026: audio is allowed with the documented-exception obligation.
    {"jurisdiction": "kr-11", "at": "2026-12-02T10:00:00+09:00", "action": "consult", "mode": "audio",
     "patient": {"age": 70, "groups": ["long_term_care"], "chronic": True,
                 "prior_in_person": {"days_ago": 20, "same_condition": True, "same_institution": True}},
     "provider": {"institution_level": "clinic", "licensed_in": ["KR"], "telemedicine_share": 0.1}},
    # California prescribing a controlled substance: federal layers and EPCS.
    {"jurisdiction": "US-CA", "at": "2026-03-01T09:00:00-08:00", "action": "prescribe",
     "patient": {"age": 35, "prior_in_person": {"days_ago": 100}}, "provider": {"licensed_in": ["US-CA"]},
     "drug": {"atc": "N02AA05", "categories": ["controlled"], "days_supply": 7}},
    # A US state without its own file is uncovered: denied by default.
    {"jurisdiction": "US-FL", "at": "2026-03-01T09:00:00-05:00", "action": "consult", "mode": "video",
     "patient": {"age": 35}},
    # UK alias, delivery.
    {"jurisdiction": "UK", "at": "2025-05-01T12:00:00+01:00", "action": "deliver", "patient": {"age": 50}},
]


_CLI: dict[str, tuple[int, dict[str, Any]]] = {}


def cli(case: Any) -> tuple[int, dict[str, Any]]:
    """``telemed policy check`` in a child process (the installed command's own entry point)."""
    raw = json.dumps(case)
    if raw not in _CLI:  # each backend asks the same question; the answer is a pure function of the input
        proc = subprocess.run([sys.executable, "-m", "clinic.cli", "policy", "check"], input=raw, text=True,
                              capture_output=True, cwd=ROOT, timeout=60, check=False)
        _CLI[raw] = (proc.returncode, json.loads(proc.stdout))
    return _CLI[raw]


async def test_simulate_matches_the_cli(client: TestClient, world: World) -> None:
    csrf = await login(client, world.a.users["clinician"].email)
    seen = set()
    for case in CASES:
        code, expected = cli(case)
        assert code == 0, expected
        r = await client.post("/api/v1/policy/simulate", json=case, headers=hdr(csrf))
        got = await r.json()
        assert r.status == 200, got
        assert got == expected, case
        seen.add(got["allowed"])
    assert seen == {True, False}


@pytest.mark.parametrize(("case", "field"), [
    ({"jurisdiction": "KR", "at": "2026-12-02T10:00:00+09:00", "action": "consult", "mode": "video",
      "patient": {"age": "forty"}}, "patient.age"),
    ({"jurisdiction": "KR", "at": "2026-12-02T10:00:00", "action": "consult", "mode": "video",
      "patient": {"age": 4}}, "at"),
    ({"jurisdiction": "KR", "at": "2026-12-02T10:00:00+09:00", "action": "consult", "patient": {"age": 4}}, "mode"),
    ({"jurisdiction": "KR", "at": "2026-12-02T10:00:00+09:00", "action": "consult", "mode": "video",
      "patient": {"age": 4, "groups": ["astronaut"]}}, "patient.groups[0]"),
    ({"jurisdiction": "KR", "at": "2026-12-02T10:00:00+09:00", "action": "prescribe", "patient": {"age": 4},
      "extra": 1}, "extra"),
    ([1, 2], "$"),
])
async def test_invalid_input_is_422_naming_the_field_as_the_cli_does(client: TestClient, world: World, case: Any,
                                                                      field: str) -> None:
    csrf = await login(client, world.a.users["org_admin"].email)
    r = await client.post("/api/v1/policy/simulate", json=case, headers=hdr(csrf))
    body = await r.json()
    assert r.status == 422, body
    assert field in body["error"]["fields"], body
    code, expected = cli(case)
    assert code == 2 and body["error"]["fields"] == expected["error"]["fields"]


async def test_rule_set_listing(client: TestClient, world: World) -> None:
    csrf = await login(client, world.a.users["org_admin"].email)
    r = await client.get("/api/v1/policy/rule-sets", headers=hdr(csrf))
    body = await r.json()
    assert r.status == 200, body
    by_id = {rs["id"]: rs for rs in body["items"]}
    assert set(by_id) == {rs.id for rs in ENGINE.rule_sets}
    kr = by_id["kr-2025-10-post-crisis"]
    assert kr["jurisdiction"] == "KR" and kr["effective_from"] == "2025-10-27" and kr["effective_to"] == "2026-12-31"
    assert kr["sha256"] == ENGINE.get("kr-2025-10-post-crisis").sha256 and kr["notes"]
    assert kr["extends"] == "kr-medical-service-act-art34" and kr["applies_to_subdivisions"] is True
    assert any(s["url"].startswith("https://") and s["title"] for s in kr["sources"])
    assert by_id["kr-medical-service-act-art34"]["abstract"] is True
    assert by_id["kr-medical-service-act-art34"]["in_force"] is False
    # Exactly one Korean period is in force on any day.
    assert sum(1 for rs in body["items"] if rs["jurisdiction"] == "KR" and rs["in_force"]) == 1


@pytest.mark.parametrize(("actor", "status"), [("patient", 403), ("pharmacist", 403), ("clinician", 200),
                                               ("org_admin", 200), ("root", 200)])
async def test_who_may_use_the_policy_api(client: TestClient, world: World, actor: str, status: int) -> None:
    r = await client.get("/api/v1/policy/rule-sets")
    assert r.status == 401
    user = world.root if actor == "root" else world.a.users[actor]
    csrf = await login(client, user.email)
    r = await client.get("/api/v1/policy/rule-sets", headers=hdr(csrf))
    assert r.status == status, await r.text()
    r = await client.post("/api/v1/policy/simulate", json=CASES[0], headers=hdr(csrf))
    assert r.status == status, await r.text()
    if status == 403:
        assert (await r.json())["error"]["code"] == "forbidden"
