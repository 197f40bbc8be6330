"""The doctors' live consult queue with two doctors watching at once, in real Chromium against the live demo
server: whose patient each row is, which controls each doctor gets, claims showing up live on the other
doctor's page, errors in the page's language, a phone layout, the keyboard, and the arrival alert."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

from playwright.async_api import Browser, Locator, Page, WebSocketRoute, expect

from tests.browser.conftest import LiveServer
from tests.browser.test_pages_flows import Session, Setup, login, no_overflow, setup

# Counts the alert tones the page plays (the page's own AudioContext, observed, not replaced).
COUNT_TONES = """
window.__tones = 0;
const start = OscillatorNode.prototype.start;
OscillatorNode.prototype.start = function (...args) { window.__tones += 1; return start.apply(this, args); };
"""


@asynccontextmanager
async def _db(live: LiveServer) -> AsyncIterator[Any]:
    from clinic.config import load_settings
    from clinic.db.engine import engine_from_settings, session_factory
    from clinic.db.uow import UnitOfWork

    engine = engine_from_settings(load_settings(live.env))
    try:
        async with UnitOfWork(session_factory(engine)) as uow:
            yield uow
    finally:
        await engine.dispose()


async def _booked_soon(live: LiveServer, patient_email: str, doctor_id: str, visit_type_id: str) -> str:
    """A visit booked with one doctor in ten minutes (check-in is open), its encounter opened as booking does.

    Written straight into the database: booking through the API would depend on the time of day the suite
    runs at (the doctors' schedules)."""
    from sqlalchemy import select

    from clinic.db.base import utcnow
    from clinic.db.clinical import Patient
    from clinic.db.scheduling import Appointment, AppointmentKind, AppointmentStatus, VisitMode
    from clinic.services.encounters import open_for_appointment

    async with _db(live) as uow:
        p = (await uow.session.execute(select(Patient).where(Patient.email == patient_email))).scalar_one()
        start = utcnow().replace(microsecond=0) + timedelta(minutes=10)
        a = Appointment(organization_id=p.organization_id, practitioner_user_id=uuid.UUID(doctor_id), patient_id=p.id,
                        visit_type_id=uuid.UUID(visit_type_id), start=start, end=start + timedelta(minutes=15),
                        status=AppointmentStatus.BOOKED, kind=AppointmentKind.SCHEDULED, mode=VisitMode.VIDEO,
                        reason="재진")
        uow.add(a)
        await uow.session.flush()
        e = await open_for_appointment(uow, a, created=True)
        await uow.commit()
        return str(e.id)


async def _free_on_demand_time(live: LiveServer, doctor_ids: list[str]) -> None:
    """Give the doctors back the minutes their on-demand claims booked, so this test and later ones on this
    shared server can claim on-demand patients whatever ran before.

    (A claim books the claimer's next 15 minutes for the request, and nothing gives them back when the visit
    is released or ends early; see the report. Scheduled bookings are left alone.)"""
    from sqlalchemy import delete, select

    from clinic.db.scheduling import Appointment, AppointmentKind, SlotClaim

    async with _db(live) as uow:
        on_demand = select(Appointment.id).where(Appointment.kind == AppointmentKind.ON_DEMAND)
        await uow.session.execute(delete(SlotClaim).where(
            SlotClaim.practitioner_user_id.in_([uuid.UUID(d) for d in doctor_ids]),
            SlotClaim.appointment_id.in_(on_demand)))
        await uow.commit()


async def _check_in(pt: Session, eid: str, complaint: str, symptoms: list[str]) -> None:
    """The patient consents to telemedicine (asked once, before a first check-in) and checks in."""
    me = await pt.api("GET", "/api/v1/me")
    patient = await pt.api("GET", f"/api/v1/patients/{me['patient_ids'][0]}")
    await pt.api("POST", f"/api/v1/patients/{patient['id']}/consents", {"kind": "telemedicine"})
    await pt.api("POST", f"/api/v1/encounters/{eid}/check-in", {
        "family_name": patient["family_name"], "given_name": patient["given_name"],
        "birth_date": patient["birth_date"], "chief_complaint": complaint, "symptoms": symptoms}, key=True)


async def _on_demand(pt: Session, s: Setup, reason: str) -> str:
    """The patient asks for the next available doctor; returns the new visit."""
    me = await pt.api("GET", "/api/v1/me")
    pid = me["patient_ids"][0]
    before = {e["id"] for e in (await pt.api("GET", f"/api/v1/patients/{pid}/encounters"))["items"]}
    await pt.api("POST", f"/api/v1/organizations/{s.org_id}/on-demand",
                 {"patient_id": pid, "visit_type_id": s.visit_type_id, "mode": "video", "reason": reason}, key=True)
    (eid,) = [e["id"] for e in (await pt.api("GET", f"/api/v1/patients/{pid}/encounters"))["items"]
              if e["id"] not in before]
    return str(eid)


def _row(page: Page, eid: str) -> Locator:
    return page.locator(f'[data-testid="queue-row"][data-encounter-id="{eid}"]')


async def _open_console(s: Session) -> None:
    await s.page.goto(s.base + "/console")
    await expect(s.page.get_by_test_id("queue-connection")).to_have_attribute("data-state", "open")


async def _only_korean(page: Page, data: list[str]) -> None:
    """Everything the page says is Korean: the visible text of the page, less what people typed or are called
    (patient and doctor names, complaints, the clinic's name), has no Latin words."""
    text = await page.locator("body").inner_text()
    for d in sorted(set(data), key=len, reverse=True):
        text = text.replace(d, " ")
    latin = re.findall(r"[A-Za-z]{2,}", text)
    assert not latin, f"English on the Korean page: {latin}\n{text}"


async def _tab_to(page: Page, target: Locator, limit: int = 80) -> None:
    """Move the keyboard focus with Tab until ``target`` has it (as a keyboard user would)."""
    handle = await target.element_handle()
    assert handle is not None
    for _ in range(limit):
        await page.keyboard.press("Tab")
        if await handle.evaluate("el => el === document.activeElement"):
            return
    raise AssertionError("the control cannot be reached with Tab")


async def _focus_is_visible(target: Locator) -> bool:
    return bool(await target.evaluate(
        "el => el.matches(':focus-visible') && getComputedStyle(el).outlineStyle !== 'none'"
        " && parseFloat(getComputedStyle(el).outlineWidth) >= 2"))


async def test_two_doctors_watch_the_queue(live_server: LiveServer, browser: Browser) -> None:
    s = await setup(browser, live_server)
    kim = await login(browser, live_server, "dr.kim", locale="en", ctx_locale="en-US")
    lee = await login(browser, live_server, "dr.lee", phone=True, locale="ko")  # Dr. Lee on a phone, in Korean
    desk = await browser.new_context(locale="ko-KR")
    await desk.add_cookies(await lee.ctx.cookies())  # Dr. Lee's second screen, same sign-in
    lee2 = Session(desk, await desk.new_page(), live_server.base_url, lee.csrf)
    pt_booked = await login(browser, live_server, "patient4@", locale="ko")
    pt_now = await login(browser, live_server, "patient2@", locale="ko")
    members = (await kim.api("GET", f"/api/v1/organizations/{s.org_id}/members"))["items"]
    name = {m["email"].split("@")[0]: m["display_name"] for m in members}

    # The second screen's queue socket can go stale on cue, as a slow network would leave it.
    frozen = {"on": False}

    def route(ws: WebSocketRoute) -> None:
        server = ws.connect_to_server()
        server.on_message(lambda m: None if frozen["on"] else ws.send(m))
        ws.on_message(lambda m: server.send(m))

    await lee2.page.route_web_socket("**/ws/queue**", route)
    await kim.page.add_init_script(COUNT_TONES)
    for doc in (kim, lee, lee2):
        await _open_console(doc)
        await doc.page.evaluate("window.__sameDocument = true")  # gone if the page reloads
    doctors = [s.doctors["dr.kim"], s.doctors["dr.lee"]]
    await _free_on_demand_time(live_server, doctors)
    waiting: dict[str, Session] = {}  # the visits this test put in the queue, and their patients
    try:
        # 1. A visit booked with Dr. Lee: Dr. Lee's patient on Dr. Kim's page, with nothing for Dr. Kim to press.
        booked = await _booked_soon(live_server, "patient4@demo.example", s.doctors["dr.lee"], s.visit_type_id)
        waiting[booked] = pt_booked
        await _check_in(pt_booked, booked, "열이 나고 목이 아파요", ["cough", "sore_throat"])
        row = _row(kim.page, booked)
        await expect(row).to_be_visible()  # pushed, not reloaded
        await expect(row.get_by_test_id("queue-owner")).to_have_text(f"{name['dr.lee']}'s patient")
        await expect(row.get_by_test_id("queue-state")).to_have_text("Checked in")
        await expect(row).to_have_attribute("data-owner", "other")
        await expect(row.get_by_test_id("queue-symptoms")).to_have_text("Symptoms: Cough, Sore throat")
        for control in ("claim-button", "transfer-select", "priority-select", "release-button", "open-visit"):
            await expect(row.get_by_test_id(control)).to_have_count(0)
        await expect(row).not_to_contain_text("Your patient")
        alert = kim.page.get_by_test_id("queue-alert")
        await expect(alert).to_be_visible()
        await expect(alert).to_contain_text("하준")
        await expect(row).to_have_class(re.compile(r"\barrived\b"))
        assert await kim.page.evaluate("window.__tones") >= 1  # and it was heard
        lee_row = _row(lee.page, booked)
        await expect(lee_row.get_by_test_id("queue-owner")).to_have_text("내 환자")
        await expect(lee_row.get_by_test_id("queue-symptoms")).to_have_text("증상: 기침, 인후통")
        await expect(lee_row.get_by_test_id("claim-button")).to_have_text("담당하기")
        await expect(lee_row.get_by_test_id("transfer-select")).to_be_visible()

        # 2. An on-demand patient: on both doctors' pages, in the shared queue, for either to claim.
        tones = await kim.page.evaluate("window.__tones")
        od = await _on_demand(pt_now, s, "혈압약 처방 문의")
        waiting[od] = pt_now
        await _check_in(pt_now, od, "혈압약 처방 문의", [])
        kim_row, lee_row, lee2_row = _row(kim.page, od), _row(lee.page, od), _row(lee2.page, od)
        for r_, shared in ((kim_row, "Shared queue"), (lee_row, "공용 대기열"), (lee2_row, "공용 대기열")):
            await expect(r_.get_by_test_id("queue-owner")).to_have_text(shared)
            await expect(r_.get_by_test_id("claim-button")).to_be_visible()
        await expect(kim.page.get_by_test_id("queue-alert")).to_contain_text("영수")
        assert await kim.page.evaluate("window.__tones") > tones
        assert await no_overflow(lee.page), "the queue overflows a 390 px phone"
        frozen["on"] = True  # the second screen misses what happens next

        # 3. Dr. Kim claims with the keyboard; Dr. Lee's row changes at once, without a reload.
        claim = kim_row.get_by_test_id("claim-button")
        await _tab_to(kim.page, claim)
        assert await _focus_is_visible(claim)
        await expect(claim).to_have_accessible_description("박영수")  # which patient, for screen readers
        await kim.page.keyboard.press("Enter")
        await kim.page.wait_for_url(f"**/console/visit/{od}")
        state = lee_row.get_by_test_id("queue-state")
        await expect(state).to_have_text(f"{name['dr.kim']} 담당")
        await expect(lee_row).to_have_attribute("data-holder", "other")
        await expect(lee_row.get_by_test_id("claim-button")).to_have_count(0)
        await expect(lee_row).not_to_contain_text("접수 완료")
        await expect(lee_row.get_by_test_id("queue-owner")).to_have_count(0)
        assert await lee.page.evaluate("window.__sameDocument") is True
        assert await no_overflow(lee.page)

        # 4. The stale screen still offers Claim; pressing it says why not, in Korean, in one sentence, and
        #    the row catches up.
        await expect(lee2_row.get_by_test_id("claim-button")).to_be_visible()
        frozen["on"] = False
        await lee2_row.get_by_test_id("claim-button").click()
        err = lee2.page.get_by_test_id("queue-error")
        await expect(err).to_be_visible()
        await expect(err).to_have_text("다른 의사가 이미 이 환자를 담당했습니다.")
        await expect(lee2_row.get_by_test_id("queue-state")).to_have_text(f"{name['dr.kim']} 담당")
        await expect(lee2_row.get_by_test_id("claim-button")).to_have_count(0)
        data = [*name.values(), "정하준", "박영수", "열이 나고 목이 아파요", "혈압약 처방 문의",
                *(await lee.page.locator('[data-testid="queue-patient"], [data-testid="queue-complaint"]')
                  .all_inner_texts()),
                *(await lee.page.locator(".toolbar strong").all_inner_texts()),
                "English"]  # the language picker names each language in itself
        for page in (lee.page, lee2.page):
            await _only_korean(page, data)

        # 5. Dr. Kim's own view of the claim: open the visit or release it; no Claim.
        await _open_console(kim)
        mine = _row(kim.page, od)
        await expect(mine.get_by_test_id("queue-state")).to_have_text("Claimed by you")
        await expect(mine.get_by_test_id("open-visit")).to_have_attribute("href", f"/console/visit/{od}")
        await expect(mine.get_by_test_id("claim-button")).to_have_count(0)
        release = mine.get_by_test_id("release-button")
        await release.focus()
        await kim.page.keyboard.press("Enter")
        # Released, the on-demand request is back in the shared queue (Dr. Kim's time given back): anyone's to take.
        await expect(mine.get_by_test_id("queue-owner")).to_have_text("Shared queue")
        await expect(mine.get_by_test_id("claim-button")).to_be_visible()
        await expect(lee_row.get_by_test_id("queue-owner")).to_have_text("공용 대기열")
        await expect(lee_row.get_by_test_id("claim-button")).to_be_visible()

        # 6. Dr. Kim hands the patient to Dr. Lee; the controls move with the patient.
        await mine.get_by_test_id("transfer-select").select_option(s.doctors["dr.lee"])
        await mine.get_by_test_id("transfer-button").click()
        await expect(mine.get_by_test_id("queue-owner")).to_have_text(f"{name['dr.lee']}'s patient")
        await expect(mine.get_by_test_id("claim-button")).to_have_count(0)
        await expect(mine.get_by_test_id("transfer-select")).to_have_count(0)
        await expect(lee_row.get_by_test_id("queue-owner")).to_have_text("내 환자")
        await expect(lee_row.get_by_test_id("claim-button")).to_be_visible()
        assert await no_overflow(lee.page)
        await _only_korean(lee.page, data)

        # 7. Dr. Lee triages his booked patient as an emergency from the phone: the row goes to the top of
        #    both queues with the new priority.
        booked_row = _row(lee.page, booked)
        await booked_row.get_by_test_id("priority-select").select_option("1")
        await booked_row.get_by_test_id("priority-button").click()
        for page in (lee.page, kim.page):
            first = page.get_by_test_id("queue-row").first
            await expect(first).to_have_attribute("data-encounter-id", booked)
            await expect(first.get_by_test_id("queue-priority")).to_have_attribute("title", re.compile("^1 · "))
        await expect(_row(kim.page, booked).get_by_test_id("queue-priority")).to_have_attribute(
            "title", "1 · Emergency")

        # 8. In consultation: Dr. Lee sees his patient in the visit, Dr. Kim sees with whom; only Dr. Lee can
        #    go back to the visit.
        await lee.api("POST", f"/api/v1/encounters/{od}/claim")
        await lee.api("POST", f"/api/v1/encounters/{od}/admit")
        await expect(lee_row.get_by_test_id("queue-state")).to_have_text("내가 진료 중")
        await expect(lee_row.get_by_test_id("open-visit")).to_be_visible()
        for control in ("claim-button", "release-button", "priority-select", "transfer-select"):
            await expect(lee_row.get_by_test_id(control)).to_have_count(0)
        await expect(mine.get_by_test_id("queue-state")).to_have_text(f"In consultation with {name['dr.lee']}")
        await expect(mine.locator("button, a, select")).to_have_count(0)
        assert await no_overflow(lee.page)
        await _only_korean(lee.page, data)
        await lee.api("POST", f"/api/v1/encounters/{od}/complete")
    finally:
        for eid, pt in waiting.items():
            if (await pt.api("GET", f"/api/v1/encounters/{eid}"))["status"] in ("checked_in", "in_consult"):
                await pt.api("POST", f"/api/v1/encounters/{eid}/leave")
        await _free_on_demand_time(live_server, doctors)
        for sess in (kim, lee, lee2, pt_booked, pt_now):
            await sess.ctx.close()
