"""``telemed demo-visit``: a demo encounter ready to be joined, with sign-in links for both sides.

The visit is in the demo clinic (``telemed seed-demo``): a demo patient already checked in and claimed by
a demo doctor, so the doctor only has to admit. Each link is a single-use magic link that signs its user
in and lands on the page where the visit happens.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import func, select

from clinic.config import Settings
from clinic.db.base import utcnow
from clinic.db.clinical import ConsentKind, InPersonVisit, Patient
from clinic.db.encounters import Encounter, EncounterTransition
from clinic.db.models import MagicLinkPurpose, Organization, User
from clinic.db.uow import UnitOfWork
from clinic.demo import DEMO_CLINIC
from clinic.encounters.state import EncounterStatus
from clinic.errors import NotFound
from clinic.security.authz import SYSTEM
from clinic.services.accounts import issue_magic_link
from clinic.services.patients import grant_consent

DEMO_DOCTOR = "dr.kim@demo.example"
DEMO_PATIENT = "patient1@demo.example"
#: Keep the demo clinic under the KR 30 % institutional telemedicine cap (docs/policy.md).
TELE_CAP = 0.3


@dataclass(frozen=True)
class DemoVisit:
    encounter_id: str
    patient_url: str
    doctor_url: str


async def _keep_under_cap(uow: UnitOfWork, org: Organization, patient: Patient) -> None:
    """Record enough demo face-to-face visits that one more remote visit stays under the cap.

    The cap counts this month's remote visits against all visits; a demo clinic that only ever does
    video visits would otherwise refuse admission after the first few demos.
    """
    now = utcnow()
    month_start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    remote = (await uow.session.execute(select(func.count(Encounter.id)).where(
        Encounter.organization_id == org.id, Encounter.created_at >= month_start,
        Encounter.status.in_([EncounterStatus.CHECKED_IN, EncounterStatus.IN_CONSULT, EncounterStatus.COMPLETED]),
    ))).scalar_one()
    in_person = (await uow.session.execute(select(func.count(InPersonVisit.id)).where(
        InPersonVisit.organization_id == org.id, InPersonVisit.visit_date >= month_start.date()))).scalar_one()
    # Every remote visit of the month (this one included) must stay below TELE_CAP of all visits.
    needed = math.floor((remote + 1) * (1 - TELE_CAP) / TELE_CAP) + 1
    for _ in range(max(0, needed - in_person)):
        uow.add(InPersonVisit(patient_id=patient.id, organization_id=org.id, visit_date=now.date(),
                              condition_code="I10"))


async def create_demo_visit(uow: UnitOfWork, settings: Settings, base_url: str) -> DemoVisit:
    org = (await uow.session.execute(select(Organization).where(Organization.name == DEMO_CLINIC))).scalar()
    if org is None:
        raise NotFound("the demo clinic does not exist; run `telemed seed-demo` first")
    doctor = (await uow.session.execute(select(User).where(User.email == DEMO_DOCTOR))).scalar_one()
    patient_user = (await uow.session.execute(select(User).where(User.email == DEMO_PATIENT))).scalar_one()
    patient = (await uow.session.execute(select(Patient).where(Patient.user_id == patient_user.id))).scalar_one()
    await _keep_under_cap(uow, org, patient)
    now = utcnow()
    e = Encounter(organization_id=org.id, patient_id=patient.id, assigned_practitioner_id=doctor.id,
                  claimed_by_id=doctor.id, claimed_at=now, status=EncounterStatus.CHECKED_IN, kind="on_demand",
                  mode="video", checked_in_at=now, chief_complaint="Follow-up of blood pressure (혈압 추적 관찰)",
                  symptoms=["headache"])
    e.transitions.append(EncounterTransition(from_status=EncounterStatus.BOOKED.value,
                                             to_status=EncounterStatus.CHECKED_IN.value, at=now,
                                             actor_id="demo", reason="demo visit"))
    uow.add(e)
    await uow.session.flush()
    # A checked-in patient has consented to telemedicine (check-in requires it); the demo skips check-in.
    await grant_consent(uow, SYSTEM, patient.id, ConsentKind.TELEMEDICINE, encounter_id=e.id)
    uow.audit.record(SYSTEM, "demo.visit", object_type="Encounter", object_id=e.id, organization_id=org.id,
                     patient_id=patient.id)
    links = {}
    for key, user, path in (("patient", patient_user, f"/visit/{e.id}"),
                            ("doctor", doctor, f"/console/visit/{e.id}")):
        token, _ = await issue_magic_link(uow, settings, user=user, purpose=MagicLinkPurpose.LOGIN, next_path=path,
                                          created_by=SYSTEM, organization_id=org.id, encounter_id=e.id,
                                          ttl=timedelta(hours=2))
        links[key] = f"{base_url.rstrip('/')}/m/{token}"
    return DemoVisit(encounter_id=str(e.id), patient_url=links["patient"], doctor_url=links["doctor"])
