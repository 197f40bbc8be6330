"""Property tests: determinism and deny-by-default."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from clinic.policy import DEFAULT_DENY, PolicyContext
from clinic.policy.context import ACTIONS, DRUG_CATEGORIES, MODES, PARTICIPANTS, PATIENT_GROUPS
from tests.policy.helpers import ENGINE

SHIPPED = sorted({rs.jurisdiction for rs in ENGINE.rule_sets if rs.jurisdiction != "*"} | {"UK", "KR-11"})
EARLIEST = min(rs.effective_from for rs in ENGINE.rule_sets if rs.jurisdiction != "*")

prior = st.none() | st.fixed_dictionaries(
    {"days_ago": st.integers(0, 800), "same_condition": st.booleans(), "same_institution": st.booleans()}
)


@st.composite
def contexts(draw: Any, jurisdictions: Any = st.sampled_from(SHIPPED), at: Any = None) -> dict[str, Any]:
    action = draw(st.sampled_from(ACTIONS))
    when = (
        draw(at)
        if at is not None
        else draw(st.datetimes(datetime(1995, 1, 1), datetime(2030, 12, 31), timezones=st.just(UTC)))
    )
    doc: dict[str, Any] = {
        "jurisdiction": draw(jurisdictions),
        "at": when.isoformat(),
        "action": action,
        "participants": draw(st.sampled_from(PARTICIPANTS)),
        "patient": {
            "age": draw(st.integers(0, 110)),
            "groups": draw(st.lists(st.sampled_from(PATIENT_GROUPS), max_size=3, unique=True)),
            "chronic": draw(st.booleans()),
            "prior_in_person": draw(prior),
        },
        "provider": {
            "institution_level": draw(st.sampled_from(["clinic", "hospital"])),
            "licensed_in": draw(st.lists(st.sampled_from(["KR", "SG", "US-CA", "US-NY", "US-TX"]), max_size=3)),
            "telemedicine_share": draw(st.floats(0, 1)),
        },
    }
    if action == "consult":
        doc["mode"] = draw(st.sampled_from(MODES))
    if action == "prescribe":
        doc["drug"] = {
            "atc": draw(st.sampled_from(["C08CA01", "A08AB01", "N05BA01"])),
            "categories": draw(st.lists(st.sampled_from(DRUG_CATEGORIES), max_size=2, unique=True)),
            "days_supply": draw(st.integers(1, 180)),
        }
    return doc


@settings(max_examples=150, deadline=None, database=None)
@given(contexts())
def test_same_input_same_output(doc: dict[str, Any]) -> None:
    first = ENGINE.decide(PolicyContext.from_json(doc)).to_record()
    second = ENGINE.decide(PolicyContext.from_json(dict(doc))).to_record()
    assert first == second


@settings(max_examples=150, deadline=None, database=None)
@given(contexts())
def test_denials_carry_no_obligations_and_name_a_rule(doc: dict[str, Any]) -> None:
    decision = ENGINE.decide(PolicyContext.from_json(doc))
    assert decision.reasons
    if not decision.allowed:
        assert decision.obligations == ()


@settings(max_examples=100, deadline=None, database=None)
@given(contexts(jurisdictions=st.from_regex(r"\A(Q[M-Z]|X[A-Z]|ZZ)(-[A-Z]{2})?\Z")))
def test_unknown_jurisdiction_is_denied(doc: dict[str, Any]) -> None:
    decision = ENGINE.decide(PolicyContext.from_json(doc))
    assert not decision.allowed
    assert [r.rule for r in decision.reasons] == [DEFAULT_DENY]
    assert decision.rule_set_id is None


@settings(max_examples=100, deadline=None, database=None)
@given(
    contexts(
        at=st.datetimes(
            datetime(1950, 1, 1),
            datetime.combine(EARLIEST, datetime.min.time()) - timedelta(days=1),
            timezones=st.just(UTC),
        )
    )
)
def test_before_every_rule_set_is_denied(doc: dict[str, Any]) -> None:
    decision = ENGINE.decide(PolicyContext.from_json(doc))
    assert not decision.allowed
    assert [r.rule for r in decision.reasons] == [DEFAULT_DENY]
