"""Check-in in real Chromium: the questionnaire offers every symptom the clinic triages on, and an urgent one
tells the patient at once whom to call (where they are), while still letting them check in — first in line."""

from __future__ import annotations

from playwright.async_api import Browser, expect

from clinic.encounters.symptoms import SYMPTOMS
from tests.browser.conftest import LiveServer
from tests.browser.test_pages_flows import login, no_overflow, setup
from tests.browser.test_patient_journey import end_on_demand, join_visit, new_on_demand, patient_id


async def test_an_urgent_symptom_says_whom_to_call_and_puts_the_patient_first(live_server: LiveServer,
                                                                              browser: Browser) -> None:
    s = await setup(browser, live_server)
    pt = await login(browser, live_server, "patient3@", phone=True)
    page = pt.page
    pid = await patient_id(pt)
    enc = await new_on_demand(pt, s, pid, "가슴 통증")
    try:
        await page.goto(f"{live_server.base_url}/visit/{enc['id']}")
        await join_visit(page)
        # Consent is asked the first time only (an earlier test may have given it).
        first_step = '[data-testid="tm-consent"]:visible, [data-testid="checkin-family"]:visible'
        await page.locator(first_step).first.wait_for()
        if await page.get_by_test_id("tm-consent").is_visible():
            await page.get_by_test_id("tm-consent-agree").click()
        await expect(page.get_by_test_id("checkin-family")).to_be_visible()

        # Every symptom the clinic triages on can be reported.
        for symptom in SYMPTOMS:
            await expect(page.get_by_test_id(f"symptom-{symptom.code}")).to_have_count(1)
        warning = page.get_by_test_id("emergency-warning")
        await page.get_by_test_id("symptom-cough").check()
        await expect(warning).to_be_hidden()
        await page.get_by_test_id("symptom-chest_pain").check()
        await expect(warning).to_be_visible()
        await expect(warning).to_contain_text("119")  # the patient is in Korea
        await expect(page.get_by_test_id("emergency-call")).to_have_attribute("href", "tel:119")
        assert await no_overflow(page)
        await page.get_by_test_id("symptom-chest_pain").uncheck()
        await expect(warning).to_be_hidden()
        # Space on the focused box, as a keyboard user would.
        await page.get_by_test_id("symptom-fainting").focus()
        await page.keyboard.press("Space")
        await expect(warning).to_be_visible()

        await page.get_by_test_id("checkin-family").fill("최")
        await page.get_by_test_id("checkin-given").fill("섬이")
        await page.get_by_test_id("checkin-birth").fill("1975-01-22")
        await page.get_by_test_id("checkin-complaint").fill("어지럽고 쓰러질 것 같아요")
        await page.get_by_test_id("checkin-submit").click()
        await expect(page.get_by_test_id("wait-position")).not_to_have_text("–", timeout=10_000)
        checked = await pt.api("GET", f"/api/v1/encounters/{enc['id']}")
        assert checked["status"] == "checked_in"
        assert checked["priority"] == 1 and set(checked["symptoms"]) == {"cough", "fainting"}
    finally:
        await end_on_demand(pt, pid, enc["id"])
        await pt.ctx.close()
