"""Who may do what in the consult queue: the actions each viewer is offered, the refusals (precise codes,
accurate messages), and that the page has words for every code and symptom it can receive."""

from __future__ import annotations

import json
import re
import uuid
from typing import Any, get_args

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import select, update

from clinic.db.encounters import Encounter
from clinic.db.models import AuditEvent, User
from clinic.errors import DomainError
from clinic.security.authz import Principal
from clinic.services import accounts
from clinic.services import encounters as svc
from clinic.web.routes.encounters import SYMPTOMS, QueueEntryOut
from tests.conftest import Db
from tests.encounters.conftest import make_visit
from tests.world import World, hdr, login

HANGUL = re.compile(r"[\uac00-\ud7a3]")


async def _principal(db: Db, user: User) -> Principal:
    async with db.uow() as uow:
        u = await uow.session.get(User, user.id)
        assert u is not None
        return await accounts.build_principal(uow, u)


async def _checked_in(db: Db, world: World, *, personal: bool, who: str = "patient") -> uuid.UUID:
    eid = await make_visit(db, world, personal=personal, patient=who)
    user = world.a.users[who]
    pat = world.a.patient if who == "patient" else world.a.other_patient
    assert pat is not None
    p = await _principal(db, user)
    async with db.uow() as uow:
        await svc.check_in(uow, p, eid, svc.CheckIn(pat.family_name, pat.given_name, pat.birth_date, "cough",
                                                    ("cough", "sore_throat")))
        await uow.commit()
    return eid


async def _entry(db: Db, viewer: Principal, world: World, eid: uuid.UUID) -> svc.QueueEntry:
    async with db.uow() as uow:
        rows = await svc.queue(uow, viewer, world.a.clinic.id)
        await uow.commit()
    return next(r for r in rows if r.encounter_id == eid)


async def _try(db: Db, fn: Any, *args: Any) -> DomainError | None:
    """Run a service call in a unit of work that is never committed; the refusal, or None if it would work."""
    try:
        async with db.uow() as uow:
            await fn(uow, *args)
    except DomainError as exc:
        return exc
    return None


async def _refusal(db: Db, fn: Any, *args: Any) -> DomainError:
    exc = await _try(db, fn, *args)
    assert exc is not None, f"{fn.__name__} was allowed"
    return exc


async def test_each_viewer_is_offered_only_what_they_may_do(db: Db, world: World) -> None:
    kim, lee = [await _principal(db, world.a.users[r]) for r in ("clinician", "clinician2")]
    admin = await _principal(db, world.a.users["org_admin"])
    booked_with_kim = await _checked_in(db, world, personal=True)
    on_demand = await _checked_in(db, world, personal=False, who="patient2")
    kim_name = world.a.users["clinician"].display_name

    e = await _entry(db, lee, world, booked_with_kim)
    assert (e.queue, e.assigned_practitioner_name, e.claimed_by_id) == ("personal", kim_name, None)
    assert e.actions == []  # not Lee's patient: nothing to claim, transfer or triage
    e = await _entry(db, kim, world, booked_with_kim)
    assert e.actions == ["claim", "transfer", "priority"]
    assert e.symptoms == ["cough", "sore_throat"]
    for viewer in (kim, lee):
        e = await _entry(db, viewer, world, on_demand)
        assert (e.queue, e.assigned_practitioner_name) == ("shared", "")
        assert e.actions == ["claim", "transfer", "priority"]
    assert (await _entry(db, admin, world, on_demand)).actions == []  # admins watch; clinicians act

    async with db.uow() as uow:
        await svc.claim(uow, kim, on_demand)
        await uow.commit()
    e = await _entry(db, lee, world, on_demand)
    assert (e.claimed_by_name, e.actions) == (kim_name, [])
    e = await _entry(db, kim, world, on_demand)
    assert e.claimed_by_id == world.a.users["clinician"].id
    assert e.actions == ["open", "release", "transfer", "priority"]
    assert e.queue == "personal" and e.assigned_practitioner_name == kim_name  # the request is now booked with Kim

    async with db.uow() as uow:
        await svc.admit(uow, kim, on_demand)
        await uow.commit()
    assert (await _entry(db, kim, world, on_demand)).actions == ["open"]
    e = await _entry(db, lee, world, on_demand)
    assert (e.status, e.claimed_by_name, e.actions) == ("in_consult", kim_name, [])
    # The API documents exactly the actions the service can offer.
    (literal,) = get_args(QueueEntryOut.model_fields["actions"].annotation)
    assert get_args(literal) == svc.QUEUE_ACTIONS


async def test_offered_actions_are_exactly_the_ones_that_succeed(db: Db, world: World) -> None:
    users = world.a.users
    kim, lee = [await _principal(db, users[r]) for r in ("clinician", "clinician2")]
    viewers = {"kim": kim, "lee": lee, "admin": await _principal(db, users["org_admin"])}
    # Only the shared patient is an on-demand request: claiming one books the clinician's next minutes, and
    # Kim must stay free to claim it (here, in the units of work that are never committed).
    shared = await _checked_in(db, world, personal=False)
    kims = await _checked_in(db, world, personal=True, who="patient2")
    claimed = await _checked_in(db, world, personal=True, who="patient2")
    in_consult = await _checked_in(db, world, personal=True)
    async with db.uow() as uow:
        await svc.claim(uow, kim, claimed)
        await svc.claim(uow, kim, in_consult)
        await uow.commit()
    async with db.uow() as uow:
        await svc.admit(uow, kim, in_consult)
        await uow.commit()
    calls = {
        "claim": lambda p, eid: _try(db, svc.claim, p, eid),
        "release": lambda p, eid: _try(db, svc.release, p, eid),
        "transfer": lambda p, eid: _try(db, svc.transfer, p, eid,
                                        users["clinician2" if p.user_id == users["clinician"].id else "clinician"].id),
        "priority": lambda p, eid: _try(db, svc.set_priority, p, eid, 1),
    }
    checked = 0
    for name, viewer in viewers.items():
        for eid in (shared, kims, claimed, in_consult):
            offered = set((await _entry(db, viewer, world, eid)).actions)
            for action, run in calls.items():
                refusal = await run(viewer, eid)
                if action == "claim" and "open" in offered:
                    offered_here = True  # claiming a patient one holds answers with the visit: not offered, harmless
                else:
                    offered_here = action in offered
                assert (refusal is None) == offered_here, (name, eid, action, offered, refusal)
                checked += 1
    assert checked == 3 * 4 * 4


async def test_refusals_have_precise_codes_and_accurate_messages(db: Db, world: World) -> None:
    users = world.a.users
    kim, lee = [await _principal(db, users[r]) for r in ("clinician", "clinician2")]
    booked_with_kim = await _checked_in(db, world, personal=True)
    on_demand = await _checked_in(db, world, personal=False, who="patient2")

    # Another clinician's personal patient: nobody has claimed it, so the message must not say so.
    exc = await _refusal(db, svc.claim, lee, booked_with_kim)
    assert (exc.status, exc.code) == (409, "assigned_to_other")
    assert "another clinician's personal queue" in exc.message and "claimed" not in exc.message
    for fn, args in ((svc.transfer, (users["clinician2"].id,)), (svc.set_priority, (1,))):
        exc = await _refusal(db, fn, lee, booked_with_kim, *args)
        assert exc.code == "assigned_to_other"
    exc = await _refusal(db, svc.release, kim, booked_with_kim)
    assert (exc.code, exc.message) == ("not_claimed", "nobody has claimed this patient")

    async with db.uow() as uow:
        await svc.claim(uow, kim, on_demand)
        await uow.commit()
    exc = await _refusal(db, svc.claim, lee, on_demand)
    assert (exc.code, exc.message) == ("already_claimed", "another clinician has already claimed this patient")
    for fn, args, verb in ((svc.release, (), "release them"),
                           (svc.transfer, (users["clinician2"].id,), "transfer them"),
                           (svc.set_priority, (2,), "change the priority")):
        exc = await _refusal(db, fn, lee, on_demand, *args)
        assert exc.code == "already_claimed" and exc.message.endswith(f"only they can {verb}"), exc.message
    # A second click (or tab) by the clinician who holds the patient is not a second claim.
    async with db.uow() as uow:
        e = await svc.claim(uow, kim, on_demand)
        await uow.commit()
    assert e.claimed_by_id == users["clinician"].id

    exc = await _refusal(db, svc.transfer, kim, booked_with_kim, users["clinician"].id)
    assert (exc.status, exc.code) == (422, "same_clinician")
    assert exc.fields == {"to_user_id": "already assigned to this clinician"}
    for stranger in (users["org_admin"].id, world.b.users["clinician"].id, uuid.uuid4()):
        exc = await _refusal(db, svc.transfer, kim, booked_with_kim, stranger)
        assert (exc.status, exc.code) == (422, "unknown_clinician") and "to_user_id" in exc.fields

    async with db.uow() as uow:
        await svc.admit(uow, kim, on_demand)
        await uow.commit()
    for fn, args in ((svc.release, ()), (svc.transfer, (users["clinician2"].id,)), (svc.set_priority, (1,))):
        exc = await _refusal(db, fn, kim, on_demand, *args)
        assert exc.code == "not_waiting" and "already in consultation" in exc.message
    assert (await _refusal(db, svc.claim, lee, on_demand)).code == "already_claimed"

    not_arrived = await make_visit(db, world)
    exc = await _refusal(db, svc.claim, kim, not_arrived)
    assert (exc.code, exc.message) == ("not_checked_in",
                                       "the patient has not checked in yet; only waiting patients can be claimed")
    async with db.uow() as uow:
        await svc.complete(uow, kim, on_demand)
        await uow.commit()
    exc = await _refusal(db, svc.claim, kim, on_demand)
    assert exc.code == "not_waiting" and "has ended (completed)" in exc.message
    assert {"not_checked_in", "not_waiting", "already_claimed", "assigned_to_other", "not_claimed", "same_clinician",
            "unknown_clinician"} == set(svc.REFUSAL_CODES)


async def test_transfer_and_triage_commit_with_their_audit_entry_and_refusals_change_nothing(
        db: Db, world: World) -> None:
    users = world.a.users
    kim, lee = [await _principal(db, users[r]) for r in ("clinician", "clinician2")]
    eid = await _checked_in(db, world, personal=True)

    async def audit(action: str) -> list[AuditEvent]:
        async with db.uow() as uow:
            return list((await uow.session.execute(select(AuditEvent).where(
                AuditEvent.action == action, AuditEvent.object_id == str(eid)))).scalars())

    assert await _try(db, svc.transfer, lee, eid, users["clinician2"].id) is not None
    assert await audit("encounter.transfer") == []
    async with db.uow() as uow:
        await svc.transfer(uow, kim, eid, users["clinician2"].id)
        await uow.commit()
    (entry,) = await audit("encounter.transfer")
    assert entry.detail == {"from": str(users["clinician"].id), "to": str(users["clinician2"].id)}
    assert entry.actor_id == str(users["clinician"].id) and entry.patient_id == str(world.a.patient.id)  # type: ignore[union-attr]
    # Now Lee's patient: Kim is the one without controls.
    assert (await _entry(db, kim, world, eid)).actions == []
    assert (await _entry(db, lee, world, eid)).actions == ["claim", "transfer", "priority"]
    async with db.uow() as uow:
        await svc.set_priority(uow, lee, eid, 2)
        await uow.commit()
    (entry,) = await audit("encounter.triage")
    assert entry.detail == {"priority": 2, "from": 3}
    async with db.uow() as uow:
        e = await uow.session.get(Encounter, eid)
        assert e is not None and (e.assigned_practitioner_id, e.priority) == (users["clinician2"].id, 2)


async def test_http_refusals_are_4xx_with_codes(client: TestClient, world: World, db: Db) -> None:
    users = world.a.users
    booked_with_kim = await _checked_in(db, world, personal=True)
    csrf = await login(client, users["clinician2"].email)
    r = await client.post(f"/api/v1/encounters/{booked_with_kim}/claim", headers=hdr(csrf))
    err = (await r.json())["error"]
    assert r.status == 409 and err["code"] == "assigned_to_other"
    cases: list[tuple[str, Any, int, str]] = [
        (f"/api/v1/encounters/{uuid.uuid4()}/claim", None, 404, "not_found"),
        (f"/api/v1/encounters/{booked_with_kim}/transfer", {"to_user_id": "dr.kim"}, 422, ""),
        (f"/api/v1/encounters/{booked_with_kim}/transfer", {}, 422, ""),
        (f"/api/v1/encounters/{booked_with_kim}/priority", {"priority": 9}, 422, ""),
        (f"/api/v1/encounters/{booked_with_kim}/release", None, 409, "not_claimed"),
        (f"/api/v1/encounters/{booked_with_kim}/transfer", {"to_user_id": str(users["clinician"].id)}, 409,
         "assigned_to_other"),
    ]
    for path, body, status, code in cases:
        r = await client.post(path, json=body, headers=hdr(csrf)) if body is not None else \
            await client.post(path, headers=hdr(csrf))
        err = (await r.json())["error"]
        assert r.status == status, (path, body, r.status, err)
        assert err["code"] == code if code else err["code"], (path, err)
    r = await client.post("/api/v1/encounters/not-a-uuid/claim", headers=hdr(csrf))
    assert 400 <= r.status < 500 and (await r.json())["error"]["code"]
    # The queue tells Lee whose patient it is and that there is nothing for him to do.
    r = await client.get(f"/api/v1/organizations/{world.a.clinic.id}/queue")
    item = next(i for i in (await r.json())["items"] if i["encounter_id"] == str(booked_with_kim))
    assert item["assigned_practitioner_name"] == users["clinician"].display_name and item["actions"] == []
    client.session.cookie_jar.clear()
    csrf = await login(client, users["clinician"].email)
    r = await client.post(f"/api/v1/encounters/{booked_with_kim}/transfer",
                          json={"to_user_id": str(users["pharmacist"].id)}, headers=hdr(csrf))
    err = (await r.json())["error"]
    assert (r.status, err["code"], list(err["fields"])) == (422, "unknown_clinician", ["to_user_id"])


@pytest.mark.parametrize("locale", ["ko", "en"])
async def test_console_page_has_words_for_every_symptom_and_refusal(client: TestClient, world: World, db: Db,
                                                                    locale: str) -> None:
    doc = world.a.users["clinician"]
    async with db.uow() as uow:
        await uow.session.execute(update(User).where(User.id == doc.id).values(locale=locale))
        await uow.commit()
    await login(client, doc.email)
    r = await client.get("/console")
    html = await r.text()
    assert r.status == 200 and f'<html lang="{locale}">' in html
    raw = re.search(r'<script type="application/json" id="page-i18n">(.*?)</script>', html, re.S)
    assert raw is not None
    strings = json.loads(raw.group(1))
    words = re.search(r'<script type="application/json" id="page-i18n-symptoms">(.*?)</script>', html, re.S)
    assert words is not None
    strings.update(json.loads(words.group(1)))
    codes = get_args(SYMPTOMS)  # what the check-in questionnaire may send
    assert len(codes) > 10
    for code in codes:
        label = strings.get(f"sym_{code}")
        assert label and label != code, code
        assert bool(HANGUL.search(label)) == (locale == "ko"), (code, label)
    for code in (*svc.REFUSAL_CODES, "slot_taken", "network", "forbidden", "not_found", "conflict", "invalid",
                 "server", "unknown"):
        sentence = strings.get(f"err_{code}")
        assert sentence and sentence.endswith((".", "다.", "요.")), code
        assert bool(HANGUL.search(sentence)) == (locale == "ko"), (code, sentence)
    for key in ("state_claimed_other", "state_consult_other", "owner_other"):
        assert "{name}" in strings[key] and (locale == "en" or HANGUL.search(strings[key]))
    assert 'href="/static/console.css"' in html
