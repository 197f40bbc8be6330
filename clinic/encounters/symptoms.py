"""The symptoms a patient can report at check-in: the one list the questionnaire, the triage rule, the queue
and the visit page all read. Labels are English source strings, translated where they are shown."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from functools import cache
from importlib import resources

from clinic.web.i18n import N_  # only marks the labels; nothing here depends on the web layer


@dataclass(frozen=True)
class Symptom:
    code: str
    label: str
    #: First-pass triage level this symptom alone gives: 1 urgent (a red flag), 2 soon, 3 routine.
    priority: int = 3

    @property
    def red_flag(self) -> bool:
        return self.priority == 1


SYMPTOMS: tuple[Symptom, ...] = (
    Symptom("fever", N_("Fever")),
    Symptom("high_fever", N_("High fever"), 2),
    Symptom("cough", N_("Cough")),
    Symptom("sore_throat", N_("Sore throat")),
    Symptom("runny_nose", N_("Runny nose")),
    Symptom("headache", N_("Headache")),
    Symptom("rash", N_("Rash")),
    Symptom("vomiting", N_("Vomiting"), 2),
    Symptom("diarrhea", N_("Diarrhoea")),
    Symptom("abdominal_pain", N_("Abdominal pain")),
    Symptom("severe_pain", N_("Severe pain"), 2),
    Symptom("dizziness", N_("Dizziness")),
    Symptom("fatigue", N_("Fatigue")),
    Symptom("chest_pain", N_("Chest pain"), 1),
    Symptom("shortness_of_breath", N_("Shortness of breath"), 1),
    Symptom("severe_bleeding", N_("Severe bleeding"), 1),
    Symptom("confusion", N_("Confusion"), 1),
    Symptom("fainting", N_("Fainting"), 1),
    Symptom("other", N_("Other")),
)

BY_CODE = {s.code: s for s in SYMPTOMS}


def triage_priority(codes: tuple[str, ...] | list[str]) -> int:
    """A conservative first-pass priority from the questionnaire (the most urgent symptom decides);
    clinicians can change it."""
    return min((BY_CODE[c].priority for c in codes if c in BY_CODE), default=3)


@cache
def _emergency_numbers() -> dict[str, str]:
    with resources.files("clinic.data").joinpath("emergency_numbers.toml").open("rb") as fh:
        numbers: dict[str, str] = tomllib.load(fh)["numbers"]
    return numbers


def emergency_number(jurisdiction: str) -> str | None:
    """The emergency number where the patient is (``KR``, ``US-CA`` …), if we know it."""
    return _emergency_numbers().get(jurisdiction.split("-", 1)[0].upper())
