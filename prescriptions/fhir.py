"""FHIR R4 export: a collection Bundle with one MedicationRequest per item (grouped by the prescription
number), its Medication, Patient, Practitioner, Organization(s) and every MedicationDispense.

Only R4-stable elements are used, so the output validates as R4 and R4B (tests use ``fhir.resources.R4B``).
"""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

from sqlalchemy import select

from clinic.db.base import utcnow
from clinic.db.clinical import Patient
from clinic.db.models import Organization, User
from clinic.db.uow import UnitOfWork
from clinic.security.authz import Principal
from prescriptions.dosing import FREQUENCIES
from prescriptions.models import Medication, MedicationDispense, MedicationRequest
from prescriptions.service import _audit, load

ATC_SYSTEM = "http://www.whocc.no/atc"
RX_NUMBER_SYSTEM = "urn:telemed:prescription-number"
FORMULARY_SYSTEM = "urn:telemed:formulary"
UCUM = "http://unitsofmeasure.org"


def _num(s: str) -> int | float:
    d = Decimal(s)
    return int(d) if d == d.to_integral_value() else float(d)


def _ref(kind: str, id_: object) -> dict[str, str]:
    return {"reference": f"{kind}/{id_}"}


def _entry(res: dict[str, Any]) -> dict[str, Any]:
    return {"fullUrl": f"urn:uuid:{res['id']}", "resource": res}


def bundle(rx: MedicationRequest, patient: Patient, prescriber: User, org: Organization,
           pharmacy: Organization | None, meds: dict[uuid.UUID, Medication],
           dispenses: list[MedicationDispense]) -> dict[str, Any]:
    entries: list[dict[str, Any]] = [
        _entry({"resourceType": "Patient", "id": str(patient.id),
                "name": [{"family": patient.family_name, "given": [patient.given_name]}],
                "gender": patient.sex.value, "birthDate": patient.birth_date.isoformat()}),
        _entry({"resourceType": "Practitioner", "id": str(prescriber.id), "name": [{"text": prescriber.display_name}]}),
        _entry({"resourceType": "Organization", "id": str(org.id), "name": org.name}),
    ]
    if pharmacy is not None:
        entries.append(_entry({"resourceType": "Organization", "id": str(pharmacy.id), "name": pharmacy.name,
                               "type": [{"text": "pharmacy"}]}))
    for m in {m.id: m for m in meds.values()}.values():
        entries.append(_entry({
            "resourceType": "Medication", "id": str(m.id),
            "code": {"coding": [{"system": ATC_SYSTEM, "code": m.atc},
                                {"system": FORMULARY_SYSTEM, "code": m.code, "display": m.name}],
                     "text": m.name},
            "form": {"text": m.dose_form},
        }))
    authored = (rx.signed_at or rx.created_at).isoformat()
    for item in rx.items:
        f = FREQUENCIES[item.frequency]
        freq, period, unit = f.timing
        dosage: dict[str, Any] = {
            "sequence": 1,
            "text": f"{item.dose} {item.dose_unit} {f.text_en} for {item.duration_days} days",
            "timing": {"code": {"text": item.frequency},
                       "repeat": {"frequency": freq, "period": _num(str(period)), "periodUnit": unit}},
            "route": {"text": item.route},
            "doseAndRate": [{"doseQuantity": {"value": _num(item.dose), "unit": item.dose_unit}}],
        }
        if item.frequency == "PRN":
            dosage["asNeededBoolean"] = True
            dosage["maxDosePerPeriod"] = {
                "numerator": {"value": _num(item.dose) * (item.prn_max_per_day or 1), "unit": item.dose_unit},
                "denominator": {"value": 1, "unit": "d", "system": UCUM, "code": "d"},
            }
            del dosage["timing"]["repeat"]
        dispense_request: dict[str, Any] = {
            "numberOfRepeatsAllowed": item.refills,
            "quantity": {"value": _num(item.quantity), "unit": item.dose_unit},
            "expectedSupplyDuration": {"value": item.duration_days, "unit": "days", "system": UCUM, "code": "d"},
        }
        if rx.signed_at and rx.expires_at:
            dispense_request["validityPeriod"] = {"start": rx.signed_at.isoformat(), "end": rx.expires_at.isoformat()}
        if rx.pharmacy_id:
            dispense_request["performer"] = _ref("Organization", rx.pharmacy_id)
        mr: dict[str, Any] = {
            "resourceType": "MedicationRequest", "id": str(item.id),
            "identifier": [{"system": RX_NUMBER_SYSTEM, "value": f"{rx.rx_number}/{item.position + 1}"}],
            "groupIdentifier": {"system": RX_NUMBER_SYSTEM, "value": rx.rx_number},
            "status": rx.status.fhir, "intent": "order",
            "medicationReference": _ref("Medication", item.medication_id),
            "subject": _ref("Patient", patient.id),
            "authoredOn": authored,
            "requester": _ref("Practitioner", prescriber.id),
            "dosageInstruction": [dosage],
            "dispenseRequest": dispense_request,
            "substitution": {"allowedBoolean": item.substitution_allowed},
        }
        notes = [n for n in (rx.note, item.note_to_pharmacist) if n]
        if notes:
            mr["note"] = [{"text": n} for n in notes]
        entries.append(_entry(mr))
    items = {i.id: i for i in rx.items}
    for d in dispenses:
        item = items[d.item_id]
        entries.append(_entry({
            "resourceType": "MedicationDispense", "id": str(d.id), "status": "completed",
            "medicationReference": _ref("Medication", item.medication_id),
            "subject": _ref("Patient", patient.id),
            "performer": [{"actor": _ref("Organization", d.pharmacy_id)}],
            "authorizingPrescription": [_ref("MedicationRequest", item.id)],
            "quantity": {"value": _num(d.quantity), "unit": item.dose_unit},
            "whenHandedOver": d.dispensed_at.isoformat(),
            "note": [{"text": f"lot {d.lot_number}, expiry {d.expiry}"}],
        }))
    return {"resourceType": "Bundle", "id": str(uuid.uuid4()), "type": "collection",
            "timestamp": utcnow().isoformat(), "entry": entries}


async def export(uow: UnitOfWork, principal: Principal, rx_id: uuid.UUID) -> dict[str, Any]:
    rx = await load(uow, principal, rx_id)
    patient = await uow.session.get(Patient, rx.patient_id)
    prescriber = await uow.session.get(User, rx.prescriber_id)
    org = await uow.session.get(Organization, rx.organization_id)
    pharmacy = await uow.session.get(Organization, rx.pharmacy_id) if rx.pharmacy_id else None
    assert patient is not None and prescriber is not None and org is not None
    meds = {m.id: m for m in (await uow.session.execute(
        select(Medication).where(Medication.id.in_([i.medication_id for i in rx.items]))
    )).scalars()}
    dispenses = list((await uow.session.execute(
        select(MedicationDispense).where(MedicationDispense.request_id == rx.id)
        .order_by(MedicationDispense.dispensed_at)
    )).scalars())
    _audit(uow, principal, "prescription.export", rx, format="fhir-r4")
    return bundle(rx, patient, prescriber, org, pharmacy, meds, dispenses)
