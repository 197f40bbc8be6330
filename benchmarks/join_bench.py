"""Time to first remote frame: from pressing ``join-call`` to the patient decoding the doctor's video.

    python benchmarks/join_bench.py [--runs 5] [--json]

Starts a real server (migrated, demo-seeded, in a temporary directory), then for each run creates a visit
with ``telemed demo-visit``, opens the doctor's page (which joins and waits), opens the patient's page, lets
the device check pass, presses ``join-call`` and has the doctor admit as soon as the patient is waiting.
The figure is the time between the press and the first decoded frame in the patient's inbound-rtp stats;
it includes the signaling round trips, ICE/DTLS with the relay and the admission itself.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from playwright.async_api import Browser, async_playwright

CHROMIUM = os.environ.get("TELEMED_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream", "--no-sandbox",
        "--disable-gpu", "--disable-quic", "--no-first-run"]
FIRST_FRAME = """() => new Promise((resolve) => {
  const poll = async () => {
    const pc = window.telemedCall && window.telemedCall.pc;
    if (pc) {
      let frames = 0;
      (await pc.getStats()).forEach((s) => {
        if (s.type === 'inbound-rtp' && s.kind === 'video') frames += s.framesDecoded || 0;
      });
      if (frames > 0) { resolve(performance.now()); return; }
    }
    setTimeout(poll, 10);
  };
  poll();
})"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cli(env: dict[str, str], *args: str) -> str:
    r = subprocess.run([sys.executable, "-m", "clinic.cli", *args], env=env, capture_output=True, text=True,
                       check=True, timeout=300)
    return r.stdout


async def one_run(browser: Browser, env: dict[str, str], base: str) -> float:
    urls = json.loads(_cli(env, "demo-visit", "--base-url", base, "--json"))
    dctx = await browser.new_context()
    pctx = await browser.new_context()
    try:
        doctor, patient = await dctx.new_page(), await pctx.new_page()
        await doctor.goto(urls["doctor_url"])
        await patient.goto(urls["patient_url"])
        join = patient.get_by_test_id("join-call")
        await patient.locator("[data-testid=join-call]:not([disabled])").wait_for(timeout=30000)
        first_frame = asyncio.ensure_future(patient.evaluate(FIRST_FRAME))
        pressed = await patient.evaluate("performance.now()")
        await join.click()
        # the doctor admits the moment the button is live (the visit is checked in and claimed)
        await doctor.locator("[data-testid=admit-patient]:not([disabled])").click(timeout=30000)
        frame_at = await asyncio.wait_for(first_frame, 30)
        return float(frame_at - pressed) / 1000
    finally:
        await pctx.close()
        await dctx.close()


def start_server() -> tuple[subprocess.Popen[bytes], IO[str], dict[str, str], str]:
    data = Path(tempfile.mkdtemp(prefix="join-bench-"))
    port = _free_port()
    env = {**os.environ, "TELEMED_DATA_DIR": str(data), "TELEMED_PORT": str(port), "TELEMED_HOST": "127.0.0.1",
           "TELEMED_LOG_LEVEL": "WARNING"}
    _cli(env, "migrate")
    _cli(env, "seed-demo")
    log = (data / "server.log").open("w")
    server = subprocess.Popen([sys.executable, "-m", "clinic.cli", "serve"], env=env, stdout=log, stderr=log)
    deadline = time.monotonic() + 60
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                break
        except OSError:
            if time.monotonic() > deadline or server.poll() is not None:
                raise RuntimeError((data / "server.log").read_text()) from None
            time.sleep(0.2)
    return server, log, env, f"http://127.0.0.1:{port}"


async def measure(runs: int, env: dict[str, str], base: str) -> list[float]:
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            return [await one_run(browser, env, base) for _ in range(runs)]
        finally:
            await browser.close()


def main(runs: int) -> list[float]:
    server, log, env, base = start_server()
    try:
        return asyncio.run(measure(runs, env, base))
    finally:
        server.terminate()
        server.wait(timeout=10)
        log.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    times = main(args.runs)
    result = {"runs": len(times), "median_seconds": round(statistics.median(times), 3),
              "min_seconds": round(min(times), 3), "max_seconds": round(max(times), 3),
              "all_seconds": [round(t, 3) for t in times]}
    if args.json:
        print(json.dumps(result))
    else:
        print(f"join-call → first remote frame: median {result['median_seconds']} s over {len(times)} runs "
              f"(min {result['min_seconds']} s, max {result['max_seconds']} s)")
