"""People and their clinically relevant attributes (FHIR Patient, Practitioner, Consent, AllergyIntolerance)."""

from __future__ import annotations

import enum
import uuid
from datetime import date, datetime
from typing import Any

from sqlalchemy import Date, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from clinic.db.base import Base, IdMixin, TimestampMixin, utcnow
from clinic.db.models import str_enum

#: Scripts whose names are written family name first, with no space between the parts (김민지, 山田太郎, 王小明).
_FAMILY_FIRST_RANGES = (
    (0x1100, 0x11FF),  # Hangul Jamo
    (0x3040, 0x30FF),  # Hiragana, Katakana
    (0x3130, 0x318F),  # Hangul Compatibility Jamo
    (0x31F0, 0x31FF),  # Katakana Phonetic Extensions
    (0x3400, 0x4DBF),  # CJK Unified Ideographs Extension A
    (0x4E00, 0x9FFF),  # CJK Unified Ideographs
    (0xA960, 0xA97F),  # Hangul Jamo Extended-A
    (0xAC00, 0xD7FF),  # Hangul Syllables, Jamo Extended-B
    (0xF900, 0xFAFF),  # CJK Compatibility Ideographs
    (0xFF65, 0xFFDC),  # halfwidth Katakana and Hangul
    (0x20000, 0x3134F),  # CJK Unified Ideographs Extensions B-G
)


def _family_first_script(ch: str) -> bool:
    cp = ord(ch)
    return any(lo <= cp <= hi for lo, hi in _FAMILY_FIRST_RANGES)


def person_name(family: str, given: str) -> str:
    """A person's full name as people of that script write it: the one place names are put together.

    Hangul, Chinese characters and Kana: family name first, no space ("김" + "민지" → "김민지").
    Other scripts (Latin, Cyrillic, …): given name first ("Minji" + "Kim" → "Minji Kim").
    A name mixing both keeps the family name first, with a space ("김 Minji").
    """
    family, given = " ".join(family.split()), " ".join(given.split())
    if not family or not given:
        return family or given
    letters = [ch for ch in family + given if ch.isalpha()]
    east_asian = [_family_first_script(ch) for ch in letters]
    if east_asian and all(east_asian):
        return family + given
    if any(east_asian):
        return f"{family} {given}"
    return f"{given} {family}"


class Sex(enum.StrEnum):
    """FHIR AdministrativeGender."""

    MALE = "male"
    FEMALE = "female"
    OTHER = "other"
    UNKNOWN = "unknown"


class Patient(IdMixin, TimestampMixin, Base):
    __tablename__ = "patient"
    __table_args__ = (Index("ix_patient_org_name", "organization_id", "family_name", "given_name"),)

    organization_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organization.id"), index=True)
    user_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("user_account.id"), default=None, index=True)
    family_name: Mapped[str] = mapped_column(String(100))
    given_name: Mapped[str] = mapped_column(String(100))
    birth_date: Mapped[date] = mapped_column(Date)
    sex: Mapped[Sex] = mapped_column(str_enum(Sex, "sex"), default=Sex.UNKNOWN)
    phone: Mapped[str] = mapped_column(String(20), default="")  # E.164
    email: Mapped[str] = mapped_column(String(254), default="")
    address: Mapped[str] = mapped_column(String(500), default="")
    postal_code: Mapped[str] = mapped_column(String(20), default="")
    #: Where the patient is located; the law of this place governs the visit (ISO 3166-1/-2).
    jurisdiction: Mapped[str] = mapped_column(String(8), default="KR")
    locale: Mapped[str | None] = mapped_column(String(8), default=None)
    nominated_pharmacy_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("organization.id"), default=None)
    erased_at: Mapped[datetime | None] = mapped_column(default=None)

    guardians: Mapped[list[Guardian]] = relationship(lazy="selectin", cascade="all, delete-orphan")
    allergies: Mapped[list[Allergy]] = relationship(lazy="selectin", cascade="all, delete-orphan")
    attributes: Mapped[list[PatientAttribute]] = relationship(lazy="selectin", cascade="all, delete-orphan")

    @property
    def full_name(self) -> str:
        """The name to show and print (e-mails, invitations, queue, PDFs); see :func:`person_name`."""
        return person_name(self.family_name, self.given_name)

    def age_on(self, day: date) -> int:
        b = self.birth_date
        return day.year - b.year - ((day.month, day.day) < (b.month, b.day))


class Guardian(IdMixin, Base):
    __tablename__ = "guardian"

    patient_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("patient.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("user_account.id"), default=None, index=True)
    name: Mapped[str] = mapped_column(String(200))
    relationship_code: Mapped[str] = mapped_column(String(32), default="guardian")  # parent, spouse, …
    phone: Mapped[str] = mapped_column(String(20), default="")
    email: Mapped[str] = mapped_column(String(254), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Allergy(IdMixin, Base):
    """FHIR AllergyIntolerance, reduced to what prescribing safety checks need."""

    __tablename__ = "allergy"

    patient_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("patient.id", ondelete="CASCADE"), index=True)
    substance: Mapped[str] = mapped_column(String(200))
    #: ATC code or prefix (e.g. J01C for penicillins) so drug checks can match classes, not just names.
    atc_code: Mapped[str] = mapped_column(String(8), default="")
    reaction: Mapped[str] = mapped_column(String(300), default="")
    severity: Mapped[str] = mapped_column(String(16), default="moderate")  # mild | moderate | severe
    recorded_by_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("user_account.id"), default=None)
    recorded_at: Mapped[datetime] = mapped_column(default=utcnow)


class AttributeKind(enum.StrEnum):
    """The facts telemedicine law depends on (names match the policy engine's patient groups)."""

    ISLAND_REMOTE = "island_remote"
    UNDERSERVED_AREA = "underserved_area"
    LONG_TERM_CARE = "long_term_care"
    DISABLED = "disabled"
    INFECTIOUS_DISEASE = "infectious_disease"
    RARE_DISEASE = "rare_disease"
    POST_SURGERY = "post_surgery"
    CHRONIC = "chronic"


class PatientAttribute(IdMixin, Base):
    """A legally relevant fact about a patient, with where it came from and when."""

    __tablename__ = "patient_attribute"

    patient_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("patient.id", ondelete="CASCADE"), index=True)
    kind: Mapped[AttributeKind] = mapped_column(str_enum(AttributeKind, "attribute_kind"))
    value: Mapped[str] = mapped_column(String(200), default="")  # e.g. long-term-care grade "3"
    source: Mapped[str] = mapped_column(String(300))  # e.g. "NHIS long-term care certificate"
    source_date: Mapped[date] = mapped_column(Date)
    valid_until: Mapped[date | None] = mapped_column(Date, default=None)
    recorded_by_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("user_account.id"), default=None)
    recorded_at: Mapped[datetime] = mapped_column(default=utcnow)


class ConsentKind(enum.StrEnum):
    TELEMEDICINE = "telemedicine"
    RECORDING = "recording"
    DATA_SHARING = "data_sharing"
    CHECKIN_PHOTO = "checkin_photo"


class Consent(IdMixin, Base):
    """FHIR Consent: each grant is a row; revocation stamps it, a new grant is a new row."""

    __tablename__ = "consent"

    patient_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("patient.id", ondelete="CASCADE"), index=True)
    kind: Mapped[ConsentKind] = mapped_column(str_enum(ConsentKind, "consent_kind"))
    version: Mapped[str] = mapped_column(String(32))
    text_sha256: Mapped[str] = mapped_column(String(64), default="")
    granted_at: Mapped[datetime] = mapped_column(default=utcnow)
    granted_by_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("user_account.id"), default=None)
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)
    encounter_id: Mapped[uuid.UUID | None] = mapped_column(default=None)


class Practitioner(IdMixin, TimestampMixin, Base):
    """FHIR Practitioner: the professional profile of a clinician or pharmacist user."""

    __tablename__ = "practitioner"

    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("user_account.id", ondelete="CASCADE"), unique=True)
    specialty: Mapped[str] = mapped_column(String(100), default="")
    languages: Mapped[list[Any]] = mapped_column(default=list)
    timezone: Mapped[str] = mapped_column(String(64), default="Asia/Seoul")
    bio: Mapped[str] = mapped_column(Text, default="")
    #: online | in_call | away — shown to waiting patients.
    status: Mapped[str] = mapped_column(String(16), default="away")

    licenses: Mapped[list[License]] = relationship(lazy="selectin", cascade="all, delete-orphan")


class License(IdMixin, Base):
    __tablename__ = "license"
    __table_args__ = (UniqueConstraint("practitioner_id", "jurisdiction", "number"),)

    practitioner_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("practitioner.id", ondelete="CASCADE"), index=True)
    jurisdiction: Mapped[str] = mapped_column(String(8))  # KR, US-CA, …
    number: Mapped[str] = mapped_column(String(64))
    expires_on: Mapped[date | None] = mapped_column(Date, default=None)


class InPersonVisit(IdMixin, Base):
    """A face-to-face visit at an institution, as recorded by its staff.

    Telemedicine law in several jurisdictions (KR revisit rules, CN follow-ups, JP) depends on it.
    """

    __tablename__ = "in_person_visit"

    patient_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("patient.id", ondelete="CASCADE"), index=True)
    organization_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organization.id"), index=True)
    visit_date: Mapped[date] = mapped_column(Date)
    #: ICD-10 code of the condition treated, so "same condition" can be judged.
    condition_code: Mapped[str] = mapped_column(String(16), default="")
    recorded_by_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("user_account.id"), default=None)
    recorded_at: Mapped[datetime] = mapped_column(default=utcnow)
