"""Visit fees and their collection: one Payment per appointment, its refunds, Stripe customers and the
webhook events already processed, and per-visit-type billing settings (the fee itself stays on VisitType).

Amounts are integers in the currency's smallest unit (see ``clinic.payments.money``); the fee and the
patient's share are copied onto the payment when it is created, so later fee changes never alter a
visit that was already booked.
"""

from __future__ import annotations

import enum
import uuid
from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from clinic.db.base import Base, IdMixin, TimestampMixin, utcnow
from clinic.db.models import str_enum


class PaymentStatus(enum.StrEnum):
    """Transitions live in ``clinic.payments.state``."""

    REQUIRES_PAYMENT = "requires_payment"
    AUTHORIZED = "authorized"
    CAPTURED = "captured"
    PARTIALLY_REFUNDED = "partially_refunded"
    REFUNDED = "refunded"
    CANCELLED = "cancelled"
    FAILED = "failed"
    WAIVED = "waived"

    @property
    def paid(self) -> bool:
        """Money was collected at some point (a receipt can be issued)."""
        return self in (PaymentStatus.CAPTURED, PaymentStatus.PARTIALLY_REFUNDED, PaymentStatus.REFUNDED)


class Payment(IdMixin, TimestampMixin, Base):
    __tablename__ = "payment"
    __table_args__ = (
        # One payment per visit: the database, not a check in code, is what makes "paid twice" impossible.
        UniqueConstraint("appointment_id", name="uq_payment_appointment"),
        CheckConstraint("fee_amount >= 0 AND amount >= 0 AND amount <= fee_amount", name="amounts"),
        CheckConstraint("refunded_amount >= 0 AND refunded_amount <= captured_amount", name="refund_bounds"),
        CheckConstraint("coverage_bp >= 0 AND coverage_bp <= 10000", name="coverage_range"),
    )

    organization_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organization.id"), index=True)
    appointment_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("appointment.id", ondelete="CASCADE"))
    patient_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("patient.id"), index=True)
    visit_type_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("visit_type.id"))
    #: The provider that handles this payment ("none" or "stripe"), fixed when it is created.
    provider: Mapped[str] = mapped_column(String(16), default="none")
    status: Mapped[PaymentStatus] = mapped_column(str_enum(PaymentStatus, "payment_status"),
                                                  default=PaymentStatus.REQUIRES_PAYMENT)
    currency: Mapped[str] = mapped_column(String(3))
    #: The visit's full fee; ``amount`` is what the patient owes after insurance.
    fee_amount: Mapped[int] = mapped_column(Integer)
    amount: Mapped[int] = mapped_column(Integer)
    captured_amount: Mapped[int] = mapped_column(Integer, default=0)
    refunded_amount: Mapped[int] = mapped_column(Integer, default=0)
    # Insurance, for the claims export. Coverage in basis points (0–10000) so no float or Decimal column
    # is needed: SQLite has no exact decimal type.
    insurance_payer: Mapped[str] = mapped_column(String(200), default="")
    coverage_bp: Mapped[int] = mapped_column(Integer, default=0)
    claim_code: Mapped[str] = mapped_column(String(64), default="")
    billing_code: Mapped[str] = mapped_column(String(32), default="")
    #: How it was settled: card (Stripe), cash, transfer, other, no_charge.
    method: Mapped[str] = mapped_column(String(32), default="")
    reference: Mapped[str] = mapped_column(String(200), default="")
    note: Mapped[str] = mapped_column(String(500), default="")
    # Stripe
    intent_id: Mapped[str | None] = mapped_column(String(255), default=None, index=True)
    client_secret: Mapped[str] = mapped_column(String(255), default="")
    #: The payment method of the last server-side confirmation, kept so a timed-out one can be resent as is.
    payment_method_ref: Mapped[str] = mapped_column(String(255), default="")
    #: Bumped after a definite failure (declined card) so the next try gets a fresh idempotency key;
    #: never after a timeout, whose retry must reuse the key so it cannot charge twice.
    attempt: Mapped[int] = mapped_column(Integer, default=1)
    #: An operation whose outcome is unknown (provider unreachable): authorize | capture | cancel | refund.
    pending_op: Mapped[str] = mapped_column(String(16), default="", index=True)
    pending_since: Mapped[datetime | None] = mapped_column(default=None)
    failure_code: Mapped[str] = mapped_column(String(64), default="")
    failure_message: Mapped[str] = mapped_column(String(300), default="")
    paid_at: Mapped[datetime | None] = mapped_column(default=None)
    status_changed_at: Mapped[datetime] = mapped_column(default=utcnow)


class PaymentRefund(IdMixin, Base):
    __tablename__ = "payment_refund"
    __table_args__ = (UniqueConstraint("payment_id", "seq", name="uq_payment_refund_seq"),)

    payment_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("payment.id", ondelete="CASCADE"), index=True)
    #: 1, 2, … per payment; part of the idempotency key of the provider call.
    seq: Mapped[int] = mapped_column(Integer)
    amount: Mapped[int] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(String(300), default="")
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending | succeeded | failed
    provider_ref: Mapped[str] = mapped_column(String(255), default="")
    created_by_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("user_account.id"), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class StripeCustomer(IdMixin, Base):
    __tablename__ = "stripe_customer"

    patient_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("patient.id", ondelete="CASCADE"), unique=True)
    customer_id: Mapped[str] = mapped_column(String(255), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class StripeEvent(IdMixin, Base):
    """A webhook event already handled: the UNIQUE event id is what makes processing exactly-once."""

    __tablename__ = "stripe_event"

    event_id: Mapped[str] = mapped_column(String(255), unique=True)
    type: Mapped[str] = mapped_column(String(100))
    #: applied | ignored (backwards or irrelevant) | unknown_object
    outcome: Mapped[str] = mapped_column(String(32))
    payment_id: Mapped[uuid.UUID | None] = mapped_column(default=None)
    received_at: Mapped[datetime] = mapped_column(default=utcnow)


class FeeSetting(IdMixin, TimestampMixin, Base):
    """Billing details per visit type that VisitType does not carry (claim coding and default insurance)."""

    __tablename__ = "fee_setting"
    __table_args__ = (
        UniqueConstraint("visit_type_id", name="uq_fee_setting_visit_type"),
        CheckConstraint("default_coverage_bp >= 0 AND default_coverage_bp <= 10000", name="coverage_range"),
    )

    organization_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organization.id"), index=True)
    visit_type_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("visit_type.id", ondelete="CASCADE"))
    billing_code: Mapped[str] = mapped_column(String(32), default="")
    default_payer: Mapped[str] = mapped_column(String(200), default="")
    default_coverage_bp: Mapped[int] = mapped_column(Integer, default=0)


__all__ = ["FeeSetting", "Payment", "PaymentRefund", "PaymentStatus", "StripeCustomer", "StripeEvent"]
