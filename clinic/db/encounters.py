"""Visits (FHIR Encounter) with their time-stamped transitions, and the policy decisions enforced on them."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from clinic.db.base import Base, IdMixin, TimestampMixin, utcnow
from clinic.db.models import str_enum
from clinic.encounters.state import EncounterStatus


class Encounter(IdMixin, TimestampMixin, Base):
    __tablename__ = "encounter"
    __table_args__ = (Index("ix_encounter_queue", "organization_id", "status"),)

    organization_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organization.id"), index=True)
    patient_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("patient.id"), index=True)
    #: The booking this visit came from; None for on-demand ("next available doctor") visits.
    appointment_id: Mapped[uuid.UUID | None] = mapped_column(default=None, index=True)
    #: The clinician the patient was booked with (personal queue) — None means the shared queue.
    assigned_practitioner_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("user_account.id"), default=None)
    #: The clinician who claimed the patient; only they (and invited guests) may join the call.
    claimed_by_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("user_account.id"), default=None, index=True)
    status: Mapped[EncounterStatus] = mapped_column(str_enum(EncounterStatus, "encounter_status"),
                                                    default=EncounterStatus.BOOKED)
    kind: Mapped[str] = mapped_column(String(16), default="scheduled")  # scheduled | on_demand
    mode: Mapped[str] = mapped_column(String(16), default="video")  # video | audio | chat | photo
    participants: Mapped[str] = mapped_column(String(16), default="doctor-patient")
    #: Triage priority: 1 (most urgent) … 5; orders the queue before appointment time.
    priority: Mapped[int] = mapped_column(Integer, default=3)
    scheduled_start: Mapped[datetime | None] = mapped_column(default=None)
    chief_complaint: Mapped[str] = mapped_column(Text, default="")
    symptoms: Mapped[list[Any]] = mapped_column(default=list)
    checked_in_at: Mapped[datetime | None] = mapped_column(default=None)
    claimed_at: Mapped[datetime | None] = mapped_column(default=None)
    admitted_at: Mapped[datetime | None] = mapped_column(default=None)
    started_at: Mapped[datetime | None] = mapped_column(default=None)
    ended_at: Mapped[datetime | None] = mapped_column(default=None)
    #: The policy decisions that were enforced on this visit (rule set id + content hash + reasons).
    policy_decisions: Mapped[list[Any]] = mapped_column(default=list)

    transitions: Mapped[list[EncounterTransition]] = relationship(
        lazy="selectin", cascade="all, delete-orphan", order_by="EncounterTransition.at"
    )


class EncounterTransition(IdMixin, Base):
    __tablename__ = "encounter_transition"

    encounter_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("encounter.id", ondelete="CASCADE"), index=True)
    from_status: Mapped[str] = mapped_column(String(16))
    to_status: Mapped[str] = mapped_column(String(16))
    at: Mapped[datetime] = mapped_column(default=utcnow)
    actor_id: Mapped[str] = mapped_column(String(64), default="")
    reason: Mapped[str] = mapped_column(String(300), default="")


class ChatMessage(IdMixin, Base):
    """Text or photo exchanged in the waiting room or the call; part of the encounter record."""

    __tablename__ = "chat_message"

    encounter_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("encounter.id", ondelete="CASCADE"), index=True)
    sender_user_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("user_account.id"), default=None)
    sender_role: Mapped[str] = mapped_column(String(16))  # patient | clinician | guest | system
    sender_name: Mapped[str] = mapped_column(String(200), default="")
    text: Mapped[str] = mapped_column(Text, default="")
    photo_id: Mapped[uuid.UUID | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


class StoredPhoto(IdMixin, Base):
    """An image re-encoded on upload (metadata stripped) and kept encrypted on disk."""

    __tablename__ = "stored_photo"

    encounter_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("encounter.id", ondelete="CASCADE"), index=True)
    uploaded_by_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("user_account.id"), default=None)
    purpose: Mapped[str] = mapped_column(String(16))  # checkin | chat
    content_type: Mapped[str] = mapped_column(String(32), default="image/jpeg")
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    size_bytes: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class VisitInvite(IdMixin, Base):
    """A visit link sent to a patient (or caregiver) by e-mail or SMS; revocable and resendable."""

    __tablename__ = "visit_invite"

    encounter_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("encounter.id", ondelete="CASCADE"), index=True)
    magic_link_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("magic_link.id", ondelete="CASCADE"))
    channel: Mapped[str] = mapped_column(String(8))  # email | sms
    recipient: Mapped[str] = mapped_column(String(254))
    outbox_message_id: Mapped[uuid.UUID | None] = mapped_column(default=None)
    created_by_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("user_account.id"), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)
