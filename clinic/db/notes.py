"""Consultation notes (FHIR Composition) with immutable signed versions, and patient erasure requests.

A :class:`ClinicalNote` is the mutable header of one encounter's note. While it is a draft its working
copy lives on the header itself (autosaved, guarded by ``revision``). Signing and every later amendment
insert a :class:`NoteVersion` (plus its :class:`NoteDiagnosis` rows) that is never updated or deleted
afterwards: KR Medical Service Act Art. 22(2) requires keeping both an amended record and the original,
and Art. 22(3) forbids altering it. The ORM refuses such updates (see the mapper events below), and each
version carries a SHA-256 of its content chained to the previous version, so a change made behind the
ORM's back is still detectable.
"""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Integer, String, Text, UniqueConstraint, event
from sqlalchemy.orm import Mapped, Mapper, mapped_column, relationship

from clinic.db.base import Base, IdMixin, TimestampMixin, utcnow
from clinic.db.models import str_enum


class NoteStatus(enum.StrEnum):
    DRAFT = "draft"
    SIGNED = "signed"
    AMENDED = "amended"

    @property
    def fhir(self) -> str:
        """FHIR Composition.status."""
        return {"draft": "preliminary", "signed": "final", "amended": "amended"}[self.value]


class ClinicalNote(IdMixin, TimestampMixin, Base):
    __tablename__ = "clinical_note"

    organization_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organization.id"), index=True)
    #: One note per visit; the UNIQUE also settles two tabs racing to create it.
    encounter_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("encounter.id"), unique=True)
    patient_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("patient.id"), index=True)
    author_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("user_account.id"))
    status: Mapped[NoteStatus] = mapped_column(str_enum(NoteStatus, "note_status"), default=NoteStatus.DRAFT)
    #: Optimistic-concurrency token: bumped by every write (draft save, sign, amendment). SQLAlchemy adds
    #: ``WHERE revision = :old`` to each UPDATE, so two writers that read the same revision cannot both win.
    revision: Mapped[int] = mapped_column(Integer, default=1)
    #: Number of the latest signed version (0 while a draft).
    current_version: Mapped[int] = mapped_column(Integer, default=0)
    signed_at: Mapped[datetime | None] = mapped_column(default=None)
    signed_by_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("user_account.id"), default=None)
    # The draft working copy; emptied at signing (the content then lives in NoteVersion rows only).
    subjective: Mapped[str] = mapped_column(Text, default="")
    objective: Mapped[str] = mapped_column(Text, default="")
    assessment: Mapped[str] = mapped_column(Text, default="")
    plan: Mapped[str] = mapped_column(Text, default="")
    text: Mapped[str] = mapped_column(Text, default="")
    #: [{"code", "display", "primary"}] — validated ICD-10-CM codes of the draft.
    draft_diagnoses: Mapped[list[Any]] = mapped_column(default=list)

    versions: Mapped[list[NoteVersion]] = relationship(
        lazy="selectin", order_by="NoteVersion.version", back_populates="note"
    )

    __mapper_args__ = {"version_id_col": revision}  # noqa: RUF012 - read once by SQLAlchemy


class NoteVersion(IdMixin, Base):
    """One signed state of a note. Insert-only."""

    __tablename__ = "note_version"
    __table_args__ = (UniqueConstraint("note_id", "version"),)

    note_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("clinical_note.id"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    author_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("user_account.id"))
    signed_at: Mapped[datetime]
    #: Empty for version 1; why the record was changed for every amendment.
    amendment_reason: Mapped[str] = mapped_column(Text, default="")
    subjective: Mapped[str] = mapped_column(Text, default="")
    objective: Mapped[str] = mapped_column(Text, default="")
    assessment: Mapped[str] = mapped_column(Text, default="")
    plan: Mapped[str] = mapped_column(Text, default="")
    text: Mapped[str] = mapped_column(Text, default="")
    content_sha256: Mapped[str] = mapped_column(String(64))
    previous_sha256: Mapped[str] = mapped_column(String(64), default="")

    note: Mapped[ClinicalNote] = relationship(back_populates="versions")
    diagnoses: Mapped[list[NoteDiagnosis]] = relationship(
        lazy="selectin", order_by="NoteDiagnosis.position"
    )


class NoteDiagnosis(IdMixin, Base):
    """An ICD-10-CM coded diagnosis of one note version (code and display as shown when signed)."""

    __tablename__ = "note_diagnosis"
    __table_args__ = (UniqueConstraint("version_id", "position"),)

    version_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("note_version.id"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    code: Mapped[str] = mapped_column(String(16), index=True)
    display: Mapped[str] = mapped_column(String(300))
    primary: Mapped[bool] = mapped_column("is_primary", default=False)


class ImmutableRecordError(RuntimeError):
    """A signed note version (or its diagnoses) was about to be changed or removed."""


def _refuse(verb: str) -> Any:
    def listener(_mapper: Mapper[Any], _conn: Any, target: Any) -> None:
        raise ImmutableRecordError(f"{type(target).__name__} rows are append-only; refusing to {verb} {target.id}")

    return listener


# A last line of defence below the service: whatever code path flushes a change to a signed version,
# the flush fails instead of silently rewriting medical history.
for _cls in (NoteVersion, NoteDiagnosis):
    event.listen(_cls, "before_update", _refuse("update"))
    event.listen(_cls, "before_delete", _refuse("delete"))


class ErasureStatus(enum.StrEnum):
    COMPLETED = "completed"


class ErasureRequest(IdMixin, Base):
    """A data-subject erasure request and exactly what was done about it (kept as evidence)."""

    __tablename__ = "erasure_request"

    organization_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organization.id"), index=True)
    patient_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("patient.id"), index=True)
    requested_by_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("user_account.id"), default=None)
    #: "patient" when the data subject (or their guardian) asked, "organization" for an admin.
    requested_by_role: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[ErasureStatus] = mapped_column(str_enum(ErasureStatus, "erasure_status"))
    requested_at: Mapped[datetime] = mapped_column(default=utcnow)
    completed_at: Mapped[datetime | None] = mapped_column(default=None)
    #: {"deleted": {table: count}, "anonymized": {table: count}, "retained": [{what, basis, until}]}
    summary: Mapped[dict[str, Any]] = mapped_column(default=dict)


__all__ = [
    "ClinicalNote",
    "ErasureRequest",
    "ErasureStatus",
    "ImmutableRecordError",
    "NoteDiagnosis",
    "NoteStatus",
    "NoteVersion",
]
