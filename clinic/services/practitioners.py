"""Practitioner profiles (FHIR Practitioner / PractitionerRole): specialty, languages, licenses."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import select

from clinic.db.clinical import License, Practitioner
from clinic.db.models import Membership, Role, User
from clinic.db.uow import UnitOfWork
from clinic.errors import Conflict, Forbidden, Invalid, NotFound
from clinic.security.authz import Principal, Resource, allowed, authorize


@dataclass(frozen=True)
class Profile:
    user: User
    practitioner: Practitioner
    organization_ids: list[uuid.UUID]


async def _orgs(uow: UnitOfWork, user_id: uuid.UUID) -> list[uuid.UUID]:
    rows = (await uow.session.execute(select(Membership.organization_id).where(
        Membership.user_id == user_id, Membership.role.in_([Role.CLINICIAN, Role.PHARMACIST])))).scalars()
    return sorted(set(rows))


async def _load(uow: UnitOfWork, user_id: uuid.UUID) -> Profile:
    user = await uow.session.get(User, user_id)
    pr = (await uow.session.execute(select(Practitioner).where(Practitioner.user_id == user_id))).scalar_one_or_none()
    if user is None or pr is None:
        raise NotFound("practitioner not found")
    return Profile(user, pr, await _orgs(uow, user_id))


def _may(principal: Principal, action: str, prof: Profile) -> bool:
    if action == "account.manage":
        return allowed(principal, action, Resource("Practitioner", id=prof.user.id, owner_user_id=prof.user.id))
    return any(allowed(principal, action, Resource("Practitioner", organization_id=o, id=prof.user.id))
               for o in prof.organization_ids)


async def get_profile(uow: UnitOfWork, principal: Principal, user_id: uuid.UUID) -> Profile:
    prof = await _load(uow, user_id)
    # Colleagues and the clinic's patients (who choose whom to book) may read it.
    if not (_may(principal, "schedule.read", prof) or _may(principal, "member.read", prof)
            or principal.user_id == user_id):
        authorize(principal, "schedule.read", Resource("Practitioner", id=user_id))
    return prof


async def list_profiles(uow: UnitOfWork, principal: Principal, org_id: uuid.UUID) -> list[Profile]:
    authorize(principal, "schedule.read", Resource("Organization", organization_id=org_id))
    users = (await uow.session.execute(
        select(User).join(Membership, Membership.user_id == User.id)
        .where(Membership.organization_id == org_id, Membership.role == Role.CLINICIAN, User.is_active.is_(True))
        .order_by(User.display_name))).scalars().all()
    out = []
    for u in users:
        try:
            out.append(await _load(uow, u.id))
        except NotFound:
            continue
    return out


def _check_editor(principal: Principal, prof: Profile) -> None:
    if not (_may(principal, "account.manage", prof) or _may(principal, "member.manage", prof)):
        raise Forbidden("only the practitioner or their organization's admin can change this",
                        action="member.manage", resource=Resource("Practitioner", id=prof.user.id))


async def update_profile(uow: UnitOfWork, principal: Principal, user_id: uuid.UUID, *, specialty: str | None,
                         languages: list[str] | None, timezone: str | None, bio: str | None) -> Profile:
    prof = await get_profile(uow, principal, user_id)
    _check_editor(principal, prof)
    pr = prof.practitioner
    if timezone is not None:
        try:
            ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise Invalid("unknown time zone", fields={"timezone": "not an IANA time zone"}) from None
        pr.timezone = timezone
    if specialty is not None:
        pr.specialty = specialty
    if languages is not None:
        pr.languages = sorted(set(languages))
    if bio is not None:
        pr.bio = bio
    uow.audit.record(principal, "practitioner.update", object_type="Practitioner", object_id=user_id)
    return prof


async def add_license(uow: UnitOfWork, principal: Principal, user_id: uuid.UUID, *, jurisdiction: str, number: str,
                      expires_on: date | None) -> License:
    prof = await get_profile(uow, principal, user_id)
    _check_editor(principal, prof)
    if expires_on is not None and expires_on < date.today():
        raise Invalid("the license has already expired", fields={"expires_on": "must not be in the past"})
    dup = (await uow.session.execute(select(License).where(
        License.practitioner_id == prof.practitioner.id, License.jurisdiction == jurisdiction,
        License.number == number))).scalar_one_or_none()
    if dup is not None:
        raise Conflict("this license is already recorded", code="duplicate_license")
    lic = License(practitioner_id=prof.practitioner.id, jurisdiction=jurisdiction, number=number,
                  expires_on=expires_on)
    uow.add(lic)
    await uow.session.flush()
    uow.audit.record(principal, "practitioner.license_add", object_type="Practitioner", object_id=user_id,
                     detail={"jurisdiction": jurisdiction})
    return lic


async def remove_license(uow: UnitOfWork, principal: Principal, user_id: uuid.UUID, license_id: uuid.UUID) -> None:
    prof = await get_profile(uow, principal, user_id)
    _check_editor(principal, prof)
    lic = await uow.session.get(License, license_id)
    if lic is None or lic.practitioner_id != prof.practitioner.id:
        raise NotFound("license not found")
    await uow.session.delete(lic)
    uow.audit.record(principal, "practitioner.license_remove", object_type="Practitioner", object_id=user_id,
                     detail={"jurisdiction": lic.jurisdiction})
