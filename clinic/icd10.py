"""ICD-10-CM diagnosis code list: lookup, validation and search.

The code list is ``clinic/data/icd10cm_codes.tsv.gz``: every billable ICD-10-CM code of the
April 2026 release (US CDC/NCHS, public domain), English descriptions. Provenance and the
regeneration recipe are in ``docs/data-sources.md``.

Codes are always returned in the dotted form ("E11.9"); input may be given with or without
the dot, in any case and with surrounding whitespace ("e119", " E11.9 ").
"""

from __future__ import annotations

import gzip
import io
import re
from dataclasses import dataclass
from functools import cache
from importlib import resources

__all__ = ["IcdCode", "all_codes", "is_valid", "lookup", "normalize", "search"]

_DATA_PACKAGE = "clinic.data"
_DATA_FILE = "icd10cm_codes.tsv.gz"
_WORD_RE = re.compile(r"[a-z0-9]+")
_CODE_CHARS_RE = re.compile(r"^[A-Z][0-9][0-9A-Z]{1,5}$")


@dataclass(frozen=True, slots=True)
class IcdCode:
    code: str
    """Dotted ICD-10-CM code, e.g. ``"E11.9"``."""
    display: str
    """English description from the tabular list."""


@dataclass(frozen=True, slots=True)
class _Index:
    by_code: dict[str, IcdCode]  # key: upper-case code without the dot
    ordered: tuple[IcdCode, ...]  # sorted by code
    keys: tuple[str, ...]  # undotted codes, same order as ``ordered``
    words: tuple[frozenset[str], ...]  # lower-case description words, same order


def normalize(code: str) -> str:
    """Return ``code`` upper-cased without dot or whitespace ("e11.9 " -> "E119")."""
    return "".join(code.split()).replace(".", "").upper()


def _dotted(key: str) -> str:
    return key if len(key) <= 3 else f"{key[:3]}.{key[3:]}"


@cache
def _index() -> _Index:
    raw = resources.files(_DATA_PACKAGE).joinpath(_DATA_FILE).read_bytes()
    by_code: dict[str, IcdCode] = {}
    ordered: list[IcdCode] = []
    keys: list[str] = []
    words: list[frozenset[str]] = []
    with gzip.open(io.BytesIO(raw), "rt", encoding="utf-8") as fh:
        header = fh.readline()
        if not header.startswith("code\t"):
            raise RuntimeError(f"unexpected header in {_DATA_FILE}: {header!r}")
        for line in fh:
            code, _, display = line.rstrip("\n").partition("\t")
            if not code:
                continue
            key = normalize(code)
            item = IcdCode(code=_dotted(key), display=display)
            by_code[key] = item
            ordered.append(item)
            keys.append(key)
            words.append(frozenset(_WORD_RE.findall(display.lower())))
    return _Index(by_code=by_code, ordered=tuple(ordered), keys=tuple(keys), words=tuple(words))


def all_codes() -> tuple[IcdCode, ...]:
    """Every code in the list, sorted by code."""
    return _index().ordered


def lookup(code: str) -> IcdCode | None:
    """Exact lookup; accepts "J06.9", "J069", "j06.9". ``None`` if not a billable code."""
    key = normalize(code)
    if not _CODE_CHARS_RE.match(key):
        return None
    return _index().by_code.get(key)


def is_valid(code: str) -> bool:
    """True if ``code`` is a billable ICD-10-CM code of the shipped release."""
    return lookup(code) is not None


def search(query: str, limit: int = 20) -> list[IcdCode]:
    """Search by code prefix first, then by words of the description.

    * Code prefix: "E11" or "e11.6" returns codes starting with it, in code order.
    * Description: every word of the query must start a word of the description
      (case-insensitive, so "hyperten" matches "hypertension"). Results where all query
      words match whole words come first, then shorter (more general) codes, then shorter
      descriptions.
    """
    if limit <= 0:
        return []
    q = query.strip()
    if not q:
        return []
    idx = _index()
    results: list[IcdCode] = []
    seen: set[str] = set()

    key = normalize(q)
    if _CODE_CHARS_RE.match(key) or re.fullmatch(r"[A-Z][0-9]?", key):
        for k, item in zip(idx.keys, idx.ordered, strict=True):
            if k.startswith(key):
                results.append(item)
                seen.add(k)
                if len(results) >= limit:
                    return results

    tokens = _WORD_RE.findall(q.lower())
    if not tokens:
        return results
    scored: list[tuple[int, int, int, str, IcdCode]] = []
    for k, item, words in zip(idx.keys, idx.ordered, idx.words, strict=True):
        if k in seen:
            continue
        exact = True
        for tok in tokens:
            if tok in words:
                continue
            if any(w.startswith(tok) for w in words):
                exact = False
                continue
            break
        else:
            scored.append((0 if exact else 1, len(k), len(item.display), k, item))
    scored.sort(key=lambda t: (t[0], t[1], t[2], t[3]))
    results.extend(t[4] for t in scored[: limit - len(results)])
    return results
