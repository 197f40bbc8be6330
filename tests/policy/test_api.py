"""Engine, layering, records and context parsing."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from clinic.policy import RULESET_DIR, PolicyContext, PolicyEngine, PolicyInputError, evaluate
from tests.policy.helpers import BASE, ENGINE, build, ctx


def test_decision_records_rule_set_hash() -> None:
    decision = ENGINE.decide(ctx())
    digest = hashlib.sha256((RULESET_DIR / "kr-2023-12-expansion.toml").read_bytes()).hexdigest()
    assert decision.rule_set_hash == digest
    record = decision.to_record()
    json.dumps(record)
    assert record["rule_set_id"] == "kr-2023-12-expansion"
    assert record["rule_set_chain"][0]["id"] == "kr-medical-service-act-art34"
    assert record["reasons"][0]["message_ko"]


def test_contract_output_keys() -> None:
    out = ENGINE.decide(ctx()).to_json()
    assert {"allowed", "rule_set", "reasons", "obligations"} <= set(out)
    assert all({"rule", "message"} <= set(r) for r in out["reasons"])


def test_state_layer_over_federal() -> None:
    us_ca = ENGINE.get("us-ca")
    assert us_ca.parent is not None and us_ca.parent.id == "us-federal"
    rule_ids = [r.id for r in us_ca.effective_rules()]
    assert "us-ryan-haight-in-person" in rule_ids  # inherited
    assert "us-record-one-party" not in rule_ids  # replaced by California's all-party rule
    assert "us-ca-record-all-party" in rule_ids


def test_evaluate_is_pure_function_of_rule_set_and_context() -> None:
    rs = ENGINE.get("kr-2023-06-pilot")
    c = ctx(at="2023-07-05T10:00:00+09:00")
    assert evaluate(rs, c) == evaluate(rs, c)
    # Evaluating a set outside its period is itself a denial, not a silent pass.
    assert not evaluate(rs, ctx(at="2024-07-05T10:00:00+09:00")).allowed


def test_default_permissive_only_when_enabled() -> None:
    c = ctx(jurisdiction="ZZ")
    assert not ENGINE.decide(c).allowed
    permissive = PolicyEngine.from_directory(fallback_default=True)
    decision = permissive.decide(c)
    assert decision.allowed and decision.rule_set_id == "default-permissive"
    assert decision.obligations == ("testing_only",)
    # Real rule sets still win where they are in force.
    assert permissive.decide(ctx()).rule_set_id == "kr-2023-12-expansion"


def test_rule_set_listing_for_admin() -> None:
    listing = [rs.describe() for rs in ENGINE.rule_sets]
    kr = next(item for item in listing if item["id"] == "kr-2023-06-pilot")
    assert kr["effective_from"] == "2023-06-01" and kr["effective_to"] == "2023-12-14"
    assert kr["sources"] and kr["notes"]
    json.dumps(listing)


def test_mode_change_mid_call_is_rechecked() -> None:
    # Same visit, switching from video to chat mid-call under the pilot.
    assert ENGINE.decide(ctx(at="2023-07-05T10:00:00+09:00", mode="video")).allowed
    assert not ENGINE.decide(ctx(at="2023-07-05T10:00:00+09:00", mode="chat")).allowed


@pytest.mark.parametrize(
    ("doc", "field"),
    [
        ({**BASE, "at": "2024-01-10T20:30:00"}, "at"),
        ({**BASE, "at": "yesterday"}, "at"),
        ({**BASE, "action": "teleport"}, "action"),
        ({**BASE, "mode": "fax"}, "mode"),
        ({**BASE, "jurisdiction": "Korea"}, "jurisdiction"),
        ({**BASE, "extra": 1}, "extra"),
        (build(patient={"age": -1}), "patient.age"),
        (build(patient={"age": True}), "patient.age"),
        (build(patient={"groups": ["astronaut"]}), "patient.groups[0]"),
        (build(patient={"prior_in_person": {"days_ago": "10"}}), "patient.prior_in_person.days_ago"),
        (build(provider={"telemedicine_share": 1.5}), "provider.telemedicine_share"),
        (build(provider={"institution_level": "castle"}), "provider.institution_level"),
        (build(drug={"categories": ["candy"]}), "drug.categories[0]"),
        (build(drug={"atc": "not-atc"}), "drug.atc"),
        (build(drug={"days_supply": 0}), "drug.days_supply"),
        ({k: v for k, v in build(action="prescribe").items() if k != "drug"}, "drug"),
        ({k: v for k, v in BASE.items() if k != "mode"}, "mode"),
        ({k: v for k, v in BASE.items() if k != "patient"}, "patient"),
    ],
)
def test_invalid_input_names_field(doc: dict[str, object], field: str) -> None:
    with pytest.raises(PolicyInputError) as info:
        PolicyContext.from_json(doc)
    assert field in info.value.fields


def test_lenient_defaults() -> None:
    doc = {
        "jurisdiction": "kr",
        "at": "2024-01-10T20:30:00+09:00",
        "action": "consult",
        "mode": "video",
        "patient": {"age": 30},
    }
    c = PolicyContext.from_json(doc)
    assert c.jurisdiction == "KR" and c.participants == "doctor-patient"
    assert c.patient.groups == () and c.patient.prior_in_person is None
    assert c.provider.licensed_in == () and c.provider.institution_level == "clinic"


def test_rule_set_files_are_in_package() -> None:
    assert Path(RULESET_DIR).is_dir()
    assert len(list(Path(RULESET_DIR).glob("*.toml"))) >= 15
