"""The facts a policy decision is made from, and their strict parsing from JSON.

The JSON shape is an external contract (``telemed policy check``), so parsing is
hand-written rather than delegated to a model library: every error must name
the offending field by its dotted path, and several fields have defaults that
only make sense for this domain.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

ACTIONS: tuple[str, ...] = ("consult", "prescribe", "deliver", "record")
MODES: tuple[str, ...] = ("video", "audio", "chat", "photo")
PARTICIPANTS: tuple[str, ...] = ("doctor-patient", "doctor-doctor")
PATIENT_GROUPS: tuple[str, ...] = (
    "island_remote",
    "long_term_care",
    "disabled",
    "infectious_disease",
    "rare_disease",
    "post_surgery",
    "underserved_area",
    "ship_crew",
    "prisoner",
    "military",
)
INSTITUTION_LEVELS: tuple[str, ...] = ("clinic", "hospital")
DRUG_CATEGORIES: tuple[str, ...] = (
    "narcotic",
    "psychotropic",
    "abuse_prone",
    "emergency_contraceptive",
    "controlled",
)

# ISO 3166-1 alpha-2, optionally with an ISO 3166-2 subdivision suffix.
JURISDICTION_RE = re.compile(r"^[A-Z]{2}(-[A-Z0-9]{1,3})?$")
# ATC codes are hierarchical; any level from anatomical group to substance is accepted.
ATC_RE = re.compile(r"^[A-Z](\d{2}([A-Z]([A-Z](\d{2})?)?)?)?$")

# "UK" is not an ISO 3166-1 code but is what people type; the ISO code is GB.
JURISDICTION_ALIASES: dict[str, str] = {"UK": "GB"}


class PolicyInputError(ValueError):
    """Raised when a policy context cannot be built; ``fields`` maps dotted paths to problems."""

    def __init__(self, fields: dict[str, str]) -> None:
        self.fields = dict(fields)
        summary = "; ".join(f"{k}: {v}" for k, v in sorted(self.fields.items()))
        super().__init__(f"invalid policy input: {summary}")


def normalise_jurisdiction(code: str) -> str:
    """Upper-case the code and map aliases (``UK`` → ``GB``, ``UK-ENG`` → ``GB-ENG``)."""
    code = code.strip().upper()
    country, sep, sub = code.partition("-")
    country = JURISDICTION_ALIASES.get(country, country)
    return f"{country}{sep}{sub}"


@dataclass(frozen=True)
class PriorVisit:
    """The patient's most recent face-to-face visit relevant to this consultation."""

    days_ago: int
    same_condition: bool = False
    same_institution: bool = False


@dataclass(frozen=True)
class PatientFacts:
    age: int
    groups: tuple[str, ...] = ()
    chronic: bool = False
    prior_in_person: PriorVisit | None = None


@dataclass(frozen=True)
class ProviderFacts:
    institution_level: str = "clinic"
    licensed_in: tuple[str, ...] = ()
    # Share of the institution's monthly visits already done remotely (0–1); None when unknown.
    telemedicine_share: float | None = None


@dataclass(frozen=True)
class DrugFacts:
    atc: str | None = None
    categories: tuple[str, ...] = ()
    days_supply: int | None = None


@dataclass(frozen=True)
class PolicyContext:
    """Everything a decision depends on; ``jurisdiction`` is where the *patient* is."""

    jurisdiction: str
    at: datetime
    action: str
    patient: PatientFacts
    mode: str | None = None
    participants: str = "doctor-patient"
    provider: ProviderFacts = field(default_factory=ProviderFacts)
    drug: DrugFacts | None = None

    @classmethod
    def from_json(cls, obj: Any) -> PolicyContext:
        """Build a context from the decoded JSON input, or raise :class:`PolicyInputError`."""
        return _Parser().context(obj)


_TOP_KEYS = {"jurisdiction", "at", "action", "mode", "participants", "patient", "provider", "drug"}
_PATIENT_KEYS = {"age", "groups", "chronic", "prior_in_person"}
_PRIOR_KEYS = {"days_ago", "same_condition", "same_institution"}
_PROVIDER_KEYS = {"institution_level", "licensed_in", "telemedicine_share"}
_DRUG_KEYS = {"atc", "categories", "days_supply"}


class _Parser:
    """Collects every problem rather than stopping at the first, so callers can fix input in one go."""

    def __init__(self) -> None:
        self.errors: dict[str, str] = {}

    def fail(self, path: str, message: str) -> None:
        self.errors.setdefault(path, message)

    def obj(self, value: Any, path: str, allowed: set[str]) -> Mapping[str, Any] | None:
        if not isinstance(value, dict):
            self.fail(path or "$", "must be a JSON object")
            return None
        for key in sorted(set(value) - allowed):
            self.fail(f"{path}.{key}" if path else key, "unknown field")
        return value

    def string(self, value: Any, path: str, choices: tuple[str, ...] | None = None) -> str | None:
        if not isinstance(value, str):
            self.fail(path, "must be a string")
            return None
        if choices is not None and value not in choices:
            self.fail(path, f"must be one of {', '.join(choices)}")
            return None
        return value

    def integer(self, value: Any, path: str, low: int, high: int | None = None) -> int | None:
        # bool is an int subclass in Python; true/false are never meaningful counts.
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(path, "must be an integer")
            return None
        if value < low or (high is not None and value > high):
            bound = f"between {low} and {high}" if high is not None else f">= {low}"
            self.fail(path, f"must be {bound}")
            return None
        return value

    def boolean(self, value: Any, path: str) -> bool | None:
        if not isinstance(value, bool):
            self.fail(path, "must be true or false")
            return None
        return value

    def string_list(self, value: Any, path: str, choices: tuple[str, ...] | None = None) -> tuple[str, ...]:
        if not isinstance(value, list):
            self.fail(path, "must be an array of strings")
            return ()
        out: list[str] = []
        for i, item in enumerate(value):
            parsed = self.string(item, f"{path}[{i}]", choices)
            if parsed is not None and parsed not in out:
                out.append(parsed)
        return tuple(out)

    def context(self, obj: Any) -> PolicyContext:
        top = self.obj(obj, "", _TOP_KEYS)
        if top is None:
            raise PolicyInputError(self.errors)

        jurisdiction = None
        if "jurisdiction" not in top:
            self.fail("jurisdiction", "is required")
        else:
            raw = self.string(top["jurisdiction"], "jurisdiction")
            if raw is not None:
                jurisdiction = normalise_jurisdiction(raw)
                if not JURISDICTION_RE.match(jurisdiction):
                    self.fail("jurisdiction", "must be an ISO 3166 code such as KR or US-CA")
                    jurisdiction = None

        at = None
        if "at" not in top:
            self.fail("at", "is required")
        else:
            at = self.timestamp(top["at"], "at")

        action = None
        if "action" not in top:
            self.fail("action", "is required")
        else:
            action = self.string(top["action"], "action", ACTIONS)

        mode = None
        if top.get("mode") is not None:
            mode = self.string(top["mode"], "mode", MODES)
        elif action == "consult":
            self.fail("mode", "is required when action is consult")

        participants = "doctor-patient"
        if top.get("participants") is not None:
            participants = self.string(top["participants"], "participants", PARTICIPANTS) or participants

        patient = None
        if "patient" not in top:
            self.fail("patient", "is required")
        else:
            patient = self.patient(top["patient"])
        provider = self.provider(top["provider"]) if top.get("provider") is not None else ProviderFacts()

        drug = None
        if top.get("drug") is not None:
            drug = self.drug(top["drug"])
        elif action == "prescribe":
            self.fail("drug", "is required when action is prescribe")

        if self.errors:
            raise PolicyInputError(self.errors)
        assert jurisdiction is not None and at is not None and action is not None and patient is not None
        return PolicyContext(
            jurisdiction=jurisdiction,
            at=at,
            action=action,
            mode=mode,
            participants=participants,
            patient=patient,
            provider=provider,
            drug=drug,
        )

    def timestamp(self, value: Any, path: str) -> datetime | None:
        if not isinstance(value, str):
            self.fail(path, "must be an ISO 8601 date-time string")
            return None
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            self.fail(path, "must be an ISO 8601 date-time such as 2024-01-10T20:30:00+09:00")
            return None
        # Local-time rules (nights, holidays) are meaningless without an offset.
        if parsed.tzinfo is None or parsed.utcoffset() is None:
            self.fail(path, "must include a timezone offset")
            return None
        return parsed

    def patient(self, value: Any) -> PatientFacts | None:
        obj = self.obj(value, "patient", _PATIENT_KEYS)
        if obj is None:
            return None
        age = self.integer(obj["age"], "patient.age", 0, 150) if "age" in obj else None
        if "age" not in obj:
            self.fail("patient.age", "is required")
        groups: tuple[str, ...] = ()
        if obj.get("groups") is not None:
            groups = self.string_list(obj["groups"], "patient.groups", PATIENT_GROUPS)
        chronic = False
        if obj.get("chronic") is not None:
            chronic = bool(self.boolean(obj["chronic"], "patient.chronic"))
        prior = None
        if obj.get("prior_in_person") is not None:
            prior = self.prior(obj["prior_in_person"])
        if age is None:
            return None
        return PatientFacts(age=age, groups=groups, chronic=chronic, prior_in_person=prior)

    def prior(self, value: Any) -> PriorVisit | None:
        path = "patient.prior_in_person"
        obj = self.obj(value, path, _PRIOR_KEYS)
        if obj is None:
            return None
        if "days_ago" not in obj:
            self.fail(f"{path}.days_ago", "is required")
            return None
        days = self.integer(obj["days_ago"], f"{path}.days_ago", 0)
        # Absent flags default to False: eligibility must never be assumed.
        same_condition = False
        if obj.get("same_condition") is not None:
            same_condition = bool(self.boolean(obj["same_condition"], f"{path}.same_condition"))
        same_institution = False
        if obj.get("same_institution") is not None:
            same_institution = bool(self.boolean(obj["same_institution"], f"{path}.same_institution"))
        if days is None:
            return None
        return PriorVisit(days_ago=days, same_condition=same_condition, same_institution=same_institution)

    def provider(self, value: Any) -> ProviderFacts:
        obj = self.obj(value, "provider", _PROVIDER_KEYS)
        if obj is None:
            return ProviderFacts()
        level = "clinic"
        if obj.get("institution_level") is not None:
            parsed = self.string(obj["institution_level"], "provider.institution_level", INSTITUTION_LEVELS)
            level = parsed or level
        licensed: tuple[str, ...] = ()
        if obj.get("licensed_in") is not None:
            raw = self.string_list(obj["licensed_in"], "provider.licensed_in")
            licensed = tuple(normalise_jurisdiction(code) for code in raw)
            for i, code in enumerate(licensed):
                if not JURISDICTION_RE.match(code):
                    self.fail(f"provider.licensed_in[{i}]", "must be an ISO 3166 code such as KR or US-CA")
        share = None
        raw_share = obj.get("telemedicine_share")
        if raw_share is not None:
            if isinstance(raw_share, bool) or not isinstance(raw_share, int | float):
                self.fail("provider.telemedicine_share", "must be a number between 0 and 1")
            elif not 0 <= raw_share <= 1:
                self.fail("provider.telemedicine_share", "must be between 0 and 1")
            else:
                share = float(raw_share)
        return ProviderFacts(institution_level=level, licensed_in=licensed, telemedicine_share=share)

    def drug(self, value: Any) -> DrugFacts | None:
        obj = self.obj(value, "drug", _DRUG_KEYS)
        if obj is None:
            return None
        atc = None
        if obj.get("atc") is not None:
            atc = self.string(obj["atc"], "drug.atc")
            if atc is not None and not ATC_RE.match(atc):
                self.fail("drug.atc", "must be an ATC code such as C08CA01")
                atc = None
        categories: tuple[str, ...] = ()
        if obj.get("categories") is not None:
            categories = self.string_list(obj["categories"], "drug.categories", DRUG_CATEGORIES)
        days = None
        if obj.get("days_supply") is not None:
            days = self.integer(obj["days_supply"], "drug.days_supply", 1, 3650)
        return DrugFacts(atc=atc, categories=categories, days_supply=days)
