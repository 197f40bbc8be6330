"""The one door from clinic, video and prescription code to the jurisdiction policy engine.

It turns database facts into a :class:`PolicyContext`, asks the pure engine, refuses with the engine's
reasons when the law does not allow the action, and returns the decision record to be stored with the
encounter or prescription.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, select

from clinic.db.base import utcnow
from clinic.db.clinical import InPersonVisit, License, Patient, Practitioner
from clinic.db.encounters import Encounter
from clinic.db.models import Organization, OrgKind
from clinic.db.uow import UnitOfWork
from clinic.encounters.state import EncounterStatus
from clinic.errors import PolicyDenied
from clinic.policy import (
    Decision,
    DrugFacts,
    PatientFacts,
    PolicyContext,
    PolicyEngine,
    PriorVisit,
    ProviderFacts,
)
from clinic.services.patients import active_groups, is_chronic

TELE_MODES = ("video", "audio", "chat", "photo")


def _local_date(at: datetime, tz: str) -> date:
    return at.astimezone(ZoneInfo(tz)).date()


async def _prior_visit(uow: UnitOfWork, patient: Patient, organization_id: uuid.UUID, on: date,
                       condition_code: str | None) -> PriorVisit | None:
    rows = (await uow.session.execute(
        select(InPersonVisit).where(InPersonVisit.patient_id == patient.id, InPersonVisit.visit_date <= on)
        .order_by(InPersonVisit.visit_date.desc())
    )).scalars().all()
    if not rows:
        return None
    # Prefer the visit that helps the most: same institution and same condition, then the most recent.
    def score(v: InPersonVisit) -> tuple[bool, bool, date]:
        same_cond = bool(condition_code) and v.condition_code[:3] == (condition_code or "")[:3]
        return (v.organization_id == organization_id, same_cond, v.visit_date)

    best = max(rows, key=score)
    return PriorVisit(
        days_ago=(on - best.visit_date).days,
        same_condition=bool(condition_code) and best.condition_code[:3] == (condition_code or "")[:3],
        same_institution=best.organization_id == organization_id,
    )


async def telemedicine_share(uow: UnitOfWork, organization_id: uuid.UUID, at: datetime) -> float:
    """This month's share of the institution's visits that were remote (before the one being decided)."""
    month_start = at.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    tele = (await uow.session.execute(
        select(func.count(Encounter.id)).where(
            Encounter.organization_id == organization_id,
            Encounter.started_at >= month_start,
            Encounter.status.in_([EncounterStatus.IN_CONSULT, EncounterStatus.COMPLETED]),
        )
    )).scalar_one()
    inperson = (await uow.session.execute(
        select(func.count(InPersonVisit.id)).where(
            InPersonVisit.organization_id == organization_id, InPersonVisit.visit_date >= month_start.date()
        )
    )).scalar_one()
    total = tele + inperson
    return round(tele / total, 4) if total else 0.0


async def _licenses(uow: UnitOfWork, user_id: uuid.UUID | None, on: date) -> tuple[str, ...]:
    if user_id is None:
        return ()
    rows = (await uow.session.execute(
        select(License).join(Practitioner, Practitioner.id == License.practitioner_id)
        .where(Practitioner.user_id == user_id)
    )).scalars().all()
    return tuple(sorted({lic.jurisdiction for lic in rows if lic.expires_on is None or lic.expires_on >= on}))


@dataclass(frozen=True)
class Subject:
    """Who and where: the inputs every decision point shares."""

    patient: Patient
    organization: Organization
    practitioner_user_id: uuid.UUID | None
    at: datetime
    condition_code: str | None = None


class PolicyService:
    def __init__(self, engine: PolicyEngine) -> None:
        self.engine = engine

    async def context(self, uow: UnitOfWork, subject: Subject, action: str, *, mode: str | None = None,
                      participants: str = "doctor-patient", drug: DrugFacts | None = None) -> PolicyContext:
        p, org = subject.patient, subject.organization
        # Local date in the patient's jurisdiction is approximated with the organization's time zone;
        # the engine itself evaluates time-of-day rules in the jurisdiction's own zone.
        on = _local_date(subject.at, org.timezone)
        patient = PatientFacts(
            age=p.age_on(on),
            groups=tuple(active_groups(p, on)),
            chronic=is_chronic(p, on),
            prior_in_person=await _prior_visit(uow, p, org.id, on, subject.condition_code),
        )
        provider = ProviderFacts(
            institution_level="hospital" if org.kind is OrgKind.HOSPITAL else "clinic",
            licensed_in=await _licenses(uow, subject.practitioner_user_id, on),
            telemedicine_share=await telemedicine_share(uow, org.id, subject.at),
        )
        return PolicyContext(jurisdiction=p.jurisdiction, at=subject.at, action=action, patient=patient,
                             mode=mode if action == "consult" else None, participants=participants,
                             provider=provider, drug=drug)

    def decide(self, ctx: PolicyContext) -> Decision:
        return self.engine.decide(ctx)

    async def require(self, uow: UnitOfWork, subject: Subject, action: str, *, point: str,
                      mode: str | None = None, participants: str = "doctor-patient",
                      drug: DrugFacts | None = None) -> dict[str, Any]:
        """Decide and enforce: raise PolicyDenied with the reasons, or return the record to store."""
        ctx = await self.context(uow, subject, action, mode=mode, participants=participants, drug=drug)
        decision = self.decide(ctx)
        record = {"point": point, "at": utcnow().isoformat(), **decision.to_record()}
        if not decision.allowed:
            raise PolicyDenied(
                "; ".join(r.message_en for r in decision.reasons) or "not allowed by the law in force",
                decision=decision.to_json(), record=record,
            )
        return record


class AllowAllPolicy(PolicyService):
    """Explicit opt-in for development setups without a jurisdiction (never the default)."""

    def __init__(self) -> None:
        super().__init__(PolicyEngine.from_directory(fallback_default=True))
