from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from clinic.db.clinical import ConsentKind
from clinic.db.encounters import Encounter
from clinic.db.scheduling import Appointment, AppointmentKind, AppointmentStatus, VisitMode, VisitType
from clinic.encounters.state import EncounterStatus
from clinic.security.authz import SYSTEM
from clinic.services import patients
from tests.conftest import Db
from tests.world import World


async def make_visit(db: Db, world: World, *, tenant: str = "a", patient: str = "patient",
                     personal: bool = True, minutes_from_now: int = 10, consent: bool = True) -> uuid.UUID:
    """A booked video visit starting soon (check-in is open), without going through slot search.

    ``consent``: the patient has consented to telemedicine (check-in requires it), as the visit page asks first.
    """
    t = getattr(world, tenant)
    p = t.patient if patient == "patient" else t.other_patient
    async with db.uow() as uow:
        if consent:
            await patients.grant_consent(uow, SYSTEM, p.id, ConsentKind.TELEMEDICINE)
        vt = VisitType(organization_id=t.clinic.id, code=f"v{uuid.uuid4().hex[:6]}", name="Video visit",
                       duration_minutes=15, modes=["video", "audio"], fee_amount=15000, currency="KRW")
        uow.add(vt)
        await uow.session.flush()
        start = datetime.now(UTC) + timedelta(minutes=minutes_from_now)
        doc = t.users["clinician"].id if personal else None
        a = Appointment(organization_id=t.clinic.id, practitioner_user_id=doc, patient_id=p.id, visit_type_id=vt.id,
                        start=start, end=start + timedelta(minutes=15),
                        status=AppointmentStatus.BOOKED if personal else AppointmentStatus.PROPOSED,
                        kind=AppointmentKind.SCHEDULED if personal else AppointmentKind.ON_DEMAND,
                        mode=VisitMode.VIDEO)
        uow.add(a)
        await uow.session.flush()
        e = Encounter(organization_id=t.clinic.id, patient_id=p.id, appointment_id=a.id,
                      assigned_practitioner_id=doc, status=EncounterStatus.BOOKED,
                      kind=a.kind.value, mode="video", scheduled_start=start if personal else None)
        uow.add(e)
        await uow.session.flush()
        await uow.commit()
        return e.id


def checkin_body(world: World, tenant: str = "a", *, symptoms: list[str] | None = None) -> dict[str, object]:
    p = getattr(world, tenant).patient
    return {"family_name": p.family_name, "given_name": p.given_name, "birth_date": p.birth_date.isoformat(),
            "chief_complaint": "기침이 2주째 계속돼요 (cough for two weeks)", "symptoms": symptoms or ["cough"]}
