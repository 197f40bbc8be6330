"""The one door from clinic, video and prescription code to the jurisdiction policy engine.

It turns database facts into a :class:`PolicyContext`, asks the pure engine, refuses with the engine's
reasons when the law does not allow the action, and returns the decision record to be stored with the
encounter or prescription.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, datetime
from functools import cache
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import bindparam, func, select

from clinic.db.base import utcnow
from clinic.db.clinical import InPersonVisit, License, Patient, Practitioner
from clinic.db.encounters import Encounter
from clinic.db.models import Membership, Organization, OrgKind, Role
from clinic.db.uow import UnitOfWork
from clinic.encounters.state import EncounterStatus
from clinic.errors import Forbidden, Invalid, NotFound, PolicyDenied, Unauthenticated
from clinic.policy import (
    Decision,
    DrugFacts,
    PatientFacts,
    PolicyContext,
    PolicyEngine,
    PolicyInputError,
    PriorVisit,
    ProviderFacts,
)
from clinic.security.authz import Principal, Resource, orgs_for, platform_wide
from clinic.services.patients import active_groups, is_chronic
from clinic.web.i18n import get_locale

TELE_MODES = ("video", "audio", "chat", "photo")


def _local_date(at: datetime, tz: str) -> date:
    return at.astimezone(ZoneInfo(tz)).date()


@dataclass(frozen=True)
class InPersonFact:
    """One face-to-face visit, as the revisit rules need it."""

    organization_id: uuid.UUID
    visit_date: date
    condition_code: str


@cache
def _statements() -> dict[str, Any]:
    """Built once and bound per decision: on the booking path, building and keying a statement cost more CPU
    than running it."""
    tele = [Encounter.organization_id == bindparam("org"), Encounter.started_at >= bindparam("since"),
            Encounter.status.in_([EncounterStatus.IN_CONSULT, EncounterStatus.COMPLETED])]
    inperson = select(func.count(InPersonVisit.id)).where(
        InPersonVisit.organization_id == bindparam("org"), InPersonVisit.visit_date >= bindparam("since_day"))
    return {
        "history": select(InPersonVisit.organization_id, InPersonVisit.visit_date, InPersonVisit.condition_code)
        .where(InPersonVisit.patient_id == bindparam("patient"), InPersonVisit.visit_date <= bindparam("on"))
        .order_by(InPersonVisit.visit_date.desc()),
        "licenses": select(License.jurisdiction, License.expires_on)
        .join(Practitioner, Practitioner.id == License.practitioner_id)
        .where(Practitioner.user_id == bindparam("user")),
        "share": select(select(func.count(Encounter.id)).where(*tele).scalar_subquery(),
                        inperson.scalar_subquery()),
        "share_excluding": select(
            select(func.count(Encounter.id)).where(*tele, Encounter.id != bindparam("exclude")).scalar_subquery(),
            inperson.scalar_subquery()),
    }


async def in_person_history(uow: UnitOfWork, patient_id: uuid.UUID, on: date) -> tuple[InPersonFact, ...]:
    """The patient's face-to-face visits up to ``on``, newest first (every institution)."""
    rows = await uow.read(_statements()["history"], {"patient": patient_id, "on": on})
    return tuple(InPersonFact(org, day, code) for org, day, code in rows)


def _prior_visit(history: tuple[InPersonFact, ...], organization_id: uuid.UUID, on: date,
                 condition_code: str | None) -> PriorVisit | None:
    if not history:
        return None
    # Prefer the visit that helps the most: same institution and same condition, then the most recent.
    def score(v: InPersonFact) -> tuple[bool, bool, date]:
        same_cond = bool(condition_code) and v.condition_code[:3] == (condition_code or "")[:3]
        return (v.organization_id == organization_id, same_cond, v.visit_date)

    best = max(history, key=score)
    return PriorVisit(
        days_ago=(on - best.visit_date).days,
        same_condition=bool(condition_code) and best.condition_code[:3] == (condition_code or "")[:3],
        same_institution=best.organization_id == organization_id,
    )


async def telemedicine_share(uow: UnitOfWork, organization_id: uuid.UUID, at: datetime,
                             exclude_encounter_id: uuid.UUID | None = None, *,
                             declared_in_person: int | None = None) -> float:
    """This month's share of the institution's visits that were remote (before the one being decided).

    ``exclude_encounter_id`` keeps a visit that is already in consultation (a mode change mid-call) from
    counting against itself. ``declared_in_person`` is the organization's declared monthly in-person volume
    (read from the organization when not given).
    """
    month_start = at.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    params: dict[str, Any] = {"org": organization_id, "since": month_start, "since_day": month_start.date()}
    if exclude_encounter_id is not None:
        params["exclude"] = exclude_encounter_id
    statement = _statements()["share" if exclude_encounter_id is None else "share_excluding"]
    tele, inperson = (await uow.read(statement, params)).one()
    if declared_in_person is None:
        org = await uow.session.get(Organization, organization_id)
        declared_in_person = org.monthly_in_person_visits if org is not None else 0
    total = tele + max(inperson, declared_in_person)
    return round(tele / total, 4) if total else 0.0


async def _licenses(uow: UnitOfWork, user_id: uuid.UUID | None, on: date) -> tuple[str, ...]:
    if user_id is None:
        return ()
    rows = await uow.read(_statements()["licenses"], {"user": user_id})
    return tuple(sorted({code for code, expires in rows if expires is None or expires >= on}))


async def _org_licenses(uow: UnitOfWork, organization_id: uuid.UUID, on: date) -> tuple[str, ...]:
    """Licences held by any clinician of the organization: who serves an on-demand request is not known yet."""
    rows = (await uow.session.execute(
        select(License).join(Practitioner, Practitioner.id == License.practitioner_id)
        .join(Membership, Membership.user_id == Practitioner.user_id)
        .where(Membership.organization_id == organization_id, Membership.role == Role.CLINICIAN)
    )).scalars().all()
    return tuple(sorted({lic.jurisdiction for lic in rows if lic.expires_on is None or lic.expires_on >= on}))


def presumed_condition(history: tuple[InPersonFact, ...], organization_id: uuid.UUID) -> str | None:
    """The condition of the patient's latest face-to-face visit at this institution, if any (``history`` as
    from :func:`in_person_history`, newest first).

    At booking the condition of the coming visit is not known. Revisit rules (KR from 2027) ask for the
    same condition, so the booking check presumes a follow-up of the last in-person visit here; the
    admission check, made with the condition the clinician confirms, is the binding one.
    """
    for v in history:
        if v.organization_id == organization_id and v.condition_code:
            return v.condition_code
    return None


@dataclass(frozen=True)
class Subject:
    """Who and where: the inputs every decision point shares."""

    patient: Patient
    organization: Organization
    practitioner_user_id: uuid.UUID | None
    at: datetime
    condition_code: str | None = None
    #: The visit being decided, when one exists (admission, mode change): it must not count towards the
    #: institution's telemedicine share it is being measured against.
    encounter_id: uuid.UUID | None = None
    #: No practitioner is chosen yet (on-demand requests): use the licences of the organization's clinicians.
    any_clinician: bool = False
    #: The patient's in-person history up to the decision's date, when the caller already loaded it.
    in_person: tuple[InPersonFact, ...] | None = None


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
            prior_in_person=_prior_visit(
                subject.in_person if subject.in_person is not None else await in_person_history(uow, p.id, on),
                org.id, on, subject.condition_code),
        )
        provider = ProviderFacts(
            institution_level="hospital" if org.kind is OrgKind.HOSPITAL else "clinic",
            licensed_in=(await _org_licenses(uow, org.id, on) if subject.any_clinician and
                         subject.practitioner_user_id is None
                         else await _licenses(uow, subject.practitioner_user_id, on)),
            telemedicine_share=await telemedicine_share(uow, org.id, subject.at, subject.encounter_id,
                                                        declared_in_person=org.monthly_in_person_visits),
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
            # Pages show the envelope's message as-is, so it follows the request's language; the decision
            # beside it keeps both languages and the rule ids.
            korean = get_locale() == "ko"
            message = "; ".join(r.message_ko if korean else r.message_en for r in decision.reasons)
            raise PolicyDenied(
                message or ("시행 중인 법이 허용하지 않습니다." if korean else "not allowed by the law in force"),
                decision=decision.to_json(), record=record,
            )
        return record

    async def subject_for_encounter(
        self, uow: UnitOfWork, encounter: Encounter, *, practitioner_user_id: uuid.UUID | None = None,
        condition_code: str | None = None, at: datetime | None = None,
    ) -> Subject:
        """Who and where for a decision about this visit (consult, recording); the visit itself is left out of
        the institution's telemedicine share."""
        patient = await uow.session.get(Patient, encounter.patient_id)
        org = await uow.session.get(Organization, encounter.organization_id)
        if patient is None or org is None:
            raise NotFound("encounter's patient or organization not found")
        return Subject(patient=patient, organization=org,
                       practitioner_user_id=practitioner_user_id or encounter.claimed_by_id,
                       at=at or utcnow(), condition_code=condition_code, encounter_id=encounter.id)

    async def require_consult(
        self, uow: UnitOfWork, encounter: Encounter, *, mode: str, point: str,
        practitioner_user_id: uuid.UUID | None = None, condition_code: str | None = None,
        participants: str = "doctor-patient", at: datetime | None = None,
    ) -> dict[str, Any]:
        """The consult check for a visit (``point`` = "admission" or "mode_change"): decide, enforce, and
        append the record to ``encounter.policy_decisions``.

        Raises PolicyDenied (nothing is stored; the caller's transaction rolls back). ``practitioner_user_id``
        defaults to the clinician who claimed the visit; ``at`` to now.
        """
        subject = await self.subject_for_encounter(uow, encounter, practitioner_user_id=practitioner_user_id,
                                                   condition_code=condition_code, at=at)
        record = await self.require(uow, subject, "consult", point=point, mode=mode, participants=participants)
        # A new list, not an in-place append: the JSON column only notices assignment.
        encounter.policy_decisions = [*encounter.policy_decisions, record]
        return record


# --- admin: listing and simulation ----------------------------------------------------------------------


def authorize_read(principal: Principal) -> None:
    """Rule sets are public law, but the admin views are for staff: org admins and clinicians of any
    organization, and platform admins (``policy.read`` in ``clinic.security.authz``)."""
    if not principal.authenticated:
        raise Unauthenticated("sign in required")
    if orgs_for(principal, "policy.read") or platform_wide(principal, "policy.read"):
        return
    raise Forbidden("not allowed: policy.read", action="policy.read", resource=Resource("PolicyRuleSet"))


def describe_rule_sets(engine: PolicyEngine, today: date | None = None) -> list[dict[str, Any]]:
    """``RuleSet.describe()`` for every set, plus whether it is in force today in its own time zone."""
    out = []
    for rs in engine.rule_sets:
        local_today = today or utcnow().astimezone(ZoneInfo(rs.timezone)).date()
        out.append({**rs.describe(), "applies_to_subdivisions": rs.applies_to_subdivisions,
                    "in_force": not rs.abstract and rs.in_force(local_today)})
    return out


def simulate(engine: PolicyEngine, obj: Any) -> dict[str, Any]:
    """Exactly what ``telemed policy check`` prints for the same JSON input.

    Raises Invalid naming the offending fields (dotted paths, as the CLI reports them).
    """
    try:
        ctx = PolicyContext.from_json(obj)
    except PolicyInputError as exc:
        raise Invalid(str(exc), code="invalid_input", fields=exc.fields) from None
    return engine.decide(ctx).to_json()
