"""Demo data: a clinic with two doctors, several patients and a pharmacy.

Passwords are generated on first seed and kept in ./var/demo-logins.json (mode 0600), never in the
repository. Seeding again is a no-op that reprints the logins.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Awaitable, Callable
from datetime import date
from pathlib import Path
from typing import Any

from sqlalchemy import select

from clinic.db.base import utcnow
from clinic.db.clinical import (
    AttributeKind,
    Guardian,
    InPersonVisit,
    License,
    Patient,
    PatientAttribute,
    Practitioner,
    Sex,
    person_name,
)
from clinic.db.models import Membership, Organization, OrgKind, Role, User
from clinic.db.uow import UnitOfWork
from clinic.security.authz import SYSTEM
from clinic.security.passwords import hash_password

DEMO_CLINIC = "Seoul Demo Clinic (데모 의원)"
LOGINS_FILE = "demo-logins.json"

#: Later feature modules append their own demo seeding (schedules, visit types, formulary, …).
EXTRA_SEEDERS: list[Callable[[UnitOfWork, dict[str, Any]], Awaitable[None]]] = []


def _password() -> str:
    return "demo-" + secrets.token_urlsafe(9)


def read_logins(data_dir: Path) -> list[dict[str, str]]:
    path = data_dir / LOGINS_FILE
    return list(json.loads(path.read_text())) if path.exists() else []


def write_logins(data_dir: Path, logins: list[dict[str, str]]) -> None:
    data_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(data_dir / LOGINS_FILE, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(logins, fh, ensure_ascii=False, indent=1)


async def seed_demo(uow: UnitOfWork) -> list[dict[str, str]] | None:
    """Create the demo; None when it already exists."""
    existing = (await uow.session.execute(select(Organization).where(Organization.name == DEMO_CLINIC))).scalar()
    if existing is not None:
        return None

    clinic = Organization(name=DEMO_CLINIC, kind=OrgKind.CLINIC, jurisdiction="KR", timezone="Asia/Seoul",
                          currency="KRW", require_2fa=False, address="서울특별시 중구 세종대로 110",
                          postal_code="04524", phone="+8227000000", email="clinic@demo.example",
                          monthly_in_person_visits=600)
    pharmacy = Organization(name="Demo Pharmacy (데모 약국)", kind=OrgKind.PHARMACY, jurisdiction="KR",
                            timezone="Asia/Seoul", currency="KRW", require_2fa=False,
                            address="서울특별시 중구 을지로 12", postal_code="04533", phone="+8227000001")
    pharmacy2 = Organization(name="Island Pharmacy (섬마을 약국)", kind=OrgKind.PHARMACY, jurisdiction="KR",
                             timezone="Asia/Seoul", currency="KRW", require_2fa=False,
                             address="인천광역시 옹진군 백령면 1", postal_code="23100", phone="+82328000000")
    uow.add(clinic)
    uow.add(pharmacy)
    uow.add(pharmacy2)
    await uow.session.flush()

    logins: list[dict[str, str]] = []

    async def user(email: str, name: str, role: Role, org: Organization | None, locale: str = "ko",
                   platform_admin: bool = False) -> User:
        pw = _password()
        u = User(email=email, display_name=name, password_hash=hash_password(pw), locale=locale,
                 is_platform_admin=platform_admin)
        uow.add(u)
        await uow.session.flush()
        if org is not None:
            uow.add(Membership(user_id=u.id, organization_id=org.id, role=role))
        logins.append({"role": role.value, "email": email, "password": pw, "name": name})
        return u

    await user("admin@demo.example", "Demo Admin (관리자)", Role.ORG_ADMIN, clinic, "en")
    await user("root@demo.example", "Platform Admin", Role.PLATFORM_ADMIN, None, "en", platform_admin=True)
    kim = await user("dr.kim@demo.example", "Dr. Kim Jiwon (김지원)", Role.CLINICIAN, clinic)
    lee = await user("dr.lee@demo.example", "Dr. Lee Minho (이민호)", Role.CLINICIAN, clinic, "en")
    await user("pharmacist@demo.example", "Park Seoyeon (박서연 약사)", Role.PHARMACIST, pharmacy)
    await user("pharmacist2@demo.example", "Choi Island (최섬 약사)", Role.PHARMACIST, pharmacy2)
    for doc, spec, lic in ((kim, "Family medicine", "KR-12345"), (lee, "Internal medicine", "KR-67890")):
        pr = Practitioner(user_id=doc.id, specialty=spec, languages=["ko", "en"], timezone="Asia/Seoul")
        pr.licenses.append(License(jurisdiction="KR", number=lic))
        uow.add(pr)

    patients = [
        ("patient1@demo.example", "김", "민지", date(1986, 4, 12), Sex.FEMALE, "+821012345678", []),
        ("patient2@demo.example", "박", "영수", date(1952, 9, 3), Sex.MALE, "+821023456789",
         [(AttributeKind.LONG_TERM_CARE, "3", "NHIS long-term care certificate (장기요양인정서)")]),
        ("patient3@demo.example", "최", "섬이", date(1975, 1, 22), Sex.FEMALE, "+821034567890",
         [(AttributeKind.ISLAND_REMOTE, "백령도", "Resident registration (주민등록)")]),
        ("patient4@demo.example", "정", "하준", date(2015, 6, 30), Sex.MALE, "+821045678901", []),
    ]
    for email, fam, giv, born, sex, phone, attrs in patients:
        u = await user(email, person_name(fam, giv), Role.PATIENT, clinic)
        # Check-in asks for the birth date, so the demo patient has to be told theirs.
        logins[-1]["birth_date"] = born.isoformat()
        p = Patient(organization_id=clinic.id, user_id=u.id, family_name=fam, given_name=giv, birth_date=born,
                    sex=sex, phone=phone, email=email, jurisdiction="KR", address="서울특별시",
                    nominated_pharmacy_id=pharmacy.id)
        uow.add(p)
        await uow.session.flush()
        # Seen in person at the clinic on the day of seeding, for hypertension (I10): the telemedicine visits
        # booked in the demo are then lawful follow-ups under KR revisit rules (docs/policy.md).
        uow.add(InPersonVisit(patient_id=p.id, organization_id=clinic.id, visit_date=utcnow().date(),
                              condition_code="I10"))
        for kind, value, source in attrs:
            uow.add(PatientAttribute(patient_id=p.id, kind=kind, value=value, source=source,
                                     source_date=date(2024, 1, 15)))
        if born.year > 2008:
            uow.add(Guardian(patient_id=p.id, name="정수연 (mother)", relationship_code="parent",
                             phone="+821056789012", email="guardian@demo.example"))
    await uow.session.flush()
    await _seed_clinic_setup(uow, clinic.id, [kim.id, lee.id])
    ctx: dict[str, Any] = {"clinic": clinic, "pharmacy": pharmacy, "pharmacy2": pharmacy2, "doctors": [kim, lee]}
    for seeder in EXTRA_SEEDERS:
        await seeder(uow, ctx)
    uow.audit.record(SYSTEM, "demo.seed", object_type="Organization", object_id=clinic.id,
                     organization_id=clinic.id)
    return logins


async def _seed_clinic_setup(uow: UnitOfWork, clinic_id: Any, doctors: list[Any]) -> None:
    """Visit types with fees, both doctors available every day (so the demo can be tried at any hour),
    and the starter drug list for prescribing."""
    from datetime import time

    from clinic.db.scheduling import AvailabilityRule, Schedule, VisitType
    from prescriptions.formulary import load_starter

    uow.add(VisitType(organization_id=clinic_id, code="video-consult", name="Video consultation",
                      name_ko="화상 진료", duration_minutes=15, modes=["video", "audio", "chat"], fee_amount=15000,
                      currency="KRW"))
    uow.add(VisitType(organization_id=clinic_id, code="follow-up", name="Follow-up (chronic care)",
                      name_ko="재진 (만성질환 관리)", duration_minutes=30, modes=["video", "audio"], fee_amount=12000,
                      currency="KRW"))
    for doc in doctors:
        sch = Schedule(organization_id=clinic_id, practitioner_user_id=doc, timezone="Asia/Seoul",
                       observe_public_holidays=False)
        uow.add(sch)
        await uow.session.flush()
        for wd in range(7):
            uow.add(AvailabilityRule(schedule_id=sch.id, weekday=wd, start=time(7), end=time(23)))
    await load_starter(uow)


async def add_birth_dates(uow: UnitOfWork, logins: list[dict[str, str]]) -> list[dict[str, str]]:
    """The saved logins, each patient's with the birth date check-in asks for (logins saved before it was
    recorded there lack it)."""
    emails = [row["email"] for row in logins if row.get("role") == Role.PATIENT.value and not row.get("birth_date")]
    if not emails:
        return logins
    born = dict((await uow.session.execute(
        select(Patient.email, Patient.birth_date).where(Patient.email.in_(emails), Patient.erased_at.is_(None))
    )).tuples().all())
    return [{**row, "birth_date": born[row["email"]].isoformat()} if row["email"] in born else row
            for row in logins]


def format_logins(logins: list[dict[str, str]], base_url: str) -> str:
    lines = [f"Demo logins for {base_url}/login  (two-factor sign-in is OFF for the demo organizations)"]
    for row in logins:
        # Patients confirm their birth date at check-in; logins saved by an older seed lack it.
        born = f"   born {row['birth_date']}" if row.get("birth_date") else ""
        lines.append(f"  {row['role']:<15} {row['email']:<28} {row['password']}   {row['name']}{born}")
    return "\n".join(lines)
