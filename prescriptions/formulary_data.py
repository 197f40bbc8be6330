"""Starter drug formulary: typed loader and CSV/JSON importer.

The curated starter set lives in ``prescriptions/data/formulary.json`` (sources and caveats in
``prescriptions/data/SOURCES.md`` and ``prescriptions/data/NOTES.md``).

JSON shape (a list of objects)::

    {"code": "amlodipine-5mg-tab", "name": "Amlodipine 5 mg tablet", "name_ko": "암로디핀 5mg 정",
     "inn": "amlodipine", "atc": "C08CA01", "dose_form": "tablet", "strength": "5 mg",
     "strength_value": 5, "strength_unit": "mg", "route": "oral", "unit": "tablet",
     "max_days_supply": 30,                      # optional
     "flags": {"KR": {"psychotropic": true, "schedule": "향정신성의약품"},
               "US": {"controlled": true, "schedule": "IV"}}}

CSV columns (header row required, UTF-8, optional BOM)::

    code,name,name_ko,inn,atc,dose_form,strength,strength_value,strength_unit,route,unit,
    max_days_supply,<JUR>.<flag>...

``name_ko`` and ``max_days_supply`` may be empty. Flag columns are named
``<jurisdiction>.<key>``, e.g. ``KR.narcotic``, ``KR.schedule``, ``US.controlled``,
``US.schedule``; boolean cells accept true/false, yes/no, 1/0, y/n or empty (= not set);
``schedule`` cells are free text. A jurisdiction whose cells are all empty is omitted.

For combination products ``strength_value``/``strength_unit`` describe the first-listed active
ingredient (e.g. "875 mg/125 mg" -> 875, "mg").
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

__all__ = [
    "ATC_RE",
    "CATEGORIES",
    "DrugEntry",
    "FormularyImportError",
    "JurisdictionFlags",
    "load_starter_formulary",
    "parse_formulary_csv",
    "parse_formulary_file",
    "parse_formulary_json",
]

#: Categories the prescription policy engine understands.
CATEGORIES: frozenset[str] = frozenset(
    {"narcotic", "psychotropic", "abuse_prone", "emergency_contraceptive", "controlled"}
)
ATC_RE = re.compile(r"^[A-Z]\d{2}[A-Z]{2}\d{2}$")
_CODE_RE = re.compile(r"^[a-z0-9][a-z0-9.\-]*$")
_JURISDICTION_RE = re.compile(r"^[A-Z]{2}$")
_FLAG_KEYS: frozenset[str] = CATEGORIES | {"schedule"}
_REQUIRED_TEXT = ("code", "name", "inn", "atc", "dose_form", "strength", "strength_unit", "route", "unit")
_TRUE = {"true", "yes", "y", "1"}
_FALSE = {"false", "no", "n", "0", ""}
_STARTER_PACKAGE = "prescriptions.data"
_STARTER_FILE = "formulary.json"


class FormularyImportError(ValueError):
    """A row of a formulary file is invalid. ``row`` is 1-based (data rows; CSV header excluded)."""

    def __init__(self, row: int, field_name: str, message: str) -> None:
        self.row = row
        self.field = field_name
        self.message = message
        super().__init__(f"row {row}, field {field_name!r}: {message}")


@dataclass(frozen=True, slots=True)
class JurisdictionFlags:
    narcotic: bool = False
    psychotropic: bool = False
    abuse_prone: bool = False
    emergency_contraceptive: bool = False
    controlled: bool = False
    schedule: str | None = None

    def categories(self) -> frozenset[str]:
        return frozenset(c for c in CATEGORIES if getattr(self, c))

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {c: True for c in sorted(CATEGORIES) if getattr(self, c)}
        if self.schedule:
            out["schedule"] = self.schedule
        return out


@dataclass(frozen=True, slots=True)
class DrugEntry:
    code: str
    name: str
    name_ko: str | None
    inn: str
    atc: str
    dose_form: str
    strength: str
    strength_value: float
    strength_unit: str
    route: str
    unit: str
    max_days_supply: int | None = None
    flags: Mapping[str, JurisdictionFlags] = field(default_factory=dict)

    def flags_for(self, jurisdiction: str) -> JurisdictionFlags | None:
        """Flags for ``jurisdiction``; a subdivision ("US-CA") falls back to its country ("US")."""
        key = jurisdiction.strip().upper()
        if key in self.flags:
            return self.flags[key]
        country = key.split("-", 1)[0]
        return self.flags.get(country)

    def categories_for(self, jurisdiction: str) -> frozenset[str]:
        """Policy categories for ``jurisdiction`` (empty when none are known)."""
        flags = self.flags_for(jurisdiction)
        return flags.categories() if flags is not None else frozenset()

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "code": self.code,
            "name": self.name,
            "name_ko": self.name_ko,
            "inn": self.inn,
            "atc": self.atc,
            "dose_form": self.dose_form,
            "strength": self.strength,
            "strength_value": self.strength_value,
            "strength_unit": self.strength_unit,
            "route": self.route,
            "unit": self.unit,
        }
        if self.max_days_supply is not None:
            out["max_days_supply"] = self.max_days_supply
        out["flags"] = {j: f.to_dict() for j, f in sorted(self.flags.items())}
        return out


# --------------------------------------------------------------------------- validation


def _text(row: int, name: str, value: Any, *, required: bool = True) -> str | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise FormularyImportError(row, name, "is required")
        return None
    if not isinstance(value, str):
        raise FormularyImportError(row, name, f"must be a string, got {type(value).__name__}")
    return value.strip()


def _number(row: int, name: str, value: Any) -> float:
    if isinstance(value, bool):
        raise FormularyImportError(row, name, "must be a number")
    if isinstance(value, int | float):
        num = float(value)
    elif isinstance(value, str) and value.strip():
        try:
            num = float(value.strip())
        except ValueError:
            raise FormularyImportError(row, name, f"not a number: {value!r}") from None
    else:
        raise FormularyImportError(row, name, "is required")
    if not num > 0 or num != num or num == float("inf"):
        raise FormularyImportError(row, name, f"must be a positive number, got {value!r}")
    return num


def _optional_int(row: int, name: str, value: Any) -> int | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool):
        raise FormularyImportError(row, name, "must be an integer")
    if isinstance(value, int):
        num = value
    elif isinstance(value, float) and value.is_integer():
        num = int(value)
    elif isinstance(value, str) and value.strip().isdigit():
        num = int(value.strip())
    else:
        raise FormularyImportError(row, name, f"must be a positive integer, got {value!r}")
    if num <= 0:
        raise FormularyImportError(row, name, f"must be a positive integer, got {value!r}")
    return num


def _bool(row: int, name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if value is None:
        return False
    if isinstance(value, str):
        v = value.strip().lower()
        if v in _TRUE:
            return True
        if v in _FALSE:
            return False
    raise FormularyImportError(row, name, f"must be a boolean, got {value!r}")


def _flags(row: int, value: Any) -> dict[str, JurisdictionFlags]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise FormularyImportError(row, "flags", "must be an object keyed by jurisdiction")
    out: dict[str, JurisdictionFlags] = {}
    for jur, raw in value.items():
        if not isinstance(jur, str) or not _JURISDICTION_RE.match(jur):
            raise FormularyImportError(row, "flags", f"bad jurisdiction code {jur!r} (ISO 3166-1 alpha-2)")
        if not isinstance(raw, Mapping):
            raise FormularyImportError(row, f"flags.{jur}", "must be an object")
        unknown = set(raw) - _FLAG_KEYS
        if unknown:
            raise FormularyImportError(row, f"flags.{jur}", f"unknown keys {sorted(unknown)}")
        schedule = _text(row, f"{jur}.schedule", raw.get("schedule"), required=False)
        out[jur] = JurisdictionFlags(
            **{c: _bool(row, f"{jur}.{c}", raw.get(c)) for c in CATEGORIES},
            schedule=schedule,
        )
    return out


def _entry(row: int, raw: Mapping[str, Any]) -> DrugEntry:
    t = {name: _text(row, name, raw.get(name)) for name in _REQUIRED_TEXT}
    code = t["code"] or ""
    if not _CODE_RE.match(code):
        raise FormularyImportError(row, "code", f"must be a lower-case slug, got {code!r}")
    atc = (t["atc"] or "").upper()
    if not ATC_RE.match(atc):
        raise FormularyImportError(row, "atc", f"not a 7-character ATC level-5 code: {t['atc']!r}")
    return DrugEntry(
        code=code,
        name=t["name"] or "",
        name_ko=_text(row, "name_ko", raw.get("name_ko"), required=False),
        inn=t["inn"] or "",
        atc=atc,
        dose_form=t["dose_form"] or "",
        strength=t["strength"] or "",
        strength_value=_number(row, "strength_value", raw.get("strength_value")),
        strength_unit=t["strength_unit"] or "",
        route=t["route"] or "",
        unit=t["unit"] or "",
        max_days_supply=_optional_int(row, "max_days_supply", raw.get("max_days_supply")),
        flags=_flags(row, raw.get("flags")),
    )


def _validate_all(rows: Iterable[tuple[int, Mapping[str, Any]]]) -> list[DrugEntry]:
    entries: list[DrugEntry] = []
    seen: dict[str, int] = {}
    for row, raw in rows:
        entry = _entry(row, raw)
        if entry.code in seen:
            first = seen[entry.code]
            raise FormularyImportError(row, "code", f"duplicate code {entry.code!r} (first on row {first})")
        seen[entry.code] = row
        entries.append(entry)
    return entries


# --------------------------------------------------------------------------- parsers


def parse_formulary_json(text: str) -> list[DrugEntry]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise FormularyImportError(0, "<file>", f"invalid JSON: {exc}") from None
    if not isinstance(data, list):
        raise FormularyImportError(0, "<file>", "top level must be a list of drug objects")
    rows: list[tuple[int, Mapping[str, Any]]] = []
    for i, raw in enumerate(data, start=1):
        if not isinstance(raw, Mapping):
            raise FormularyImportError(i, "<row>", "must be an object")
        rows.append((i, raw))
    return _validate_all(rows)


def parse_formulary_csv(text: str) -> list[DrugEntry]:
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))
    header = [h.strip() for h in (reader.fieldnames or [])]
    if not header:
        raise FormularyImportError(0, "<header>", "empty CSV")
    missing = [c for c in (*_REQUIRED_TEXT, "strength_value") if c not in header]
    if missing:
        raise FormularyImportError(0, "<header>", f"missing columns {missing}")
    base = set(_REQUIRED_TEXT) | {"strength_value", "name_ko", "max_days_supply"}
    for col in header:
        if col in base:
            continue
        jur, sep, key = col.partition(".")
        if not sep or not _JURISDICTION_RE.match(jur) or key not in _FLAG_KEYS:
            raise FormularyImportError(0, col, "unknown column (flag columns look like 'KR.narcotic')")
    rows: list[tuple[int, Mapping[str, Any]]] = []
    for i, rec in enumerate(reader, start=1):
        if None in rec:
            raise FormularyImportError(i, "<row>", "more cells than header columns")
        cells = {k.strip(): (v or "") for k, v in rec.items()}
        if not any(v.strip() for v in cells.values()):
            continue  # blank line
        raw: dict[str, Any] = {k: v for k, v in cells.items() if k in base}
        flags: dict[str, dict[str, Any]] = {}
        for col, cell in cells.items():
            if col in base or not cell.strip():
                continue
            jur, _, key = col.partition(".")
            flags.setdefault(jur, {})[key] = cell
        raw["flags"] = flags
        rows.append((i, raw))
    return _validate_all(rows)


def parse_formulary_file(path: Path) -> list[DrugEntry]:
    """Parse a ``.csv`` or ``.json`` formulary file; raises :class:`FormularyImportError`."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in {".csv", ".json"}:
        raise FormularyImportError(0, "<file>", f"unsupported file type {suffix!r} (use .csv or .json)")
    text = path.read_text(encoding="utf-8")
    return parse_formulary_csv(text) if suffix == ".csv" else parse_formulary_json(text)


def load_starter_formulary() -> list[DrugEntry]:
    """The curated starter set shipped with the package (validated on load)."""
    text = resources.files(_STARTER_PACKAGE).joinpath(_STARTER_FILE).read_text(encoding="utf-8")
    return parse_formulary_json(text)
