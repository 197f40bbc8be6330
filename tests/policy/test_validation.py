"""Bad rule files are rejected with the file name and the line of the problem."""

from __future__ import annotations

from pathlib import Path

import pytest

from clinic.policy import PolicyEngine, RuleSetError, load_rule_set

GOOD = """id = "xx-test"
jurisdiction = "XX"
timezone = "UTC"
effective_from = 2024-01-01

[[sources]]
key = "s"
title = "Test source"
url = "https://example.org/law"

[[rules]]
id = "xx-allow"
effect = "permit"
actions = ["consult"]
when = { fact = "mode", eq = "video" }
message_en = "ok"
message_ko = "ok"
"""


def write(tmp_path: Path, text: str, name: str = "bad.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def line_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), start=1) if needle in line)


def test_good_file_loads(tmp_path: Path) -> None:
    rs = load_rule_set(write(tmp_path, GOOD, "good.toml"))
    assert rs.id == "xx-test"
    assert len(rs.sha256) == 64


@pytest.mark.parametrize(
    ("old", "new", "needle", "message"),
    [
        ('when = { fact = "mode", eq = "video" }', 'when = { fact = "mood", eq = "video" }', "when =", "unknown fact"),
        ('eq = "video"', 'eq = "hologram"', "when =", "one of video"),
        ('effect = "permit"', 'effect = "maybe"', "effect =", "effect must be"),
        ('actions = ["consult"]', 'actions = ["teleport"]', "actions =", "unknown action"),
        ('timezone = "UTC"', 'timezone = "Mars/Olympus"', "timezone =", "unknown IANA timezone"),
        ('url = "https://example.org/law"', 'url = "ftp://example.org/law"', "url =", "http(s)"),
        ('message_ko = "ok"', 'message_ko = "ok"\ncolour = "red"', "colour =", "unknown rule key"),
        ("effective_from = 2024-01-01", 'effective_from = "2024-01-01"', "effective_from", "TOML date"),
    ],
)
def test_semantic_errors_name_file_and_line(tmp_path: Path, old: str, new: str, needle: str, message: str) -> None:
    text = GOOD.replace(old, new)
    path = write(tmp_path, text)
    with pytest.raises(RuleSetError) as info:
        load_rule_set(path)
    err = info.value
    assert err.file == str(path)
    assert err.line == line_of(text, needle)
    assert message in str(err)
    assert f"bad.toml:{err.line}" in str(err)


def test_second_rule_error_points_into_second_rule(tmp_path: Path) -> None:
    text = (
        GOOD
        + """
[[rules]]
id = "xx-second"
effect = "oblige"
actions = ["consult"]
obligations = ["free_pizza"]
message_en = "x"
message_ko = "x"
"""
    )
    with pytest.raises(RuleSetError) as info:
        load_rule_set(write(tmp_path, text))
    assert info.value.line == line_of(text, "free_pizza")


def test_toml_syntax_error_has_line(tmp_path: Path) -> None:
    text = GOOD.replace('message_en = "ok"', 'message_en = "ok')
    with pytest.raises(RuleSetError) as info:
        load_rule_set(write(tmp_path, text))
    assert info.value.line == line_of(text, 'message_en = "ok')
    assert "bad.toml" in str(info.value)


def test_duplicate_rule_id(tmp_path: Path) -> None:
    text = GOOD + GOOD[GOOD.index("[[rules]]") :]
    with pytest.raises(RuleSetError, match="duplicate rule id") as info:
        load_rule_set(write(tmp_path, text))
    assert info.value.line == [i for i, ln in enumerate(text.splitlines(), 1) if "xx-allow" in ln][1]


def test_unknown_definition_ref(tmp_path: Path) -> None:
    text = GOOD.replace('when = { fact = "mode", eq = "video" }', 'when = { ref = "nowhere" }')
    with pytest.raises(RuleSetError, match="unknown definition") as info:
        load_rule_set(write(tmp_path, text))
    assert info.value.line == line_of(text, "nowhere")


def test_unknown_extends_is_rejected_by_engine(tmp_path: Path) -> None:
    text = GOOD.replace("effective_from = 2024-01-01", 'effective_from = 2024-01-01\nextends = "ghost"')
    path = write(tmp_path, text, "child.toml")
    with pytest.raises(RuleSetError, match="extends unknown") as info:
        PolicyEngine.from_directory(tmp_path)
    assert info.value.file == str(path)
    assert info.value.line == line_of(text, "extends")


def test_overlapping_periods_are_rejected(tmp_path: Path) -> None:
    write(tmp_path, GOOD, "a.toml")
    text = GOOD.replace('id = "xx-test"', 'id = "xx-later"').replace("2024-01-01", "2024-06-01")
    path = write(tmp_path, text, "b.toml")
    with pytest.raises(RuleSetError, match="overlaps") as info:
        PolicyEngine.from_directory(tmp_path)
    assert info.value.file == str(path)
    assert info.value.line == line_of(text, "effective_from")


def test_shipped_rule_sets_all_load_and_cite_sources() -> None:
    engine = PolicyEngine.from_directory()
    ids = {rs.id for rs in engine.rule_sets}
    for expected in (
        "kr-2023-06-pilot",
        "jp-2022-guidelines",
        "cn-2018-internet-diagnosis",
        "de-2018-mbo-fernbehandlung",
        "gb-2021-gmc-remote-prescribing",
        "sg-2023-hcsa",
        "us-federal",
        "us-ca",
        "us-ny",
        "us-tx",
        "default-permissive",
    ):
        assert expected in ids
    for rs in engine.rule_sets:
        assert rs.sources and all(s.url.startswith("http") for s in rs.sources)
        assert rs.notes.strip(), rs.id
