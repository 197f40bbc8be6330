"""What the doctor's note panel needs from the server: ICD-10-CM search (clinicians only, validated query),
signer names on notes and versions, and the note's initial state rendered into the visit page."""

from __future__ import annotations

import html
import json
import re
import uuid
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from clinic import icd10
from clinic.db.encounters import Encounter
from clinic.db.models import User
from clinic.encounters.state import EncounterStatus
from tests.conftest import Db
from tests.notes.conftest import DRAFT, as_user, make_encounter
from tests.world import World

SEARCH = "/api/v1/icd10"


async def test_clinicians_search_icd10_by_code_prefix_and_words(client: TestClient, world: World) -> None:
    doc = await as_user(client, world.a.users["clinician"])
    status, body = await doc.get(f"{SEARCH}?q=j06.9")
    assert status == 200 and body["items"][0] == {"code": "J06.9",
                                                  "display": "Acute upper respiratory infection, unspecified"}
    status, body = await doc.get(f"{SEARCH}?q=E11&limit=3")
    assert status == 200 and len(body["items"]) == 3 and all(i["code"].startswith("E11") for i in body["items"])
    status, body = await doc.get(f"{SEARCH}?q=Hyperten")
    assert status == 200 and body["items"][0]["code"] == "I10" and len(body["items"]) == 10  # default limit
    status, body = await doc.get(f"{SEARCH}?q={'acute upper respiratory'.replace(' ', '%20')}")
    assert status == 200 and "J06.9" in [i["code"] for i in body["items"]]
    status, body = await doc.get(f"{SEARCH}?q=%EA%B3%A0%ED%98%88%EC%95%95")  # 고혈압: descriptions are English
    assert status == 200 and body["items"] == []


@pytest.mark.parametrize("role", ["patient", "pharmacist", "org_admin"])
async def test_icd10_search_is_for_clinicians(client: TestClient, world: World, role: str) -> None:
    api = await as_user(client, world.a.users[role])
    status, body = await api.get(f"{SEARCH}?q=I10")
    assert status == 403 and body["error"]["code"] == "forbidden"
    client.session.cookie_jar.clear()
    r = await client.get(f"{SEARCH}?q=I10")
    assert r.status == 401 and (await r.json())["error"]["code"] == "unauthenticated"


@pytest.mark.parametrize(("query", "field"), [
    ("", "q"), ("?q=", "q"), ("?q=%20%20", "q"), ("?q=" + "a" * 101, "q"), ("?q=I10&limit=0", "limit"),
    ("?q=I10&limit=51", "limit"), ("?q=I10&limit=ten", "limit"), ("?q=I10&page=2", "page"),
])
async def test_icd10_search_refuses_bad_queries_with_the_field(client: TestClient, world: World, query: str,
                                                               field: str) -> None:
    doc = await as_user(client, world.a.users["clinician"])
    status, body = await doc.get(SEARCH + query)
    assert status == 422, body
    assert body["error"]["code"] == "validation_failed" and field in body["error"]["fields"]


def _full_scan(query: str, limit: int) -> list[str]:
    """The search as specified (icd10.search's docstring), by scanning every code: the index must agree."""
    q = query.strip()
    if limit <= 0 or not q:
        return []
    codes = icd10.all_codes()
    key = icd10.normalize(q)
    out: list[str] = []
    if re.fullmatch(r"[A-Z][0-9][0-9A-Z]{1,5}|[A-Z][0-9]?", key):
        out = [c.code for c in codes if icd10.normalize(c.code).startswith(key)][:limit]
        if len(out) >= limit:
            return out
    tokens = re.findall(r"[a-z0-9]+", q.lower())
    if not tokens:
        return out
    scored = []
    for c in codes:
        if c.code in out:
            continue
        words = set(re.findall(r"[a-z0-9]+", c.display.lower()))
        if all(any(w.startswith(t) for w in words) for t in tokens):
            exact = all(t in words for t in tokens)
            k = icd10.normalize(c.code)
            scored.append((0 if exact else 1, len(k), len(c.display), k, c.code))
    scored.sort()
    return out + [s[4] for s in scored[: limit - len(out)]]


@pytest.mark.parametrize("query", ["hypertension", "hyperten", "acute upper resp", "fracture of femur", "type 2 diab",
                                   "j06", "E11.6", "a", "r5", "of the", "Cough", "pain chest", "zz", "s72.001",
                                   "covid", "  Otitis media  ", "fever unspec"])
@pytest.mark.parametrize("limit", [1, 10, 50])
def test_indexed_search_ranks_exactly_like_a_full_scan(query: str, limit: int) -> None:
    assert [c.code for c in icd10.search(query, limit)] == _full_scan(query, limit)


async def test_signed_note_and_history_name_the_signers(client: TestClient, world: World, db: Db) -> None:
    eid = await make_encounter(db, world, status=EncounterStatus.COMPLETED)
    doc = await as_user(client, world.a.users["clinician"])
    name = world.a.users["clinician"].display_name
    status, n = await doc.put(f"/api/v1/encounters/{eid}/note", {"revision": 0, **DRAFT})
    assert status == 200 and n["signed_by_name"] == "" and n["version_signed_at"] is None and n["updated_at"]
    status, n = await doc.post(f"/api/v1/notes/{n['id']}/sign", {"revision": n["revision"]})
    assert status == 200 and n["version"] == 1
    assert n["signed_by_name"] == name and n["version_author_name"] == name
    assert n["version_signed_at"] == n["signed_at"]
    status, n2 = await doc.post(f"/api/v1/notes/{n['id']}/amendments", {
        "revision": n["revision"], "reason": "혈압 재측정", **DRAFT, "objective": "BP 148/94"})
    assert status == 201 and n2["version"] == 2 and n2["version_author_name"] == name
    assert n2["version_signed_at"] > n["version_signed_at"] and n2["signed_at"] == n["signed_at"]
    status, h = await doc.get(f"/api/v1/notes/{n['id']}/history")
    assert status == 200
    assert [(v["version"], v["author_name"], v["amendment_reason"]) for v in h["versions"]] == [
        (1, name, ""), (2, name, "혈압 재측정")]


def _json_block(page: str, element_id: str) -> Any:
    m = re.search(rf'<script type="application/json" id="{element_id}">(.*?)</script>', page, re.S)
    assert m, f"no #{element_id} block"
    return json.loads(m.group(1))


def _symptoms_line(page: str) -> str:
    m = re.search(r'<p class="muted" data-testid="symptoms">(.*?)</p>', page, re.S)
    assert m, "no symptoms line"
    return html.unescape(re.sub(r"<[^>]+>", "", m.group(1))).strip()


async def test_doctor_page_carries_the_note_and_symptom_words(client: TestClient, world: World, db: Db) -> None:
    eid = await make_encounter(db, world)
    async with db.uow() as uow:
        e = await uow.session.get(Encounter, eid)
        assert e is not None
        e.symptoms = ["cough", "sore_throat"]
        await uow.commit()
    doc = await as_user(client, world.a.users["clinician"])
    r = await client.get(f"/console/visit/{eid}")
    page = await r.text()
    assert r.status == 200
    state = _json_block(page, "note-state")
    assert state == {"encounter_id": str(eid), "encounter_status": "in_consult", "note": None}
    strings = _json_block(page, "note-strings")
    assert strings["err_stale_revision"].startswith("This note was changed")
    assert _symptoms_line(page) == "Symptoms: Cough, Sore throat"

    status, n = await doc.put(f"/api/v1/encounters/{eid}/note", {"revision": 0, **DRAFT,
                                                                 "plan": "</script><b>x</b>"})
    assert status == 200
    page = await (await client.get(f"/console/visit/{eid}")).text()
    note = _json_block(page, "note-state")["note"]
    assert note["id"] == n["id"] and note["revision"] == n["revision"] and note["status"] == "draft"
    assert note["plan"] == "</script><b>x</b>" and note["diagnoses"][0]["code"] == "I10"
    assert "</script><b>" not in page  # the text cannot close the JSON block it is embedded in

    # The same page in Korean: Korean symptom words and Korean panel strings.
    async with db.uow() as uow:
        u = await uow.session.get(User, world.a.users["clinician"].id)
        assert u is not None
        u.locale = "ko"
        await uow.commit()
    await as_user(client, world.a.users["clinician"])  # a new sign-in picks up the language
    page = await (await client.get(f"/console/visit/{uuid.UUID(str(eid))}")).text()
    assert _symptoms_line(page) == "증상: 기침, 인후통"
    assert _json_block(page, "note-strings")["confirm_sign_title"] == "이 기록에 서명할까요?"
