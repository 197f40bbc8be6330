"""The booking hook backed by the jurisdiction policy engine (``clinic.services.booking.BookingPolicy``)."""

from __future__ import annotations

import uuid
from datetime import datetime
from zoneinfo import ZoneInfo

from clinic.db.clinical import Patient
from clinic.db.models import Organization
from clinic.db.scheduling import VisitMode, VisitType
from clinic.db.uow import UnitOfWork
from clinic.errors import NotFound, PolicyDenied
from clinic.security.authz import Principal
from clinic.services.policy import PolicyService, Subject, in_person_history, presumed_condition

#: Audit actor for decisions the engine makes on someone's behalf: the booking hook is not told who asked
#: (the request's own "appointment.create" entry, committed in the same transaction, names them).
POLICY_ACTOR = Principal(kind="system", label="policy-engine")
AUDIT_ACTION = "policy.decision"


class EngineBookingPolicy:
    """Asks ``consult`` at booking, rescheduling and on-demand requests, with the visit's start as ``at``.

    An appointment has no column for the decision record (it is stored on the encounter from admission
    on), so the booking decision goes on the audit chain as a ``policy.decision`` entry in the same
    transaction as the appointment. Refusals are audited too, in their own transaction (the booking's
    transaction is rolled back), through the error middleware.
    """

    def __init__(self, service: PolicyService) -> None:
        self.service = service

    async def check_booking(
        self, uow: UnitOfWork, patient: Patient, practitioner_user_id: uuid.UUID | None, visit_type: VisitType,
        start: datetime, mode: VisitMode,
    ) -> None:
        org = await uow.session.get(Organization, visit_type.organization_id)
        if org is None:
            raise NotFound("organization not found")
        on = start.astimezone(ZoneInfo(org.timezone)).date()
        history = await in_person_history(uow, patient.id, on)
        condition = presumed_condition(history, org.id)
        subject = Subject(patient=patient, organization=org, practitioner_user_id=practitioner_user_id, at=start,
                          condition_code=condition, any_clinician=practitioner_user_id is None, in_person=history)
        detail = {"point": "booking", "start": start.isoformat(), "mode": mode.value,
                  "visit_type": str(visit_type.id),
                  "practitioner": str(practitioner_user_id) if practitioner_user_id else None,
                  "presumed_condition": condition}
        try:
            record = await self.service.require(uow, subject, "consult", point="booking", mode=mode.value)
        except PolicyDenied as exc:
            exc.extra["audit"] = {"action": AUDIT_ACTION, "object_type": "Patient", "object_id": patient.id,
                                  "outcome": "denied", "detail": {**detail, "policy": exc.extra.get("record")}}
            raise
        uow.audit.record(POLICY_ACTOR, AUDIT_ACTION, object_type="Appointment", organization_id=org.id,
                         patient_id=patient.id, detail={**detail, "policy": record})
