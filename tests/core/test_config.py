"""Settings: defaults that serve one machine, env and TOML sources, one-line errors."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from clinic.config import SettingsError, load_settings


def test_defaults_embedded(tmp_path: Path) -> None:
    s = load_settings({"TELEMED_DATA_DIR": str(tmp_path / "var")})
    assert s.effective_database_url.startswith("sqlite+aiosqlite:///") and "var/telemed.db" in s.effective_database_url
    assert (s.host, s.port) == ("127.0.0.1", 8080)
    key_file = tmp_path / "var" / "secret_key"
    assert key_file.exists() and stat.S_IMODE(key_file.stat().st_mode) == 0o600
    again = load_settings({"TELEMED_DATA_DIR": str(tmp_path / "var")})
    assert again.secret_key == s.secret_key and len(s.secret_key) >= 32
    assert not s.cookies_secure


def test_postgres_and_tls(tmp_path: Path) -> None:
    s = load_settings({"TELEMED_DATA_DIR": str(tmp_path), "TELEMED_DATABASE_URL": "postgresql+asyncpg://u@h/db",
                       "TELEMED_BASE_URL": "https://clinic.example"})
    assert s.is_postgres and s.cookies_secure


def test_toml_file_and_env_precedence(tmp_path: Path) -> None:
    cfg = tmp_path / "telemed.toml"
    cfg.write_text('[telemed]\nport = 9000\nstun_urls = ["stun:stun.example:3478"]\n')
    s = load_settings({"TELEMED_CONFIG": str(cfg), "TELEMED_DATA_DIR": str(tmp_path)})
    assert s.port == 9000 and s.stun_urls == ["stun:stun.example:3478"]
    s = load_settings({"TELEMED_CONFIG": str(cfg), "TELEMED_DATA_DIR": str(tmp_path), "TELEMED_PORT": "9100"})
    assert s.port == 9100


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"TELEMED_PORT": "eighty"}, "TELEMED_PORT"),
        ({"TELEMED_PORT": "70000"}, "TELEMED_PORT"),
        ({"TELEMED_DATABASE_URL": "mysql://x"}, "TELEMED_DATABASE_URL"),
        ({"TELEMED_PAYMENT_PROVIDER": "stripe"}, "stripe_api_key"),
        ({"TELEMED_SECRET_KEY": "short"}, "TELEMED_SECRET_KEY"),
        ({"TELEMED_PROT": "8080"}, "TELEMED_PROT: unknown setting"),
    ],
)
def test_bad_values_name_the_setting(tmp_path: Path, env: dict[str, str], needle: str) -> None:
    with pytest.raises(SettingsError) as exc:
        load_settings({"TELEMED_DATA_DIR": str(tmp_path), **env})
    msg = str(exc.value)
    assert needle in msg and "\n" not in msg


def test_serve_refuses_bad_setting_with_one_line(tmp_path: Path) -> None:
    env = {**os.environ, "TELEMED_DATA_DIR": str(tmp_path), "TELEMED_PORT": "nope"}
    r = subprocess.run([sys.executable, "-m", "clinic.cli", "serve"], env=env, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 2
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "TELEMED_PORT" in lines[0]
