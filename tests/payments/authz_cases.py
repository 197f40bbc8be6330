"""Authorization-matrix cases for the payment routes (discovered by ``tests/authz_cases.py``).

Tenant B gets a visit type with a fee, an appointment and its payment; tenant A's roles must reach none of it.
The Stripe webhook is public by design (it is authenticated by its signature, see test_webhooks.py).
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from typing import Any

from clinic.db.scheduling import Appointment, AppointmentStatus, VisitMode
from clinic.payments import service as pay
from clinic.security.authz import SYSTEM
from clinic.services import booking as bsvc
from tests.world import World

Case = Any


async def prepare(world: World, db: Any) -> None:
    org = world.b.clinic.id
    assert world.b.patient is not None
    async with db.uow() as uow:
        vt = await bsvc.create_visit_type(uow, SYSTEM, org, bsvc.VisitTypeInput(
            code="b-paid", name="B paid", duration_minutes=30, modes=(VisitMode.VIDEO,), fee_amount=20000))
        start = datetime.combine(datetime.now(UTC).date() + timedelta(days=20), time(3), tzinfo=UTC)
        # Inserted directly: the matrix needs an object, not a slot (the booking rules are tested elsewhere).
        a = Appointment(organization_id=org, practitioner_user_id=world.b.users["clinician"].id,
                        patient_id=world.b.patient.id, visit_type_id=vt.id, start=start,
                        end=start + timedelta(minutes=30), status=AppointmentStatus.BOOKED, mode=VisitMode.VIDEO)
        uow.add(a)
        await uow.session.flush()
        p = await pay.on_appointment_booked(uow, a)
        await uow.commit()
    b: Any = world.b
    b.pay_visit_type_id, b.pay_appointment_id, b.payment_id = vt.id, a.id, p.id


def _b(w: World) -> Any:
    return w.b


CASES: dict[tuple[str, str], tuple[Case, str]] = {
    ("GET", "/api/v1/payments"): (
        lambda w: (f"/api/v1/payments?organization_id={w.b.clinic.id}", None), "list"),
    ("GET", "/api/v1/payments/{id}"): (lambda w: (f"/api/v1/payments/{_b(w).payment_id}", None), "object"),
    ("GET", "/api/v1/appointments/{id}/payment"): (
        lambda w: (f"/api/v1/appointments/{_b(w).pay_appointment_id}/payment", None), "object"),
    ("POST", "/api/v1/payments/{id}/pay"): (
        lambda w: (f"/api/v1/payments/{_b(w).payment_id}/pay", {"payment_method": "pm_card_visa"}), "object"),
    ("POST", "/api/v1/payments/{id}/mark-paid"): (
        lambda w: (f"/api/v1/payments/{_b(w).payment_id}/mark-paid", {"method": "cash"}), "object"),
    ("POST", "/api/v1/payments/{id}/waive"): (
        lambda w: (f"/api/v1/payments/{_b(w).payment_id}/waive", {"reason": "x"}), "object"),
    ("POST", "/api/v1/payments/{id}/refund"): (
        lambda w: (f"/api/v1/payments/{_b(w).payment_id}/refund", {"amount": 1}), "object"),
    ("PUT", "/api/v1/payments/{id}/insurance"): (
        lambda w: (f"/api/v1/payments/{_b(w).payment_id}/insurance", {"payer": "x", "coverage": "0.5"}), "object"),
    ("GET", "/api/v1/payments/{id}/receipt.pdf"): (
        lambda w: (f"/api/v1/payments/{_b(w).payment_id}/receipt.pdf", None), "object"),
    ("GET", "/api/v1/organizations/{org_id}/fees"): (
        lambda w: (f"/api/v1/organizations/{w.b.clinic.id}/fees", None), "object"),
    ("PUT", "/api/v1/organizations/{org_id}/fees/{visit_type_id}"): (
        lambda w: (f"/api/v1/organizations/{w.b.clinic.id}/fees/{_b(w).pay_visit_type_id}", {"fee": "1"}), "object"),
    ("GET", "/api/v1/organizations/{org_id}/billing/export.csv"): (
        lambda w: (f"/api/v1/organizations/{w.b.clinic.id}/billing/export.csv?from=2020-01-01&to=2040-01-01", None),
        "object"),
}
