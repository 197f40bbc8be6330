"""Video visits: room tokens, invited guests, call participants, quality samples and recordings.

Room state that must survive a signaling reconnect or a server restart lives here rather than in the
signaling process: who joined as which peer (and the hash of their resume token), who consented to
recording, and which guests the clinician invited. Admission itself is ``Encounter.status``/``admitted_at``.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, Float, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from clinic.db.base import Base, IdMixin, utcnow


class RoomToken(IdMixin, Base):
    """A short-lived (≤ 10 minutes) credential to join one encounter's call in one role.

    Only the SHA-256 of the token is stored, like every other bearer secret in the database.
    """

    __tablename__ = "room_token"

    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    encounter_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("encounter.id", ondelete="CASCADE"), index=True)
    role: Mapped[str] = mapped_column(String(16))  # clinician | patient | caregiver | interpreter | observer
    user_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("user_account.id"), default=None)
    guest_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("call_guest.id", ondelete="CASCADE"),
                                                       default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column()


class CallGuest(IdMixin, Base):
    """Someone the clinician invited into the call: a caregiver, an interpreter or a second clinician."""

    __tablename__ = "call_guest"

    encounter_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("encounter.id", ondelete="CASCADE"), index=True)
    role: Mapped[str] = mapped_column(String(16))  # caregiver | interpreter | clinician
    display_name: Mapped[str] = mapped_column(String(80))
    invited_by_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("user_account.id"), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)


class CallParticipant(IdMixin, Base):
    """One peer of a call (one row per encounter and peer id), kept across reconnects."""

    __tablename__ = "call_participant"
    __table_args__ = (Index("ix_call_participant_peer", "encounter_id", "peer_id", unique=True),)

    encounter_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("encounter.id", ondelete="CASCADE"))
    peer_id: Mapped[str] = mapped_column(String(64))
    role: Mapped[str] = mapped_column(String(16))
    display_name: Mapped[str] = mapped_column(String(80), default="")
    user_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("user_account.id"), default=None)
    guest_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("call_guest.id", ondelete="CASCADE"),
                                                       default=None)
    #: Hash of the current single-use resume token; rotated on every (re)join.
    resume_hash: Mapped[str] = mapped_column(String(64), default="")
    admitted: Mapped[bool] = mapped_column(Boolean, default=False)
    connected: Mapped[bool] = mapped_column(Boolean, default=False)
    record_consent: Mapped[bool] = mapped_column(Boolean, default=False)
    joined_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(default=utcnow)
    left_at: Mapped[datetime | None] = mapped_column(default=None)


class QualitySample(IdMixin, Base):
    """Media quality of one participant's connection at one moment (from the relay's view)."""

    __tablename__ = "quality_sample"

    encounter_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("encounter.id", ondelete="CASCADE"), index=True)
    peer_id: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(default=utcnow)
    source: Mapped[str] = mapped_column(String(8), default="relay")
    rtt_ms: Mapped[float | None] = mapped_column(Float, default=None)
    jitter_ms: Mapped[float | None] = mapped_column(Float, default=None)
    loss_pct: Mapped[float | None] = mapped_column(Float, default=None)
    bitrate_in_bps: Mapped[int | None] = mapped_column(Integer, default=None)
    bitrate_out_bps: Mapped[int | None] = mapped_column(Integer, default=None)
    frames_in: Mapped[int | None] = mapped_column(Integer, default=None)
    frames_out: Mapped[int | None] = mapped_column(Integer, default=None)


class Recording(IdMixin, Base):
    """An encrypted recording of (part of) a call, kept for ``recording_retention_days``."""

    __tablename__ = "recording"

    encounter_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("encounter.id", ondelete="CASCADE"), index=True)
    #: Directory under ``data_dir/recordings`` holding the ``.webm.enc`` files.
    directory: Mapped[str] = mapped_column(String(200))
    files: Mapped[list[Any]] = mapped_column(default=list)
    started_by_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("user_account.id"), default=None)
    started_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    ended_at: Mapped[datetime | None] = mapped_column(default=None)
    #: Who consented (peer ids) and the policy decision that allowed it.
    consents: Mapped[list[Any]] = mapped_column(default=list)
    policy_decision: Mapped[dict[str, Any]] = mapped_column(default=dict)
