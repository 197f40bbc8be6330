"""The printable prescription (처방전): identity, items, signature fingerprint and the QR token.

Rendering issues a fresh access code (like the token endpoint), because the QR must carry a working code
and only its hash is stored; printing again replaces the code on any earlier copy.
"""

from __future__ import annotations

from datetime import timedelta

from clinic.db.clinical import License, Patient, Practitioner
from clinic.db.models import Organization, User
from clinic.db.uow import UnitOfWork
from clinic.documents import render_document_async
from clinic.documents.models import ClinicianInfo, OrgInfo, PatientInfo, PrescriptionDoc, PrescriptionItem
from clinic.security.authz import Principal
from prescriptions import service as svc

FREQUENCY_TEXT = {"QD": "1×/day", "BID": "2×/day", "TID": "3×/day", "QID": "4×/day", "QHS": "at bedtime",
                  "Q4H": "every 4 h", "Q6H": "every 6 h", "Q8H": "every 8 h", "Q12H": "every 12 h",
                  "QW": "weekly", "PRN": "as needed"}


async def prescription_pdf(uow: UnitOfWork, principal: Principal, rx_id: object, *, locale: str) -> bytes:
    import uuid

    token = await svc.issue_token(uow, principal, uuid.UUID(str(rx_id)))
    rx = await svc.load(uow, principal, uuid.UUID(str(rx_id)))
    org = await uow.session.get(Organization, rx.organization_id)
    patient = await uow.session.get(Patient, rx.patient_id)
    prescriber = await uow.session.get(User, rx.prescriber_id)
    assert org is not None and patient is not None and prescriber is not None
    from sqlalchemy import select

    lic = (await uow.session.execute(
        select(License.number).join(Practitioner, Practitioner.id == License.practitioner_id)
        .where(Practitioner.user_id == prescriber.id, License.jurisdiction == rx.jurisdiction.split("-")[0])
    )).scalars().first() or ""
    issued = rx.signed_at or rx.created_at
    valid_until = (rx.expires_at or issued + timedelta(days=3)).date()
    doc = PrescriptionDoc(
        document_id=rx.rx_number,
        organization=OrgInfo(name=org.name, address=org.address, phone=org.phone, timezone=org.timezone),
        patient=PatientInfo(name=patient.full_name, birth_date=patient.birth_date, sex=patient.sex.value,
                            address=patient.address),
        prescriber=ClinicianInfo(name=prescriber.display_name, license_number=lic),
        items=tuple(PrescriptionItem(name=i.medication_name, dose=f"{i.dose} {i.dose_unit}",
                                     frequency=FREQUENCY_TEXT.get(i.frequency, i.frequency), days=i.duration_days,
                                     quantity=i.quantity, route=i.route, instructions=i.note_to_pharmacist,
                                     code=i.atc) for i in rx.items),
        issued_at=issued,
        valid_until=valid_until,
        qr=svc.qr_svg(token.text),
        substitution_allowed=all(i.substitution_allowed for i in rx.items),
        signature_fingerprint=rx.key_fingerprint or "",
        notes=rx.note,
    )
    uow.audit.record(principal, "prescription.print", object_type="MedicationRequest", object_id=rx.id,
                     organization_id=rx.organization_id, patient_id=rx.patient_id)
    return await render_document_async(doc, locale=locale)
