"""Availability and booking (FHIR HealthcareService-ish VisitType, Schedule, Appointment).

No double booking is guaranteed by the database, not by application checks: every booked appointment
holds one :class:`SlotClaim` row per fixed grid cell it covers, and ``(practitioner_user_id, slot_start)``
is UNIQUE. Two transactions that race for an overlapping time therefore cannot both commit, on SQLite and
PostgreSQL alike. Claims are deleted when the appointment stops occupying the time (cancelled, rescheduled).
"""

from __future__ import annotations

import enum
import uuid
from datetime import date, datetime, time
from typing import Any

from sqlalchemy import CheckConstraint, Date, ForeignKey, Index, Integer, String, Text, Time, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from clinic.db.base import Base, IdMixin, TimestampMixin, utcnow
from clinic.db.models import str_enum

#: Minutes per claim cell. Every IANA offset in use is a multiple of 5 minutes (even +05:45 and +12:45),
#: so a grid aligned on UTC is also aligned on every local clock.
SLOT_GRID_MINUTES = 5


class VisitMode(enum.StrEnum):
    VIDEO = "video"
    AUDIO = "audio"
    CHAT = "chat"


class ExceptionKind(enum.StrEnum):
    VACATION = "vacation"
    UNAVAILABLE = "unavailable"
    EXTRA = "extra"  # additional hours outside the weekly rules


class AppointmentStatus(enum.StrEnum):
    """A subset of FHIR AppointmentStatus; transitions live in ``clinic.scheduling.states``."""

    PROPOSED = "proposed"
    BOOKED = "booked"
    ARRIVED = "arrived"
    CHECKED_IN = "checked_in"
    FULFILLED = "fulfilled"
    CANCELLED = "cancelled"
    NOSHOW = "noshow"


class AppointmentKind(enum.StrEnum):
    SCHEDULED = "scheduled"
    ON_DEMAND = "on_demand"


class VisitType(IdMixin, TimestampMixin, Base):
    __tablename__ = "visit_type"
    __table_args__ = (
        UniqueConstraint("organization_id", "code"),
        CheckConstraint("duration_minutes >= 5 AND duration_minutes <= 240", name="duration_range"),
        CheckConstraint("fee_amount >= 0", name="fee_nonnegative"),
    )

    organization_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organization.id"), index=True)
    code: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(200))
    name_ko: Mapped[str] = mapped_column(String(200), default="")
    duration_minutes: Mapped[int] = mapped_column(Integer)
    #: Subset of VisitMode values.
    modes: Mapped[list[Any]] = mapped_column(default=list)
    #: In the currency's smallest unit (won for KRW, yen for JPY, cents for USD): never floats.
    fee_amount: Mapped[int] = mapped_column(Integer, default=0)
    currency: Mapped[str] = mapped_column(String(3), default="KRW")
    active: Mapped[bool] = mapped_column(default=True)


class Schedule(IdMixin, TimestampMixin, Base):
    """FHIR Schedule: one practitioner's bookable time in one organization."""

    __tablename__ = "schedule"
    __table_args__ = (UniqueConstraint("organization_id", "practitioner_user_id"),)

    organization_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organization.id"), index=True)
    practitioner_user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("user_account.id", ondelete="CASCADE"), index=True
    )
    #: IANA zone the weekly rules are written in (the practitioner's, by default).
    timezone: Mapped[str] = mapped_column(String(64), default="Asia/Seoul")
    observe_public_holidays: Mapped[bool] = mapped_column(default=True)
    holiday_country: Mapped[str] = mapped_column(String(8), default="KR")
    active: Mapped[bool] = mapped_column(default=True)

    rules: Mapped[list[AvailabilityRule]] = relationship(
        lazy="selectin", cascade="all, delete-orphan", order_by="(AvailabilityRule.weekday, AvailabilityRule.start)"
    )
    exceptions: Mapped[list[AvailabilityException]] = relationship(lazy="selectin", cascade="all, delete-orphan")


class AvailabilityRule(IdMixin, Base):
    """A weekly recurring window in the schedule's local time."""

    __tablename__ = "availability_rule"
    __table_args__ = (
        CheckConstraint("weekday >= 0 AND weekday <= 6", name="weekday_range"),
        CheckConstraint("start_time < end_time", name="start_before_end"),
    )

    schedule_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("schedule.id", ondelete="CASCADE"), index=True)
    weekday: Mapped[int] = mapped_column(Integer)  # 0 = Monday, as date.weekday()
    start: Mapped[time] = mapped_column("start_time", Time)
    end: Mapped[time] = mapped_column("end_time", Time)
    #: Empty means every visit type of the organization.
    visit_type_ids: Mapped[list[Any]] = mapped_column(default=list)
    valid_from: Mapped[date | None] = mapped_column(Date, default=None)
    valid_to: Mapped[date | None] = mapped_column(Date, default=None)


class AvailabilityException(IdMixin, Base):
    """Either whole local days (start_date..end_date inclusive) or an exact UTC interval."""

    __tablename__ = "availability_exception"
    __table_args__ = (
        CheckConstraint(
            "(start_date IS NOT NULL AND end_date IS NOT NULL AND start_at IS NULL AND end_at IS NULL) OR "
            "(start_date IS NULL AND end_date IS NULL AND start_at IS NOT NULL AND end_at IS NOT NULL)",
            name="one_range_form",
        ),
    )

    schedule_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("schedule.id", ondelete="CASCADE"), index=True)
    kind: Mapped[ExceptionKind] = mapped_column(str_enum(ExceptionKind, "availability_exception_kind"))
    start_date: Mapped[date | None] = mapped_column(Date, default=None)
    end_date: Mapped[date | None] = mapped_column(Date, default=None)
    start_at: Mapped[datetime | None] = mapped_column(default=None)
    end_at: Mapped[datetime | None] = mapped_column(default=None)
    note: Mapped[str] = mapped_column(String(500), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Appointment(IdMixin, TimestampMixin, Base):
    __tablename__ = "appointment"
    __table_args__ = (
        Index("ix_appointment_practitioner_start", "practitioner_user_id", "start_at"),
        Index("ix_appointment_org_kind_status", "organization_id", "kind", "status"),
        CheckConstraint("start_at < end_at", name="start_before_end"),
    )

    organization_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organization.id"), index=True)
    #: Empty for an on-demand request until a clinician claims it from the queue.
    practitioner_user_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("user_account.id"), default=None)
    patient_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("patient.id"), index=True)
    visit_type_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("visit_type.id"))
    start: Mapped[datetime] = mapped_column("start_at")
    end: Mapped[datetime] = mapped_column("end_at")
    status: Mapped[AppointmentStatus] = mapped_column(str_enum(AppointmentStatus, "appointment_status"))
    kind: Mapped[AppointmentKind] = mapped_column(
        str_enum(AppointmentKind, "appointment_kind"), default=AppointmentKind.SCHEDULED
    )
    mode: Mapped[VisitMode] = mapped_column(str_enum(VisitMode, "visit_mode"))
    reason: Mapped[str] = mapped_column(Text, default="")
    cancellation_reason: Mapped[str] = mapped_column(Text, default="")
    cancelled_at: Mapped[datetime | None] = mapped_column(default=None)
    created_by_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("user_account.id"), default=None)
    reminder_sent_at: Mapped[datetime | None] = mapped_column(default=None)
    #: iCalendar SEQUENCE: bumped on every change so calendar clients replace the old event.
    ics_sequence: Mapped[int] = mapped_column(Integer, default=0)


class SlotClaim(IdMixin, Base):
    """One grid cell of a practitioner's time held by one appointment (the double-booking guard)."""

    __tablename__ = "slot_claim"
    __table_args__ = (UniqueConstraint("practitioner_user_id", "slot_start", name="uq_slot_claim_practitioner_slot"),)

    appointment_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("appointment.id", ondelete="CASCADE"), index=True)
    practitioner_user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("user_account.id", ondelete="CASCADE"))
    slot_start: Mapped[datetime]


__all__ = [
    "SLOT_GRID_MINUTES",
    "Appointment",
    "AppointmentKind",
    "AppointmentStatus",
    "AvailabilityException",
    "AvailabilityRule",
    "ExceptionKind",
    "Schedule",
    "SlotClaim",
    "VisitMode",
    "VisitType",
]
