"""A clinician of an organization that requires two-factor sign-in, in real Chromium: enrolls an authenticator
(a mistyped code keeps the scanned secret), signs in again with a code, and is told plainly when too many codes
were tried."""

from __future__ import annotations

import asyncio
import time
import uuid

import aiohttp
import pyotp
from playwright.async_api import Browser, Page

from tests.browser.conftest import LiveServer

PASSWORD = "clinician-password-2fa-123"


async def _clinic_requiring_2fa(live_server: LiveServer) -> str:
    """A new clinic (2FA on, the default for real organizations) with one clinician; returns their e-mail."""
    root = live_server.login_for("root@")
    async with aiohttp.ClientSession(base_url=live_server.base_url, cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        async with http.post("/api/v1/auth/login", json={"email": root["email"], "password": root["password"]}) as r:
            assert r.status == 200, await r.text()
            csrf = (await r.json())["csrf_token"]
        async with http.post("/api/v1/organizations", headers={"X-CSRF-Token": csrf},
                             json={"name": f"Strict Clinic {uuid.uuid4().hex[:6]}", "kind": "clinic"}) as r:
            assert r.status == 201, await r.text()
            org = await r.json()
    assert org["require_2fa"] is True
    email = f"dr.strict.{uuid.uuid4().hex[:6]}@clinic.example"
    r2 = live_server.cli("create-user", "--email", email, "--name", "Dr. Strict", "--role", "clinician",
                         "--org", org["id"], "--password", PASSWORD)
    assert r2.returncode == 0, r2.stderr
    return email


async def _sign_in(page: Page, base: str, email: str) -> None:
    await page.goto(base + "/login")
    await page.get_by_test_id("login-email").fill(email)
    await page.get_by_test_id("login-password").fill(PASSWORD)
    await page.get_by_test_id("login-submit").click()


def _wrong(code: str) -> str:
    return f"{(int(code) + 500_000) % 1_000_000:06d}"


async def _fresh_code(secret: str, after: int | None = None) -> str:
    """The current code, or the next one once the 30-second step has moved past ``after`` (a used step)."""
    if after is not None:
        await asyncio.sleep(max(0.0, (after + 1) * 30 - time.time()) + 0.2)
    return pyotp.TOTP(secret).now()


async def test_clinician_enrolls_signs_in_with_code_and_sees_the_limit(live_server: LiveServer,
                                                                       browser: Browser) -> None:
    email = await _clinic_requiring_2fa(live_server)
    ctx = await browser.new_context(locale="en-US", viewport={"width": 390, "height": 844})
    page = await ctx.new_page()
    await _sign_in(page, live_server.base_url, email)
    await page.wait_for_url("**/login/enroll**")
    secret = (await page.get_by_test_id("totp-secret").inner_text()).strip()
    assert len(secret) >= 16

    # A mistyped code: told so, and the page keeps the secret the authenticator app already has.
    await page.get_by_test_id("enroll-code").fill(_wrong(pyotp.TOTP(secret).now()))
    await page.get_by_test_id("enroll-submit").click()
    await page.get_by_test_id("enroll-error").wait_for()
    assert "not valid" in await page.get_by_test_id("enroll-error").inner_text()
    assert (await page.get_by_test_id("totp-secret").inner_text()).strip() == secret

    await page.get_by_test_id("enroll-code").fill(await _fresh_code(secret))
    enrolled_step = int(time.time()) // 30
    await page.get_by_test_id("enroll-submit").click()
    await page.wait_for_url(lambda url: "/login" not in url)
    await page.goto(live_server.base_url + "/account")
    assert email in await page.content()
    await ctx.close()

    # Next sign-in asks for a code; the one used to enroll cannot be replayed, a new one works.
    ctx = await browser.new_context(locale="ko-KR")
    page = await ctx.new_page()
    await _sign_in(page, live_server.base_url, email)
    await page.wait_for_url("**/login/2fa**")
    await page.get_by_test_id("mfa-code").fill(await _fresh_code(secret, after=enrolled_step))
    await page.get_by_test_id("mfa-submit").click()
    await page.wait_for_url(lambda url: "/login" not in url)
    await ctx.close()

    # Guessing: after the allowed number of wrong codes the page says to wait, in the person's language.
    ctx = await browser.new_context(locale="ko-KR")
    page = await ctx.new_page()
    await _sign_in(page, live_server.base_url, email)
    await page.wait_for_url("**/login/2fa**")
    messages = []
    for _ in range(6):
        await page.get_by_test_id("mfa-code").fill(_wrong(pyotp.TOTP(secret).now()))
        await page.get_by_test_id("mfa-submit").click()
        await page.get_by_test_id("mfa-error").wait_for()
        messages.append(await page.get_by_test_id("mfa-error").inner_text())
    assert all("코드" in m for m in messages)
    assert messages[-1] == "코드를 너무 많이 입력했습니다. 몇 분 후에 다시 시도해 주세요."
    assert messages[0] != messages[-1]
    # Even the right code waits out the limit.
    await page.get_by_test_id("mfa-code").fill(pyotp.TOTP(secret).now())
    await page.get_by_test_id("mfa-submit").click()
    await page.get_by_test_id("mfa-error").wait_for()
    assert await page.get_by_test_id("mfa-error").inner_text() == messages[-1]
    assert "/login/2fa" in page.url
    await ctx.close()
