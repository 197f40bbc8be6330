"""Prescription models: formulary (FHIR Medication), MedicationRequest with items, signing keys,
MedicationDispense, clarification and renewal requests, and home delivery orders.

Quantities and doses are stored as canonical decimal strings (see ``prescriptions.dosing.dec_str``):
exact on both SQLite and PostgreSQL, and byte-identical to what is signed.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from clinic.db.base import Base, IdMixin, TimestampMixin, utcnow
from clinic.db.models import str_enum
from prescriptions.state import DeliveryStatus, RxStatus


class Medication(IdMixin, TimestampMixin, Base):
    """A formulary entry (FHIR Medication)."""

    __tablename__ = "medication"

    code: Mapped[str] = mapped_column(String(100), unique=True)
    name: Mapped[str] = mapped_column(String(300))
    name_ko: Mapped[str | None] = mapped_column(String(300), default=None)
    inn: Mapped[str] = mapped_column(String(200), index=True)
    atc: Mapped[str] = mapped_column(String(8), index=True)
    dose_form: Mapped[str] = mapped_column(String(100))
    strength: Mapped[str] = mapped_column(String(100))
    strength_value: Mapped[float] = mapped_column(Float)
    strength_unit: Mapped[str] = mapped_column(String(32))
    route: Mapped[str] = mapped_column(String(64))
    unit: Mapped[str] = mapped_column(String(64))
    max_days_supply: Mapped[int | None] = mapped_column(Integer, default=None)
    #: Per jurisdiction: {"KR": {"narcotic": true, "schedule": "마약"}, …}
    flags: Mapped[dict[str, Any]] = mapped_column(default=dict)
    source: Mapped[str] = mapped_column(String(200), default="starter")
    active: Mapped[bool] = mapped_column(default=True)

    def categories_for(self, jurisdiction: str) -> tuple[str, ...]:
        from prescriptions.formulary_data import CATEGORIES

        key = jurisdiction.strip().upper()
        f = self.flags.get(key) or self.flags.get(key.split("-", 1)[0]) or {}
        return tuple(sorted(c for c in CATEGORIES if f.get(c)))


class SigningKey(IdMixin, Base):
    """A clinician's Ed25519 key; the private half only ever stored encrypted (see ``KeyStore``)."""

    __tablename__ = "rx_signing_key"

    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("user_account.id", ondelete="CASCADE"), index=True)
    public_key: Mapped[str] = mapped_column(String(64))  # raw 32 bytes, hex
    fingerprint: Mapped[str] = mapped_column(String(64), unique=True)  # SHA-256 of the raw public key
    private_key_enc: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)


class MedicationRequest(IdMixin, TimestampMixin, Base):
    """One prescription (FHIR MedicationRequest group; each item is a MedicationRequest in FHIR)."""

    __tablename__ = "medication_request"
    __table_args__ = (
        Index("ix_medication_request_pharmacy_status", "pharmacy_id", "status"),
        Index("ix_medication_request_patient_status", "patient_id", "status"),
    )

    rx_number: Mapped[str] = mapped_column(String(24), unique=True)
    organization_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organization.id"), index=True)
    encounter_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("encounter.id"), index=True)
    patient_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("patient.id"))
    prescriber_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("user_account.id"), index=True)
    status: Mapped[RxStatus] = mapped_column(str_enum(RxStatus, "rx_status"), default=RxStatus.DRAFT)
    jurisdiction: Mapped[str] = mapped_column(String(8))
    #: The pharmacy that may act on it: the nominated one, or the one whose claim won.
    pharmacy_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("organization.id"), default=None)
    routing: Mapped[str] = mapped_column(String(16), default="")  # "" | nominated | open
    note: Mapped[str] = mapped_column(Text, default="")
    #: Safety warnings raised at prescribing with the prescriber's override reasons.
    warnings: Mapped[list[Any]] = mapped_column(default=list)
    policy_decisions: Mapped[list[Any]] = mapped_column(default=list)
    signed_at: Mapped[datetime | None] = mapped_column(default=None)
    signature: Mapped[str | None] = mapped_column(Text, default=None)  # base64 Ed25519 signature
    key_fingerprint: Mapped[str | None] = mapped_column(String(64), default=None)
    signed_sha256: Mapped[str | None] = mapped_column(String(64), default=None)
    #: The exact canonical document that was signed (see ``prescriptions.signing``).
    signed_content: Mapped[str | None] = mapped_column(Text, default=None)
    access_code_hash: Mapped[str | None] = mapped_column(String(64), default=None)
    token_shown_at: Mapped[datetime | None] = mapped_column(default=None)
    sent_at: Mapped[datetime | None] = mapped_column(default=None)
    accepted_at: Mapped[datetime | None] = mapped_column(default=None)
    expires_at: Mapped[datetime | None] = mapped_column(default=None)
    closed_at: Mapped[datetime | None] = mapped_column(default=None)
    #: How the patient gets the medicine once dispensed: "" | pickup | delivery.
    fulfilment: Mapped[str] = mapped_column(String(16), default="")
    ready_at: Mapped[datetime | None] = mapped_column(default=None)
    status_reason: Mapped[str] = mapped_column(String(500), default="")
    #: Pharmacies that handed it back, so the patient's next choice can avoid them.
    rejections: Mapped[list[Any]] = mapped_column(default=list)

    items: Mapped[list[MedicationRequestItem]] = relationship(
        lazy="selectin", cascade="all, delete-orphan", order_by="MedicationRequestItem.position"
    )


class MedicationRequestItem(IdMixin, Base):
    __tablename__ = "medication_request_item"
    __table_args__ = (UniqueConstraint("request_id", "position"),)

    request_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("medication_request.id", ondelete="CASCADE"),
                                                  index=True)
    position: Mapped[int] = mapped_column(Integer)
    medication_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("medication.id"))
    #: Snapshot of the formulary entry at prescribing time (the formulary may change later).
    medication_code: Mapped[str] = mapped_column(String(100))
    medication_name: Mapped[str] = mapped_column(String(300))
    atc: Mapped[str] = mapped_column(String(8))
    dose: Mapped[str] = mapped_column(String(24))
    dose_unit: Mapped[str] = mapped_column(String(64))
    route: Mapped[str] = mapped_column(String(64))
    frequency: Mapped[str] = mapped_column(String(8))
    prn_max_per_day: Mapped[int | None] = mapped_column(Integer, default=None)
    duration_days: Mapped[int] = mapped_column(Integer)
    quantity: Mapped[str] = mapped_column(String(24))
    refills: Mapped[int] = mapped_column(Integer, default=0)
    substitution_allowed: Mapped[bool] = mapped_column(default=True)
    note_to_pharmacist: Mapped[str] = mapped_column(String(1000), default="")
    dispensed_quantity: Mapped[str] = mapped_column(String(24), default="0")


class MedicationDispense(IdMixin, Base):
    __tablename__ = "medication_dispense"

    request_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("medication_request.id"), index=True)
    item_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("medication_request_item.id"), index=True)
    pharmacy_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organization.id"))
    pharmacist_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("user_account.id"))
    quantity: Mapped[str] = mapped_column(String(24))
    lot_number: Mapped[str] = mapped_column(String(64))
    expiry: Mapped[str] = mapped_column(String(10))  # ISO date of the batch's expiry
    note: Mapped[str] = mapped_column(String(500), default="")
    dispensed_at: Mapped[datetime] = mapped_column(default=utcnow)


class ClarificationRequest(IdMixin, Base):
    """A pharmacist's question to the prescriber about a prescription."""

    __tablename__ = "rx_clarification"

    request_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("medication_request.id"), index=True)
    prescriber_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("user_account.id"), index=True)
    pharmacy_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organization.id"))
    asked_by_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("user_account.id"))
    question: Mapped[str] = mapped_column(Text)
    answer: Mapped[str | None] = mapped_column(Text, default=None)
    asked_at: Mapped[datetime] = mapped_column(default=utcnow)
    answered_at: Mapped[datetime | None] = mapped_column(default=None)


class RenewalRequest(IdMixin, Base):
    """A patient's request to the prescriber for a repeat of a prescription."""

    __tablename__ = "rx_renewal_request"

    request_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("medication_request.id"), index=True)
    prescriber_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("user_account.id"), index=True)
    patient_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("patient.id"))
    message: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(16), default="open")  # open | approved | declined
    response: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    decided_at: Mapped[datetime | None] = mapped_column(default=None)


class DeliveryOrder(IdMixin, TimestampMixin, Base):
    __tablename__ = "delivery_order"

    request_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("medication_request.id"), index=True)
    pharmacy_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organization.id"), index=True)
    patient_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("patient.id"))
    status: Mapped[DeliveryStatus] = mapped_column(str_enum(DeliveryStatus, "delivery_status"),
                                                   default=DeliveryStatus.CREATED)
    country: Mapped[str] = mapped_column(String(2))
    recipient_name: Mapped[str] = mapped_column(String(200))
    address: Mapped[str] = mapped_column(String(500))
    postal_code: Mapped[str] = mapped_column(String(20))
    phone: Mapped[str] = mapped_column(String(32), default="")
    courier: Mapped[str] = mapped_column(String(100))
    tracking_code: Mapped[str] = mapped_column(String(100), default="")
    policy_decision: Mapped[dict[str, Any]] = mapped_column(default=dict)
    #: [{"status", "at", "actor_id", "note"}] — every step time-stamped.
    events: Mapped[list[Any]] = mapped_column(default=list)
    proof_recipient: Mapped[str | None] = mapped_column(String(200), default=None)
    proof_kind: Mapped[str | None] = mapped_column(String(16), default=None)  # signature | photo
    proof_data: Mapped[str | None] = mapped_column(Text, default=None)  # base64 PNG/JPEG
    proof_sha256: Mapped[str | None] = mapped_column(String(64), default=None)
    delivered_at: Mapped[datetime | None] = mapped_column(default=None)


__all__ = [
    "ClarificationRequest",
    "DeliveryOrder",
    "Medication",
    "MedicationDispense",
    "MedicationRequest",
    "MedicationRequestItem",
    "RenewalRequest",
    "SigningKey",
]
