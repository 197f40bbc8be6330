"""The doctor's consultation note in real Chromium against the live demo server, driven like a doctor:
autosave that survives a reload, ICD-10 diagnoses added by keyboard through the combobox, signing, an
amendment with a reason, the version history, a stale second window, the Korean UI and a phone screen."""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import urlparse

from playwright.async_api import Browser, ConsoleMessage, Page, Response, expect

from tests.browser import test_pages_flows as flows
from tests.browser.conftest import LiveServer


async def _consulting(browser: Browser, live: LiveServer, *, locale: str,
                      phone: bool = False) -> tuple[flows.Session, str]:
    """A demo visit (``telemed demo-visit``: a checked-in patient with a headache, claimed by Dr. Kim), opened
    by the doctor through its sign-in link and admitted. It holds none of the doctors' bookable time, so the
    other browser tests can still claim on-demand patients."""
    r = live.cli("demo-visit", "--base-url", live.base_url, "--json")
    assert r.returncode == 0, r.stderr
    ctx = await browser.new_context(locale="ko-KR" if locale == "ko" else "en-US", **(flows.PHONE if phone else {}))
    page = await ctx.new_page()
    await page.goto(json.loads(r.stdout)["doctor_url"])
    await page.wait_for_url("**/console/visit/*")
    eid = urlparse(page.url).path.rsplit("/", 1)[-1]
    csrf = await page.get_attribute('meta[name="csrf-token"]', "content")
    assert csrf
    doctor = flows.Session(ctx, page, live.base_url, csrf)
    await doctor.lang(locale)
    await doctor.api("POST", f"/api/v1/encounters/{eid}/admit")
    return doctor, eid


async def _add_diagnosis(page: Page, query: str, code: str) -> None:
    """Type into the combobox, arrow down to the option with ``code`` and press Enter."""
    combo = page.get_by_test_id("dx-input")
    await combo.focus()
    await combo.press_sequentially(query)
    listbox = page.get_by_test_id("dx-options")
    await expect(listbox).to_be_visible()
    await expect(combo).to_have_attribute("aria-expanded", "true")
    options = listbox.get_by_test_id("dx-option")
    codes = [await o.get_attribute("data-code") for o in await options.all()]
    assert code in codes, codes
    for _ in range(codes.index(code) + 1):
        await combo.press("ArrowDown")
    wanted = listbox.locator(f'[data-code="{code}"]')
    await expect(wanted).to_have_attribute("aria-selected", "true")
    await expect(combo).to_have_attribute("aria-activedescendant", await wanted.get_attribute("id") or "?")
    await expect(combo).to_be_focused()  # focus stays in the input (aria-activedescendant pattern)
    await combo.press("Enter")
    await expect(page.locator(f'[data-testid="dx-item"][data-code="{code}"]')).to_be_visible()
    await expect(listbox).to_be_hidden()
    await expect(combo).to_have_value("")


async def _saved(page: Page, pattern: str) -> None:
    status = page.get_by_test_id("note-save-status")
    await expect(status).to_have_attribute("data-state", "saved", timeout=10_000)
    await expect(status).to_have_text(re.compile(pattern))


def _watch(page: Page) -> tuple[list[str], list[str]]:
    errors: list[str] = []
    failed: list[str] = []

    def on_console(msg: ConsoleMessage) -> None:
        if msg.type == "error":
            errors.append(msg.text)

    def on_response(r: Response) -> None:
        if r.status >= 400:
            failed.append(f"{r.request.method} {r.url} -> {r.status}")

    page.on("console", on_console)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("response", on_response)
    return errors, failed


async def test_doctor_writes_autosaves_signs_amends_and_reads_history(live_server: LiveServer,
                                                                       browser: Browser) -> None:
    kim, eid = await _consulting(browser, live_server, locale="en")
    page = kim.page
    errors, failed = _watch(page)
    await page.goto(f"{live_server.base_url}/console/visit/{eid}")
    panel = page.get_by_test_id("note-panel")
    await expect(panel).to_have_attribute("data-state", "draft")
    await expect(page.get_by_test_id("note-badge")).to_have_text("Not started")
    # the reason card names the symptoms in words
    await expect(page.get_by_test_id("symptoms")).to_have_text(re.compile(r"Headache$"))
    await expect(page.get_by_test_id("symptoms")).not_to_contain_text("headache")
    await page.wait_for_load_state("networkidle")
    assert not [f for f in failed if "/note" in f or "/api/" in f], failed
    assert errors == [], errors

    # Type like a doctor; the draft saves itself after a pause, with a polite status.
    status = page.get_by_test_id("note-save-status")
    assert await status.get_attribute("aria-live") == "polite"
    await page.get_by_test_id("note-subjective").press_sequentially("Cough and sore throat for 3 days.")
    await expect(status).to_have_text(re.compile(r"Unsaved changes|Saving…|Saved"))
    await _saved(page, r"^Saved \d{1,2}:\d{2}")
    await expect(page.get_by_test_id("note-badge")).to_have_text("Draft")

    # Diagnoses by keyboard only: two codes, then the second made primary.
    await _add_diagnosis(page, "acute upper resp", "J06.9")
    await expect(page.locator('[data-testid="dx-item"][data-code="J06.9"]')).to_have_attribute("data-primary", "true")
    await _add_diagnosis(page, "j02.9", "J02.9")
    items = page.get_by_test_id("dx-item")
    await expect(items).to_have_count(2)
    await page.locator('[data-testid="dx-item"][data-code="J02.9"]').get_by_test_id("dx-primary").check()
    await expect(page.locator('[data-testid="dx-item"][data-code="J02.9"]')).to_have_attribute("data-primary", "true")
    # Escape closes the list first, then clears the field.
    combo = page.get_by_test_id("dx-input")
    await combo.press_sequentially("pharyngitis")
    await expect(page.get_by_test_id("dx-options")).to_be_visible()
    await combo.press("Escape")
    await expect(page.get_by_test_id("dx-options")).to_be_hidden()
    await expect(combo).to_have_value("pharyngitis")
    await combo.press("Escape")
    await expect(combo).to_have_value("")
    # A third code, removed again by keyboard.
    await _add_diagnosis(page, "R05", "R05.1")
    remove = page.locator('[data-testid="dx-item"][data-code="R05.1"]').get_by_test_id("dx-remove")
    await remove.focus()
    await page.keyboard.press("Enter")
    await expect(items).to_have_count(2)
    await _saved(page, r"^Saved ")

    # Blur saves too: type in Objective and tab away; the save starts at once, not after the typing pause.
    await page.get_by_test_id("note-objective").fill("Pharynx injected, no exudate. T 37.4")
    async with page.expect_request(lambda r: r.method == "PUT" and r.url.endswith("/note"), timeout=800):
        await page.get_by_test_id("note-objective").press("Tab")
    await _saved(page, r"^Saved ")

    # Reload: the text and both diagnoses (with the primary) are still there.
    await page.reload()
    await expect(panel).to_have_attribute("data-state", "draft")
    await expect(page.get_by_test_id("note-subjective")).to_have_value("Cough and sore throat for 3 days.")
    await expect(page.get_by_test_id("note-objective")).to_have_value("Pharynx injected, no exudate. T 37.4")
    await expect(items).to_have_count(2)
    await expect(page.locator('[data-testid="dx-item"][data-code="J02.9"]')).to_have_attribute("data-primary", "true")
    await _saved(page, r"^Saved ")

    # Saving text again keeps the diagnoses (the data loss the acceptance tester found).
    await page.get_by_test_id("note-plan").press_sequentially("Fluids, paracetamol 500 mg as needed.")
    await page.get_by_test_id("note-save").click()
    await _saved(page, r"^Saved ")
    note = await kim.api("GET", f"/api/v1/encounters/{eid}/note")
    assert note["plan"] == "Fluids, paracetamol 500 mg as needed."
    assert [(d["code"], d["primary"]) for d in note["diagnoses"]] == [("J02.9", True), ("J06.9", False)]

    # Sign, with a confirmation naming the diagnoses.
    await page.get_by_test_id("note-sign").click()
    dialog = page.get_by_test_id("note-confirm")
    await expect(dialog).to_be_visible()
    await expect(dialog).to_contain_text("Sign this note?")
    await expect(dialog).to_contain_text("J02.9")
    await expect(page.get_by_test_id("note-confirm-cancel")).to_be_focused()
    await page.get_by_test_id("note-confirm-ok").click()
    await expect(panel).to_have_attribute("data-state", "signed")
    await expect(page.get_by_test_id("note-badge")).to_have_text("Signed")
    info = page.get_by_test_id("note-signed-info")
    await expect(info).to_have_text(re.compile(r"^Signed by Dr\. Kim Jiwon \(김지원\) at .+, version 1$"))
    for key in ("subjective", "objective", "assessment", "plan"):
        await expect(page.get_by_test_id(f"note-{key}")).not_to_be_editable()
    await expect(page.get_by_test_id("dx-input")).to_be_hidden()
    await expect(page.get_by_test_id("dx-remove")).to_have_count(0)
    await expect(page.get_by_test_id("note-save")).to_be_hidden()
    await expect(page.get_by_test_id("note-sign")).to_be_hidden()
    await expect(page.get_by_test_id("note-error")).to_have_text("")

    # Amend: a reason is required; the amendment becomes version 2, read-only again.
    await page.get_by_test_id("note-amend").click()
    await expect(panel).to_have_attribute("data-state", "amending")
    reason = page.get_by_test_id("note-amend-reason")
    await expect(reason).to_be_focused()
    await expect(page.get_by_test_id("note-objective")).to_be_editable()
    await page.get_by_test_id("note-objective").fill("Pharynx injected, no exudate. T 38.1")
    await page.get_by_test_id("note-amend-submit").click()
    await expect(page.get_by_test_id("note-amend-reason-error")).to_have_text("Enter the reason for this amendment.")
    await expect(reason).to_have_attribute("aria-invalid", "true")
    await expect(reason).to_be_focused()
    await reason.fill("Temperature misread")
    await page.get_by_test_id("note-amend-submit").click()
    await expect(dialog).to_contain_text("version 2")
    await page.get_by_test_id("note-confirm-ok").click()
    await expect(panel).to_have_attribute("data-state", "signed")
    await expect(page.get_by_test_id("note-badge")).to_have_text("Amended")
    await expect(info).to_contain_text("version 2")
    await expect(info).to_contain_text("Reason for the amendment: Temperature misread")
    await expect(page.get_by_test_id("note-objective")).not_to_be_editable()
    await expect(page.get_by_test_id("note-objective")).to_have_value("Pharynx injected, no exudate. T 38.1")

    # History: both versions, newest first; the original can be read as it was signed.
    await page.get_by_test_id("note-history-toggle").click()
    versions = page.get_by_test_id("history-version")
    await expect(versions).to_have_count(2)
    await expect(versions.nth(0)).to_contain_text("Version 2 · Amendment · Current")
    await expect(versions.nth(0)).to_contain_text("Reason: Temperature misread")
    await expect(versions.nth(0)).to_contain_text("Dr. Kim Jiwon")
    await expect(versions.nth(1)).to_contain_text("Version 1 · Original")
    await versions.nth(1).get_by_test_id("history-view").click()
    view = page.get_by_test_id("note-version-view")
    await expect(view).to_be_visible()
    await expect(view).to_have_attribute("data-version", "1")
    await expect(view.get_by_test_id("version-objective")).to_have_text("Pharynx injected, no exudate. T 37.4")
    await expect(view.get_by_test_id("version-diagnoses")).to_contain_text("J02.9")
    await expect(view.get_by_test_id("version-diagnoses")).to_contain_text("J06.9")
    assert await view.locator("textarea, input").count() == 0  # read-only text, not a form
    await page.get_by_test_id("note-version-close").click()
    await expect(view).to_be_hidden()

    # After a reload the signed, amended note is still read-only at version 2.
    await page.reload()
    await expect(panel).to_have_attribute("data-state", "signed")
    await expect(info).to_contain_text("version 2")
    await expect(page.get_by_test_id("note-amend")).to_be_visible()
    await kim.ctx.close()


async def test_korean_phone_note_panel_and_a_stale_second_window(live_server: LiveServer,
                                                                  browser: Browser) -> None:
    doc, eid = await _consulting(browser, live_server, locale="ko", phone=True)
    page = doc.page
    await page.goto(f"{live_server.base_url}/console/visit/{eid}")
    panel = page.get_by_test_id("note-panel")
    await expect(panel).to_have_attribute("data-state", "draft")
    # Korean labels, Korean symptom words
    await expect(page.get_by_test_id("note-save")).to_have_text("임시 저장")
    await expect(page.get_by_test_id("note-sign")).to_have_text("기록 서명")
    await expect(page.get_by_test_id("symptoms")).to_have_text(re.compile(r"두통$"))
    await expect(panel.locator("legend")).to_have_text("진단 (ICD-10-CM)")
    await expect(page.get_by_test_id("note-history-toggle")).to_have_text("버전 기록")
    assert await flows.no_overflow(page)

    # Signing without a diagnosis is refused in Korean, and the focus goes to the diagnosis field.
    await page.get_by_test_id("note-assessment").press_sequentially("급성 인두염 의심")
    await _saved(page, r"에 저장됨$")
    await page.get_by_test_id("note-sign").click()
    await expect(page.get_by_test_id("note-error")).to_have_text("서명하기 전에 진단을 하나 이상 추가하세요.")
    await expect(page.get_by_test_id("dx-input")).to_be_focused()

    # The combobox on a phone: the open list fits the screen.
    combo = page.get_by_test_id("dx-input")
    await combo.press_sequentially("pharyngitis")
    await expect(page.get_by_test_id("dx-options")).to_be_visible()
    await expect(page.get_by_test_id("dx-live")).to_contain_text("코드")
    assert await flows.no_overflow(page)
    await combo.press("Escape")
    await combo.fill("")
    await _add_diagnosis(page, "J02.9", "J02.9")
    await _saved(page, r"에 저장됨$")

    # Another window saves first: this one's next autosave is stale (409). The server's version is shown,
    # never overwritten, the message is Korean (chosen by the error code), and the unsaved text is kept.
    note: dict[str, Any] = await doc.api("GET", f"/api/v1/encounters/{eid}/note")
    await doc.api("PUT", f"/api/v1/encounters/{eid}/note", {
        "revision": note["revision"], "subjective": "", "objective": "", "assessment": "다른 창에서 쓴 평가",
        "plan": "", "text": "", "diagnoses": [{"code": "J02.9", "primary": True}]})
    await page.get_by_test_id("note-plan").press_sequentially("가글, 수분 섭취")
    error = page.get_by_test_id("note-error")
    await expect(error).to_have_text(
        "다른 창이나 탭에서 이 기록이 변경되었습니다. 마지막으로 저장된 버전을 표시합니다.", timeout=10_000)
    await expect(page.get_by_test_id("note-assessment")).to_have_value("다른 창에서 쓴 평가")
    await expect(page.get_by_test_id("note-plan")).to_have_value("")
    conflict = page.get_by_test_id("note-conflict")
    await expect(conflict).to_be_visible()
    await expect(conflict).to_contain_text("가글, 수분 섭취")
    await expect(conflict).to_contain_text("급성 인두염 의심")
    after = await doc.api("GET", f"/api/v1/encounters/{eid}/note")
    assert after["assessment"] == "다른 창에서 쓴 평가" and after["plan"] == ""  # the other window's text stands
    assert await flows.no_overflow(page)

    # Sign on the phone; the panel turns read-only with the signer in Korean.
    await page.get_by_test_id("note-conflict-dismiss").click()
    await page.get_by_test_id("note-sign").click()
    await expect(page.get_by_test_id("note-confirm")).to_contain_text("이 기록에 서명할까요?")
    await page.get_by_test_id("note-confirm-ok").click()
    await expect(panel).to_have_attribute("data-state", "signed")
    await expect(page.get_by_test_id("note-badge")).to_have_text("서명됨")
    await expect(page.get_by_test_id("note-signed-info")).to_have_text(
        re.compile(r"^Dr\. Kim Jiwon \(김지원\) 서명 · .+ · 버전 1$"))
    await expect(page.get_by_test_id("note-assessment")).not_to_be_editable()
    await page.get_by_test_id("note-history-toggle").click()
    await expect(page.get_by_test_id("history-version")).to_have_count(1)
    await expect(page.get_by_test_id("history-version")).to_contain_text("버전 1 · 최초 서명본 · 현재 버전")
    assert await flows.no_overflow(page)
    await doc.ctx.close()
