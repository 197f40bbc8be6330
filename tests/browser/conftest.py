"""Real-browser fixtures: the real server in a subprocess (migrated, demo-seeded) and Debian's Chromium."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.async_api import Browser, async_playwright

from tests.conftest import TEST_SECRET

CHROMIUM = os.environ.get("TELEMED_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
    "--no-sandbox",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-sync",
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class LiveServer:
    base_url: str
    env: dict[str, str]
    logins: dict[str, dict[str, str]]
    data_dir: Path

    def cli(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "clinic.cli", *args], env=self.env, input=stdin,
                              capture_output=True, text=True, timeout=120, check=False)

    def login_for(self, email_prefix: str) -> dict[str, str]:
        return next(v for k, v in self.logins.items() if k.startswith(email_prefix))


@pytest.fixture(scope="session")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    data = tmp_path_factory.mktemp("live")
    port = _free_port()
    env = {**os.environ, "TELEMED_DATA_DIR": str(data), "TELEMED_SECRET_KEY": TEST_SECRET,
           "TELEMED_PORT": str(port), "TELEMED_HOST": "127.0.0.1"}
    for cmd in (["migrate"], ["seed-demo"]):
        r = subprocess.run([sys.executable, "-m", "clinic.cli", *cmd], env=env, capture_output=True, text=True,
                           timeout=300, check=False)
        assert r.returncode == 0, r.stderr
    logins = {row["email"]: row for row in json.loads((data / "demo-logins.json").read_text())}
    log = open(data / "server.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "clinic.cli", "serve"], env=env, stdout=log, stderr=log)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                break
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError((data / "server.log").read_text()) from None
            time.sleep(0.2)
    yield LiveServer(base, env, logins, data)
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as pw:
        b = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield b
        await b.close()
