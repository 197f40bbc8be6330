"""ICD-10-CM diagnosis code list: lookup, validation and search.

The code list is ``clinic/data/icd10cm_codes.tsv.gz``: every billable ICD-10-CM code of the
April 2026 release (US CDC/NCHS, public domain), English descriptions. Provenance and the
regeneration recipe are in ``docs/data-sources.md``.

Codes are always returned in the dotted form ("E11.9"); input may be given with or without
the dot, in any case and with surrounding whitespace ("e119", " E11.9 ").
"""

from __future__ import annotations

import gzip
import heapq
import io
import re
from bisect import bisect_left
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
    vocab: tuple[str, ...]  # every description word once, sorted (prefix ranges by bisection)
    postings: dict[str, tuple[int, ...]]  # lower-case description word -> positions in ``ordered`` with it
    rank: tuple[int, ...]  # position -> place in the description-search order (shorter code, then description)


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
    order = sorted(range(len(keys)), key=keys.__getitem__)  # code-prefix matches are then one contiguous run
    ordered, keys, words = [ordered[i] for i in order], [keys[i] for i in order], [words[i] for i in order]
    postings: dict[str, list[int]] = {}
    for i, ws in enumerate(words):
        for w in ws:
            postings.setdefault(w, []).append(i)
    rank = [0] * len(keys)
    for place, i in enumerate(sorted(range(len(keys)), key=lambda i: (len(keys[i]), len(ordered[i].display),
                                                                      keys[i]))):
        rank[i] = place
    return _Index(by_code=by_code, ordered=tuple(ordered), keys=tuple(keys),
                  vocab=tuple(sorted(postings)), postings={w: tuple(v) for w, v in postings.items()},
                  rank=tuple(rank))


def _starting_with(idx: _Index, token: str) -> set[int]:
    """Positions of the codes with a description word that starts with ``token``."""
    lo = bisect_left(idx.vocab, token)
    hi = bisect_left(idx.vocab, token + "\U0010ffff", lo)
    out: set[int] = set()
    for w in idx.vocab[lo:hi]:
        out.update(idx.postings[w])
    return out


def warm() -> None:
    """Build the code index now (about a second), so the first doctor's search does not stall the server."""
    _index()


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

    key = normalize(q)
    seen: list[int] = []
    if _CODE_CHARS_RE.match(key) or re.fullmatch(r"[A-Z][0-9]?", key):
        i = bisect_left(idx.keys, key)
        while i < len(idx.keys) and idx.keys[i].startswith(key):
            results.append(idx.ordered[i])
            seen.append(i)
            if len(results) >= limit:
                return results
            i += 1

    tokens = list(dict.fromkeys(_WORD_RE.findall(q.lower())))  # a repeated word asks for nothing more
    if not tokens:
        return results
    # Through the word index, not a scan of every description (that took ~75 ms a query, on the event loop):
    # the codes with a word starting with every token, those where every token is a whole word first.
    candidates = _starting_with(idx, tokens[0])
    exact = set(idx.postings.get(tokens[0], ()))
    for tok in tokens[1:]:
        if not candidates:
            break
        candidates &= _starting_with(idx, tok)
        exact &= set(idx.postings.get(tok, ()))
    candidates.difference_update(seen)
    exact &= candidates
    wanted = limit - len(results)
    rank = idx.rank.__getitem__
    best = heapq.nsmallest(wanted, exact, key=rank)
    if len(best) < wanted:
        best += heapq.nsmallest(wanted - len(best), candidates - exact, key=rank)
    results.extend(idx.ordered[i] for i in best)
    return results
