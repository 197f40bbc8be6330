"""Fixtures for notes, documents, export/erasure and analytics: a two-tenant world and visits built as rows.

Encounters are created directly (the encounter service is developed separately): a visit in consultation or
completed, claimed by the tenant's clinician.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from aiohttp.test_utils import TestClient

from clinic.db.base import utcnow
from clinic.db.encounters import Encounter
from clinic.db.models import User
from clinic.encounters.state import EncounterStatus
from clinic.security.authz import Principal
from clinic.services import accounts
from tests.conftest import Db
from tests.world import World, hdr, login


async def make_encounter(db: Db, world: World, tenant: str = "a", *, clinician: str = "clinician",
                         status: EncounterStatus = EncounterStatus.IN_CONSULT, patient_id: uuid.UUID | None = None,
                         checked_in_at: datetime | None = None, admitted_at: datetime | None = None,
                         started_at: datetime | None = None, mode: str = "video",
                         chief_complaint: str = "두통") -> uuid.UUID:
    t = getattr(world, tenant)
    now = utcnow()
    seen = status in (EncounterStatus.IN_CONSULT, EncounterStatus.COMPLETED)
    async with db.uow() as uow:
        e = Encounter(organization_id=t.clinic.id, patient_id=patient_id or t.patient.id,
                      claimed_by_id=t.users[clinician].id if clinician else None, status=status, mode=mode,
                      chief_complaint=chief_complaint,
                      checked_in_at=checked_in_at or (now - timedelta(minutes=20)),
                      admitted_at=admitted_at or ((now - timedelta(minutes=10)) if seen else None),
                      started_at=started_at or ((now - timedelta(minutes=10)) if seen else None),
                      ended_at=now if status is EncounterStatus.COMPLETED else None)
        uow.add(e)
        await uow.commit()
        return e.id


async def principal_of(db: Db, user: User) -> Principal:
    async with db.uow() as uow:
        u = await uow.session.get(User, user.id)
        assert u is not None
        return await accounts.build_principal(uow, u)


class Api:
    """A signed-in test client for one user: ``await api.get(path)`` → (status, json-or-bytes)."""

    def __init__(self, client: TestClient, csrf: str) -> None:
        self.client = client
        self.csrf = csrf

    async def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        r = await self.client.request(method, path, json=body, headers=hdr(self.csrf))
        if r.content_type in ("application/json", "application/fhir+json"):
            return r.status, await r.json()
        return r.status, await r.read()

    async def get(self, path: str) -> tuple[int, Any]:
        return await self.call("GET", path)

    async def put(self, path: str, body: Any) -> tuple[int, Any]:
        return await self.call("PUT", path, body)

    async def post(self, path: str, body: Any = None) -> tuple[int, Any]:
        return await self.call("POST", path, body)


async def as_user(client: TestClient, user: User) -> Api:
    client.session.cookie_jar.clear()
    return Api(client, await login(client, user.email))


DRAFT: dict[str, Any] = {"subjective": "2주 전부터 두통", "objective": "BP 152/96", "assessment": "본태성 고혈압",
         "plan": "암로디핀 5mg, 2주 후 재진", "text": "", "diagnoses": [{"code": "I10"}]}
