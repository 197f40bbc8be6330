from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

import pytest

from clinic.db.models import User
from clinic.db.scheduling import VisitMode
from clinic.security.authz import Principal
from clinic.services import accounts
from clinic.services import booking as svc
from tests.conftest import Db
from tests.world import World


async def principal_of(db: Db, user: User) -> Principal:
    async with db.uow() as uow:
        u = await uow.session.get(User, user.id)
        assert u is not None
        return await accounts.build_principal(uow, u)


@dataclass
class Booking:
    """Tenant A's clinician works 09:00-17:00 Seoul every day; holidays ignored so tests run any day."""

    consult: uuid.UUID  # 30 minutes
    quick: uuid.UUID  # 15 minutes
    day: date  # a day well in the future
    doc: uuid.UUID

    def at(self, hh: int, mm: int = 0) -> datetime:
        return datetime.combine(self.day, time(hh, mm), tzinfo=UTC) - timedelta(hours=9)  # Seoul is UTC+9


@pytest.fixture
async def booking(db: Db, world: World) -> Booking:
    admin = await principal_of(db, world.a.users["org_admin"])
    org = world.a.clinic.id
    doc = world.a.users["clinician"].id
    async with db.uow() as uow:
        consult = await svc.create_visit_type(uow, admin, org, svc.VisitTypeInput(
            code="consult", name="Consultation", name_ko="진료", duration_minutes=30,
            modes=(VisitMode.VIDEO, VisitMode.AUDIO), fee_amount=15000, currency="KRW"))
        quick = await svc.create_visit_type(uow, admin, org, svc.VisitTypeInput(
            code="quick", name="Follow-up", duration_minutes=15, modes=(VisitMode.VIDEO,), fee_amount=0))
        await svc.upsert_schedule(uow, admin, org, doc, timezone="Asia/Seoul", observe_public_holidays=False)
        for wd in range(7):
            await svc.add_rule(uow, admin, org, doc, weekday=wd, start=time(9), end=time(17))
        await uow.commit()
    day = datetime.now(UTC).date() + timedelta(days=10)
    return Booking(consult=consult.id, quick=quick.id, day=day, doc=doc)
