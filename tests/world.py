"""A small two-tenant world for tests: every role in two organizations, with patients in each."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from aiohttp.test_utils import TestClient

from clinic.db.base import utcnow
from clinic.db.clinical import InPersonVisit, Patient, Practitioner, Sex
from clinic.db.models import Membership, Organization, OrgKind, Role, User
from clinic.db.uow import UnitOfWork
from clinic.security.passwords import hash_password

PASSWORD = "correct-horse-battery"
_HASH = hash_password(PASSWORD)


@dataclass
class Tenant:
    clinic: Organization
    pharmacy: Organization
    users: dict[str, User] = field(default_factory=dict)
    patient: Patient | None = None
    other_patient: Patient | None = None


@dataclass
class World:
    a: Tenant
    b: Tenant
    root: User

    def user(self, tenant: str, role: str) -> User:
        return getattr(self, tenant).users[role]


async def make_user(uow: UnitOfWork, email: str, role: Role | None, org: Organization | None,
                    platform_admin: bool = False) -> User:
    u = User(email=email, display_name=email.split("@")[0], password_hash=_HASH, is_platform_admin=platform_admin,
             locale="en")
    uow.add(u)
    await uow.session.flush()
    if role is not None and org is not None:
        uow.add(Membership(user_id=u.id, organization_id=org.id, role=role))
    if role is Role.CLINICIAN:
        uow.add(Practitioner(user_id=u.id, specialty="Family medicine", languages=["ko", "en"]))
    return u


async def build_world(uow: UnitOfWork, *, require_2fa: bool = False) -> World:
    tenants = []
    for tag in ("a", "b"):
        clinic = Organization(name=f"Clinic {tag.upper()}", kind=OrgKind.CLINIC, require_2fa=require_2fa)
        pharmacy = Organization(name=f"Pharmacy {tag.upper()}", kind=OrgKind.PHARMACY, require_2fa=require_2fa)
        uow.add(clinic)
        uow.add(pharmacy)
        await uow.session.flush()
        t = Tenant(clinic=clinic, pharmacy=pharmacy)
        t.users["clinician"] = await make_user(uow, f"doc-{tag}@t.example", Role.CLINICIAN, clinic)
        t.users["clinician2"] = await make_user(uow, f"doc2-{tag}@t.example", Role.CLINICIAN, clinic)
        t.users["org_admin"] = await make_user(uow, f"admin-{tag}@t.example", Role.ORG_ADMIN, clinic)
        t.users["pharmacist"] = await make_user(uow, f"pharm-{tag}@t.example", Role.PHARMACIST, pharmacy)
        t.users["patient"] = await make_user(uow, f"pat-{tag}@t.example", Role.PATIENT, clinic)
        t.users["patient2"] = await make_user(uow, f"pat2-{tag}@t.example", Role.PATIENT, clinic)
        for key, attr in (("patient", "patient"), ("patient2", "other_patient")):
            p = Patient(organization_id=clinic.id, user_id=t.users[key].id, family_name="Test", given_name=key + tag,
                        birth_date=date(1980, 1, 1), sex=Sex.FEMALE, jurisdiction="KR",
                        nominated_pharmacy_id=pharmacy.id, email=f"{key}-{tag}@t.example", phone="+821012345678")
            uow.add(p)
            await uow.session.flush()
            # A face-to-face visit at their clinic this month: under KR revisit rules the patients are
            # then eligible for telemedicine follow-ups, as real clinic patients usually are.
            uow.add(InPersonVisit(patient_id=p.id, organization_id=clinic.id, visit_date=utcnow().date(),
                                  condition_code="I10"))
            setattr(t, attr, p)
        tenants.append(t)
    root = await make_user(uow, "root@t.example", None, None, platform_admin=True)
    await uow.session.flush()
    return World(a=tenants[0], b=tenants[1], root=root)


ROLES = ("patient", "clinician", "pharmacist", "org_admin")


async def login(client: TestClient, email: str, password: str = PASSWORD) -> str:
    """Sign in through the API; returns the CSRF token (the session cookie stays in the client)."""
    resp = await client.post("/api/v1/auth/login", json={"email": email, "password": password})
    body = await resp.json()
    assert resp.status == 200, body
    return str(body["csrf_token"])


def hdr(csrf: str, **extra: Any) -> dict[str, str]:
    return {"X-CSRF-Token": csrf, **{k.replace("_", "-"): v for k, v in extra.items()}}


def uid() -> str:
    return str(uuid.uuid4())
