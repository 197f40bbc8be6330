"""``PolicyService.require_consult``: the call the encounter service makes at admission and mode change."""

from __future__ import annotations

import pytest

from clinic.db.base import utcnow
from clinic.db.encounters import Encounter
from clinic.errors import PolicyDenied
from clinic.policy_web import load_engine
from clinic.services.policy import PolicyService, telemedicine_share
from tests.conftest import Db
from tests.policy_integration.conftest import make_hospital
from tests.prescriptions.conftest import open_encounter
from tests.world import World


async def test_require_consult_appends_the_record_and_excludes_the_visit_from_the_share(db: Db,
                                                                                        world: World) -> None:
    service = PolicyService(load_engine())
    # Tenant B's clinic: two in-person visits this month (tests/world.py) and this one remote visit.
    enc_id = await open_encounter(db, world, "b")
    async with db.uow() as uow:
        enc = await uow.session.get(Encounter, enc_id)
        assert enc is not None
        assert await telemedicine_share(uow, world.b.clinic.id, utcnow()) == pytest.approx(1 / 3, abs=1e-3)
        record = await service.require_consult(uow, enc, mode="audio", point="mode_change")
        await uow.commit()
    assert record["point"] == "mode_change" and record["allowed"] is True
    async with db.uow() as uow:
        enc = await uow.session.get(Encounter, enc_id)
        assert enc is not None and enc.policy_decisions == [record]


async def test_require_consult_refuses_without_storing(db: Db, world: World) -> None:
    service = PolicyService(load_engine())
    enc_id = await open_encounter(db, world)
    await make_hospital(db, world.a.clinic.id)
    async with db.uow() as uow:
        enc = await uow.session.get(Encounter, enc_id)
        assert enc is not None
        with pytest.raises(PolicyDenied) as exc:
            await service.require_consult(uow, enc, mode="video", point="admission")
        assert exc.value.extra["record"]["point"] == "admission"
        assert any(r["rule"].endswith("hospital-level") for r in exc.value.extra["decision"]["reasons"])
        assert enc.policy_decisions == []
