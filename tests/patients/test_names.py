"""A patient's full name is put together in one place, as people of that script write it."""

from __future__ import annotations

from datetime import date

import pytest

from clinic.db.clinical import Patient, person_name


@pytest.mark.parametrize(("family", "given", "expected"), [
    ("김", "민지", "김민지"),  # Hangul: family name first, no space
    ("남궁", "민수", "남궁민수"),  # two-syllable family name
    ("山田", "太郎", "山田太郎"),  # Japanese kanji
    ("ヤマダ", "タロウ", "ヤマダタロウ"),  # katakana
    ("王", "小明", "王小明"),  # Chinese
    ("Kim", "Minji", "Minji Kim"),  # Latin: given name first
    ("van der Berg", "Anna Maria", "Anna Maria van der Berg"),
    ("Müller", "Jürgen", "Jürgen Müller"),
    ("Иванова", "Анна", "Анна Иванова"),  # Cyrillic reads like Latin
    ("김", "Minji", "김 Minji"),  # mixed scripts: family first, kept apart
])
def test_person_name(family: str, given: str, expected: str) -> None:
    assert person_name(family, given) == expected


def test_person_name_tidies_spaces_and_missing_parts() -> None:
    assert person_name("  김 ", " 민지") == "김민지"
    assert person_name("O'Brien ", "  Mary  Kate ") == "Mary Kate O'Brien"
    assert person_name("김", "") == "김"
    assert person_name("", "Minji") == "Minji"
    assert person_name("", "") == ""


def test_patient_full_name_uses_it() -> None:
    born = date(1986, 4, 12)
    assert Patient(family_name="김", given_name="민지", birth_date=born).full_name == "김민지"
    assert Patient(family_name="Kim", given_name="Minji", birth_date=born).full_name == "Minji Kim"
