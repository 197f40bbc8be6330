"""Fixtures: the two-tenant world plus the starter formulary, open encounters and principals."""

from __future__ import annotations

import uuid
from datetime import date, timedelta
from typing import Any

import pytest

from clinic.db.base import utcnow
from clinic.db.clinical import InPersonVisit
from clinic.db.encounters import Encounter
from clinic.db.models import User
from clinic.encounters.state import EncounterStatus
from clinic.policy import PolicyEngine
from clinic.security.authz import Principal
from clinic.services import accounts
from clinic.services.policy import PolicyService
from prescriptions.formulary import load_starter
from tests.conftest import Db
from tests.world import World, build_world

_ENGINE: dict[str, PolicyEngine] = {}


def real_policy() -> PolicyService:
    if "e" not in _ENGINE:
        _ENGINE["e"] = PolicyEngine.from_directory()
    return PolicyService(_ENGINE["e"])


class AllowPolicy(PolicyService):
    """For tests about signing mechanics of drugs the law in force would refuse to prescribe remotely."""

    def __init__(self) -> None:
        pass

    async def require(self, uow: Any, subject: Any, action: str, *, point: str, **kw: Any) -> dict[str, Any]:
        return {"point": point, "allowed": True, "rule_set": "test-allow-all"}


@pytest.fixture
async def world(db: Db) -> World:
    async with db.uow() as uow:
        w = await build_world(uow)
        await load_starter(uow)
        # Plenty of face-to-face visits this month keeps the clinics under KR's 30% telemedicine cap.
        assert w.a.other_patient is not None and w.b.other_patient is not None
        for t in (w.a, w.b):
            assert t.other_patient is not None
            for _ in range(60):
                uow.add(InPersonVisit(patient_id=t.other_patient.id, organization_id=t.clinic.id,
                                      visit_date=utcnow().date()))
        await uow.commit()
    return w


async def open_encounter(db: Db, world: World, tenant: str = "a", *, patient_id: uuid.UUID | None = None,
                         clinician: str = "clinician", status: EncounterStatus = EncounterStatus.IN_CONSULT,
                         ended_ago: timedelta | None = None) -> uuid.UUID:
    t = getattr(world, tenant)
    now = utcnow()
    async with db.uow() as uow:
        enc = Encounter(organization_id=t.clinic.id, patient_id=patient_id or t.patient.id,
                        claimed_by_id=t.users[clinician].id, status=status, claimed_at=now, started_at=now,
                        ended_at=(now - ended_ago) if ended_ago is not None else None)
        uow.add(enc)
        await uow.commit()
        return enc.id


async def principal(db: Db, user: User, *, mfa: bool = True) -> Principal:
    async with db.uow() as uow:
        u = await uow.session.get(User, user.id)
        assert u is not None
        return await accounts.build_principal(uow, u, mfa_at=utcnow() if mfa else None)



def item(code: str = "amoxicillin-500mg-cap", dose: str = "1", freq: str = "TID", days: int = 5,
         quantity: str | None = None, **kw: Any) -> dict[str, Any]:
    from decimal import Decimal

    from prescriptions.dosing import dec_str, expected_quantity

    q = quantity if quantity is not None else dec_str(expected_quantity(Decimal(dose), freq, days,
                                                                        kw.get("prn_max_per_day")))
    return {"medication_code": code, "dose": dose, "frequency": freq, "duration_days": days, "quantity": q, **kw}


TODAY = date.today()
