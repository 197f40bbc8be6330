"""Authorization-matrix cases for the prescription routes (aggregated by tests/authz_cases.py)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, timedelta
from typing import Any

from tests.world import World

Case = Callable[[World], tuple[str, Any]]


def _rx(w: World) -> str:
    return f"/api/v1/prescriptions/{w.b.rx_id}"  # type: ignore[attr-defined]


_EXP = (date.today() + timedelta(days=365)).isoformat()
_ITEM = {"medication_code": "amoxicillin-500mg-cap", "dose": "1", "frequency": "TID", "duration_days": 5,
         "quantity": "15"}
_ADDR = {"recipient_name": "K", "address": "A", "postal_code": "12345", "courier": "C"}

PRESCRIPTION_CASES: dict[tuple[str, str], tuple[Case, str]] = {
    ("POST", "/api/v1/auth/step-up"): (lambda w: ("/api/v1/auth/step-up", {"code": "123456"}), "self"),
    ("GET", "/api/v1/pharmacies"): (lambda w: ("/api/v1/pharmacies?q=pharmacy", None), "list"),
    ("GET", "/api/v1/medications"): (lambda w: ("/api/v1/medications?q=amox", None), "list"),
    ("POST", "/api/v1/encounters/{id}/prescriptions"): (
        lambda w: (f"/api/v1/encounters/{w.b.encounter_id}/prescriptions", {"items": [_ITEM]}),  # type: ignore[attr-defined]
        "object"),
    ("PUT", "/api/v1/prescriptions/{id}"): (lambda w: (_rx(w), {"items": [_ITEM]}), "object"),
    ("GET", "/api/v1/prescriptions/{id}"): (lambda w: (_rx(w), None), "object"),
    ("GET", "/api/v1/prescriptions/{id}/verify"): (lambda w: (_rx(w) + "/verify", None), "object"),
    ("GET", "/api/v1/prescriptions/{id}/fhir"): (lambda w: (_rx(w) + "/fhir", None), "object"),
    ("POST", "/api/v1/prescriptions/{id}/sign"): (lambda w: (_rx(w) + "/sign", None), "object"),
    ("POST", "/api/v1/prescriptions/{id}/send"): (lambda w: (_rx(w) + "/send", {}), "object"),
    ("POST", "/api/v1/prescriptions/{id}/token"): (lambda w: (_rx(w) + "/token", None), "object"),
    ("POST", "/api/v1/prescriptions/{id}/sign-and-send"): (lambda w: (_rx(w) + "/sign-and-send", {}), "object"),
    ("POST", "/api/v1/prescriptions/{id}/token.pdf"): (lambda w: (_rx(w) + "/token.pdf", None), "object"),
    ("POST", "/api/v1/prescriptions/{id}/cancel"): (lambda w: (_rx(w) + "/cancel", {"reason": "x"}), "object"),
    ("POST", "/api/v1/prescriptions/{id}/renewal-requests"): (
        lambda w: (_rx(w) + "/renewal-requests", {"message": "x"}), "object"),
    ("POST", "/api/v1/prescriptions/{id}/accept"): (lambda w: (_rx(w) + "/accept", None), "object"),
    ("POST", "/api/v1/prescriptions/{id}/reject"): (lambda w: (_rx(w) + "/reject", {"reason": "x"}), "object"),
    ("POST", "/api/v1/prescriptions/{id}/queries"): (lambda w: (_rx(w) + "/queries", {"question": "x"}), "object"),
    ("POST", "/api/v1/prescriptions/{id}/dispense"): (lambda w: (_rx(w) + "/dispense", {"lines": [
        {"item_id": str(w.b.rx_item_id), "quantity": 1, "lot_number": "L", "expiry": _EXP}]}), "object"),  # type: ignore[attr-defined]
    ("POST", "/api/v1/prescriptions/{id}/ready"): (lambda w: (_rx(w) + "/ready", None), "object"),
    ("POST", "/api/v1/prescriptions/{id}/close"): (lambda w: (_rx(w) + "/close", {}), "object"),
    ("POST", "/api/v1/prescriptions/{id}/delivery"): (lambda w: (_rx(w) + "/delivery", _ADDR), "object"),
    ("GET", "/api/v1/patients/{id}/prescriptions"): (
        lambda w: (f"/api/v1/patients/{w.b.patient.id}/prescriptions", None), "object"),  # type: ignore[union-attr]
    ("GET", "/api/v1/prescriber/queue"): (lambda w: ("/api/v1/prescriber/queue", None), "list"),
    ("POST", "/api/v1/clarifications/{id}/answer"): (
        lambda w: (f"/api/v1/clarifications/{w.b.clarification_id}/answer", {"answer": "x"}), "object"),  # type: ignore[attr-defined]
    ("POST", "/api/v1/renewal-requests/{id}/decide"): (
        lambda w: (f"/api/v1/renewal-requests/{w.b.renewal_id}/decide", {"approve": True}), "object"),  # type: ignore[attr-defined]
    ("GET", "/api/v1/pharmacies/{id}/inbox"): (lambda w: (f"/api/v1/pharmacies/{w.b.pharmacy.id}/inbox", None),
                                               "object"),
    ("POST", "/api/v1/prescriptions/claim"): (lambda w: ("/api/v1/prescriptions/claim", {
        "rx_number": w.b.rx_number, "access_code": "00" * 32, "pharmacy_id": str(w.b.pharmacy.id)}), "object"),  # type: ignore[attr-defined]
    ("GET", "/api/v1/deliveries/{id}"): (lambda w: (f"/api/v1/deliveries/{w.b.delivery_id}", None), "object"),  # type: ignore[attr-defined]
    ("POST", "/api/v1/deliveries/{id}/status"): (
        lambda w: (f"/api/v1/deliveries/{w.b.delivery_id}/status", {"status": "picked_up"}), "object"),  # type: ignore[attr-defined]
}


async def prepare_prescription_objects(world: World, db: Any) -> None:
    """Tenant B: an encounter, a sent prescription with an item, a question, a renewal and a delivery."""
    from clinic.db.base import utcnow
    from clinic.db.encounters import Encounter
    from clinic.encounters.state import EncounterStatus
    from prescriptions import ids
    from prescriptions.formulary import load_starter
    from prescriptions.models import (
        ClarificationRequest,
        DeliveryOrder,
        Medication,
        MedicationRequest,
        MedicationRequestItem,
        RenewalRequest,
    )
    from prescriptions.state import RxStatus

    b = world.b
    assert b.patient is not None
    async with db.uow() as uow:
        await load_starter(uow)
        from sqlalchemy import select

        med = (await uow.session.execute(select(Medication).where(Medication.code == _ITEM["medication_code"])
                                         )).scalar_one()
        doc = b.users["clinician"]
        enc = Encounter(organization_id=b.clinic.id, patient_id=b.patient.id, claimed_by_id=doc.id,
                        status=EncounterStatus.IN_CONSULT, started_at=utcnow())
        uow.add(enc)
        await uow.session.flush()
        rx = MedicationRequest(rx_number=ids.new_rx_number(), organization_id=b.clinic.id, encounter_id=enc.id,
                               patient_id=b.patient.id, prescriber_id=doc.id, status=RxStatus.SENT,
                               jurisdiction="KR", pharmacy_id=b.pharmacy.id, routing="nominated",
                               items=[MedicationRequestItem(position=0, medication_id=med.id, medication_code=med.code,
                                                            medication_name=med.name, atc=med.atc, dose="1",
                                                            dose_unit="capsule", route="oral", frequency="TID",
                                                            duration_days=5, quantity="15")])
        uow.add(rx)
        await uow.session.flush()
        c = ClarificationRequest(request_id=rx.id, prescriber_id=doc.id, pharmacy_id=b.pharmacy.id,
                                 asked_by_id=b.users["pharmacist"].id, question="?")
        r = RenewalRequest(request_id=rx.id, prescriber_id=doc.id, patient_id=b.patient.id)
        d = DeliveryOrder(request_id=rx.id, pharmacy_id=b.pharmacy.id, patient_id=b.patient.id, country="KR",
                          recipient_name="K", address="A", postal_code="12345", courier="C")
        for o in (c, r, d):
            uow.add(o)
        await uow.session.flush()
        b.encounter_id, b.rx_id, b.rx_number = enc.id, rx.id, rx.rx_number  # type: ignore[attr-defined]
        b.rx_item_id = rx.items[0].id  # type: ignore[attr-defined]
        b.clarification_id, b.renewal_id, b.delivery_id = c.id, r.id, d.id  # type: ignore[attr-defined]
        await uow.commit()

# Discovered by tests/authz_cases.py
CASES = PRESCRIPTION_CASES
prepare = prepare_prescription_objects
