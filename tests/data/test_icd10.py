from __future__ import annotations

from clinic import icd10


def test_lookup_known_codes() -> None:
    e119 = icd10.lookup("E11.9")
    assert e119 is not None
    assert e119.code == "E11.9"
    assert "Type 2 diabetes" in e119.display
    j069 = icd10.lookup("J069")
    assert j069 is not None and j069.code == "J06.9"
    assert icd10.lookup(" j06.9 ") == j069
    i10 = icd10.lookup("I10")
    assert i10 is not None and "hypertension" in i10.display.lower()


def test_seventh_character_codes() -> None:
    code = icd10.lookup("S72001A")
    assert code is not None and code.code == "S72.001A"


def test_is_valid() -> None:
    assert icd10.is_valid("E11.9")
    assert not icd10.is_valid("E11")  # category header, not billable
    assert not icd10.is_valid("X99.999")
    assert not icd10.is_valid("")
    assert not icd10.is_valid("hello")


def test_search_by_description() -> None:
    results = icd10.search("hypertension")
    assert "I10" in [r.code for r in results]
    assert len(results) <= 20
    assert icd10.search("Hypertension", limit=3)[0].code == "I10"


def test_search_by_code_prefix() -> None:
    results = icd10.search("E11.6", limit=5)
    assert results and all(r.code.startswith("E11.6") for r in results)
    assert icd10.search("j069")[0].code == "J06.9"
    assert icd10.search("", limit=5) == []
    assert icd10.search("hypertension", limit=0) == []


def test_total_count() -> None:
    codes = icd10.all_codes()
    assert len(codes) > 60000
    assert len({c.code for c in codes}) == len(codes)
