"""The one symptom table: what the check-in API accepts, how it triages, how it reads in both languages, and
whom a patient with an urgent symptom is told to call."""

from __future__ import annotations

import re
from typing import get_args

from clinic.encounters.symptoms import SYMPTOMS, emergency_number, triage_priority
from clinic.web.i18n import gettext
from clinic.web.routes.encounters import SYMPTOMS as ACCEPTED

HANGUL = re.compile(r"[\uac00-\ud7a3]")


def test_the_api_accepts_exactly_the_symptoms_the_table_knows() -> None:
    assert [s.code for s in SYMPTOMS] == list(get_args(ACCEPTED))


def test_the_most_urgent_symptom_decides_the_first_priority() -> None:
    assert triage_priority(()) == 3
    assert triage_priority(("cough", "sore_throat")) == 3
    assert triage_priority(("cough", "vomiting")) == 2
    assert triage_priority(("vomiting", "fainting", "cough")) == 1
    assert {s.code for s in SYMPTOMS if s.red_flag} == {"chest_pain", "shortness_of_breath", "severe_bleeding",
                                                        "confusion", "fainting"}
    assert triage_priority(("not_a_symptom",)) == 3


def test_every_symptom_reads_in_korean_and_english() -> None:
    for s in SYMPTOMS:
        assert HANGUL.search(gettext(s.label, "ko")), s.code
        assert gettext(s.label, "en") == s.label


def test_emergency_numbers_follow_where_the_patient_is() -> None:
    assert emergency_number("KR") == "119"
    assert emergency_number("US-CA") == "911" and emergency_number("us-ny") == "911"
    assert emergency_number("GB") == "999" and emergency_number("SG") == "995" and emergency_number("CN") == "120"
    assert emergency_number("ZZ") is None
