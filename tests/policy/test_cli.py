"""``telemed policy check`` via ``python -m clinic.policy.cli``."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from clinic.policy.cli import main
from tests.policy.helpers import BASE, build

ROOT = Path(__file__).resolve().parents[2]


def run(payload: str) -> tuple[int, dict[str, Any]]:
    proc = subprocess.run(
        [sys.executable, "-m", "clinic.policy.cli"],
        input=payload,
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1, proc.stdout + proc.stderr
    return proc.returncode, json.loads(lines[0])


def test_cli_contract_example_allowed() -> None:
    code, out = run(json.dumps(BASE))
    assert code == 0
    assert out["allowed"] is True
    assert out["rule_set"] == "kr-2023-12-expansion"
    assert set(out) >= {"allowed", "rule_set", "reasons", "obligations"}
    assert out["reasons"][0]["message"]


def test_cli_denied_is_still_exit_zero() -> None:
    code, out = run(json.dumps(build(at="2019-06-03T10:00:00+09:00")))
    assert code == 0
    assert out["allowed"] is False
    assert out["reasons"][0]["rule"] == "kr-pre2020-doctor-patient-prohibited"
    assert out["obligations"] == []


def test_cli_invalid_field_exit_two() -> None:
    code, out = run(json.dumps(build(patient={"age": "forty"})))
    assert code == 2
    assert out["error"]["code"] == "invalid_input"
    assert "patient.age" in out["error"]["fields"]
    assert out["error"]["message"]


def test_cli_not_json_exit_two() -> None:
    code, out = run("{not json")
    assert code == 2
    assert out["error"]["code"] == "invalid_input"


def test_cli_in_process_unknown_field() -> None:
    stdout = io.StringIO()
    assert main(io.StringIO(json.dumps({**BASE, "colour": "red"})), stdout) == 2
    assert json.loads(stdout.getvalue())["error"]["fields"] == {"colour": "unknown field"}


def test_cli_in_process_unknown_jurisdiction() -> None:
    stdout = io.StringIO()
    assert main(io.StringIO(json.dumps(build(jurisdiction="ZZ"))), stdout) == 0
    out = json.loads(stdout.getvalue())
    assert out["allowed"] is False and out["reasons"][0]["rule"] == "default-deny"
