"""The sign-in pages in real Chromium: a demo doctor signs in, on a phone-sized screen, by keyboard."""

from __future__ import annotations

from playwright.async_api import Browser

from tests.browser.conftest import LiveServer


async def test_demo_doctor_signs_in_with_keyboard_on_phone(live_server: LiveServer, browser: Browser) -> None:
    doc = live_server.login_for("dr.kim")
    ctx = await browser.new_context(viewport={"width": 390, "height": 844}, locale="ko-KR", is_mobile=True,
                                    has_touch=True)
    page = await ctx.new_page()
    await page.goto(live_server.base_url + "/login")
    assert await page.get_attribute("html", "lang") == "ko"
    # keyboard only: the skip link is the first stop, then the form fields
    await page.keyboard.press("Tab")
    assert await page.evaluate("document.activeElement.className") == "skip-link"
    await page.get_by_test_id("login-email").focus()
    await page.keyboard.type(doc["email"])
    await page.keyboard.press("Tab")
    await page.keyboard.type(doc["password"])
    await page.keyboard.press("Enter")
    await page.wait_for_url(lambda url: "/login" not in url)
    await page.goto(live_server.base_url + "/account")
    assert doc["email"] in await page.content()
    # the demo organization switched 2FA off, and the UI says so plainly
    await page.get_by_test_id("2fa-off-banner").wait_for()
    # nothing overflows horizontally on a phone
    overflow = await page.evaluate("document.documentElement.scrollWidth > window.innerWidth")
    assert overflow is False
    await ctx.close()


async def test_wrong_password_shows_error_in_english(live_server: LiveServer, browser: Browser) -> None:
    ctx = await browser.new_context(locale="en-US")
    page = await ctx.new_page()
    await page.goto(live_server.base_url + "/login")
    assert await page.get_attribute("html", "lang") == "en"
    await page.get_by_test_id("login-email").fill("dr.kim@demo.example")
    await page.get_by_test_id("login-password").fill("wrong-password")
    await page.get_by_test_id("login-submit").click()
    err = page.get_by_test_id("login-error")
    await err.wait_for()
    assert "incorrect" in (await err.inner_text()).lower()
    await ctx.close()


async def test_health_and_openapi_served(live_server: LiveServer, browser: Browser) -> None:
    ctx = await browser.new_context()
    page = await ctx.new_page()
    r = await page.goto(live_server.base_url + "/healthz")
    assert r is not None and r.status == 200
    r = await page.goto(live_server.base_url + "/api/openapi.json")
    assert r is not None and (await r.json())["openapi"].startswith("3.")
    await ctx.close()
