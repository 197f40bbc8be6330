"""``/admin/policy``: rule sets with their sources, and the simulator form, in Korean and English."""

from __future__ import annotations

import pytest
from aiohttp.test_utils import TestClient

from tests.conftest import Db
from tests.policy_integration.conftest import set_locale
from tests.world import World, login

SOURCE_URL = "https://www.changwon.go.kr/cwportal/14514/14556.web"  # cited by kr-2025-10-post-crisis


@pytest.mark.parametrize(("locale", "heading", "absent"), [("en", "Jurisdiction policy", "관할별 비대면진료 규정"),
                                                           ("ko", "관할별 비대면진료 규정", "Jurisdiction policy")])
async def test_admin_page_lists_rule_sets_and_sources(client: TestClient, db: Db, world: World, locale: str,
                                                      heading: str, absent: str) -> None:
    await set_locale(db, world.a.users["org_admin"], locale)
    await login(client, world.a.users["org_admin"].email)
    r = await client.get("/admin/policy")
    html = await r.text()
    assert r.status == 200, html
    assert f'<html lang="{locale}">' in html and heading in html and absent not in html
    assert 'data-rule-set="kr-2025-10-post-crisis"' in html and f'href="{SOURCE_URL}"' in html
    assert "us-federal" in html and "Ryan Haight" in html  # notes and titles of other jurisdictions too
    for testid in ("policy-sim-form", "sim-jurisdiction", "sim-at", "sim-action", "sim-mode", "sim-age",
                   "sim-group-rare_disease", "sim-prior", "sim-level", "sim-share", "sim-atc",
                   "sim-category-narcotic", "sim-days", "sim-submit", "policy-sim-result"):
        assert f'data-testid="{testid}"' in html, testid
    assert 'src="/static/policy.js"' in html and 'id="policy-labels"' in html


@pytest.mark.parametrize(("actor", "status"), [("clinician", 200), ("root", 200), ("patient", 403),
                                               ("pharmacist", 403)])
async def test_admin_page_access(client: TestClient, world: World, actor: str, status: int) -> None:
    r = await client.get("/admin/policy", allow_redirects=False)
    assert r.status == 302 and r.headers["Location"].startswith("/login")
    await login(client, (world.root if actor == "root" else world.a.users[actor]).email)
    r = await client.get("/admin/policy")
    assert r.status == status
    if status == 403:
        assert "kr-2025-10-post-crisis" not in await r.text()


async def test_policy_script_is_served(client: TestClient) -> None:
    r = await client.get("/static/policy.js")
    assert r.status == 200 and "renderDecision" in await r.text()
