"""Accounts API: sign-in, second factor, the signed-in user, users, organizations, API tokens, audit."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from aiohttp import web
from pydantic import EmailStr, Field
from sqlalchemy import select

from clinic.audit import verify_chain
from clinic.db.models import AuditEvent, Membership, Organization, OrgKind, Role, User
from clinic.errors import Invalid, NotFound, Unauthenticated
from clinic.security.authz import Resource, authorize, orgs_for, platform_wide
from clinic.services import accounts
from clinic.web.api import ApiContext, ApiRouter
from clinic.web.context import services
from clinic.web.middleware import clear_session_cookie, set_session_cookie
from clinic.web.schemas import Input, Ok, Output

router = ApiRouter()
T = ("accounts",)


class LoginIn(Input):
    email: str = Field(min_length=3, max_length=254)
    password: str = Field(min_length=1, max_length=1024)


class MembershipOut(Output):
    organization_id: uuid.UUID
    organization_name: str
    organization_kind: OrgKind
    role: Role
    require_2fa: bool


class MeOut(Output):
    id: uuid.UUID
    email: str
    display_name: str
    locale: str | None
    is_platform_admin: bool
    totp_enabled: bool
    memberships: list[MembershipOut]
    patient_ids: list[uuid.UUID]


class LoginOut(Output):
    needs_second_factor: bool
    needs_enrollment: bool
    csrf_token: str
    user_id: uuid.UUID


class CodeIn(Input):
    code: str = Field(min_length=6, max_length=8, pattern=r"^\d{6}$")


class EnrollOut(Output):
    secret: str
    otpauth_uri: str


class MeUpdate(Input):
    display_name: str | None = Field(default=None, min_length=1, max_length=200)
    locale: Literal["ko", "en"] | None = None


class PasswordIn(Input):
    current_password: str = Field(max_length=1024)
    new_password: str = Field(max_length=1024)


def _me(user: User, patient_ids: frozenset[uuid.UUID]) -> MeOut:
    return MeOut(
        id=user.id, email=user.email, display_name=user.display_name, locale=user.locale,
        is_platform_admin=user.is_platform_admin, totp_enabled=user.totp_enabled_at is not None,
        memberships=[MembershipOut(organization_id=m.organization_id, organization_name=m.organization.name,
                                   organization_kind=m.organization.kind, role=m.role,
                                   require_2fa=m.organization.require_2fa) for m in user.memberships],
        patient_ids=sorted(patient_ids),
    )


@router.route("POST", "/auth/login", body=LoginIn, response=LoginOut, public=True, tags=T)
async def login(ctx: ApiContext) -> web.Response:
    """Sign in with e-mail and password; staff then owe a TOTP code."""
    svc = services(ctx.app)
    res = await accounts.login_with_password(ctx.uow, svc.settings, svc.login_limiter, email=ctx.body.email,
                                             password=ctx.body.password, ip=ctx.principal.source_ip,
                                             ua=ctx.request.headers.get("User-Agent", ""), uow_factory=svc.uow_factory)
    out = LoginOut(needs_second_factor=res.needs_second_factor, needs_enrollment=res.needs_enrollment,
                   csrf_token=res.csrf_secret, user_id=res.user.id)
    resp = web.json_response(out.model_dump(mode="json"))
    set_session_cookie(ctx.request, resp, res.session_token)
    return resp


def _session(ctx: ApiContext) -> tuple[accounts.SignedIn, accounts.SessionUser]:
    ws = ctx.request.get("web_session")
    user = ctx.request.get("user")
    if ws is None or user is None:
        raise Unauthenticated("sign in first")
    return ws, user


async def _reload(ctx: ApiContext) -> tuple[accounts.WebSession, User]:
    ws, user = _session(ctx)
    ws2 = await ctx.uow.session.get(accounts.WebSession, ws.id)
    user2 = await ctx.uow.session.get(User, user.id)
    assert ws2 is not None and user2 is not None
    return ws2, user2


@router.route("POST", "/auth/mfa", body=CodeIn, response=Ok, public=True, tags=T)
async def mfa(ctx: ApiContext) -> Ok:
    """Finish sign-in with a TOTP code."""
    svc = services(ctx.app)
    ws, user = await _reload(ctx)
    await accounts.verify_second_factor(ctx.uow, svc.settings, svc.mfa_limiter, ws, user, ctx.body.code,
                                        ip=ctx.principal.source_ip)
    return Ok()


@router.route("POST", "/auth/totp/enroll", response=EnrollOut, public=True, tags=T)
async def totp_enroll(ctx: ApiContext) -> EnrollOut:
    """Start TOTP enrollment: returns the secret and an otpauth:// URI for authenticator apps."""
    _, user = await _reload(ctx)
    secret, uri = await accounts.begin_totp_enrollment(ctx.uow, services(ctx.app).settings, user)
    return EnrollOut(secret=secret, otpauth_uri=uri)


@router.route("POST", "/auth/totp/confirm", body=CodeIn, response=Ok, public=True, tags=T)
async def totp_confirm(ctx: ApiContext) -> Ok:
    """Confirm TOTP enrollment with a first code; this also completes sign-in."""
    svc = services(ctx.app)
    ws, user = await _reload(ctx)
    await accounts.confirm_totp_enrollment(ctx.uow, svc.settings, svc.mfa_limiter, ws, user, ctx.body.code,
                                           ip=ctx.principal.source_ip)
    return Ok()


@router.route("POST", "/auth/logout", response=Ok, public=True, tags=T)
async def logout(ctx: ApiContext) -> web.Response:
    """End this session."""
    ws = ctx.request.get("web_session")
    if ws is not None:
        row = await ctx.uow.session.get(accounts.WebSession, ws.id)
        if row is not None:
            await accounts.logout(ctx.uow, row)
    resp = web.json_response({"ok": True})
    clear_session_cookie(resp)
    return resp


@router.route("GET", "/me", response=MeOut, tags=T)
async def me(ctx: ApiContext) -> MeOut:
    """The signed-in user with memberships."""
    _, user = await _reload(ctx)
    return _me(user, ctx.principal.patient_ids)


@router.route("PATCH", "/me", body=MeUpdate, response=MeOut, tags=T)
async def update_me(ctx: ApiContext) -> MeOut:
    """Change display name or language."""
    _, user = await _reload(ctx)
    authorize(ctx.principal, "account.manage", Resource("User", id=user.id, owner_user_id=user.id))
    changes = ctx.body.model_dump(exclude_unset=True)
    for k, v in changes.items():
        if v is not None:
            setattr(user, k, v)
    ctx.uow.audit.record(ctx.principal, "account.update", object_type="User", object_id=user.id,
                         detail={"fields": sorted(changes)})
    return _me(user, ctx.principal.patient_ids)


@router.route("POST", "/me/password", body=PasswordIn, response=Ok, tags=T)
async def change_password(ctx: ApiContext) -> Ok:
    """Change the password (the current one is required)."""
    _, user = await _reload(ctx)
    await accounts.change_password(ctx.uow, ctx.principal, user, ctx.body.current_password, ctx.body.new_password)
    return Ok()


# --- organizations and users ---------------------------------------------------------------------------------


class OrgOut(Output):
    id: uuid.UUID
    name: str
    kind: OrgKind
    jurisdiction: str
    timezone: str
    currency: str
    require_2fa: bool
    address: str
    phone: str


class OrgList(Output):
    items: list[OrgOut]


class OrgIn(Input):
    name: str = Field(min_length=1, max_length=200)
    kind: OrgKind
    jurisdiction: str = Field(default="KR", pattern=r"^[A-Z]{2}(-[A-Z0-9]{1,3})?$")
    timezone: str = Field(default="Asia/Seoul", max_length=64)
    currency: str = Field(default="KRW", pattern=r"^[A-Z]{3}$")
    require_2fa: bool = True
    address: str = Field(default="", max_length=500)
    phone: str = Field(default="", max_length=32)


class OrgUpdate(Input):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    require_2fa: bool | None = None
    address: str | None = Field(default=None, max_length=500)
    phone: str | None = Field(default=None, max_length=32)
    currency: str | None = Field(default=None, pattern=r"^[A-Z]{3}$")
    cancellation_window_hours: int | None = Field(default=None, ge=0, le=24 * 14)
    monthly_in_person_visits: int | None = Field(default=None, ge=0, le=10_000_000)


@router.route("GET", "/organizations", response=OrgList, tags=T)
async def list_orgs(ctx: ApiContext) -> OrgList:
    """Organizations the caller belongs to (all of them for platform admins)."""
    q = select(Organization).order_by(Organization.name)
    if not platform_wide(ctx.principal, "org.read"):
        q = q.where(Organization.id.in_(orgs_for(ctx.principal, "org.read")))
    rows = (await ctx.uow.session.execute(q)).scalars().all()
    return OrgList(items=[OrgOut.model_validate(o) for o in rows])


@router.route("POST", "/organizations", body=OrgIn, response=OrgOut, status=201, tags=T)
async def create_org(ctx: ApiContext) -> OrgOut:
    """Create an organization (platform admins)."""
    authorize(ctx.principal, "org.create")
    _check_tz(ctx.body.timezone)
    org = Organization(**ctx.body.model_dump())
    ctx.uow.add(org)
    await ctx.uow.session.flush()
    ctx.uow.audit.record(ctx.principal, "org.create", object_type="Organization", object_id=org.id,
                         organization_id=org.id)
    return OrgOut.model_validate(org)


def _check_tz(tz: str) -> None:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise Invalid("unknown time zone", fields={"timezone": "not an IANA time zone"}) from None


async def _org(ctx: ApiContext, action: str) -> Organization:
    org_id = ctx.path_uuid("org_id")
    org = await ctx.uow.session.get(Organization, org_id)
    if org is None:
        raise NotFound("organization not found")
    authorize(ctx.principal, action, Resource("Organization", organization_id=org.id, id=org.id))
    return org


@router.route("GET", "/organizations/{org_id}", response=OrgOut, tags=T)
async def get_org(ctx: ApiContext) -> OrgOut:
    """One organization."""
    return OrgOut.model_validate(await _org(ctx, "org.read"))


@router.route("PATCH", "/organizations/{org_id}", body=OrgUpdate, response=OrgOut, tags=T)
async def update_org(ctx: ApiContext) -> OrgOut:
    """Change organization settings (org admins), including whether staff must use 2FA."""
    org = await _org(ctx, "org.manage")
    changes = {k: v for k, v in ctx.body.model_dump(exclude_unset=True).items() if v is not None}
    for k, v in changes.items():
        setattr(org, k, v)
    ctx.uow.audit.record(ctx.principal, "org.update", object_type="Organization", object_id=org.id,
                         organization_id=org.id, detail=changes)
    return OrgOut.model_validate(org)


class MemberOut(Output):
    user_id: uuid.UUID
    email: str
    display_name: str
    role: Role


class MemberList(Output):
    items: list[MemberOut]


class UserIn(Input):
    email: EmailStr
    display_name: str = Field(min_length=1, max_length=200)
    password: str | None = Field(default=None, max_length=1024)
    role: Role
    locale: Literal["ko", "en"] | None = None


@router.route("GET", "/organizations/{org_id}/members", response=MemberList, tags=T)
async def list_members(ctx: ApiContext) -> MemberList:
    """Staff of an organization."""
    org = await _org(ctx, "member.read")
    rows = (await ctx.uow.session.execute(
        select(Membership, User).join(User, User.id == Membership.user_id)
        .where(Membership.organization_id == org.id, Membership.role != Role.PATIENT).order_by(User.display_name)
    )).all()
    return MemberList(items=[MemberOut(user_id=u.id, email=u.email, display_name=u.display_name, role=m.role)
                             for m, u in rows])


@router.route("POST", "/organizations/{org_id}/members", body=UserIn, response=MemberOut, status=201, tags=T)
async def add_member(ctx: ApiContext) -> MemberOut:
    """Create a user (or reuse one by e-mail) and give them a role in the organization."""
    org = await _org(ctx, "member.manage")
    user = await accounts.create_user(ctx.uow, ctx.principal, email=ctx.body.email,
                                      display_name=ctx.body.display_name, password=ctx.body.password,
                                      role=ctx.body.role, organization_id=org.id, locale=ctx.body.locale)
    return MemberOut(user_id=user.id, email=user.email, display_name=user.display_name, role=ctx.body.role)


class TokenIn(Input):
    name: str = Field(min_length=1, max_length=200)
    scopes: list[str] = Field(min_length=1, max_length=50)
    expires_at: datetime | None = None


class TokenOut(Output):
    id: uuid.UUID
    name: str
    prefix: str
    scopes: list[str]
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None


class TokenCreated(TokenOut):
    token: str = Field(description="Shown once; only its hash is stored.")


class TokenList(Output):
    items: list[TokenOut]


@router.route("POST", "/organizations/{org_id}/tokens", body=TokenIn, response=TokenCreated, status=201, tags=T)
async def create_token(ctx: ApiContext) -> TokenCreated:
    """Create a scoped API token for an integration (org admins)."""
    org_id = ctx.path_uuid("org_id")
    exp = ctx.body.expires_at
    if exp is not None and exp.tzinfo is None:
        raise Invalid("expires_at needs a time zone", fields={"expires_at": "use ISO 8601 with an offset"})
    token, row = await accounts.create_api_token(ctx.uow, ctx.principal, organization_id=org_id,
                                                 name=ctx.body.name, scopes=ctx.body.scopes, expires_at=exp)
    return TokenCreated(token=token, **TokenOut.model_validate(row).model_dump())


@router.route("GET", "/organizations/{org_id}/tokens", response=TokenList, tags=T)
async def list_tokens(ctx: ApiContext) -> TokenList:
    """API tokens of an organization (hashes are never shown)."""
    rows = await accounts.list_api_tokens(ctx.uow, ctx.principal, ctx.path_uuid("org_id"))
    return TokenList(items=[TokenOut.model_validate(r) for r in rows])


@router.route("DELETE", "/tokens/{id}", tags=T)
async def revoke_token(ctx: ApiContext) -> None:
    """Revoke an API token."""
    await accounts.revoke_api_token(ctx.uow, ctx.principal, ctx.path_uuid())


# --- audit ------------------------------------------------------------------------------------------------------


class AuditOut(Output):
    seq: int
    id: uuid.UUID
    at: datetime
    actor_kind: str
    actor_id: str
    actor_label: str
    action: str
    object_type: str
    object_id: str
    organization_id: str
    patient_id: str
    source_ip: str
    outcome: str


class AuditQuery(Input):
    organization_id: uuid.UUID | None = None
    patient_id: uuid.UUID | None = None
    action: str | None = Field(default=None, max_length=64)
    before_seq: int | None = Field(default=None, ge=1)
    limit: int = Field(default=100, ge=1, le=1000)


class AuditList(Output):
    items: list[AuditOut]
    chain_ok: bool | None = None


@router.route("GET", "/audit", query=AuditQuery, response=AuditList, tags=("audit",))
async def list_audit(ctx: ApiContext) -> AuditList:
    """Audit trail of an organization (org admins) or the whole platform (platform admins)."""
    q = ctx.query
    stmt = select(AuditEvent).order_by(AuditEvent.seq.desc()).limit(q.limit)
    if platform_wide(ctx.principal, "audit.read"):
        if q.organization_id:
            stmt = stmt.where(AuditEvent.organization_id == str(q.organization_id))
    else:
        orgs = orgs_for(ctx.principal, "audit.read")
        if q.organization_id is not None:
            authorize(ctx.principal, "audit.read", Resource("Organization", organization_id=q.organization_id))
            orgs = {q.organization_id}
        if not orgs:
            authorize(ctx.principal, "audit.read", Resource("Organization"))
        stmt = stmt.where(AuditEvent.organization_id.in_([str(o) for o in orgs]))
    if q.patient_id:
        stmt = stmt.where(AuditEvent.patient_id == str(q.patient_id))
    if q.action:
        stmt = stmt.where(AuditEvent.action == q.action)
    if q.before_seq:
        stmt = stmt.where(AuditEvent.seq < q.before_seq)
    rows = (await ctx.uow.session.execute(stmt)).scalars().all()
    chain_ok = None
    if platform_wide(ctx.principal, "audit.read"):
        chain_ok = (await verify_chain(ctx.uow.session)).ok
    ctx.uow.audit.record(ctx.principal, "audit.read", object_type="AuditEvent",
                         organization_id=q.organization_id, detail={"count": len(rows)})
    return AuditList(items=[AuditOut.model_validate(r) for r in rows], chain_ok=chain_ok)
