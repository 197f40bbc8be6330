"""Rule sets: TOML files in a small condition vocabulary, validated on load.

The vocabulary is documented in ``docs/policy.md``; the constants here are its
single source of truth, so a typo in a rule file is a load error, not a rule that
silently never fires.
"""

from __future__ import annotations

import hashlib
import re
import tomllib
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from clinic.policy.context import (
    ACTIONS,
    DRUG_CATEGORIES,
    INSTITUTION_LEVELS,
    JURISDICTION_RE,
    MODES,
    PARTICIPANTS,
    PATIENT_GROUPS,
)

EFFECTS: tuple[str, ...] = ("permit", "forbid", "require", "oblige")

OBLIGATIONS: tuple[str, ...] = (
    "video_required",
    "video_impossible_documented",
    "pharmacist_patient_agreement_required",
    "pharmacist_review_required",
    "in_person_followup",
    "epcs_two_factor_required",
    "all_participants_consent",
    "participant_consent",
    "explain_telemedicine_limits",
    "electronic_prescription_required",
    "guardian_present_required",
    "medical_records_access_required",
    "pre_consultation_required",
    "online_medication_guidance",
    "state_medical_chamber_rules_apply",
    "testing_only",
)

WEEKDAYS: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")

# Fact name → (kind, allowed enum values or None). Kinds drive operator checks.
FACTS: dict[str, tuple[str, tuple[str, ...] | None]] = {
    "action": ("str", ACTIONS),
    "mode": ("str", MODES),
    "participants": ("str", PARTICIPANTS),
    "jurisdiction": ("str", None),
    "patient.age": ("num", None),
    "patient.groups": ("list", PATIENT_GROUPS),
    "patient.chronic": ("bool", None),
    "patient.prior_in_person.days_ago": ("days_ago", None),
    "patient.prior_in_person.same_condition": ("bool", None),
    "patient.prior_in_person.same_institution": ("bool", None),
    "provider.institution_level": ("str", INSTITUTION_LEVELS),
    "provider.licensed_in": ("list", None),
    "provider.telemedicine_share": ("num", None),
    "drug.atc": ("str", None),
    "drug.categories": ("list", DRUG_CATEGORIES),
    "drug.days_supply": ("num", None),
    "at.date": ("date", None),
    "at.local_time": ("time", None),
    "at.weekday": ("str", WEEKDAYS),
    "at.weekend": ("bool", None),
    "at.holiday": ("bool", None),
    "at.day_off": ("bool", None),
}

# Operator → fact kinds it applies to.
OPERATORS: dict[str, tuple[str, ...]] = {
    "eq": ("str", "num", "bool", "date", "time", "days_ago"),
    "ne": ("str", "num", "bool", "date", "time", "days_ago"),
    "lt": ("num", "date", "time", "days_ago"),
    "le": ("num", "date", "time", "days_ago"),
    "gt": ("num", "date", "time", "days_ago"),
    "ge": ("num", "date", "time", "days_ago"),
    "in": ("str", "num"),
    "contains": ("list",),
    "contains_any": ("list",),
    "contains_prefix": ("list",),
    "starts_with_any": ("str",),
    "is_null": ("str", "num", "bool", "days_ago", "list"),
    "within_months": ("days_ago",),
}

_TIME_RE = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")
_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_ID_RE = re.compile(r"^[a-z0-9][a-z0-9-]*$")

_TOP_KEYS = {
    "id",
    "jurisdiction",
    "title",
    "timezone",
    "holidays",
    "effective_from",
    "effective_to",
    "extends",
    "abstract",
    "applies_to_subdivisions",
    "notes",
    "sources",
    "definitions",
    "rules",
}
_SOURCE_KEYS = {"key", "title", "date", "url", "note"}
_RULE_KEYS = {
    "id",
    "effect",
    "actions",
    "when",
    "obligations",
    "message_en",
    "message_ko",
    "source",
    "effective_from",
    "effective_to",
    "replaces",
}


class RuleSetError(ValueError):
    """A rule file is invalid; ``file`` and ``line`` point at the problem."""

    def __init__(self, file: str | Path, line: int | None, message: str) -> None:
        self.file = str(file)
        self.line = line
        self.detail = message
        where = f"{self.file}:{line}" if line is not None else self.file
        super().__init__(f"{where}: {message}")


# ---------------------------------------------------------------------------
# Conditions


class Condition(ABC):
    """A compiled ``when`` expression; evaluated against a flat fact mapping."""

    @abstractmethod
    def holds(self, facts: Mapping[str, Any]) -> bool: ...


@dataclass(frozen=True)
class Always(Condition):
    def holds(self, facts: Mapping[str, Any]) -> bool:
        return True


@dataclass(frozen=True)
class AllOf(Condition):
    items: tuple[Condition, ...]

    def holds(self, facts: Mapping[str, Any]) -> bool:
        return all(item.holds(facts) for item in self.items)


@dataclass(frozen=True)
class AnyOf(Condition):
    items: tuple[Condition, ...]

    def holds(self, facts: Mapping[str, Any]) -> bool:
        return any(item.holds(facts) for item in self.items)


@dataclass(frozen=True)
class Not(Condition):
    item: Condition

    def holds(self, facts: Mapping[str, Any]) -> bool:
        return not self.item.holds(facts)


def _subst(value: Any, facts: Mapping[str, Any]) -> Any:
    # "$jurisdiction" lets one rule (e.g. state licensure) serve every sub-jurisdiction.
    if value == "$jurisdiction":
        return facts["jurisdiction"]
    if isinstance(value, tuple):
        return tuple(_subst(v, facts) for v in value)
    return value


def _months_before(day: date, months: int) -> date:
    year, month = divmod(day.year * 12 + day.month - 1 - months, 12)
    month += 1
    # Clamp to the month's last day (e.g. 31 Aug minus 6 months → 28/29 Feb).
    for dom in (day.day, 30, 29, 28):
        try:
            return date(year, month, dom)
        except ValueError:
            continue
    raise AssertionError("unreachable")


@dataclass(frozen=True)
class FactTest(Condition):
    fact: str
    op: str
    value: Any

    def holds(self, facts: Mapping[str, Any]) -> bool:
        actual = facts.get(self.fact)
        value = _subst(self.value, facts)
        if self.op == "is_null":
            return (actual is None) == bool(value)
        # Missing facts never satisfy a comparison: "no prior visit" is not "visit 0 days ago".
        if actual is None:
            return False
        if self.op == "eq":
            return bool(actual == value)
        if self.op == "ne":
            return bool(actual != value)
        if self.op == "lt":
            return bool(actual < value)
        if self.op == "le":
            return bool(actual <= value)
        if self.op == "gt":
            return bool(actual > value)
        if self.op == "ge":
            return bool(actual >= value)
        if self.op == "in":
            return actual in value
        if self.op == "contains":
            return value in actual
        if self.op == "contains_any":
            return any(v in actual for v in value)
        if self.op == "contains_prefix":
            return any(str(a).startswith(value) for a in actual)
        if self.op == "starts_with_any":
            return any(str(actual).startswith(v) for v in value)
        if self.op == "within_months":
            # Calendar months, counted back from the local date of the consultation.
            today = date.fromisoformat(facts["at.date"])
            visit = date.fromordinal(today.toordinal() - int(actual))
            return visit >= _months_before(today, int(value))
        raise AssertionError(f"unknown operator {self.op}")


# ---------------------------------------------------------------------------
# Rule sets


@dataclass(frozen=True)
class Source:
    key: str
    title: str
    date: date | None
    url: str
    note: str = ""

    def as_dict(self) -> dict[str, str | None]:
        return {
            "key": self.key,
            "title": self.title,
            "date": self.date.isoformat() if self.date else None,
            "url": self.url,
            "note": self.note,
        }


@dataclass(frozen=True)
class Rule:
    id: str
    effect: str
    actions: tuple[str, ...]
    when: Condition
    message_en: str
    message_ko: str
    obligations: tuple[str, ...] = ()
    source: str | None = None
    effective_from: date | None = None
    effective_to: date | None = None
    replaces: tuple[str, ...] = ()

    def in_force(self, day: date) -> bool:
        if self.effective_from is not None and day < self.effective_from:
            return False
        return not (self.effective_to is not None and day > self.effective_to)


@dataclass(frozen=True)
class RuleSet:
    """One rule file; ``parent`` is filled in when an engine links ``extends``."""

    id: str
    jurisdiction: str
    title: str
    timezone: str
    holidays: str | None
    effective_from: date
    effective_to: date | None
    rules: tuple[Rule, ...]
    sources: tuple[Source, ...]
    sha256: str
    path: str
    notes: str = ""
    extends: str | None = None
    abstract: bool = False
    applies_to_subdivisions: bool = False
    parent: RuleSet | None = None

    def in_force(self, day: date) -> bool:
        if day < self.effective_from:
            return False
        return not (self.effective_to is not None and day > self.effective_to)

    def chain(self) -> tuple[RuleSet, ...]:
        """This set and its ancestors, root first."""
        out: list[RuleSet] = []
        node: RuleSet | None = self
        while node is not None:
            out.append(node)
            node = node.parent
        return tuple(reversed(out))

    def effective_rules(self) -> tuple[Rule, ...]:
        """Inherited rules first, minus any a descendant ``replaces``."""
        chain = self.chain()
        replaced = {rid for rs in chain for rule in rs.rules for rid in rule.replaces}
        return tuple(rule for rs in chain for rule in rs.rules if rule.id not in replaced)

    def describe(self) -> dict[str, Any]:
        """Summary for an admin page."""
        return {
            "id": self.id,
            "jurisdiction": self.jurisdiction,
            "title": self.title,
            "effective_from": self.effective_from.isoformat(),
            "effective_to": self.effective_to.isoformat() if self.effective_to else None,
            "extends": self.extends,
            "abstract": self.abstract,
            "timezone": self.timezone,
            "sources": [s.as_dict() for s in self.sources],
            "notes": self.notes,
            "sha256": self.sha256,
            "rule_count": len(self.rules),
        }


# ---------------------------------------------------------------------------
# Loading


class _Locator:
    """Maps a logical position in the TOML document back to a line number by scanning the text.

    tomllib does not keep positions, so semantic errors are pinned to the line of
    the offending key inside the right ``[[rules]]``/``[[sources]]`` entry or table.
    """

    def __init__(self, text: str) -> None:
        self.lines = text.splitlines()

    def _headers(self, name: str) -> list[int]:
        pattern = re.compile(rf"^\s*\[\[\s*{re.escape(name)}\s*\]\]\s*(#.*)?$")
        return [i for i, line in enumerate(self.lines) if pattern.match(line)]

    def _table(self, name: str) -> int | None:
        pattern = re.compile(rf"^\s*\[\s*{re.escape(name)}\s*\]\s*(#.*)?$")
        for i, line in enumerate(self.lines):
            if pattern.match(line):
                return i
        return None

    def _section_end(self, start: int) -> int:
        for i in range(start + 1, len(self.lines)):
            if self.lines[i].lstrip().startswith("["):
                return i
        return len(self.lines)

    def _key(self, key: str, start: int, end: int) -> int | None:
        pattern = re.compile(rf"^\s*{re.escape(key)}\s*=")
        for i in range(start, end):
            if pattern.match(self.lines[i]):
                return i
        return None

    def top(self, key: str | None) -> int:
        if key is None:
            return 1
        end = next((i for i, ln in enumerate(self.lines) if ln.lstrip().startswith("[")), len(self.lines))
        found = self._key(key, 0, end)
        if found is not None:
            return found + 1
        table = self._table(key)
        if table is not None:
            return table + 1
        headers = self._headers(key)
        return headers[0] + 1 if headers else 1

    def entry(self, array: str, index: int, key: str | None = None) -> int:
        headers = self._headers(array)
        if index >= len(headers):
            return self.top(array)
        start = headers[index]
        if key is None:
            return start + 1
        found = self._key(key, start + 1, self._section_end(start))
        return (found if found is not None else start) + 1

    def table_key(self, table: str, key: str) -> int:
        start = self._table(table)
        if start is None:
            return self.top(table)
        found = self._key(key, start + 1, self._section_end(start))
        return (found if found is not None else start) + 1


class _Loader:
    def __init__(self, path: Path, text: str) -> None:
        self.path = path
        self.loc = _Locator(text)

    def error(self, line: int, message: str) -> RuleSetError:
        return RuleSetError(self.path, line, message)

    def load(self, doc: dict[str, Any], digest: str) -> RuleSet:
        for key in doc:
            if key not in _TOP_KEYS:
                raise self.error(self.loc.top(key), f"unknown top-level key {key!r}")
        for key in ("id", "jurisdiction", "timezone", "effective_from", "sources"):
            if key not in doc:
                raise self.error(1, f"missing required key {key!r}")
        # A layer may consist only of citations and notes (its parent carries the rules).
        if "rules" not in doc and "extends" not in doc:
            raise self.error(1, "a rule set without 'extends' needs [[rules]]")

        rs_id = self._str(doc["id"], self.loc.top("id"), "id")
        if not _ID_RE.match(rs_id):
            raise self.error(self.loc.top("id"), "id must be lower-case letters, digits and hyphens")
        jurisdiction = self._str(doc["jurisdiction"], self.loc.top("jurisdiction"), "jurisdiction")
        if jurisdiction != "*" and not JURISDICTION_RE.match(jurisdiction):
            raise self.error(self.loc.top("jurisdiction"), f"jurisdiction {jurisdiction!r} is not ISO 3166")
        timezone = self._str(doc["timezone"], self.loc.top("timezone"), "timezone")
        try:
            ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise self.error(self.loc.top("timezone"), f"unknown IANA timezone {timezone!r}") from None
        holidays_code = doc.get("holidays")
        if holidays_code is not None:
            holidays_code = self._str(holidays_code, self.loc.top("holidays"), "holidays")
            if not JURISDICTION_RE.match(holidays_code):
                raise self.error(self.loc.top("holidays"), "holidays must be a country or subdivision code")
        eff_from = self._date(doc["effective_from"], self.loc.top("effective_from"), "effective_from")
        eff_to = None
        if "effective_to" in doc:
            eff_to = self._date(doc["effective_to"], self.loc.top("effective_to"), "effective_to")
            if eff_to < eff_from:
                raise self.error(self.loc.top("effective_to"), "effective_to is before effective_from")
        extends = None
        if "extends" in doc:
            extends = self._str(doc["extends"], self.loc.top("extends"), "extends")
        sources = self._sources(doc["sources"])
        definitions = self._definitions(doc.get("definitions", {}))
        rules = self._rules(doc.get("rules", []), definitions, {s.key for s in sources})
        return RuleSet(
            id=rs_id,
            jurisdiction=jurisdiction,
            title=str(doc.get("title", rs_id)),
            timezone=timezone,
            holidays=holidays_code,
            effective_from=eff_from,
            effective_to=eff_to,
            rules=rules,
            sources=sources,
            sha256=digest,
            path=str(self.path),
            notes=str(doc.get("notes", "")),
            extends=extends,
            abstract=self._bool(doc.get("abstract", False), self.loc.top("abstract"), "abstract"),
            applies_to_subdivisions=self._bool(
                doc.get("applies_to_subdivisions", False),
                self.loc.top("applies_to_subdivisions"),
                "applies_to_subdivisions",
            ),
        )

    # -- scalar helpers -------------------------------------------------

    def _str(self, value: Any, line: int, what: str) -> str:
        if not isinstance(value, str) or not value:
            raise self.error(line, f"{what} must be a non-empty string")
        return value

    def _bool(self, value: Any, line: int, what: str) -> bool:
        if not isinstance(value, bool):
            raise self.error(line, f"{what} must be true or false")
        return value

    def _date(self, value: Any, line: int, what: str) -> date:
        # TOML local dates arrive as datetime.date; a datetime would smuggle in a time of day.
        if not isinstance(value, date) or hasattr(value, "hour"):
            raise self.error(line, f"{what} must be a TOML date such as 2024-02-23")
        return value

    # -- sections -------------------------------------------------------

    def _sources(self, raw: Any) -> tuple[Source, ...]:
        if not isinstance(raw, list) or not raw:
            raise self.error(self.loc.top("sources"), "sources must be a non-empty array ([[sources]])")
        out: list[Source] = []
        for i, entry in enumerate(raw):
            if not isinstance(entry, dict):
                raise self.error(self.loc.entry("sources", i), "each source must be a table")
            for key in entry:
                if key not in _SOURCE_KEYS:
                    raise self.error(self.loc.entry("sources", i, key), f"unknown source key {key!r}")
            for key in ("key", "title", "url"):
                if key not in entry:
                    raise self.error(self.loc.entry("sources", i), f"source is missing {key!r}")
            url = self._str(entry["url"], self.loc.entry("sources", i, "url"), "url")
            if not url.startswith(("https://", "http://")):
                raise self.error(self.loc.entry("sources", i, "url"), "url must be an http(s) address")
            src_date = None
            if "date" in entry:
                src_date = self._date(entry["date"], self.loc.entry("sources", i, "date"), "date")
            key = self._str(entry["key"], self.loc.entry("sources", i, "key"), "key")
            if any(s.key == key for s in out):
                raise self.error(self.loc.entry("sources", i, "key"), f"duplicate source key {key!r}")
            out.append(
                Source(
                    key=key,
                    title=self._str(entry["title"], self.loc.entry("sources", i, "title"), "title"),
                    date=src_date,
                    url=url,
                    note=str(entry.get("note", "")),
                )
            )
        return tuple(out)

    def _definitions(self, raw: Any) -> dict[str, Condition]:
        if not isinstance(raw, dict):
            raise self.error(self.loc.top("definitions"), "definitions must be a table")
        compiled: dict[str, Condition] = {}
        # Definitions may refer to earlier ones only, which rules out cycles by construction.
        for name, expr in raw.items():
            line = self.loc.table_key("definitions", name)
            compiled[name] = self._condition(expr, line, compiled, f"definition {name!r}")
        return compiled

    def _rules(self, raw: Any, definitions: dict[str, Condition], source_keys: set[str]) -> tuple[Rule, ...]:
        if not isinstance(raw, list):
            raise self.error(self.loc.top("rules"), "rules must be an array of tables ([[rules]])")
        out: list[Rule] = []
        seen: set[str] = set()
        for i, entry in enumerate(raw):
            if not isinstance(entry, dict):
                raise self.error(self.loc.entry("rules", i), "each rule must be a table")

            def line(key: str | None = None, _i: int = i) -> int:
                return self.loc.entry("rules", _i, key)

            for key in entry:
                if key not in _RULE_KEYS:
                    raise self.error(line(key), f"unknown rule key {key!r}")
            for key in ("id", "effect", "actions", "message_en", "message_ko"):
                if key not in entry:
                    raise self.error(line(), f"rule is missing {key!r}")
            rule_id = self._str(entry["id"], line("id"), "rule id")
            if not _ID_RE.match(rule_id) or rule_id == "default-deny":
                raise self.error(line("id"), f"invalid rule id {rule_id!r}")
            if rule_id in seen:
                raise self.error(line("id"), f"duplicate rule id {rule_id!r}")
            seen.add(rule_id)
            effect = self._str(entry["effect"], line("effect"), "effect")
            if effect not in EFFECTS:
                raise self.error(line("effect"), f"effect must be one of {', '.join(EFFECTS)}")
            actions = self._enum_list(entry["actions"], line("actions"), "actions", ACTIONS)
            if not actions:
                raise self.error(line("actions"), "actions must not be empty")
            obligations = self._enum_list(entry.get("obligations", []), line("obligations"), "obligations", OBLIGATIONS)
            if obligations and effect not in ("permit", "oblige"):
                raise self.error(line("obligations"), "only permit and oblige rules carry obligations")
            if effect == "oblige" and not obligations:
                raise self.error(line(), "an oblige rule needs obligations")
            when: Condition = Always()
            if "when" in entry:
                when = self._condition(entry["when"], line("when"), definitions, f"rule {rule_id!r}")
            elif effect in ("forbid", "require"):
                # An unconditional forbid is legitimate (e.g. "doctor-patient telemedicine is unlawful");
                # an unconditional require is always satisfied and therefore a mistake.
                if effect == "require":
                    raise self.error(line(), "a require rule needs a 'when' condition")
            source = None
            if "source" in entry:
                source = self._str(entry["source"], line("source"), "source")
                if source not in source_keys:
                    raise self.error(line("source"), f"unknown source key {source!r}")
            eff_from = (
                self._date(entry["effective_from"], line("effective_from"), "effective_from")
                if ("effective_from" in entry)
                else None
            )
            eff_to = (
                self._date(entry["effective_to"], line("effective_to"), "effective_to")
                if ("effective_to" in entry)
                else None
            )
            replaces = self._id_list(entry.get("replaces", []), line("replaces"))
            out.append(
                Rule(
                    id=rule_id,
                    effect=effect,
                    actions=actions,
                    when=when,
                    message_en=self._str(entry["message_en"], line("message_en"), "message_en"),
                    message_ko=self._str(entry["message_ko"], line("message_ko"), "message_ko"),
                    obligations=obligations,
                    source=source,
                    effective_from=eff_from,
                    effective_to=eff_to,
                    replaces=replaces,
                )
            )
        return tuple(out)

    def _enum_list(self, value: Any, line: int, what: str, choices: Sequence[str]) -> tuple[str, ...]:
        if not isinstance(value, list):
            raise self.error(line, f"{what} must be an array")
        for item in value:
            if item not in choices:
                raise self.error(line, f"unknown {what[:-1] if what.endswith('s') else what} {item!r}")
        return tuple(value)

    def _id_list(self, value: Any, line: int) -> tuple[str, ...]:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.error(line, "replaces must be a rule id or an array of rule ids")
        return tuple(value)

    # -- conditions -----------------------------------------------------

    def _condition(self, expr: Any, line: int, defs: Mapping[str, Condition], where: str) -> Condition:
        if not isinstance(expr, dict):
            raise self.error(line, f"{where}: a condition must be a table")
        if "all" in expr or "any" in expr:
            key = "all" if "all" in expr else "any"
            if len(expr) != 1:
                raise self.error(line, f"{where}: '{key}' must be the only key in its table")
            items = expr[key]
            if not isinstance(items, list) or not items:
                raise self.error(line, f"{where}: '{key}' needs a non-empty array of conditions")
            compiled = tuple(self._condition(item, line, defs, where) for item in items)
            return AllOf(compiled) if key == "all" else AnyOf(compiled)
        if "not" in expr:
            if len(expr) != 1:
                raise self.error(line, f"{where}: 'not' must be the only key in its table")
            return Not(self._condition(expr["not"], line, defs, where))
        if "ref" in expr:
            if len(expr) != 1:
                raise self.error(line, f"{where}: 'ref' must be the only key in its table")
            name = expr["ref"]
            if name not in defs:
                raise self.error(line, f"{where}: unknown definition {name!r}")
            return defs[name]
        if "fact" in expr:
            return self._fact_test(expr, line, where)
        raise self.error(line, f"{where}: a condition needs one of all, any, not, ref, fact")

    def _fact_test(self, expr: dict[str, Any], line: int, where: str) -> Condition:
        fact = expr["fact"]
        if fact not in FACTS:
            raise self.error(line, f"{where}: unknown fact {fact!r}")
        ops = [k for k in expr if k != "fact"]
        if len(ops) != 1:
            raise self.error(line, f"{where}: a fact test needs exactly one operator")
        op = ops[0]
        if op not in OPERATORS:
            raise self.error(line, f"{where}: unknown operator {op!r}")
        kind, enum = FACTS[fact]
        if kind not in OPERATORS[op]:
            raise self.error(line, f"{where}: operator {op!r} does not apply to {fact!r}")
        value = expr[op]

        def bad(expected: str) -> RuleSetError:
            return self.error(line, f"{where}: {fact} {op} expects {expected}, got {value!r}")

        def check_scalar(v: Any) -> Any:
            if v == "$jurisdiction" and fact in ("jurisdiction", "provider.licensed_in"):
                return v
            if kind in ("num", "days_ago"):
                if isinstance(v, bool) or not isinstance(v, int | float):
                    raise bad("a number")
            elif kind == "bool":
                if not isinstance(v, bool):
                    raise bad("true or false")
            elif kind == "time":
                if not isinstance(v, str) or not _TIME_RE.match(v):
                    raise bad("a local time HH:MM")
            elif kind == "date":
                # Dates compare as ISO strings, so accept TOML dates and normalise them.
                if isinstance(v, date) and not hasattr(v, "hour"):
                    return v.isoformat()
                if not isinstance(v, str) or not _DATE_RE.match(v):
                    raise bad("a date")
            elif not isinstance(v, str):
                raise bad("a string")
            if enum is not None and v not in enum:
                raise bad(f"one of {', '.join(enum)}")
            return v

        if op == "is_null":
            if not isinstance(value, bool):
                raise bad("true or false")
            return FactTest(fact, op, value)
        if op == "within_months":
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise bad("a positive whole number of months")
            return FactTest(fact, op, value)
        if op in ("in", "contains_any", "starts_with_any"):
            if not isinstance(value, list) or not value:
                raise bad("a non-empty array")
            return FactTest(fact, op, tuple(check_scalar(v) for v in value))
        if op == "contains_prefix":
            if not isinstance(value, str):
                raise bad("a string")
            return FactTest(fact, op, value)
        return FactTest(fact, op, check_scalar(value))


def load_rule_set(path: str | Path) -> RuleSet:
    """Load and validate one rule file; raises :class:`RuleSetError` naming file and line."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise RuleSetError(path, None, f"cannot read rule file: {exc}") from exc
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RuleSetError(path, None, f"rule file is not UTF-8: {exc}") from exc
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        match = re.search(r"line (\d+)", str(exc))
        line = int(match.group(1)) if match else None
        raise RuleSetError(path, line, f"TOML syntax error: {exc}") from exc
    return _Loader(path, text).load(doc, hashlib.sha256(raw).hexdigest())
