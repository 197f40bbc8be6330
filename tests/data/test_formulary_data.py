from __future__ import annotations

import json
from pathlib import Path

import pytest

from prescriptions.formulary_data import (
    ATC_RE,
    CATEGORIES,
    DrugEntry,
    FormularyImportError,
    load_starter_formulary,
    parse_formulary_file,
)


@pytest.fixture(scope="module")
def starter() -> list[DrugEntry]:
    return load_starter_formulary()


@pytest.fixture(scope="module")
def by_code(starter: list[DrugEntry]) -> dict[str, DrugEntry]:
    return {d.code: d for d in starter}


def _by_inn(starter: list[DrugEntry], inn: str) -> list[DrugEntry]:
    return [d for d in starter if d.inn == inn]


def test_size_and_unique_codes(starter: list[DrugEntry]) -> None:
    assert len(starter) >= 170
    codes = [d.code for d in starter]
    assert len(codes) == len(set(codes))


def test_every_atc_is_level5(starter: list[DrugEntry]) -> None:
    bad = [(d.code, d.atc) for d in starter if not ATC_RE.match(d.atc)]
    assert bad == []


def test_required_fields_present(starter: list[DrugEntry]) -> None:
    for d in starter:
        assert d.name and d.name_ko and d.inn and d.dose_form and d.route and d.unit
        assert d.strength_value > 0
        for flags in d.flags.values():
            assert flags.categories() <= CATEGORIES


@pytest.mark.parametrize(
    ("inn", "atc"),
    [
        ("amlodipine", "C08CA01"),
        ("metformin", "A10BA02"),
        ("atorvastatin", "C10AA05"),
        ("amoxicillin", "J01CA04"),
        ("levonorgestrel", "G03AD01"),
        ("ulipristal", "G03AD02"),
        ("zolpidem", "N05CF02"),
        ("oxycodone", "N02AA05"),
        ("tramadol", "N02AX02"),
        ("morphine", "N02AA01"),
        ("fentanyl", "N02AB03"),
        ("sertraline", "N06AB06"),
        ("omeprazole", "A02BC01"),
        ("salbutamol", "R03AC02"),
        ("montelukast", "R03DC03"),
        ("sildenafil", "G04BE03"),
        ("tadalafil", "G04BE08"),
        ("semaglutide", "A10BJ06"),
        ("tirzepatide", "A10BX16"),
        ("phentermine", "A08AA01"),
        ("methylphenidate", "N06BA04"),
        ("pregabalin", "N03AX16"),
        ("metronidazole", "P01AB01"),
    ],
)
def test_known_atc_codes(starter: list[DrugEntry], inn: str, atc: str) -> None:
    matches = _by_inn(starter, inn)
    assert matches, inn
    assert atc in {d.atc for d in matches}


def test_finasteride_atc_depends_on_indication(by_code: dict[str, DrugEntry]) -> None:
    assert by_code["finasteride-5mg-tab"].atc == "G04CB01"
    assert by_code["finasteride-1mg-tab"].atc == "D11AX10"


def test_controlled_categories(by_code: dict[str, DrugEntry]) -> None:
    oxy = by_code["oxycodone-5mg-tab"]
    assert oxy.categories_for("KR") == {"narcotic"}
    assert oxy.categories_for("US") == {"controlled"}
    assert oxy.flags_for("US") is not None and oxy.flags_for("US").schedule == "II"  # type: ignore[union-attr]

    zolpidem = by_code["zolpidem-10mg-tab"]
    assert zolpidem.categories_for("KR") == {"psychotropic"}
    assert zolpidem.flags["US"].schedule == "IV"

    tramadol = by_code["tramadol-50mg-cap"]
    assert tramadol.categories_for("KR") == frozenset()
    assert tramadol.flags["US"].schedule == "IV"

    mph = by_code["methylphenidate-18mg-er-tab"]
    assert mph.categories_for("KR") == {"psychotropic"}
    assert mph.flags["US"].schedule == "II"

    assert by_code["pregabalin-75mg-cap"].flags["US"].schedule == "V"
    assert by_code["phentermine-37.5mg-cap"].categories_for("KR") == {"psychotropic"}
    assert by_code["sildenafil-50mg-tab"].categories_for("KR") == {"abuse_prone"}
    assert by_code["sildenafil-50mg-tab"].categories_for("US") == frozenset()
    assert by_code["levonorgestrel-1.5mg-tab"].categories_for("KR") == {"emergency_contraceptive"}
    assert "emergency_contraceptive" in by_code["ulipristal-acetate-30mg-tab"].categories_for("KR")
    assert by_code["amlodipine-5mg-tab"].categories_for("KR") == frozenset()


def test_subdivision_falls_back_to_country(by_code: dict[str, DrugEntry]) -> None:
    oxy = by_code["oxycodone-5mg-tab"]
    assert oxy.categories_for("US-CA") == {"controlled"}
    assert oxy.categories_for("us-ny") == {"controlled"}
    assert oxy.categories_for("FR") == frozenset()


def test_round_trip_json(tmp_path: Path, starter: list[DrugEntry]) -> None:
    p = tmp_path / "f.json"
    p.write_text(json.dumps([d.to_dict() for d in starter], ensure_ascii=False), encoding="utf-8")
    assert parse_formulary_file(p) == starter


CSV_HEADER = (
    "code,name,name_ko,inn,atc,dose_form,strength,strength_value,strength_unit,route,unit,"
    "max_days_supply,KR.narcotic,KR.psychotropic,KR.schedule,US.controlled,US.schedule\n"
)


def test_csv_happy_path(tmp_path: Path) -> None:
    p = tmp_path / "f.csv"
    p.write_text(
        "\ufeff"
        + CSV_HEADER
        + "zolpidem-10mg-tab,Zolpidem 10 mg tablet,졸피뎀 10mg 정,zolpidem,N05CF02,tablet,10 mg,10,mg,"
        "oral,tablet,28,,yes,향정신성의약품,true,IV\n"
        "amlodipine-5mg-tab,Amlodipine 5 mg tablet,,amlodipine,c08ca01,tablet,5 mg,5,mg,oral,tablet,,,,,,\n"
        "\n",
        encoding="utf-8",
    )
    zol, aml = parse_formulary_file(p)
    assert zol.max_days_supply == 28
    assert zol.categories_for("KR") == {"psychotropic"}
    assert zol.flags["KR"].schedule == "향정신성의약품"
    assert zol.categories_for("US-TX") == {"controlled"}
    assert aml.atc == "C08CA01"
    assert aml.name_ko is None
    assert aml.flags == {}


def test_json_happy_path(tmp_path: Path) -> None:
    p = tmp_path / "f.json"
    p.write_text(
        json.dumps(
            [
                {
                    "code": "x-1mg-tab",
                    "name": "X 1 mg tablet",
                    "inn": "x",
                    "atc": "N05BA12",
                    "dose_form": "tablet",
                    "strength": "1 mg",
                    "strength_value": 1,
                    "strength_unit": "mg",
                    "route": "oral",
                    "unit": "tablet",
                    "flags": {"KR": {"psychotropic": True}},
                }
            ]
        ),
        encoding="utf-8",
    )
    (entry,) = parse_formulary_file(p)
    assert entry.categories_for("KR") == {"psychotropic"}
    assert entry.max_days_supply is None


@pytest.mark.parametrize(
    ("row2", "field"),
    [
        ("b-tab,B,,b,C08CA1,tablet,5 mg,5,mg,oral,tablet,,,,,,", "atc"),
        ("b-tab,B,,b,C08CA01,tablet,5 mg,five,mg,oral,tablet,,,,,,", "strength_value"),
        ("b-tab,B,,b,C08CA01,tablet,5 mg,5,mg,oral,tablet,-3,,,,,", "max_days_supply"),
        ("b-tab,B,,b,C08CA01,tablet,5 mg,5,mg,oral,tablet,,maybe,,,,", "KR.narcotic"),
        ("b-tab,,,b,C08CA01,tablet,5 mg,5,mg,oral,tablet,,,,,,", "name"),
        ("a-tab,B,,b,C08CA01,tablet,5 mg,5,mg,oral,tablet,,,,,,", "code"),
        ("B Tab,B,,b,C08CA01,tablet,5 mg,5,mg,oral,tablet,,,,,,", "code"),
    ],
)
def test_csv_bad_rows_rejected_with_row_number(tmp_path: Path, row2: str, field: str) -> None:
    p = tmp_path / "bad.csv"
    good = "a-tab,A,,a,C08CA01,tablet,5 mg,5,mg,oral,tablet,,,,,,\n"
    p.write_text(CSV_HEADER + good + row2 + "\n", encoding="utf-8")
    with pytest.raises(FormularyImportError) as info:
        parse_formulary_file(p)
    assert info.value.row == 2
    assert info.value.field == field
    assert "row 2" in str(info.value)


def test_csv_unknown_column_rejected(tmp_path: Path) -> None:
    p = tmp_path / "bad.csv"
    p.write_text(CSV_HEADER.strip() + ",XX.bogus\n", encoding="utf-8")
    with pytest.raises(FormularyImportError) as info:
        parse_formulary_file(p)
    assert info.value.field == "XX.bogus"


def test_json_bad_rows_rejected(tmp_path: Path, starter: list[DrugEntry]) -> None:
    rows = [d.to_dict() for d in starter[:3]]
    rows[2]["flags"] = {"KR": {"narcotic": "sometimes"}}
    p = tmp_path / "bad.json"
    p.write_text(json.dumps(rows), encoding="utf-8")
    with pytest.raises(FormularyImportError) as info:
        parse_formulary_file(p)
    assert (info.value.row, info.value.field) == (3, "KR.narcotic")

    rows[2] = {"code": "x"}
    p.write_text(json.dumps(rows), encoding="utf-8")
    with pytest.raises(FormularyImportError) as info:
        parse_formulary_file(p)
    assert info.value.row == 3


def test_unsupported_extension(tmp_path: Path) -> None:
    p = tmp_path / "f.xlsx"
    p.write_bytes(b"")
    with pytest.raises(FormularyImportError):
        parse_formulary_file(p)
