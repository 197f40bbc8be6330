"""Practitioner profiles and licenses (the licenses feed the policy engine's licensure rules)."""

from __future__ import annotations

import uuid
from datetime import date

from pydantic import Field

from clinic.services import practitioners as svc
from clinic.web.api import ApiContext, ApiRouter
from clinic.web.schemas import Input, Output

router = ApiRouter()
T = ("practitioners",)


class LicenseOut(Output):
    id: uuid.UUID
    jurisdiction: str
    number: str
    expires_on: date | None


class ProfileOut(Output):
    user_id: uuid.UUID
    display_name: str
    specialty: str
    languages: list[str]
    timezone: str
    bio: str
    status: str
    organization_ids: list[uuid.UUID]
    licenses: list[LicenseOut]


class ProfileList(Output):
    items: list[ProfileOut]


class ProfileIn(Input):
    specialty: str | None = Field(default=None, max_length=100)
    languages: list[str] | None = Field(default=None, max_length=20)
    timezone: str | None = Field(default=None, max_length=64)
    bio: str | None = Field(default=None, max_length=4000)


class LicenseIn(Input):
    jurisdiction: str = Field(pattern=r"^[A-Z]{2}(-[A-Z0-9]{1,3})?$")
    number: str = Field(min_length=1, max_length=64)
    expires_on: date | None = None


def _out(p: svc.Profile) -> ProfileOut:
    pr = p.practitioner
    return ProfileOut(user_id=p.user.id, display_name=p.user.display_name, specialty=pr.specialty,
                      languages=list(pr.languages), timezone=pr.timezone, bio=pr.bio, status=pr.status,
                      organization_ids=p.organization_ids,
                      licenses=[LicenseOut.model_validate(lic) for lic in pr.licenses])


@router.route("GET", "/organizations/{org_id}/practitioners", response=ProfileList, tags=T)
async def list_practitioners(ctx: ApiContext) -> ProfileList:
    """The clinic's clinicians, for choosing whom to book."""
    return ProfileList(items=[_out(p) for p in await svc.list_profiles(ctx.uow, ctx.principal,
                                                                         ctx.path_uuid("org_id"))])


@router.route("GET", "/practitioners/{user_id}", response=ProfileOut, tags=T)
async def get_practitioner(ctx: ApiContext) -> ProfileOut:
    """One practitioner's profile and licenses."""
    return _out(await svc.get_profile(ctx.uow, ctx.principal, ctx.path_uuid("user_id")))


@router.route("PATCH", "/practitioners/{user_id}", body=ProfileIn, response=ProfileOut, tags=T)
async def update_practitioner(ctx: ApiContext) -> ProfileOut:
    """Change specialty, languages, time zone or bio (the practitioner, or an org admin)."""
    b = ctx.body
    p = await svc.update_profile(ctx.uow, ctx.principal, ctx.path_uuid("user_id"), specialty=b.specialty,
                                 languages=b.languages, timezone=b.timezone, bio=b.bio)
    return _out(p)


@router.route("POST", "/practitioners/{user_id}/licenses", body=LicenseIn, response=LicenseOut, status=201, tags=T)
async def add_license(ctx: ApiContext) -> LicenseOut:
    """Record a license (jurisdiction such as KR or US-CA, number, expiry)."""
    lic = await svc.add_license(ctx.uow, ctx.principal, ctx.path_uuid("user_id"), **ctx.body.model_dump())
    return LicenseOut.model_validate(lic)


@router.route("DELETE", "/practitioners/{user_id}/licenses/{id}", tags=T)
async def remove_license(ctx: ApiContext) -> None:
    """Remove a license record."""
    await svc.remove_license(ctx.uow, ctx.principal, ctx.path_uuid("user_id"), ctx.path_uuid())
