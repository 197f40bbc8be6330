"""Prescribing, signing and claiming through the services, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import func, select, update

from clinic.db.clinical import Allergy
from clinic.db.models import AuditEvent, Membership, Organization, OrgKind, Role
from clinic.encounters.state import EncounterStatus
from clinic.errors import Conflict, Forbidden, Invalid, NotFound, PolicyDenied
from prescriptions import service as svc
from prescriptions.formulary import import_formulary, load_starter
from prescriptions.models import Medication, MedicationRequest, MedicationRequestItem
from prescriptions.signing import LocalKeyStore
from prescriptions.state import RxStatus
from tests.conftest import TEST_SECRET, Db
from tests.prescriptions.conftest import AllowPolicy, item, open_encounter, principal, real_policy
from tests.world import World, make_user

KS = LocalKeyStore(TEST_SECRET)


def items(*specs: dict[str, Any]) -> list[svc.ItemInput]:
    out = []
    for s in specs:
        s = dict(s)
        out.append(svc.ItemInput(dose=Decimal(s.pop("dose")), quantity=Decimal(s.pop("quantity")), **s))
    return out


async def create(db: Db, world: World, *specs: dict[str, Any], enc: Any = None, overrides: dict[str, str] | None = None,
                 policy: Any = None) -> MedicationRequest:
    enc = enc or await open_encounter(db, world)
    p = await principal(db, world.a.users["clinician"])
    async with db.uow() as uow:
        rx = await svc.create_prescription(uow, p, policy or real_policy(), encounter_id=enc,
                                           items=items(*(specs or (item(),))), overrides=overrides)
        await uow.commit()
    return rx


async def sign(db: Db, world: World, rx_id: Any, *, mfa: bool = True) -> MedicationRequest:
    p = await principal(db, world.a.users["clinician"], mfa=mfa)
    async with db.uow() as uow:
        rx = await svc.sign(uow, p, rx_id, KS, step_up_minutes=5)
        await uow.commit()
    return rx


async def test_formulary_loader_is_idempotent_and_imports_csv(db: Db, world: World, tmp_path: Any) -> None:
    async with db.uow() as uow:
        again = await load_starter(uow)
        await uow.commit()
    assert again == {"inserted": 0, "updated": 0, "unchanged": 303}
    csv = tmp_path / "f.csv"
    csv.write_text("code,name,inn,atc,dose_form,strength,strength_value,strength_unit,route,unit,KR.narcotic\n"
                   "testdrug-1mg-tab,Testdrug 1 mg tablet,testdrug,N02AA99,tablet,1 mg,1,mg,oral,tablet,yes\n")
    async with db.uow() as uow:
        counts = await import_formulary(uow, csv)
        await uow.commit()
    assert counts["inserted"] == 1
    async with db.uow() as uow:
        m = (await uow.session.execute(select(Medication).where(Medication.code == "testdrug-1mg-tab"))).scalar_one()
        assert m.categories_for("KR") == ("narcotic",) and m.categories_for("US") == ()
        assert (await uow.session.execute(select(func.count(Medication.id)))).scalar_one() == 304


async def test_quantity_is_computed_and_checked(db: Db, world: World) -> None:
    rx = await create(db, world, item(dose="2", freq="BID", days=7))
    assert rx.items[0].quantity == "28" and rx.status is RxStatus.DRAFT
    with pytest.raises(Invalid) as exc:
        await create(db, world, item(dose="2", freq="BID", days=7, quantity="20"))
    assert "items.0.quantity" in exc.value.fields and "28" in exc.value.fields["items.0.quantity"]
    with pytest.raises(Invalid) as exc:
        await create(db, world, item(code="no-such-drug"))
    assert "items.0.medication_code" in exc.value.fields


async def test_allergy_warning_needs_reason_and_severe_is_hard_stop(db: Db, world: World) -> None:
    assert world.a.patient is not None
    async with db.uow() as uow:
        uow.add(Allergy(patient_id=world.a.patient.id, substance="penicillins", atc_code="J01C", severity="moderate"))
        await uow.commit()
    with pytest.raises(Invalid) as exc:
        await create(db, world, item())
    assert exc.value.code == "safety_warning"
    assert "overrides.allergy:amoxicillin-500mg-cap" in exc.value.fields
    rx = await create(db, world, item(), overrides={"allergy:amoxicillin-500mg-cap": "rash only, tolerated before"})
    assert rx.warnings[0]["override_reason"] == "rash only, tolerated before"
    async with db.uow() as uow:
        ev = (await uow.session.execute(select(AuditEvent).where(
            AuditEvent.action == "prescription.warning_override"))).scalar_one()
        assert ev.object_id == str(rx.id) and ev.detail["reason"] == "rash only, tolerated before"
    # by name (INN), severe: a hard stop no override can pass
    async with db.uow() as uow:
        uow.add(Allergy(patient_id=world.a.patient.id, substance="Ibuprofen", severity="severe"))
        await uow.commit()
    with pytest.raises(Invalid) as exc:
        await create(db, world, item(code="ibuprofen-400mg-tab"), overrides={"allergy:ibuprofen-400mg-tab": "x"})
    assert exc.value.code == "hard_stop" and "items.0.medication_code" in exc.value.fields


async def test_duplicate_therapy_warning(db: Db, world: World) -> None:
    with pytest.raises(Invalid) as exc:
        await create(db, world, item(code="amlodipine-5mg-tab", freq="QD", days=30),
                     item(code="nifedipine-30mg-er-tab", freq="QD", days=30))
    assert "overrides.duplicate_therapy:nifedipine-30mg-er-tab" in exc.value.fields
    # against another active prescription of the patient
    first = await create(db, world, item(code="amlodipine-5mg-tab", freq="QD", days=30))
    await sign(db, world, first.id)
    with pytest.raises(Invalid) as exc:
        await create(db, world, item(code="amlodipine-10mg-tab", freq="QD", days=30))
    assert "overrides.duplicate_therapy:amlodipine-10mg-tab" in exc.value.fields
    rx = await create(db, world, item(code="amlodipine-10mg-tab", freq="QD", days=30),
                      overrides={"duplicate_therapy:amlodipine-10mg-tab": "dose change, old one stopped"})
    assert rx.warnings[0]["kind"] == "duplicate_therapy"


async def test_max_days_supply_is_a_hard_stop(db: Db, world: World) -> None:
    with pytest.raises(Invalid) as exc:
        await create(db, world, item(code="zolpidem-10mg-tab", freq="QHS", days=30))
    assert exc.value.code == "hard_stop" and "items.0.duration_days" in exc.value.fields


async def test_policy_denies_narcotic_for_kr_patient(db: Db, world: World) -> None:
    with pytest.raises(PolicyDenied) as exc:
        await create(db, world, item(code="oxycodone-5mg-tab", freq="Q12H", days=3))
    reasons = exc.value.extra["decision"]["reasons"]
    assert any("restricted-drugs" in json.dumps(r) for r in reasons), reasons
    async with db.uow() as uow:
        assert (await uow.session.execute(select(func.count(MedicationRequest.id)))).scalar_one() == 0
    ok = await create(db, world, item())
    assert ok.policy_decisions[0]["point"] == "prescribe" and ok.policy_decisions[0]["allowed"] is True


async def test_only_the_claiming_clinician_in_an_open_encounter(db: Db, world: World) -> None:
    enc = await open_encounter(db, world)
    other = await principal(db, world.a.users["clinician2"])
    async with db.uow() as uow:
        with pytest.raises(Forbidden):
            await svc.create_prescription(uow, other, real_policy(), encounter_id=enc, items=items(item()))
    stranger = await principal(db, world.b.users["clinician"])
    async with db.uow() as uow:
        with pytest.raises(NotFound):
            await svc.create_prescription(uow, stranger, real_policy(), encounter_id=enc, items=items(item()))
    old = await open_encounter(db, world, status=EncounterStatus.COMPLETED, ended_ago=timedelta(hours=30))
    with pytest.raises(Conflict):
        await create(db, world, item(), enc=old)
    recent = await open_encounter(db, world, status=EncounterStatus.COMPLETED, ended_ago=timedelta(hours=2))
    assert (await create(db, world, item(), enc=recent)).status is RxStatus.DRAFT


async def test_sign_verify_tamper_and_immutable(db: Db, world: World) -> None:
    rx = await create(db, world, item(), item(code="paracetamol-500mg-tab", dose="1", freq="PRN", days=3,
                                             prn_max_per_day=4))
    signed = await sign(db, world, rx.id)
    assert signed.status is RxStatus.SIGNED and signed.signature and signed.key_fingerprint
    doc = json.loads(signed.signed_content or "")
    assert doc["rx_number"] == rx.rx_number and [i["quantity"] for i in doc["items"]] == ["15", "12"]
    assert signed.expires_at is not None and signed.signed_at is not None
    assert timedelta(days=2) < signed.expires_at - signed.signed_at <= timedelta(days=3)
    async with db.uow() as uow:
        fresh = await uow.session.get(MedicationRequest, rx.id)
        assert fresh is not None
        assert (await svc.verify(uow, fresh)).ok
        # one changed byte of the signed document
        content = fresh.signed_content or ""
        fresh.signed_content = content.replace('"quantity":"15"', '"quantity":"16"')
        r = await svc.verify(uow, fresh)
        assert not r.ok and "does not match" in r.reason
    # a row changed behind the application's back
    async with db.uow() as uow:
        await uow.session.execute(update(MedicationRequestItem).where(MedicationRequestItem.request_id == rx.id,
                                                                      MedicationRequestItem.position == 0)
                                  .values(quantity="150"))
        await uow.commit()
    async with db.uow() as uow:
        fresh = await uow.session.get(MedicationRequest, rx.id)
        assert fresh is not None
        r = await svc.verify(uow, fresh)
        assert not r.ok and "differs" in r.reason
    # immutable once signed
    p = await principal(db, world.a.users["clinician"])
    async with db.uow() as uow:
        with pytest.raises(Conflict) as exc:
            await svc.update_draft(uow, p, real_policy(), rx.id, items=items(item(days=3)))
        assert exc.value.code == "immutable"
    with pytest.raises(Conflict):
        await sign(db, world, rx.id)


async def test_step_up_waived_by_org_but_always_required_for_controlled(db: Db, world: World) -> None:
    rx = await create(db, world, item())
    async with db.uow() as uow:
        await uow.session.execute(update(Organization).where(Organization.id == world.a.clinic.id)
                                  .values(require_2fa=True))
        await uow.commit()
    with pytest.raises(Forbidden) as exc:
        await sign(db, world, rx.id, mfa=False)
    assert exc.value.code == "step_up_required"
    async with db.uow() as uow:
        await uow.session.execute(update(Organization).where(Organization.id == world.a.clinic.id)
                                  .values(require_2fa=False))
        await uow.commit()
    await sign(db, world, rx.id, mfa=False)
    async with db.uow() as uow:
        stmt = select(AuditEvent).where(AuditEvent.action == "prescription.sign")
        ev = (await uow.session.execute(stmt)).scalar_one()
        assert ev.detail["step_up"] == "waived_by_org_policy"
    controlled = await create(db, world, item(code="oxycodone-5mg-tab", freq="Q12H", days=3), policy=AllowPolicy())
    with pytest.raises(Forbidden) as exc:
        await sign(db, world, controlled.id, mfa=False)
    assert exc.value.code == "step_up_required"
    assert (await sign(db, world, controlled.id, mfa=True)).status is RxStatus.SIGNED


async def _pharmacies(db: Db, n: int) -> list[tuple[Any, Any]]:
    out = []
    async with db.uow() as uow:
        for i in range(n):
            org = Organization(name=f"Race pharmacy {i}", kind=OrgKind.PHARMACY, require_2fa=False)
            uow.add(org)
            await uow.session.flush()
            u = await make_user(uow, f"race{i}@t.example", Role.PHARMACIST, org)
            out.append((org, u))
        await uow.commit()
    return out


async def test_open_claim_race_exactly_one_wins(db: Db, world: World) -> None:
    rx = await create(db, world, item())
    await sign(db, world, rx.id)
    pat = await principal(db, world.a.users["patient"])
    async with db.uow() as uow:
        await svc.send(uow, pat, rx.id, open_routing=True)
        token = await svc.issue_token(uow, pat, rx.id)
        await uow.commit()
    contenders = await _pharmacies(db, 20)
    principals = [await principal(db, u) for _, u in contenders]

    async def attempt(i: int) -> str:
        org, _ = contenders[i]
        try:
            async with db.uow() as uow:
                await svc.claim(uow, principals[i], rx_number=token.rx_number, access_code=token.access_code,
                                pharmacy_id=org.id)
                await uow.commit()
            return "won"
        except Conflict:
            return "lost"

    results = await asyncio.gather(*(attempt(i) for i in range(20)))
    assert results.count("won") == 1 and results.count("lost") == 19
    winner = contenders[results.index("won")][0]
    async with db.uow() as uow:
        fresh = await uow.session.get(MedicationRequest, rx.id)
        assert fresh is not None and fresh.pharmacy_id == winner.id and fresh.status is RxStatus.ACCEPTED
        claims = (await uow.session.execute(select(func.count(AuditEvent.seq))
                                            .where(AuditEvent.action == "prescription.claim"))).scalar_one()
        assert claims == 1


async def test_claim_with_wrong_code_or_number(db: Db, world: World) -> None:
    rx = await create(db, world, item())
    await sign(db, world, rx.id)
    pat = await principal(db, world.a.users["patient"])
    async with db.uow() as uow:
        await svc.send(uow, pat, rx.id, open_routing=True)
        token = await svc.issue_token(uow, pat, rx.id)
        await uow.commit()
    ph = await principal(db, world.b.users["pharmacist"])
    for number, code, err in ((token.rx_number, "00" * 32, NotFound), ("160.000.000.000.000.00", token.access_code,
                                                                       Invalid)):
        async with db.uow() as uow:
            with pytest.raises(err):
                await svc.claim(uow, ph, rx_number=number, access_code=code, pharmacy_id=world.b.pharmacy.id)
    # a pharmacist cannot claim in the name of another pharmacy
    async with db.uow() as uow:
        with pytest.raises(Forbidden):
            await svc.claim(uow, ph, rx_number=token.rx_number, access_code=token.access_code,
                            pharmacy_id=world.a.pharmacy.id)
    async with db.uow() as uow:
        m = (await uow.session.execute(select(Membership).where(Membership.organization_id == world.b.pharmacy.id)))
        assert m.scalars().first() is not None
