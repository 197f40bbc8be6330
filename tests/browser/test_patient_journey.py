"""The patient's journey in real Chromium on a 390 px phone, by keyboard where it matters: choose a doctor and a
time (each time names its doctor), see the doctor in the confirmation and in "My visits", give telemedicine
consent once at check-in, read check-in errors as one sentence in the page's language, find the birth date on
the account page; decline consent and learn how to reach the clinic; the portal's confirmations stay closed
until asked for and close again with Escape or "Keep"; every portal text is in the page's language."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

from playwright.async_api import Browser, Page, expect

from tests.browser.conftest import LiveServer
from tests.browser.test_pages_flows import Session, Setup, login, no_overflow, setup, tomorrow_seoul

HANGUL = re.compile(r"[\u1100-\u11ff\u3130-\u318f\uac00-\ud7a3]")
IDENTITY_KO = "이름 또는 생년월일이 이 진료의 환자 정보와 일치하지 않습니다. 확인 후 다시 입력해 주세요."
# Latin words a Korean page may show as they are (file formats and extensions, the QR code, the Tab key).
LATIN_OK = {"PDF", "JSON", "FHIR", "QR", "ics", "Tab"}

# Every piece of text in <main> that is meant to be in the page's language: text nodes and the labels
# assistive technology reads, leaving out names and data (translate="no"), content marked as another language,
# and scripts. Hidden panels count too: they are shown later.
TEXTS = """() => {
  const lang = document.documentElement.lang;
  const skip = (el) => !el || el.closest('[translate="no"], script, style, noscript') ||
    (el.closest('[lang]') && el.closest('[lang]').getAttribute('lang') !== lang);
  const out = [];
  const walker = document.createTreeWalker(document.querySelector('main'), NodeFilter.SHOW_TEXT);
  while (walker.nextNode()) {
    const node = walker.currentNode;
    if (!skip(node.parentElement) && node.textContent.trim()) out.push(node.textContent.trim());
  }
  for (const el of document.querySelectorAll('main [aria-label], main [placeholder], main [title]')) {
    if (skip(el)) continue;
    for (const a of ['aria-label', 'placeholder', 'title']) if (el.getAttribute(a)) out.push(el.getAttribute(a));
  }
  return out;
}"""


async def foreign_texts(page: Page) -> list[str]:
    """Texts of <main> that are not in the page's language."""
    texts: list[str] = await page.evaluate(TEXTS)
    if await page.get_attribute("html", "lang") == "ko":
        return [x for x in texts if any(w not in LATIN_OK for w in re.findall(r"[A-Za-z]{2,}", x))]
    return [x for x in texts if HANGUL.search(x)]


async def patient_id(pt: Session) -> str:
    me = await pt.api("GET", "/api/v1/me")
    return str(me["patient_ids"][0])


async def withdraw_telemedicine(pt: Session, pid: str) -> None:
    """Start from a patient who has never consented (earlier tests on this server may have given consent)."""
    for c in (await pt.api("GET", f"/api/v1/patients/{pid}/consents"))["items"]:
        if c["kind"] == "telemedicine" and not c["revoked_at"]:
            await pt.api("POST", f"/api/v1/consents/{c['id']}/revoke")


async def portal_loaded(page: Page) -> None:
    await expect(page.get_by_test_id("upcoming-visits")).not_to_have_attribute("aria-busy", "true")
    await expect(page.get_by_test_id("consent-row")).to_have_count(4)


async def join_visit(page: Page) -> None:
    """Pass the device check and press "Join"."""
    join = page.get_by_test_id("join-call")
    await expect(join).to_be_enabled(timeout=15_000)
    await join.click()


async def end_on_demand(pt: Session, pid: str, encounter_id: str) -> None:
    """Leave the waiting room and close the request, so later tests find the patient free."""
    enc = await pt.api("GET", f"/api/v1/encounters/{encounter_id}")
    if enc["status"] in ("checked_in", "booked"):
        if enc["status"] == "checked_in":
            await pt.api("POST", f"/api/v1/encounters/{encounter_id}/leave")
    appts = (await pt.api("GET", f"/api/v1/appointments?patient_id={pid}&limit=200"))["items"]
    for a in appts:
        if a["id"] == enc["appointment_id"] and a["status"] == "proposed":
            await pt.api("POST", f"/api/v1/appointments/{a['id']}/cancel", {"reason": ""})


async def new_on_demand(pt: Session, s: Setup, pid: str, reason: str) -> dict[str, Any]:
    """A fresh on-demand request for the patient (closing any an earlier test left open); its encounter."""
    for e in (await pt.api("GET", f"/api/v1/patients/{pid}/encounters"))["items"]:
        if e["status"] in ("booked", "checked_in") and e["kind"] == "on_demand":
            await end_on_demand(pt, pid, e["id"])
    appt = await pt.api("POST", f"/api/v1/organizations/{s.org_id}/on-demand",
                        {"patient_id": pid, "visit_type_id": s.visit_type_id, "mode": "video", "reason": reason},
                        key=True)
    encounter: dict[str, Any] = next(e for e in (await pt.api("GET", f"/api/v1/patients/{pid}/encounters"))["items"]
                                     if e["appointment_id"] == appt["id"])
    return encounter


async def test_patient_books_a_doctor_by_keyboard_then_consents_and_checks_in(live_server: LiveServer,
                                                                            browser: Browser) -> None:
    s: Setup = await setup(browser, live_server)
    pt = await login(browser, live_server, "patient1@", phone=True, locale="ko")
    page = pt.page
    pid = await patient_id(pt)
    await withdraw_telemedicine(pt, pid)
    lee = s.doctors["dr.lee"]

    # --- /book: the doctors are listed with specialty and languages; "any doctor" is the default
    await page.goto(live_server.base_url + "/book")
    await page.locator(f'[data-testid="visit-type-option"][data-code="{s.visit_type_code}"]').check()
    await page.get_by_test_id("book-date").fill(tomorrow_seoul().isoformat())
    await page.get_by_test_id("book-date").dispatch_event("change")
    doctors = page.get_by_test_id("doctor-option")
    await expect(doctors).to_have_count(3)
    await expect(doctors.first).to_be_checked()
    filter_box = page.get_by_test_id("doctor-filter")
    await expect(filter_box).to_contain_text("의사 상관없음")
    await expect(filter_box).to_contain_text("Dr. Lee Minho (이민호)")
    await expect(filter_box).to_contain_text("내과 · 사용 언어: 한국어, 영어")
    await expect(filter_box).to_contain_text("가정의학과")

    # every free time says whose it is: grouped under the doctor's name, and in what a screen reader hears
    groups = page.get_by_test_id("slot-doctor")
    await expect(groups).to_have_count(2)
    lee_group = page.locator(f'[data-testid="slot-doctor"][data-practitioner-id="{lee}"]')
    await expect(lee_group.locator("h3")).to_have_text("Dr. Lee Minho (이민호)")
    await expect(lee_group).to_contain_text("오전")
    lee_slots = lee_group.get_by_test_id("slot")
    n_lee = await lee_slots.count()
    assert n_lee > 20
    await expect(page.get_by_role("radio", name=re.compile(r"^\d\d:\d\d\s*, Dr\. Lee Minho"))).to_have_count(n_lee)

    # filter by doctor with the arrow keys: any → Dr. Kim → Dr. Lee
    await page.locator("#doc-any").focus()
    await page.keyboard.press("ArrowDown")
    await page.keyboard.press("ArrowDown")
    await expect(page.locator(f'[data-testid="doctor-option"][data-practitioner-id="{lee}"]')).to_be_checked()
    await expect(groups).to_have_count(1)
    await expect(groups.first).to_have_attribute("data-practitioner-id", lee)

    # the times are one radio group: arrows move between them, one Tab moves on (not one Tab per time)
    inputs = page.get_by_test_id("slot-input")
    assert await inputs.count() == n_lee
    await inputs.first.focus()
    for _ in range(3):
        await page.keyboard.press("ArrowRight")
    await expect(inputs.nth(3)).to_be_checked()
    await expect(inputs.nth(3)).to_be_focused()
    chosen = page.get_by_test_id("slot").nth(3)
    time_text = (await chosen.inner_text()).strip()[:5]
    assert re.fullmatch(r"\d\d:\d\d", time_text)
    await expect(page.get_by_test_id("slot-choice")).to_have_text(
        f"{time_text} Dr. Lee Minho (이민호) 진료를 선택했습니다.")
    await page.keyboard.press("Tab")
    await expect(page.get_by_test_id("book-mode")).to_be_focused()
    await page.keyboard.press("Shift+Tab")
    await expect(inputs.nth(3)).to_be_focused()
    assert await no_overflow(page)

    await page.get_by_test_id("book-mode").select_option("video")
    await page.get_by_test_id("book-reason").fill("혈압 재진 (journey)")
    await page.get_by_test_id("book-submit").click()
    await expect(page.get_by_test_id("book-confirmation")).to_be_visible()
    await expect(page.get_by_test_id("confirm-doctor")).to_contain_text("Dr. Lee Minho (이민호)")
    await expect(page.get_by_test_id("confirm-doctor")).to_contain_text("내과")
    hour, minute = (int(x) for x in time_text.split(":"))
    await expect(page.get_by_test_id("confirm-when")).to_contain_text(
        f"{'오전' if hour < 12 else '오후'} {hour % 12 or 12}:{minute:02d}")

    # the portal names the doctor too
    await page.get_by_test_id("book-portal-link").click()
    await page.wait_for_url("**/portal")
    await portal_loaded(page)
    booked = page.get_by_test_id("visit-row").filter(has_text="혈압 재진 (journey)")
    await expect(booked.get_by_test_id("visit-doctor")).to_have_text("의사: Dr. Lee Minho (이민호)")
    await expect(page.get_by_test_id("consent-state-telemedicine")).to_have_text("동의하지 않음")
    scheduled_id = await booked.get_attribute("data-appointment-id")

    # --- see the next available doctor now, then check in from "My visits"
    await page.goto(live_server.base_url + "/book")
    await page.locator(f'[data-testid="visit-type-option"][data-code="{s.visit_type_code}"]').check()
    await page.get_by_test_id("book-reason").fill("기침 (journey)")
    await page.get_by_test_id("on-demand-button").click()
    await expect(page.get_by_test_id("confirm-doctor")).to_have_text("가장 먼저 진료할 수 있는 의사")
    await page.get_by_test_id("book-portal-link").click()
    await portal_loaded(page)
    row = page.get_by_test_id("visit-row").filter(has_text="기침 (journey)")
    await row.get_by_test_id("join-link").click()
    await page.wait_for_url("**/visit/**")
    encounter_id = page.url.rstrip("/").split("/")[-1]
    back = page.get_by_test_id("visit-back-portal")
    await expect(back).to_be_visible()
    await expect(back).to_have_attribute("href", "/portal")
    await expect(back).to_have_text(re.compile("내 진료로 돌아가기"))

    # first telemedicine visit: the consent text and its version come before check-in
    await join_visit(page)
    consent = page.get_by_test_id("tm-consent")
    await expect(consent).to_be_visible()
    await expect(page.locator("#tm-consent-h")).to_be_focused()
    await expect(consent.locator("h2")).to_have_text("비대면진료 동의")
    await expect(page.get_by_test_id("tm-consent-text")).to_contain_text("비대면진료에는 한계가 있습니다")
    await expect(page.get_by_test_id("tm-consent-version")).to_have_text("동의서 버전 2026-01")
    await expect(page.get_by_test_id("checkin-family")).to_be_hidden()
    assert await no_overflow(page)
    await page.get_by_test_id("tm-consent-agree").click()
    await expect(consent).to_be_hidden()
    await expect(page.get_by_test_id("checkin-family")).to_be_focused()
    granted = [c for c in (await pt.api("GET", f"/api/v1/patients/{pid}/consents"))["items"]
               if c["kind"] == "telemedicine" and not c["revoked_at"]]
    assert len(granted) == 1 and granted[0]["version"] == "2026-01" and granted[0]["encounter_id"] == encounter_id

    # a wrong birth date: one Korean sentence, no server English, and the fields to fix are marked
    await page.get_by_test_id("checkin-family").fill("김")
    await page.get_by_test_id("checkin-given").fill("민지")
    await page.get_by_test_id("checkin-birth").fill("1999-01-01")
    await page.get_by_test_id("checkin-complaint").fill("기침이 나요")
    await page.get_by_test_id("checkin-submit").click()
    error = page.get_by_test_id("checkin-error")
    await expect(error).to_have_text(IDENTITY_KO)
    await expect(page.get_by_test_id("checkin-birth")).to_have_attribute("aria-invalid", "true")
    await expect(page.get_by_test_id("checkin-family")).to_be_focused()

    # the patient looks their birth date up on the account page
    account = await pt.ctx.new_page()
    await account.goto(live_server.base_url + "/account")
    record = account.get_by_test_id("account-record")
    await expect(record).to_have_count(1)
    await expect(record.get_by_test_id("account-birth-date")).to_have_text("1986년 4월 12일")
    await expect(record.get_by_test_id("account-family")).to_have_text("김")
    await expect(record.get_by_test_id("account-given")).to_have_text("민지")
    await expect(account.get_by_test_id("account-name")).to_have_text("김민지")
    assert await account.get_by_test_id("2fa-off-banner").count() == 0  # the 2FA banner is for staff
    born = await record.locator("time").get_attribute("datetime")
    await account.close()
    assert born == "1986-04-12"

    await page.get_by_test_id("checkin-birth").fill(born)
    await page.get_by_test_id("checkin-submit").click()
    await expect(page.get_by_test_id("wait-position")).to_be_visible(timeout=15_000)
    await expect(error).to_have_text("")
    assert (await pt.api("GET", f"/api/v1/encounters/{encounter_id}"))["status"] == "checked_in"

    # "My visits" shows the consent as given, with its text
    await back.click()
    await page.wait_for_url("**/portal")
    await portal_loaded(page)
    await expect(page.get_by_test_id("consent-state-telemedicine")).to_contain_text("동의함")
    await expect(page.get_by_test_id("consent-revoke-telemedicine")).to_be_visible()
    await page.get_by_test_id("consent-text-telemedicine").locator("summary").click()
    await expect(page.get_by_test_id("consent-text-telemedicine")).to_contain_text("비대면진료에는 한계가 있습니다")

    # the next visit does not ask again; checking in too early is explained in Korean
    encs = (await pt.api("GET", f"/api/v1/patients/{pid}/encounters"))["items"]
    tomorrow_visit = next(e for e in encs if e["appointment_id"] == scheduled_id)
    await page.goto(f"{live_server.base_url}/visit/{tomorrow_visit['id']}")
    await join_visit(page)
    await expect(page.get_by_test_id("checkin-family")).to_be_visible()
    await expect(page.get_by_test_id("tm-consent")).to_be_hidden()
    await page.get_by_test_id("checkin-family").fill("김")
    await page.get_by_test_id("checkin-given").fill("민지")
    await page.get_by_test_id("checkin-birth").fill(born)
    await page.get_by_test_id("checkin-submit").click()
    await expect(error).to_have_text("성, 이름, 생년월일과 진료받으려는 이유를 입력해 주세요.")
    await expect(page.get_by_test_id("checkin-complaint")).to_be_focused()
    await page.get_by_test_id("checkin-complaint").fill("재진")
    await page.get_by_test_id("checkin-submit").click()
    await expect(error).to_have_text("접수는 예약 시간 30분 전부터 할 수 있습니다. 그때 다시 와 주세요.")

    await end_on_demand(pt, pid, encounter_id)
    await pt.ctx.close()


async def test_declining_consent_explains_how_to_reach_the_clinic(live_server: LiveServer, browser: Browser) -> None:
    s = await setup(browser, live_server)
    pt = await login(browser, live_server, "patient3@", phone=True, locale="en", ctx_locale="en-US")
    page = pt.page
    pid = await patient_id(pt)
    await withdraw_telemedicine(pt, pid)
    enc = await new_on_demand(pt, s, pid, "decline")

    await page.goto(f"{live_server.base_url}/visit/{enc['id']}")
    await join_visit(page)
    await expect(page.get_by_test_id("tm-consent").locator("h2")).to_have_text("Consent to telemedicine consultations")
    await expect(page.get_by_test_id("tm-consent-text")).to_contain_text("call 119")
    await page.get_by_test_id("tm-consent-decline").click()
    declined = page.get_by_test_id("tm-declined")
    await expect(declined).to_be_visible()
    await expect(page.locator("#tm-declined-h")).to_be_focused()
    await expect(declined.locator("h2")).to_have_text("Without your consent we cannot hold a telemedicine visit")
    phone = page.get_by_test_id("clinic-phone")
    await expect(phone).to_have_attribute("href", "tel:+8227000000")
    await expect(phone).to_have_text("02-700-0000")
    await expect(page.get_by_test_id("clinic-email")).to_have_text("clinic@demo.example")
    await expect(page.get_by_test_id("visit-status")).to_have_text(
        "You did not consent, so this telemedicine visit cannot go ahead.")
    await expect(page.get_by_test_id("checkin-family")).to_be_hidden()
    assert await foreign_texts(page) == []
    assert await no_overflow(page)
    # nothing was granted, and the check-in is refused by the server too
    items = (await pt.api("GET", f"/api/v1/patients/{pid}/consents"))["items"]
    assert not [c for c in items if c["kind"] == "telemedicine" and not c["revoked_at"]]
    assert await _audited(live_server, "consent.decline", pid, enc["id"])

    # a change of mind: read again, agree, and the check-in form follows
    await page.get_by_test_id("tm-consent-again").click()
    await expect(page.get_by_test_id("tm-consent")).to_be_visible()
    await page.get_by_test_id("tm-consent-agree").click()
    await expect(page.get_by_test_id("checkin-family")).to_be_focused()
    await end_on_demand(pt, pid, enc["id"])
    await pt.ctx.close()


async def _audited(live: LiveServer, action: str, pid: str, encounter_id: str) -> bool:
    from sqlalchemy import select

    from clinic.config import load_settings
    from clinic.db.engine import engine_from_settings, session_factory
    from clinic.db.models import AuditEvent
    from clinic.db.uow import UnitOfWork

    engine = engine_from_settings(load_settings(live.env))
    try:
        async with UnitOfWork(session_factory(engine)) as uow:
            rows = (await uow.session.execute(select(AuditEvent).where(
                AuditEvent.action == action, AuditEvent.patient_id == pid))).scalars().all()
            return any(r.detail.get("encounter_id") == encounter_id for r in rows)
    finally:
        await engine.dispose()


async def _book_later(pt: Session, s: Setup, pid: str, reason: str) -> dict[str, Any]:
    """A visit the day after tomorrow (outside the cancellation window), the day's last free time."""
    day = tomorrow_seoul() + timedelta(days=1)
    slots = (await pt.api("GET", f"/api/v1/organizations/{s.org_id}/slots?visit_type_id={s.visit_type_id}"
                                 f"&practitioner_id={s.doctors['dr.kim']}&from={day}&to={day + timedelta(days=1)}"
                                 "&tz=Asia/Seoul"))["items"]
    last = slots[-1]
    appt: dict[str, Any] = await pt.api("POST", "/api/v1/appointments", {
        "patient_id": pid, "practitioner_id": last["practitioner_id"], "visit_type_id": s.visit_type_id,
        "start": last["start"], "mode": "video", "reason": reason}, key=True)
    return appt


async def test_portal_confirmations_stay_closed_until_asked_and_close_with_escape_or_keep(
        live_server: LiveServer, browser: Browser) -> None:
    s = await setup(browser, live_server)
    pt = await login(browser, live_server, "patient1@", phone=True, locale="ko")
    page = pt.page
    pid = await patient_id(pt)
    appt = await _book_later(pt, s, pid, "취소 확인 (journey)")
    await page.goto(live_server.base_url + "/portal")
    await portal_loaded(page)

    # erasure: hidden until asked for; Escape closes it and gives focus back; so does "Keep my data"
    panel = page.get_by_test_id("erasure-panel")
    start = page.get_by_test_id("erasure-start")
    await expect(panel).to_be_hidden()
    await expect(page.get_by_test_id("erasure-submit")).to_be_hidden()
    await start.click()
    await expect(panel).to_be_visible()
    await expect(start).to_have_attribute("aria-expanded", "true")
    await expect(page.get_by_test_id("erasure-reason")).to_be_focused()
    await page.keyboard.press("Escape")
    await expect(panel).to_be_hidden()
    await expect(start).to_be_focused()
    await expect(start).to_have_attribute("aria-expanded", "false")
    await page.keyboard.press("Enter")
    await expect(panel).to_be_visible()
    await page.get_by_test_id("erasure-cancel").click()
    await expect(panel).to_be_hidden()
    await expect(start).to_be_focused()

    # cancelling a visit: the confirmation appears only when asked for, and Escape or "Keep it" closes it
    row = page.locator(f'[data-testid="visit-row"][data-appointment-id="{appt["id"]}"]')
    await expect(row.get_by_test_id("visit-doctor")).to_have_text("의사: Dr. Kim Jiwon (김지원)")
    ask, confirm = row.get_by_test_id("cancel-appointment"), row.get_by_test_id("cancel-confirm")
    keep = row.get_by_role("button", name="유지하기")
    await expect(confirm).to_be_hidden()
    await expect(keep).to_be_hidden()
    await ask.click()
    await expect(confirm).to_be_visible()
    await expect(confirm).to_be_focused()
    await expect(ask).to_be_hidden()
    await page.keyboard.press("Escape")
    await expect(confirm).to_be_hidden()
    await expect(ask).to_be_focused()
    await ask.click()
    await keep.click()
    await expect(confirm).to_be_hidden()
    await expect(ask).to_be_focused()
    assert (await pt.api("GET", f"/api/v1/appointments?patient_id={pid}&limit=200"))["items"]
    still = next(a for a in (await pt.api("GET", f"/api/v1/appointments?patient_id={pid}&limit=200"))["items"]
                 if a["id"] == appt["id"])
    assert still["status"] == "booked"
    assert await no_overflow(page)
    # and confirming does cancel
    await ask.click()
    await confirm.click()
    cancelled = page.get_by_test_id("past-visits").locator(f'[data-appointment-id="{appt["id"]}"]')
    await expect(cancelled.get_by_test_id("visit-status")).to_have_text("취소됨")
    await pt.ctx.close()


async def test_every_portal_text_is_in_the_pages_language(live_server: LiveServer, browser: Browser) -> None:
    s = await setup(browser, live_server)
    pt = await login(browser, live_server, "patient1@", phone=True, locale="ko")
    page = pt.page
    await _book_later(pt, s, await patient_id(pt), "언어 확인 (journey)")  # a visit with a doctor and a reason
    for locale in ("ko", "en"):
        if locale == "en":
            await pt.lang("en")
        await page.goto(live_server.base_url + "/portal")
        await portal_loaded(page)
        await expect(page.get_by_test_id("visit-row").first).to_be_visible()
        await page.wait_for_load_state("networkidle")
        assert await foreign_texts(page) == [], f"/portal in {locale}"
        assert await page.get_by_test_id("2fa-off-banner").count() == 0
        state = page.get_by_test_id("consent-state-recording")
        given = "^(동의함|동의하지 않음)" if locale == "ko" else "^(Given|Not consented)"
        await expect(state).to_have_text(re.compile(given))
        await page.goto(live_server.base_url + "/book")
        await expect(page.get_by_test_id("doctor-option")).to_have_count(3)
        assert await foreign_texts(page) == [], f"/book in {locale}"
    await pt.lang("ko")
    await pt.ctx.close()


async def test_a_booking_refusal_is_one_sentence_in_the_pages_language(live_server: LiveServer,
                                                                        browser: Browser) -> None:
    s = await setup(browser, live_server)
    pt = await login(browser, live_server, "patient1@", phone=True, locale="ko")
    page = pt.page
    pid = await patient_id(pt)
    day = tomorrow_seoul() + timedelta(days=2)
    await page.goto(live_server.base_url + "/book")
    await page.locator(f'[data-testid="visit-type-option"][data-code="{s.visit_type_code}"]').check()
    await page.locator(f'[data-testid="doctor-option"][data-practitioner-id="{s.doctors["dr.kim"]}"]').check()
    await page.get_by_test_id("book-date").fill(day.isoformat())
    await page.get_by_test_id("book-date").dispatch_event("change")
    last = page.get_by_test_id("slot").last
    await last.click()
    start = await last.get_attribute("data-start")
    # meanwhile the time goes (another tab, another patient)
    await pt.api("POST", "/api/v1/appointments", {
        "patient_id": pid, "practitioner_id": s.doctors["dr.kim"], "visit_type_id": s.visit_type_id,
        "start": start, "mode": "video", "reason": "other tab"}, key=True)
    await page.get_by_test_id("book-mode").select_option("video")
    await page.get_by_test_id("book-submit").click()
    err = page.get_by_test_id("book-error")
    await expect(err).to_have_text("방금 다른 분이 이 시간을 예약했습니다. 다른 시간을 선택해 주세요.")
    await pt.ctx.close()
