"""Practitioner profiles: patients can see whom they book; only the practitioner or their admin edits."""

from __future__ import annotations

from aiohttp.test_utils import TestClient

from tests.world import World, hdr, login


async def test_profile_and_licenses(client: TestClient, world: World) -> None:
    doc = world.a.users["clinician"]
    csrf = await login(client, doc.email)
    r = await client.patch(f"/api/v1/practitioners/{doc.id}", json={"specialty": "가정의학과",
                                                                    "languages": ["ko", "en", "ko"]},
                           headers=hdr(csrf))
    body = await r.json()
    assert r.status == 200 and body["specialty"] == "가정의학과" and body["languages"] == ["en", "ko"]
    r = await client.post(f"/api/v1/practitioners/{doc.id}/licenses",
                          json={"jurisdiction": "US-CA", "number": "A12345", "expires_on": "2030-01-01"},
                          headers=hdr(csrf))
    assert r.status == 201
    lic = await r.json()
    r = await client.post(f"/api/v1/practitioners/{doc.id}/licenses",
                          json={"jurisdiction": "US-CA", "number": "A12345"}, headers=hdr(csrf))
    assert r.status == 409
    r = await client.post(f"/api/v1/practitioners/{doc.id}/licenses",
                          json={"jurisdiction": "california", "number": "1"}, headers=hdr(csrf))
    assert r.status == 422 and "jurisdiction" in (await r.json())["error"]["fields"]
    # a colleague may read but not edit
    client.session.cookie_jar.clear()
    csrf = await login(client, world.a.users["clinician2"].email)
    r = await client.patch(f"/api/v1/practitioners/{doc.id}", json={"bio": "x"}, headers=hdr(csrf))
    assert r.status == 403
    # the clinic's patients see the list with licenses (whom they book)
    client.session.cookie_jar.clear()
    await login(client, world.a.users["patient"].email)
    r = await client.get(f"/api/v1/organizations/{world.a.clinic.id}/practitioners")
    items = (await r.json())["items"]
    me = next(i for i in items if i["user_id"] == str(doc.id))
    assert [x["number"] for x in me["licenses"]] == ["A12345"]
    client.session.cookie_jar.clear()
    csrf = await login(client, world.a.users["org_admin"].email)
    r = await client.delete(f"/api/v1/practitioners/{doc.id}/licenses/{lic['id']}", headers=hdr(csrf))
    assert r.status == 204
