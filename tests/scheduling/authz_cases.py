"""Authorization-matrix cases for the scheduling routes, for ``tests/authz_cases.py`` to merge in:

    from tests.scheduling.authz_cases import SCHEDULING_CASES, prepare_scheduling_objects
    FEATURE_CASES.update(SCHEDULING_CASES)          # and await prepare_scheduling_objects(world, db)
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from typing import Any

from clinic.db.scheduling import VisitMode
from clinic.security.authz import SYSTEM
from clinic.services import booking as svc
from tests.world import World

Case = Any


async def prepare_scheduling_objects(world: World, db: Any) -> None:
    """Tenant B gets a visit type, a schedule with a rule and an exception, and a booked appointment."""
    org = world.b.clinic.id
    doc = world.b.users["clinician"].id
    assert world.b.patient is not None
    async with db.uow() as uow:
        vt = await svc.create_visit_type(uow, SYSTEM, org, svc.VisitTypeInput(
            code="b-consult", name="B consult", duration_minutes=30, modes=(VisitMode.VIDEO,)))
        await svc.upsert_schedule(uow, SYSTEM, org, doc, timezone="UTC", observe_public_holidays=False)
        rules = [await svc.add_rule(uow, SYSTEM, org, doc, weekday=wd, start=time(9), end=time(17))
                 for wd in range(7)]
        day = datetime.now(UTC).date() + timedelta(days=5)
        ex = await svc.add_exception(uow, SYSTEM, org, doc, kind=svc.ExceptionKind.UNAVAILABLE,
                                     start_date=day, end_date=day)
        appt = await svc.book(uow, SYSTEM, patient_id=world.b.patient.id, practitioner_user_id=doc,
                              visit_type_id=vt.id, mode=VisitMode.VIDEO,
                              start=datetime.combine(day + timedelta(days=1), time(10), tzinfo=UTC))
        await uow.commit()
    b: Any = world.b
    b.visit_type_id, b.rule_id, b.exception_id, b.appointment_id = vt.id, rules[0].id, ex.id, appt.id


def _start(days: int = 8) -> str:
    return datetime.combine(datetime.now(UTC).date() + timedelta(days=days), time(11), tzinfo=UTC).isoformat()


def _b(w: World) -> Any:
    return w.b


SCHEDULING_CASES: dict[tuple[str, str], tuple[Case, str]] = {
    ("GET", "/api/v1/organizations/{org_id}/visit-types"): (
        lambda w: (f"/api/v1/organizations/{w.b.clinic.id}/visit-types", None), "object"),
    ("POST", "/api/v1/organizations/{org_id}/visit-types"): (
        lambda w: (f"/api/v1/organizations/{w.b.clinic.id}/visit-types",
                   {"code": "evil", "name": "Evil", "duration_minutes": 30, "modes": ["video"]}), "object"),
    ("GET", "/api/v1/organizations/{org_id}/visit-types/{id}"): (
        lambda w: (f"/api/v1/organizations/{w.b.clinic.id}/visit-types/{_b(w).visit_type_id}", None), "object"),
    ("PATCH", "/api/v1/organizations/{org_id}/visit-types/{id}"): (
        lambda w: (f"/api/v1/organizations/{w.b.clinic.id}/visit-types/{_b(w).visit_type_id}", {"fee_amount": 1}),
        "object"),
    ("DELETE", "/api/v1/organizations/{org_id}/visit-types/{id}"): (
        lambda w: (f"/api/v1/organizations/{w.b.clinic.id}/visit-types/{_b(w).visit_type_id}", None), "object"),
    ("GET", "/api/v1/practitioners/{user_id}/schedule"): (
        lambda w: (f"/api/v1/practitioners/{w.b.users['clinician'].id}/schedule?organization_id={w.b.clinic.id}",
                   None), "object"),
    ("PUT", "/api/v1/practitioners/{user_id}/schedule"): (
        lambda w: (f"/api/v1/practitioners/{w.b.users['clinician'].id}/schedule",
                   {"organization_id": str(w.b.clinic.id), "timezone": "UTC"}), "object"),
    ("POST", "/api/v1/practitioners/{user_id}/schedule/rules"): (
        lambda w: (f"/api/v1/practitioners/{w.b.users['clinician'].id}/schedule/rules",
                   {"organization_id": str(w.b.clinic.id), "weekday": 1, "start": "18:00", "end": "19:00"}),
        "object"),
    ("DELETE", "/api/v1/practitioners/{user_id}/schedule/rules/{id}"): (
        lambda w: (f"/api/v1/practitioners/{w.b.users['clinician'].id}/schedule/rules/{_b(w).rule_id}"
                   f"?organization_id={w.b.clinic.id}", None), "object"),
    ("POST", "/api/v1/practitioners/{user_id}/schedule/exceptions"): (
        lambda w: (f"/api/v1/practitioners/{w.b.users['clinician'].id}/schedule/exceptions",
                   {"organization_id": str(w.b.clinic.id), "kind": "vacation", "start_date": "2030-01-01",
                    "end_date": "2030-01-02"}), "object"),
    ("DELETE", "/api/v1/practitioners/{user_id}/schedule/exceptions/{id}"): (
        lambda w: (f"/api/v1/practitioners/{w.b.users['clinician'].id}/schedule/exceptions/{_b(w).exception_id}"
                   f"?organization_id={w.b.clinic.id}", None), "object"),
    ("GET", "/api/v1/organizations/{org_id}/slots"): (
        lambda w: (f"/api/v1/organizations/{w.b.clinic.id}/slots?visit_type_id={_b(w).visit_type_id}"
                   "&from=2030-01-01&to=2030-01-03", None), "object"),
    ("POST", "/api/v1/appointments"): (
        lambda w: ("/api/v1/appointments", {
            "patient_id": str(w.b.patient.id), "practitioner_id": str(w.b.users["clinician"].id),  # type: ignore[union-attr]
            "visit_type_id": str(_b(w).visit_type_id), "start": _start(), "mode": "video"}), "object"),
    ("GET", "/api/v1/appointments"): (
        lambda w: (f"/api/v1/appointments?organization_id={w.b.clinic.id}", None), "list"),
    ("GET", "/api/v1/appointments/{id}"): (lambda w: (f"/api/v1/appointments/{_b(w).appointment_id}", None),
                                           "object"),
    ("POST", "/api/v1/appointments/{id}/reschedule"): (
        lambda w: (f"/api/v1/appointments/{_b(w).appointment_id}/reschedule", {"start": _start(9)}), "object"),
    ("POST", "/api/v1/appointments/{id}/cancel"): (
        lambda w: (f"/api/v1/appointments/{_b(w).appointment_id}/cancel", {"reason": "x"}), "object"),
    ("POST", "/api/v1/appointments/{id}/no-show"): (
        lambda w: (f"/api/v1/appointments/{_b(w).appointment_id}/no-show", None), "object"),
    ("POST", "/api/v1/organizations/{org_id}/on-demand"): (
        lambda w: (f"/api/v1/organizations/{w.b.clinic.id}/on-demand", {
            "patient_id": str(w.b.patient.id), "visit_type_id": str(_b(w).visit_type_id),  # type: ignore[union-attr]
            "mode": "video"}), "object"),
}

# Discovered by tests/authz_cases.py
CASES = SCHEDULING_CASES
prepare = prepare_scheduling_objects
