"""The clinic pages in real Chromium against the live demo server: booking and the portal, the doctor's
live queue, and the pharmacy's live inbox through to a delivered prescription the patient can track."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from playwright.async_api import Browser, BrowserContext, Page, WebSocketRoute, expect

from tests.browser.conftest import LiveServer

SEOUL = ZoneInfo("Asia/Seoul")
PHONE = {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True}
_SETUP: dict[str, Setup] = {}


@dataclass
class Session:
    """A signed-in browser context; ``api`` calls the JSON API with its cookie and CSRF token."""

    ctx: BrowserContext
    page: Page
    base: str
    csrf: str

    async def api(self, method: str, path: str, body: Any = None, *, key: bool = False) -> Any:
        headers = {"X-CSRF-Token": self.csrf, "Accept": "application/json"}
        if key:
            headers["Idempotency-Key"] = uuid.uuid4().hex
        resp = await self.ctx.request.fetch(self.base + path, method=method, headers=headers,
                                            data=body if body is not None else None)
        text = await resp.text()
        assert resp.ok, f"{method} {path} -> {resp.status}: {text}"
        return await resp.json() if text else None

    async def lang(self, locale: str) -> None:
        """Set the user's language through the page's own language form."""
        await self.page.goto(self.base + "/account")
        await self.page.get_by_test_id("language-select").select_option(locale)
        await self.page.locator(".lang-form button").click()
        await self.page.wait_for_load_state()
        assert await self.page.get_attribute("html", "lang") == locale


async def login(browser: Browser, live: LiveServer, prefix: str, *, phone: bool = False, locale: str = "ko",
                ctx_locale: str = "ko-KR") -> Session:
    who = live.login_for(prefix)
    ctx = await browser.new_context(locale=ctx_locale, **(PHONE if phone else {}))
    page = await ctx.new_page()
    await page.goto(live.base_url + "/login")
    await page.get_by_test_id("login-email").fill(who["email"])
    await page.get_by_test_id("login-password").fill(who["password"])
    await page.get_by_test_id("login-submit").click()
    await page.wait_for_url(lambda url: "/login" not in url)
    await page.goto(live.base_url + "/account")
    csrf = await page.get_attribute('meta[name="csrf-token"]', "content")
    assert csrf
    s = Session(ctx, page, live.base_url, csrf)
    await s.lang(locale)
    return s


@dataclass
class Setup:
    org_id: str
    visit_type_code: str
    visit_type_id: str
    doctors: dict[str, str]
    pharmacy_id: str


async def seed_db(live: LiveServer) -> None:
    """What a real clinic has and the bare demo lacks: the starter formulary and this month's face-to-face
    visits (KR caps telemedicine at 30 % of a clinic's visits)."""
    from sqlalchemy import select

    from clinic.config import load_settings
    from clinic.db.clinical import InPersonVisit, Patient
    from clinic.db.engine import engine_from_settings, session_factory
    from clinic.db.uow import UnitOfWork
    from prescriptions.formulary import load_starter

    engine = engine_from_settings(load_settings(live.env))
    try:
        async with UnitOfWork(session_factory(engine)) as uow:
            await load_starter(uow)
            p = (await uow.session.execute(
                select(Patient).where(Patient.email == "patient1@demo.example"))).scalar_one()
            for _ in range(40):
                uow.add(InPersonVisit(patient_id=p.id, organization_id=p.organization_id,
                                      visit_date=datetime.now(UTC).date()))
            await uow.commit()
    finally:
        await engine.dispose()


async def setup(browser: Browser, live: LiveServer) -> Setup:
    """Once per server: a visit type (video, audio and chat) and all-day schedules for both demo doctors."""
    if live.base_url in _SETUP:
        return _SETUP[live.base_url]
    await seed_db(live)
    admin = await login(browser, live, "admin@", locale="en", ctx_locale="en-US")
    me = await admin.api("GET", "/api/v1/me")
    org = next(m["organization_id"] for m in me["memberships"] if m["role"] == "org_admin")
    code = f"pages-{uuid.uuid4().hex[:6]}"
    vt = await admin.api("POST", f"/api/v1/organizations/{org}/visit-types", {
        "code": code, "name": "Online follow-up", "name_ko": "비대면 재진", "duration_minutes": 15,
        "modes": ["video", "audio", "chat"], "fee_amount": 0, "currency": "KRW"}, key=True)
    members = (await admin.api("GET", f"/api/v1/organizations/{org}/members"))["items"]
    doctors = {m["email"].split("@")[0]: m["user_id"] for m in members if m["role"] == "clinician"}
    for uid in doctors.values():
        await admin.api("PUT", f"/api/v1/practitioners/{uid}/schedule",
                        {"organization_id": org, "timezone": "Asia/Seoul", "observe_public_holidays": False})
        for wd in range(7):
            await admin.api("POST", f"/api/v1/practitioners/{uid}/schedule/rules",
                            {"organization_id": org, "weekday": wd, "start": "08:00", "end": "20:00",
                             "visit_type_ids": [vt["id"]]})
    pharmacies = await admin.api("GET", "/api/v1/pharmacies?q=Demo")
    await admin.ctx.close()
    _SETUP[live.base_url] = Setup(org, code, vt["id"], doctors, pharmacies["items"][0]["id"])
    return _SETUP[live.base_url]


def tomorrow_seoul() -> date:
    return datetime.now(SEOUL).date() + timedelta(days=1)


async def choose_slot(page: Page, s: Setup, mode: str) -> None:
    await page.locator(f'[data-testid="visit-type-option"][data-code="{s.visit_type_code}"]').check()
    await page.get_by_test_id("book-date").fill(tomorrow_seoul().isoformat())
    await page.get_by_test_id("book-date").dispatch_event("change")
    slot = page.get_by_test_id("slot").first
    await slot.click()
    await expect(slot.get_by_test_id("slot-input")).to_be_checked()
    await page.get_by_test_id("book-mode").select_option(mode)


async def no_overflow(page: Page) -> bool:
    return bool(await page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"))


async def test_patient_books_sees_visit_in_portal_and_refusals_explain_why(live_server: LiveServer,
                                                                           browser: Browser) -> None:
    s = await setup(browser, live_server)
    pt = await login(browser, live_server, "patient1@", phone=True, locale="ko")
    page = pt.page
    await page.goto(live_server.base_url + "/book")
    # a refusal first: KR law allows video or telephone, not chat alone — the reason is shown in Korean
    await choose_slot(page, s, "chat")
    await page.get_by_test_id("book-submit").click()
    err = page.get_by_test_id("book-error")
    await expect(err).to_be_visible()
    await expect(page.get_by_test_id("policy-reasons")).to_contain_text("화상")
    assert await no_overflow(page)

    # then a lawful booking by video
    await page.get_by_test_id("book-mode").select_option("video")
    await page.get_by_test_id("book-reason").fill("혈압약 상담")
    await page.get_by_test_id("book-submit").click()
    await expect(page.get_by_test_id("book-confirmation")).to_be_visible()
    when = await page.get_by_test_id("confirm-when").inner_text()
    assert when
    await page.get_by_test_id("book-portal-link").click()
    await page.wait_for_url("**/portal")
    rows = page.get_by_test_id("upcoming-visits").get_by_test_id("visit-row")
    await expect(rows.first).to_be_visible()
    await expect(rows.filter(has_text="혈압약 상담")).to_have_count(1)
    await expect(rows.filter(has_text="혈압약 상담").get_by_test_id("visit-status")).to_have_text("예약됨")
    # consents are listed and can be granted from the portal
    await page.get_by_test_id("consent-grant-recording").click()
    await expect(page.get_by_test_id("consent-revoke-recording")).to_be_visible()
    assert await no_overflow(page)
    await pt.ctx.close()


async def _on_demand_checked_in(pt: Session, s: Setup, complaint: str) -> tuple[str, str]:
    me = await pt.api("GET", "/api/v1/me")
    pid = me["patient_ids"][0]
    patient = await pt.api("GET", f"/api/v1/patients/{pid}")
    await pt.api("POST", f"/api/v1/organizations/{s.org_id}/on-demand",
                 {"patient_id": pid, "visit_type_id": s.visit_type_id, "mode": "video", "reason": complaint}, key=True)
    enc = next(e for e in (await pt.api("GET", f"/api/v1/patients/{pid}/encounters"))["items"]
               if e["status"] == "booked")
    # check-in requires consent to telemedicine, which the visit page asks for first
    await pt.api("POST", f"/api/v1/patients/{pid}/consents", {"kind": "telemedicine", "encounter_id": enc["id"]})
    await pt.api("POST", f"/api/v1/encounters/{enc['id']}/check-in", {
        "family_name": patient["family_name"], "given_name": patient["given_name"],
        "birth_date": patient["birth_date"], "chief_complaint": complaint, "symptoms": ["cough", "fever"]}, key=True)
    return pid, enc["id"]


async def test_console_shows_arrival_live_and_only_one_doctor_can_claim(live_server: LiveServer,
                                                                        browser: Browser) -> None:
    s = await setup(browser, live_server)
    kim = await login(browser, live_server, "dr.kim", locale="en", ctx_locale="en-US")
    lee = await login(browser, live_server, "dr.lee", locale="en", ctx_locale="en-US")
    pt = await login(browser, live_server, "patient3@", locale="ko")

    # Dr. Lee's view will go stale on cue, as a slow network would leave it.
    frozen = {"on": False}

    def route(ws: WebSocketRoute) -> None:
        server = ws.connect_to_server()
        server.on_message(lambda m: None if frozen["on"] else ws.send(m))
        ws.on_message(lambda m: server.send(m))

    await lee.page.route_web_socket("**/ws/queue**", route)
    for doc in (kim, lee):
        await doc.page.goto(live_server.base_url + "/console")
        await expect(doc.page.get_by_test_id("queue-connection")).to_have_attribute("data-state", "open")
    assert await kim.page.get_by_test_id("queue-alert").is_hidden()

    _pid, eid = await _on_demand_checked_in(pt, s, "기침이 계속돼요")
    row = kim.page.locator(f'[data-testid="queue-row"][data-encounter-id="{eid}"]')
    await expect(row).to_be_visible()  # pushed over the WebSocket, no reload
    await expect(row).to_contain_text("기침이 계속돼요")
    await expect(row).to_have_class(re.compile(r"\barrived\b"))
    alert = kim.page.get_by_test_id("queue-alert")
    await expect(alert).to_be_visible()
    await expect(alert).to_contain_text("섬이")
    lee_row = lee.page.locator(f'[data-testid="queue-row"][data-encounter-id="{eid}"]')
    await expect(lee_row.get_by_test_id("claim-button")).to_be_visible()
    frozen["on"] = True

    await row.get_by_test_id("claim-button").click()
    await kim.page.wait_for_url(f"**/console/visit/{eid}")
    await lee_row.get_by_test_id("claim-button").click()
    err = lee.page.get_by_test_id("queue-error")
    await expect(err).to_be_visible()
    await expect(err).to_contain_text("Another doctor")
    await kim.api("POST", f"/api/v1/encounters/{eid}/release")
    for sess in (kim, lee, pt):
        await sess.ctx.close()


async def test_pharmacy_inbox_live_through_delivery_and_patient_tracking(live_server: LiveServer,
                                                                         browser: Browser) -> None:
    s = await setup(browser, live_server)
    doc = await login(browser, live_server, "dr.lee", locale="en", ctx_locale="en-US")
    pt = await login(browser, live_server, "patient2@", locale="ko")  # 박영수: long-term care, delivery allowed
    ph = await login(browser, live_server, "pharmacist@", phone=True, locale="ko")
    _pid, eid = await _on_demand_checked_in(pt, s, "혈압약 처방")
    await doc.api("POST", f"/api/v1/encounters/{eid}/claim")
    await doc.api("POST", f"/api/v1/encounters/{eid}/admit")
    rx = await doc.api("POST", f"/api/v1/encounters/{eid}/prescriptions", {"items": [{
        "medication_code": "amoxicillin-500mg-cap", "dose": "1", "frequency": "TID", "duration_days": 5,
        "quantity": "15"}]}, key=True)
    await doc.api("POST", f"/api/v1/prescriptions/{rx['id']}/sign", key=True)

    page = ph.page
    await page.goto(live_server.base_url + "/pharmacy")
    await expect(page.get_by_test_id("pharmacy-connection")).to_have_attribute("data-state", "open")
    await doc.api("POST", f"/api/v1/prescriptions/{rx['id']}/send", {"pharmacy_id": s.pharmacy_id}, key=True)
    row = page.locator(f'[data-testid="inbox-row"][data-rx-id="{rx["id"]}"]')
    await expect(row).to_be_visible()  # routed prescriptions arrive over the WebSocket
    await expect(page.get_by_test_id("pharmacy-alert")).to_contain_text(rx["rx_number"])

    await row.get_by_test_id("inbox-open").click()
    await expect(page.get_by_test_id("signature-result")).to_have_attribute("data-ok", "true")
    await page.get_by_test_id("rx-accept").click()
    status = page.get_by_test_id("detail-status")
    await expect(status).to_have_attribute("data-status", "accepted")

    await page.get_by_test_id("dispense-lot").first.fill("LOT-2024-A1")
    await page.get_by_test_id("dispense-expiry").first.fill((date.today() + timedelta(days=365)).isoformat())
    await page.get_by_test_id("rx-dispense").click()
    await expect(status).to_have_attribute("data-status", "dispensed")

    await page.get_by_test_id("delivery-recipient").fill("박영수")
    await page.get_by_test_id("delivery-address").fill("서울특별시 중구 세종대로 1")
    await page.get_by_test_id("delivery-postal").fill("04524")
    await page.get_by_test_id("delivery-courier").fill("Demo Courier")
    await page.get_by_test_id("delivery-tracking").fill("TRK-1")
    await page.get_by_test_id("rx-delivery").click()
    dl = page.get_by_test_id("delivery-status")
    await expect(dl).to_have_attribute("data-status", "created")
    await page.get_by_test_id("delivery-picked-up").click()
    await expect(dl).to_have_attribute("data-status", "picked_up")
    await page.get_by_test_id("delivery-in-transit").click()
    await expect(dl).to_have_attribute("data-status", "in_transit")
    await page.get_by_test_id("proof-recipient").fill("박영수")
    canvas = page.get_by_test_id("proof-canvas")
    await canvas.scroll_into_view_if_needed()
    box = await canvas.bounding_box()
    assert box is not None
    await page.mouse.move(box["x"] + 20, box["y"] + 30)
    await page.mouse.down()
    for i in range(1, 12):
        await page.mouse.move(box["x"] + 20 + i * 20, box["y"] + 30 + (i % 3) * 20)
    await page.mouse.up()
    await page.get_by_test_id("delivery-delivered").click()
    await expect(dl).to_have_attribute("data-status", "delivered")
    assert await no_overflow(page)

    await pt.page.goto(f"{live_server.base_url}/rx/{rx['id']}")
    await expect(pt.page.get_by_test_id("rx-status")).to_have_attribute("data-status", "delivered")
    await expect(pt.page.get_by_test_id("rx-status")).to_have_text("배송 완료")
    await expect(pt.page.get_by_test_id("delivery-status")).to_have_attribute("data-status", "delivered")
    for sess in (doc, pt, ph):
        await sess.ctx.close()
