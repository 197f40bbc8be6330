"""The README's configuration reference covers every setting, so it cannot silently drift."""

from __future__ import annotations

from pathlib import Path

from clinic.config import Settings

README = Path(__file__).resolve().parents[2] / "README.md"


def test_every_setting_documented() -> None:
    text = README.read_text()
    missing = []
    for name in Settings.model_fields:
        full = f"TELEMED_{name.upper()}"
        # grouped rows like `TELEMED_SMTP_HOST` / `_PORT` document siblings by suffix
        if full not in text and f"`_{name.upper().split('_', 1)[-1]}`" not in text:
            missing.append(full)
    assert not missing, f"document these settings in README.md: {missing}"


def test_quick_start_is_two_commands() -> None:
    text = README.read_text()
    block = text.split("## Quick start", 1)[1].split("```sh", 1)[1].split("```", 1)[0]
    commands = [ln.split("#")[0].strip() for ln in block.strip().splitlines()]
    assert commands == ["make run", "make test"]
