"""The demo patients learn their birth date (check-in asks for it) from the printed logins."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import TEST_SECRET


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "clinic.cli", *args], env=env, capture_output=True, text=True,
                          timeout=300, check=False)


def test_seed_demo_prints_each_patients_birth_date(sqlite_url: str, tmp_path: Path) -> None:
    import os

    data = tmp_path / "var"
    env = {**os.environ, "TELEMED_DATA_DIR": str(data), "TELEMED_DATABASE_URL": sqlite_url,
           "TELEMED_SECRET_KEY": TEST_SECRET}
    assert _cli(env, "migrate").returncode == 0
    first = _cli(env, "seed-demo")
    assert first.returncode == 0, first.stderr
    line = next(ln for ln in first.stdout.splitlines() if "patient1@demo.example" in ln)
    assert line.split()[0] == "patient" and line.rstrip().endswith("김민지   born 1986-04-12"), line
    staff = next(ln for ln in first.stdout.splitlines() if "dr.kim@demo.example" in ln)
    assert "born" not in staff
    saved = json.loads((data / "demo-logins.json").read_text())
    assert {r["email"]: r.get("birth_date") for r in saved if r["role"] == "patient"} == {
        "patient1@demo.example": "1986-04-12", "patient2@demo.example": "1952-09-03",
        "patient3@demo.example": "1975-01-22", "patient4@demo.example": "2015-06-30"}

    # logins saved by an older seed have no birth dates: the reprint looks them up
    for row in saved:
        row.pop("birth_date", None)
    (data / "demo-logins.json").write_text(json.dumps(saved, ensure_ascii=False))
    again = _cli(env, "seed-demo")
    assert again.returncode == 0, again.stderr
    assert "patient2@demo.example" in again.stdout
    line = next(ln for ln in again.stdout.splitlines() if "patient2@demo.example" in ln)
    assert line.rstrip().endswith("박영수   born 1952-09-03"), line
