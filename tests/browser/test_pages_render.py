"""Every clinic page renders in Korean and in English and fits a 390 px phone without sideways scrolling."""

from __future__ import annotations

from playwright.async_api import Browser, expect

from tests.browser.conftest import LiveServer
from tests.browser.test_pages_flows import login, no_overflow

PAGES = {
    "patient1@": [("/book", "진료 예약", "Book a visit"), ("/portal", "내 진료", "My visits")],
    "dr.kim": [("/console", "진료 대기열", "Consult queue")],
    "pharmacist@": [("/pharmacy", "처방전 수신함", "Prescription inbox")],
    "admin@": [("/admin", "관리", "Administration"), ("/admin/outbox", "이메일·문자 발송함", "E-mail and SMS outbox")],
}


async def test_pages_in_korean_and_english_fit_a_phone(live_server: LiveServer, browser: Browser) -> None:
    for who, pages in PAGES.items():
        s = await login(browser, live_server, who, phone=True, locale="ko")
        for locale in ("ko", "en"):
            if locale == "en":
                await s.lang("en")
            for path, ko, en in pages:
                await s.page.goto(live_server.base_url + path)
                assert await s.page.get_attribute("html", "lang") == locale
                await expect(s.page.locator("h1")).to_have_text(ko if locale == "ko" else en)
                await s.page.wait_for_load_state("networkidle")
                assert await no_overflow(s.page), f"{path} overflows at 390 px in {locale}"
        await s.lang("ko")
        await s.ctx.close()


async def test_pages_send_strangers_to_sign_in(live_server: LiveServer, browser: Browser) -> None:
    ctx = await browser.new_context()
    page = await ctx.new_page()
    for path in ("/book", "/portal", "/console", "/pharmacy", "/admin"):
        await page.goto(live_server.base_url + path)
        assert "/login" in page.url
    await ctx.close()
