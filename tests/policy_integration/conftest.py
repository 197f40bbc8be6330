"""Fixtures: the two-tenant world (with the starter formulary) served by the real app, whose installed
policy engine decides bookings and prescriptions."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

import pytest
from sqlalchemy import update

from clinic.db.base import utcnow
from clinic.db.clinical import InPersonVisit
from clinic.db.models import Organization, OrgKind, User
from clinic.db.scheduling import VisitMode
from clinic.security.authz import SYSTEM
from clinic.services import booking as svc
from prescriptions.formulary import load_starter
from tests.conftest import Db
from tests.world import World, build_world


@pytest.fixture
async def world(db: Db) -> World:
    async with db.uow() as uow:
        w = await build_world(uow)
        await load_starter(uow)
        # A clinic's in-person work dwarfs its telemedicine: keeps tenant A under KR's 30% monthly cap.
        assert w.a.other_patient is not None
        for _ in range(30):
            uow.add(InPersonVisit(patient_id=w.a.other_patient.id, organization_id=w.a.clinic.id,
                                  visit_date=utcnow().date()))
        await uow.commit()
    return w



@dataclass
class Slots:
    """Tenant A's clinician works 09:00-17:00 Seoul every day (holidays ignored), ten days from now."""

    visit_type: uuid.UUID
    doc: uuid.UUID
    day: date

    def at(self, hh: int, mm: int = 0) -> datetime:
        return datetime.combine(self.day, time(hh, mm), tzinfo=UTC) - timedelta(hours=9)  # Seoul is UTC+9


@pytest.fixture
async def slots(db: Db, world: World) -> Slots:
    org, doc = world.a.clinic.id, world.a.users["clinician"].id
    async with db.uow() as uow:
        vt = await svc.create_visit_type(uow, SYSTEM, org, svc.VisitTypeInput(
            code="consult", name="Consultation", duration_minutes=30, modes=(VisitMode.VIDEO, VisitMode.AUDIO)))
        await svc.upsert_schedule(uow, SYSTEM, org, doc, timezone="Asia/Seoul", observe_public_holidays=False)
        for wd in range(7):
            await svc.add_rule(uow, SYSTEM, org, doc, weekday=wd, start=time(9), end=time(17))
        await uow.commit()
    return Slots(visit_type=vt.id, doc=doc, day=datetime.now(UTC).date() + timedelta(days=10))


async def make_hospital(db: Db, org_id: uuid.UUID) -> None:
    """Turn a clinic into a hospital: KR law then refuses telemedicine to patients outside a few groups."""
    async with db.uow() as uow:
        await uow.session.execute(update(Organization).where(Organization.id == org_id).values(kind=OrgKind.HOSPITAL))
        await uow.commit()


async def set_locale(db: Db, user: User, locale: str) -> None:
    async with db.uow() as uow:
        await uow.session.execute(update(User).where(User.id == user.id).values(locale=locale))
        await uow.commit()
