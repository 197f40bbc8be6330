"""Platform models: organizations, identity, sessions, tokens, audit, idempotency.

Clinical models live beside these (see ``clinic.db.clinical``) and are all owned by an
Organization, which is the tenancy boundary.
"""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Enum, ForeignKey, Index, Integer, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from clinic.db.base import Base, IdMixin, TimestampMixin, utcnow


def str_enum(cls: type[enum.Enum], name: str) -> Enum:
    """Store enums by value as VARCHAR with a CHECK, identically on SQLite and PostgreSQL."""
    return Enum(cls, name=name, native_enum=False, values_callable=lambda e: [m.value for m in e], length=32)


class OrgKind(enum.StrEnum):
    CLINIC = "clinic"
    HOSPITAL = "hospital"
    PHARMACY = "pharmacy"


class Role(enum.StrEnum):
    PATIENT = "patient"
    CLINICIAN = "clinician"
    PHARMACIST = "pharmacist"
    ORG_ADMIN = "org_admin"
    PLATFORM_ADMIN = "platform_admin"


class Organization(IdMixin, TimestampMixin, Base):
    __tablename__ = "organization"

    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[OrgKind] = mapped_column(str_enum(OrgKind, "org_kind"))
    jurisdiction: Mapped[str] = mapped_column(String(8), default="KR")
    timezone: Mapped[str] = mapped_column(String(64), default="Asia/Seoul")
    currency: Mapped[str] = mapped_column(String(3), default="KRW")
    #: Clinicians and pharmacists must use TOTP unless the organization explicitly opts out.
    require_2fa: Mapped[bool] = mapped_column(default=True)
    address: Mapped[str] = mapped_column(String(500), default="")
    postal_code: Mapped[str] = mapped_column(String(20), default="")
    phone: Mapped[str] = mapped_column(String(32), default="")
    email: Mapped[str] = mapped_column(String(254), default="")
    cancellation_window_hours: Mapped[int] = mapped_column(Integer, default=24)
    #: In-person visits per month as reported by the institution (its own records live elsewhere). Caps on
    #: the telemedicine share of visits (KR: 30%) are computed against it when fewer are recorded here.
    monthly_in_person_visits: Mapped[int] = mapped_column(Integer, default=0)
    settings: Mapped[dict[str, Any]] = mapped_column(default=dict)


class User(IdMixin, TimestampMixin, Base):
    __tablename__ = "user_account"

    email: Mapped[str] = mapped_column(String(254), unique=True)
    display_name: Mapped[str] = mapped_column(String(200))
    password_hash: Mapped[str | None] = mapped_column(String(200), default=None)
    locale: Mapped[str | None] = mapped_column(String(8), default=None)
    is_active: Mapped[bool] = mapped_column(default=True)
    is_platform_admin: Mapped[bool] = mapped_column(default=False)
    #: Encrypted with the server key; never stored in the clear.
    totp_secret_enc: Mapped[str | None] = mapped_column(Text, default=None)
    totp_enabled_at: Mapped[datetime | None] = mapped_column(default=None)
    #: Last accepted TOTP time-step, so a code cannot be replayed within its window.
    totp_last_step: Mapped[int | None] = mapped_column(BigInteger, default=None)
    last_login_at: Mapped[datetime | None] = mapped_column(default=None)

    memberships: Mapped[list[Membership]] = relationship(
        back_populates="user", lazy="selectin", cascade="all, delete-orphan"
    )


class Membership(IdMixin, TimestampMixin, Base):
    __tablename__ = "membership"
    __table_args__ = (UniqueConstraint("user_id", "organization_id", "role"),)

    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("user_account.id", ondelete="CASCADE"), index=True)
    organization_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organization.id"), index=True)
    role: Mapped[Role] = mapped_column(str_enum(Role, "role"))

    user: Mapped[User] = relationship(back_populates="memberships")
    organization: Mapped[Organization] = relationship(lazy="joined")


class WebSession(IdMixin, Base):
    __tablename__ = "web_session"

    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("user_account.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    last_seen_at: Mapped[datetime] = mapped_column(default=utcnow)
    #: When the second factor was last verified in this session; step-up checks read it.
    mfa_at: Mapped[datetime | None] = mapped_column(default=None)
    #: Password accepted but the second factor is still owed.
    pending_mfa: Mapped[bool] = mapped_column(default=False)
    csrf_secret: Mapped[str] = mapped_column(String(64))
    ip: Mapped[str] = mapped_column(String(64), default="")
    user_agent: Mapped[str] = mapped_column(String(300), default="")
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)


class MagicLinkPurpose(enum.StrEnum):
    LOGIN = "login"
    INVITE = "invite"


class MagicLink(IdMixin, Base):
    __tablename__ = "magic_link"

    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("user_account.id", ondelete="CASCADE"), index=True)
    organization_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("organization.id"), default=None)
    purpose: Mapped[MagicLinkPurpose] = mapped_column(str_enum(MagicLinkPurpose, "magic_link_purpose"))
    #: Local path the user lands on after the link signs them in.
    next_path: Mapped[str] = mapped_column(String(500), default="/")
    encounter_id: Mapped[uuid.UUID | None] = mapped_column(default=None)
    created_by_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("user_account.id"), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None] = mapped_column(default=None)
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)


class ApiToken(IdMixin, Base):
    __tablename__ = "api_token"

    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    #: First characters of the token, shown in the UI so admins can tell tokens apart.
    prefix: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(200))
    organization_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organization.id"), index=True)
    created_by_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("user_account.id"))
    scopes: Mapped[list[Any]] = mapped_column(default=list)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(default=None)
    last_used_at: Mapped[datetime | None] = mapped_column(default=None)
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)


class AuditEvent(Base):
    """Append-only, hash-chained record of every read and write of clinical data (FHIR AuditEvent)."""

    __tablename__ = "audit_event"
    # What the sealer looks for every second: entries waiting to be chained.
    __table_args__ = (Index("ix_audit_event_unsealed", "seq", postgresql_where=text("chain_pos IS NULL"),
                            sqlite_where=text("chain_pos IS NULL")),)

    seq: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    id: Mapped[uuid.UUID] = mapped_column(unique=True)
    at: Mapped[datetime]
    actor_kind: Mapped[str] = mapped_column(String(16))
    actor_id: Mapped[str] = mapped_column(String(64), default="")
    actor_label: Mapped[str] = mapped_column(String(254), default="")
    action: Mapped[str] = mapped_column(String(64), index=True)
    object_type: Mapped[str] = mapped_column(String(64), default="")
    object_id: Mapped[str] = mapped_column(String(64), default="", index=True)
    organization_id: Mapped[str] = mapped_column(String(64), default="", index=True)
    patient_id: Mapped[str] = mapped_column(String(64), default="", index=True)
    source_ip: Mapped[str] = mapped_column(String(64), default="")
    outcome: Mapped[str] = mapped_column(String(16))
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # Set when sealed into the chain (clinic.audit.seal), shortly after the entry's transaction commits.
    chain_pos: Mapped[int | None] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), unique=True,
                                                  default=None)
    prev_hash: Mapped[str | None] = mapped_column(String(64), default=None)
    hash: Mapped[str | None] = mapped_column(String(64), default=None)


class IdempotencyRecord(IdMixin, Base):
    __tablename__ = "idempotency_record"
    __table_args__ = (UniqueConstraint("actor", "key"),)

    actor: Mapped[str] = mapped_column(String(64))
    key: Mapped[str] = mapped_column(String(200))
    method: Mapped[str] = mapped_column(String(8))
    path: Mapped[str] = mapped_column(String(500))
    request_hash: Mapped[str] = mapped_column(String(64))
    status_code: Mapped[int] = mapped_column(Integer)
    response: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class OutboxMessage(IdMixin, Base):
    """Every e-mail and SMS the platform sends, so admins can see what went out."""

    __tablename__ = "outbox_message"

    organization_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("organization.id"), default=None)
    channel: Mapped[str] = mapped_column(String(8))  # email | sms
    recipient: Mapped[str] = mapped_column(String(254))
    subject: Mapped[str] = mapped_column(String(300), default="")
    body: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(16), default="queued")  # queued | sent | failed
    error: Mapped[str] = mapped_column(Text, default="")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(default=None)
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)


__all__ = [
    "ApiToken",
    "AuditEvent",
    "IdempotencyRecord",
    "MagicLink",
    "MagicLinkPurpose",
    "Membership",
    "OrgKind",
    "Organization",
    "OutboxMessage",
    "Role",
    "User",
    "WebSession",
]
