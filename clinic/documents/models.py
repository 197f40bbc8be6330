"""What each document needs, as plain dataclasses, so services fill them without knowing templates.

Dates of birth and periods are ``date``; instants are aware ``datetime`` (shown in the
organization's time zone); money is ``Decimal`` in major units (e.g. 15000 KRW, 12.50 USD).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Literal


@dataclass(frozen=True)
class OrgInfo:
    name: str
    address: str = ""
    phone: str = ""
    timezone: str = "Asia/Seoul"
    #: Facility registration number shown on KR forms (요양기관번호) or equivalent.
    registration_number: str = ""


@dataclass(frozen=True)
class PatientInfo:
    name: str
    birth_date: date | None = None
    sex: Literal["female", "male", "other", "unknown", ""] = ""
    #: Chart number or a masked national identifier; never print a full resident registration number.
    identifier: str = ""
    address: str = ""
    phone: str = ""


@dataclass(frozen=True)
class ClinicianInfo:
    name: str
    license_number: str = ""
    specialty: str = ""


@dataclass(frozen=True)
class Diagnosis:
    code: str
    display: str
    primary: bool = True


@dataclass(frozen=True)
class PrescriptionItem:
    name: str
    dose: str
    frequency: str
    days: int
    quantity: str
    route: str = ""
    instructions: str = ""
    code: str = ""


@dataclass(frozen=True)
class VisitSummaryDoc:
    document_id: str
    organization: OrgInfo
    patient: PatientInfo
    clinician: ClinicianInfo
    visit_at: datetime
    mode: Literal["video", "phone", "in_person", "chat"]
    chief_complaint: str = ""
    subjective: str = ""
    objective: str = ""
    assessment: str = ""
    plan: str = ""
    diagnoses: tuple[Diagnosis, ...] = ()
    prescriptions: tuple[PrescriptionItem, ...] = ()
    #: Fixed for reproducible output (tests); otherwise the time of rendering.
    generated_at: datetime | None = None

    template = "visit_summary.html"


@dataclass(frozen=True)
class CertificateDoc:
    document_id: str
    organization: OrgInfo
    patient: PatientInfo
    clinician: ClinicianInfo
    diagnoses: tuple[Diagnosis, ...]
    opinion: str
    issued_on: date
    #: "certificate" is a 진단서 (formal diagnosis certificate), "opinion" a 소견서 (medical opinion).
    kind: Literal["certificate", "opinion"] = "certificate"
    onset_on: date | None = None
    period_start: date | None = None
    period_end: date | None = None
    purpose: str = ""
    generated_at: datetime | None = None

    template = "medical_certificate.html"


@dataclass(frozen=True)
class PrescriptionDoc:
    document_id: str
    organization: OrgInfo
    patient: PatientInfo
    prescriber: ClinicianInfo
    items: tuple[PrescriptionItem, ...]
    issued_at: datetime
    valid_until: date
    #: QR code as SVG markup (see :func:`clinic.documents.qr_svg`) or a ``data:`` URI.
    qr: str = ""
    substitution_allowed: bool = True
    #: Fingerprint of the prescriber's signing key / signature, shown so a pharmacist can compare.
    signature_fingerprint: str = ""
    notes: str = ""
    generated_at: datetime | None = None

    template = "prescription.html"


@dataclass(frozen=True)
class ReceiptLine:
    description: str
    unit_amount: Decimal
    quantity: int = 1
    code: str = ""

    @property
    def amount(self) -> Decimal:
        return self.unit_amount * self.quantity


@dataclass(frozen=True)
class ReceiptDoc:
    document_id: str
    organization: OrgInfo
    patient: PatientInfo
    issued_at: datetime
    currency: str
    lines: tuple[ReceiptLine, ...]
    #: Portion paid by insurance (공단부담금) and so not owed by the patient.
    insurance_amount: Decimal = Decimal(0)
    paid_amount: Decimal | None = None
    payment_method: str = ""
    payment_reference: str = ""
    kind: Literal["receipt", "invoice"] = "receipt"
    generated_at: datetime | None = None
    extra: dict[str, str] = field(default_factory=dict)

    template = "receipt.html"

    @property
    def total(self) -> Decimal:
        return sum((line.amount for line in self.lines), Decimal(0))

    @property
    def patient_amount(self) -> Decimal:
        return self.total - self.insurance_amount

    @property
    def balance(self) -> Decimal:
        return self.patient_amount - (self.paid_amount or Decimal(0))


Document = VisitSummaryDoc | CertificateDoc | PrescriptionDoc | ReceiptDoc
