"""A whole video visit in real Chromium: `telemed demo-visit` links, device check, waiting room, admission,
media through the relay (inbound-rtp stats), audio-only, chat, and a dropped WebSocket that recovers."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from playwright.async_api import Browser, Page

from tests.browser.conftest import LiveServer

INBOUND = """async () => {
  const pc = window.telemedCall && window.telemedCall.pc;
  if (!pc) return {frames: 0, audio: 0};
  let frames = 0, audio = 0;
  (await pc.getStats()).forEach((s) => {
    if (s.type === 'inbound-rtp' && s.kind === 'video') frames += s.framesDecoded || 0;
    if (s.type === 'inbound-rtp' && s.kind === 'audio') audio += s.packetsReceived || 0;
  });
  return {frames, audio};
}"""


async def inbound(page: Page) -> dict[str, int]:
    result: dict[str, int] = await page.evaluate(INBOUND)
    return result


async def until(page: Page, predicate: Any, within: float = 15.0) -> dict[str, int]:
    deadline = asyncio.get_running_loop().time() + within
    while True:
        stats = await inbound(page)
        if predicate(stats):
            return stats
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"media condition not met: {stats}")
        await asyncio.sleep(0.25)


def demo_visit(live_server: LiveServer) -> dict[str, str]:
    r = live_server.cli("demo-visit", "--base-url", live_server.base_url, "--json")
    assert r.returncode == 0, r.stderr
    urls: dict[str, str] = json.loads(r.stdout)
    assert set(urls) == {"patient_url", "doctor_url"}
    return urls


async def test_patient_and_doctor_meet_through_the_relay(live_server: LiveServer, browser: Browser) -> None:
    urls = demo_visit(live_server)
    pctx = await browser.new_context(locale="ko-KR", viewport={"width": 390, "height": 844}, bypass_csp=True)
    dctx = await browser.new_context(locale="en-US", bypass_csp=True)  # wait_for_function evaluates strings
    patient, doctor = await pctx.new_page(), await dctx.new_page()
    try:
        await patient.goto(urls["patient_url"])
        assert "/visit/" in patient.url
        join = patient.get_by_test_id("join-call")
        await join.wait_for()
        await patient.wait_for_function("!document.querySelector('[data-testid=join-call]').disabled", timeout=15000)
        await join.click()
        await patient.get_by_test_id("wait-position").wait_for()
        await patient.wait_for_function("window.telemedCall && window.telemedCall.state !== 'connecting'")

        await doctor.goto(urls["doctor_url"])
        assert "/console/visit/" in doctor.url
        admit = doctor.get_by_test_id("admit-patient")
        await doctor.wait_for_function("!document.querySelector('[data-testid=admit-patient]').disabled",
                                       timeout=15000)
        # still waiting: the held patient receives no media and is not admitted
        await asyncio.sleep(1.0)
        held = await inbound(patient)
        assert held["frames"] == 0 and held["audio"] == 0
        assert await patient.evaluate("window.telemedCall.admitted") is False
        await admit.click()

        # media flows both ways through the relay, and keeps flowing
        for page in (patient, doctor):
            first = await until(page, lambda s: s["frames"] > 5 and s["audio"] > 10, within=20)
            await until(page, lambda s, f=first: s["frames"] > f["frames"] + 5 and s["audio"] > f["audio"] + 10)
        assert await patient.get_by_test_id("remote-video").evaluate("v => v.srcObject !== null")

        # chat reaches the other side and is kept with the encounter
        await patient.get_by_test_id("chat-input").fill("두통이 있어요 (headache)")
        await patient.get_by_test_id("chat-send").click()
        await doctor.get_by_test_id("chat-log").get_by_text("두통이 있어요").wait_for()
        eid = doctor.url.rstrip("/").split("/")[-1]
        saved = await doctor.evaluate(f"fetch('/api/v1/encounters/{eid}/chat').then(r => r.json())")
        assert [m["text"] for m in saved["items"]] == ["두통이 있어요 (headache)"]

        # audio only: video frames stop, audio continues
        await doctor.get_by_test_id("toggle-audio-only").click()
        await patient.wait_for_function("window.telemedCall.mode === 'audio'")
        await asyncio.sleep(1.0)
        before = await inbound(patient)
        await asyncio.sleep(1.5)
        after = await inbound(patient)
        assert after["frames"] - before["frames"] <= 2, (before, after)
        assert after["audio"] > before["audio"]
        await doctor.get_by_test_id("toggle-audio-only").click()
        await until(patient, lambda s: s["frames"] > after["frames"] + 5)

        # the WebSocket dies mid-call: the page says so, resumes, and media never needed re-admission
        enc_before = await patient.evaluate(f"fetch('/api/v1/encounters/{eid}').then(r => r.json())")
        await patient.evaluate("window.telemedCall.ws.close()")
        banner = patient.get_by_test_id("reconnect-banner")
        await banner.wait_for(state="visible")
        await patient.wait_for_function("window.telemedCall.state === 'reconnected'", timeout=15000)
        mid = await inbound(patient)
        await until(patient, lambda s: s["frames"] > mid["frames"] + 5 and s["audio"] > mid["audio"] + 10)
        enc_after = await patient.evaluate(f"fetch('/api/v1/encounters/{eid}').then(r => r.json())")
        assert enc_after["status"] == "in_consult"
        assert enc_after["admitted_at"] == enc_before["admitted_at"]
        assert await patient.evaluate("window.telemedCall.admitted") is True

        # nothing overflows on the phone-sized patient page
        assert await patient.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")

        # the doctor ends the visit; the patient is told
        await doctor.get_by_test_id("hangup").click()
        await patient.wait_for_function("window.telemedCall.state === 'ended'", timeout=10000)
    finally:
        await pctx.close()
        await dctx.close()
