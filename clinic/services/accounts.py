"""Identity: passwords, TOTP, sessions, magic links and API tokens."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Boolean, String, cast, literal, null, select, union_all

from clinic.config import Settings
from clinic.db.base import utcnow
from clinic.db.clinical import Guardian, Patient
from clinic.db.models import (
    ApiToken,
    MagicLink,
    MagicLinkPurpose,
    Membership,
    Organization,
    Role,
    User,
    WebSession,
)
from clinic.db.uow import UnitOfWork
from clinic.errors import Conflict, Gone, Invalid, NotFound, TooManyRequests, Unauthenticated
from clinic.security import passwords, totp
from clinic.security.authz import Principal, Resource, authorize
from clinic.security.ratelimit import RateLimiter
from clinic.security.secrets import SecretBox, hash_token, new_token

STAFF_2FA_ROLES = (Role.CLINICIAN, Role.PHARMACIST)


@dataclass(frozen=True)
class LoginResult:
    session_token: str
    csrf_secret: str
    user: User
    needs_second_factor: bool
    needs_enrollment: bool


def normalize_email(email: str) -> str:
    return email.strip().lower()


async def memberships_of(uow: UnitOfWork, user_id: uuid.UUID) -> list[Membership]:
    """A user's memberships, each with its organization loaded."""
    return list(
        (await uow.session.execute(select(Membership).where(Membership.user_id == user_id))).scalars().all()
    )


async def second_factor_required(uow: UnitOfWork, user: User) -> bool:
    """Clinicians and pharmacists need TOTP unless every one of their organizations opted out."""
    for m in await memberships_of(uow, user.id):
        if m.role in STAFF_2FA_ROLES and m.organization.require_2fa:
            return True
    return False


@dataclass(frozen=True)
class _Grants:
    roles: frozenset[tuple[uuid.UUID, Role]]
    patient_ids: frozenset[uuid.UUID]
    #: A clinician or pharmacist role in an organization that switched 2FA off (shown as a warning).
    org_2fa_off: bool


async def _grants(uow: UnitOfWork, user_id: uuid.UUID) -> _Grants:
    """Roles and the patients a user may act for (own record, or as guardian), in one round trip."""
    rows = (
        await uow.session.execute(
            union_all(
                select(literal("m"), Membership.organization_id, cast(Membership.role, String),
                       Organization.require_2fa)
                .join(Organization, Organization.id == Membership.organization_id)
                .where(Membership.user_id == user_id),
                select(literal("p"), Patient.id, null().cast(String), null().cast(Boolean))
                .where(Patient.user_id == user_id, Patient.erased_at.is_(None)),
                select(literal("g"), Guardian.patient_id, null().cast(String), null().cast(Boolean))
                .where(Guardian.user_id == user_id),
            )
        )
    ).all()
    roles: set[tuple[uuid.UUID, Role]] = set()
    patients: set[uuid.UUID] = set()
    off = False
    for kind, ref, role, require_2fa in rows:
        ref = ref if isinstance(ref, uuid.UUID) else uuid.UUID(str(ref))
        if kind == "m":
            r = Role(role)
            roles.add((ref, r))
            off = off or (r in STAFF_2FA_ROLES and not require_2fa)
        else:
            patients.add(ref)
    return _Grants(frozenset(roles), frozenset(patients), off)


async def build_principal(
    uow: UnitOfWork, user: User, *, source_ip: str = "", mfa_at: datetime | None = None,
    session_id: uuid.UUID | None = None, restricted: bool = False,
) -> Principal:
    if restricted:
        # Password accepted, second factor still owed: the principal can do nothing but finish sign-in.
        return Principal(kind="user", user_id=user.id, label=user.email, source_ip=source_ip,
                         session_id=session_id, extra={"mfa_pending": "1"})
    return _principal(user, await _grants(uow, user.id), source_ip=source_ip, mfa_at=mfa_at, session_id=session_id)


def _principal(user: User, grants: _Grants, *, source_ip: str, mfa_at: datetime | None,
               session_id: uuid.UUID | None) -> Principal:
    return Principal(
        kind="user",
        user_id=user.id,
        label=user.email,
        roles=grants.roles,
        platform_admin=user.is_platform_admin,
        patient_ids=grants.patient_ids,
        mfa_at=mfa_at,
        source_ip=source_ip,
        session_id=session_id,
    )


@dataclass(frozen=True)
class SessionUser:
    """The signed-in user as requests see it: a read-only snapshot, never a database row."""

    id: uuid.UUID
    email: str
    display_name: str
    locale: str | None
    totp_enabled_at: datetime | None


@dataclass(frozen=True)
class SignedIn:
    """A resolved browser session; immutable, so it can be reused for a few seconds (see sessioncache)."""

    id: uuid.UUID
    user: SessionUser
    csrf_secret: str
    pending_mfa: bool
    expires_at: datetime
    #: Built with an empty ``source_ip``; each request fills in its own.
    principal: Principal
    org_2fa_off: bool

    def valid(self, now: datetime) -> bool:
        return self.expires_at > now


async def resolve_session(uow: UnitOfWork, token_hash: str) -> SignedIn | None:
    """The live session behind a cookie's token hash, or None (unknown, revoked, expired, inactive user)."""
    row = (
        await uow.session.execute(
            select(WebSession, User).join(User, User.id == WebSession.user_id)
            .where(WebSession.token_hash == token_hash)
        )
    ).first()
    if row is None:
        return None
    ws, user = row
    now = utcnow()
    if ws.revoked_at is not None or ws.expires_at <= now or not user.is_active:
        return None
    if now - ws.last_seen_at > timedelta(minutes=1):
        ws.last_seen_at = now
    view = SessionUser(id=user.id, email=user.email, display_name=user.display_name, locale=user.locale,
                       totp_enabled_at=user.totp_enabled_at)
    if ws.pending_mfa:
        principal = await build_principal(uow, user, mfa_at=ws.mfa_at, session_id=ws.id, restricted=True)
        off = False
    else:
        grants = await _grants(uow, user.id)
        principal = _principal(user, grants, source_ip="", mfa_at=ws.mfa_at, session_id=ws.id)
        off = grants.org_2fa_off
    return SignedIn(id=ws.id, user=view, csrf_secret=ws.csrf_secret, pending_mfa=ws.pending_mfa,
                    expires_at=ws.expires_at, principal=principal, org_2fa_off=off)


async def _new_session(
    uow: UnitOfWork, settings: Settings, user: User, *, ip: str, ua: str, pending_mfa: bool
) -> tuple[str, WebSession]:
    token = new_token()
    ws = WebSession(
        token_hash=hash_token(token),
        user_id=user.id,
        expires_at=utcnow() + timedelta(hours=settings.session_hours),
        pending_mfa=pending_mfa,
        csrf_secret=new_token(24),
        ip=ip[:64],
        user_agent=ua[:300],
    )
    uow.add(ws)
    await uow.session.flush()
    return token, ws


async def login_with_password(
    uow: UnitOfWork, settings: Settings, limiter: RateLimiter, *, email: str, password: str, ip: str, ua: str = "",
    uow_factory: Callable[[], UnitOfWork] | None = None,
) -> LoginResult:
    email = normalize_email(email)
    attempt = await limiter.begin(f"ip:{ip}", f"user:{email}")
    if attempt.refused:
        raise TooManyRequests("too many sign-in attempts; try again later", retry_after=int(attempt.retry_after) + 1)
    if uow_factory is not None:
        # Check the password in its own short read so no connection (or SQLite write lock) is held while the
        # deliberately slow hash runs; ``uow`` has not touched the database yet.
        async with uow_factory() as check:
            row = (await check.session.execute(
                select(User.id, User.password_hash).where(User.email == email))).first()
    else:
        row = (await uow.session.execute(
            select(User.id, User.password_hash).where(User.email == email))).first()
    ok = await passwords.verify_password_async(row[1] if row else None, password)
    user = await uow.session.get(User, row[0]) if row is not None else None
    if not ok or user is None or not user.is_active:
        raise Unauthenticated("e-mail or password is incorrect", code="bad_credentials",
                              audit={"action": "auth.login", "object_type": "User", "detail": {"email": email}})
    await limiter.succeeded(attempt)
    await limiter.reset(f"user:{email}")
    if user.password_hash and passwords.needs_rehash(user.password_hash):
        user.password_hash = await passwords.hash_password_async(password)
    enrolled = user.totp_enabled_at is not None
    required = await second_factor_required(uow, user)
    pending = enrolled or required
    token, ws = await _new_session(uow, settings, user, ip=ip, ua=ua, pending_mfa=pending)
    if not pending:
        user.last_login_at = utcnow()
    uow.audit.record(
        Principal(kind="user", user_id=user.id, label=user.email, source_ip=ip),
        "auth.login",
        object_type="User",
        object_id=user.id,
        outcome="success" if not pending else "pending_mfa",
    )
    return LoginResult(token, ws.csrf_secret, user, needs_second_factor=enrolled,
                       needs_enrollment=required and not enrolled)


async def verify_second_factor(
    uow: UnitOfWork, settings: Settings, limiter: RateLimiter, ws: WebSession, user: User, code: str, *, ip: str
) -> None:
    if user.totp_secret_enc is None:
        raise Conflict("two-factor authentication is not enrolled", code="not_enrolled")
    key = f"totp:{user.id}"
    attempt = await limiter.begin(key)
    if attempt.refused:
        raise TooManyRequests("too many codes tried; wait a few minutes", retry_after=int(attempt.retry_after) + 1)
    secret = SecretBox(settings.secret_key, "totp").decrypt(user.totp_secret_enc).decode()
    step = totp.verify(secret, code, user.totp_last_step)
    actor = Principal(kind="user", user_id=user.id, label=user.email, source_ip=ip)
    if step is None:
        raise Invalid("the code is not valid", code="bad_code", fields={"code": "invalid or already used"},
                      audit={"action": "auth.mfa", "object_type": "User", "object_id": str(user.id)})
    await limiter.succeeded(attempt)
    await limiter.reset(key)
    user.totp_last_step = step
    ws.pending_mfa = False
    ws.mfa_at = utcnow()
    user.last_login_at = utcnow()
    uow.audit.record(actor, "auth.mfa", object_type="User", object_id=user.id)


async def begin_totp_enrollment(uow: UnitOfWork, settings: Settings, user: User) -> tuple[str, str]:
    if user.totp_enabled_at is not None:
        raise Conflict("two-factor authentication is already enabled", code="already_enrolled")
    secret = totp.new_secret()
    user.totp_secret_enc = SecretBox(settings.secret_key, "totp").encrypt(secret.encode())
    return secret, totp.provisioning_uri(secret, user.email)


def pending_totp_enrollment(settings: Settings, user: User) -> tuple[str, str]:
    """The secret (and its URI) that :func:`begin_totp_enrollment` last gave, to show again after a wrong code:
    the authenticator app has already stored it, and a new one would make its codes useless."""
    if user.totp_enabled_at is not None or user.totp_secret_enc is None:
        raise Conflict("no two-factor enrollment is in progress", code="not_enrolling")
    secret = SecretBox(settings.secret_key, "totp").decrypt(user.totp_secret_enc).decode()
    return secret, totp.provisioning_uri(secret, user.email)


async def confirm_totp_enrollment(
    uow: UnitOfWork, settings: Settings, limiter: RateLimiter, ws: WebSession, user: User, code: str, *, ip: str
) -> None:
    if user.totp_enabled_at is not None:
        raise Conflict("two-factor authentication is already enabled", code="already_enrolled")
    await verify_second_factor(uow, settings, limiter, ws, user, code, ip=ip)
    user.totp_enabled_at = utcnow()
    uow.audit.record(
        Principal(kind="user", user_id=user.id, label=user.email, source_ip=ip),
        "auth.mfa_enrolled", object_type="User", object_id=user.id,
    )


async def logout(uow: UnitOfWork, ws: WebSession) -> None:
    ws.revoked_at = utcnow()


async def change_password(uow: UnitOfWork, principal: Principal, user: User, current: str, new: str) -> None:
    authorize(principal, "account.manage", Resource("User", id=user.id, owner_user_id=user.id))
    if user.password_hash and not await passwords.verify_password_async(user.password_hash, current):
        raise Invalid("current password is incorrect", fields={"current_password": "incorrect"})
    problem = passwords.password_problem(new)
    if problem:
        raise Invalid(f"new password {problem}", fields={"new_password": problem})
    user.password_hash = await passwords.hash_password_async(new)
    uow.audit.record(principal, "account.password_changed", object_type="User", object_id=user.id)


# --- magic links -------------------------------------------------------------------------------------------


async def issue_magic_link(
    uow: UnitOfWork,
    settings: Settings,
    *,
    user: User,
    purpose: MagicLinkPurpose,
    next_path: str,
    created_by: Principal,
    organization_id: uuid.UUID | None = None,
    encounter_id: uuid.UUID | None = None,
    ttl: timedelta | None = None,
) -> tuple[str, MagicLink]:
    if not next_path.startswith("/") or next_path.startswith("//"):
        raise Invalid("next path must be local", fields={"next_path": "must start with a single /"})
    token = new_token()
    link = MagicLink(
        token_hash=hash_token(token),
        user_id=user.id,
        organization_id=organization_id,
        purpose=purpose,
        next_path=next_path,
        encounter_id=encounter_id,
        created_by_id=created_by.user_id,
        expires_at=utcnow() + (ttl or timedelta(minutes=settings.magic_link_minutes)),
    )
    uow.add(link)
    await uow.session.flush()
    uow.audit.record(created_by, "magic_link.issue", object_type="MagicLink", object_id=link.id,
                     organization_id=organization_id, detail={"user": str(user.id), "purpose": purpose.value})
    return token, link


async def consume_magic_link(
    uow: UnitOfWork, settings: Settings, token: str, *, ip: str, ua: str = ""
) -> tuple[str, MagicLink, User]:
    link = (
        await uow.session.execute(
            select(MagicLink).where(MagicLink.token_hash == hash_token(token)).with_for_update()
        )
    ).scalar_one_or_none()
    if link is None:
        raise NotFound("this link is not valid", code="link_invalid",
                       audit={"action": "magic_link.consume", "object_type": "MagicLink"})
    now = utcnow()
    if link.used_at is not None or link.revoked_at is not None or link.expires_at <= now:
        raise Gone("this link has expired or was already used", code="link_expired",
                   audit={"action": "magic_link.consume", "object_type": "MagicLink", "object_id": str(link.id)})
    link.used_at = now
    user = await uow.session.get(User, link.user_id)
    if user is None or not user.is_active:
        raise Gone("this link has expired or was already used", code="link_expired")
    # A link proves possession of the invite channel, not a second factor, so staff still owe TOTP.
    required = await second_factor_required(uow, user)
    session_token, _ = await _new_session(
        uow, settings, user, ip=ip, ua=ua, pending_mfa=required or user.totp_enabled_at is not None
    )
    uow.audit.record(
        Principal(kind="user", user_id=user.id, label=user.email, source_ip=ip),
        "magic_link.consume", object_type="MagicLink", object_id=link.id,
    )
    return session_token, link, user


# --- API tokens --------------------------------------------------------------------------------------------

TOKEN_PREFIX = "tm_"  # noqa: S105 - a public prefix, not a secret


async def create_api_token(
    uow: UnitOfWork,
    principal: Principal,
    *,
    organization_id: uuid.UUID,
    name: str,
    scopes: list[str],
    expires_at: datetime | None,
) -> tuple[str, ApiToken]:
    authorize(principal, "token.manage", Resource("Organization", organization_id=organization_id))
    from clinic.security.authz import POLICY

    unknown = [s for s in scopes if s not in POLICY]
    if unknown:
        raise Invalid("unknown scope", fields={"scopes": f"unknown: {', '.join(unknown)}"})
    if expires_at is not None and expires_at <= utcnow():
        raise Invalid("expiry must be in the future", fields={"expires_at": "must be in the future"})
    token = TOKEN_PREFIX + new_token()
    assert principal.user_id is not None
    row = ApiToken(
        token_hash=hash_token(token),
        prefix=token[:10],
        name=name,
        organization_id=organization_id,
        created_by_id=principal.user_id,
        scopes=sorted(set(scopes)),
        expires_at=expires_at,
    )
    uow.add(row)
    await uow.session.flush()
    uow.audit.record(principal, "api_token.create", object_type="ApiToken", object_id=row.id,
                     organization_id=organization_id, detail={"scopes": row.scopes})
    return token, row


async def revoke_api_token(uow: UnitOfWork, principal: Principal, token_id: uuid.UUID) -> None:
    row = await uow.session.get(ApiToken, token_id)
    if row is None:
        raise NotFound("token not found")
    authorize(principal, "token.manage", Resource("ApiToken", organization_id=row.organization_id, id=row.id))
    row.revoked_at = utcnow()
    uow.audit.record(principal, "api_token.revoke", object_type="ApiToken", object_id=row.id,
                     organization_id=row.organization_id)


async def list_api_tokens(uow: UnitOfWork, principal: Principal, organization_id: uuid.UUID) -> list[ApiToken]:
    authorize(principal, "token.manage", Resource("Organization", organization_id=organization_id))
    rows = await uow.session.execute(
        select(ApiToken).where(ApiToken.organization_id == organization_id).order_by(ApiToken.created_at.desc())
    )
    return list(rows.scalars())


async def principal_from_api_token(uow: UnitOfWork, token: str, *, ip: str) -> Principal | None:
    row = (
        await uow.session.execute(select(ApiToken).where(ApiToken.token_hash == hash_token(token)))
    ).scalar_one_or_none()
    now = utcnow()
    if row is None or row.revoked_at is not None or (row.expires_at is not None and row.expires_at <= now):
        return None
    org = await uow.session.get(Organization, row.organization_id)
    if org is None:
        return None
    row.last_used_at = now
    # The token acts with staff roles in its organization, narrowed to its scopes.
    roles = frozenset((row.organization_id, r) for r in (Role.ORG_ADMIN, Role.CLINICIAN, Role.PHARMACIST))
    return Principal(kind="token", label=f"token:{row.prefix}", roles=roles, scopes=frozenset(row.scopes),
                     source_ip=ip, extra={"token_id": str(row.id)})


# --- users ---------------------------------------------------------------------------------------------------


async def create_user(
    uow: UnitOfWork,
    principal: Principal,
    *,
    email: str,
    display_name: str,
    password: str | None,
    role: Role,
    organization_id: uuid.UUID | None,
    locale: str | None = None,
) -> User:
    email = normalize_email(email)
    if role is Role.PLATFORM_ADMIN:
        if not principal.platform_admin:
            authorize(principal, "org.create")  # raises: only platform admins make platform admins
    else:
        if organization_id is None:
            raise Invalid("organization is required", fields={"organization_id": "required"})
        authorize(principal, "member.manage", Resource("Organization", organization_id=organization_id))
    if password is not None:
        problem = passwords.password_problem(password)
        if problem:
            raise Invalid(f"password {problem}", fields={"password": problem})
    existing = (await uow.session.execute(select(User).where(User.email == email))).scalar_one_or_none()
    if existing is not None:
        user = existing
    else:
        user = User(
            email=email,
            display_name=display_name,
            password_hash=await passwords.hash_password_async(password) if password else None,
            is_platform_admin=role is Role.PLATFORM_ADMIN,
            locale=locale,
        )
        uow.add(user)
        await uow.session.flush()
    if role is not Role.PLATFORM_ADMIN:
        dup = (
            await uow.session.execute(
                select(Membership).where(
                    Membership.user_id == user.id,
                    Membership.organization_id == organization_id,
                    Membership.role == role,
                )
            )
        ).scalar_one_or_none()
        if dup is not None:
            raise Conflict("this user already has that role here", code="duplicate_membership")
        assert organization_id is not None
        uow.add(Membership(user_id=user.id, organization_id=organization_id, role=role))
    await uow.session.flush()
    uow.audit.record(principal, "user.create", object_type="User", object_id=user.id,
                     organization_id=organization_id, detail={"role": role.value})
    return user


async def display_names(uow: UnitOfWork, ids: Iterable[uuid.UUID | None]) -> dict[uuid.UUID | None, str]:
    """The display names of these users (clinicians named in the queue, on notes, in analytics), in one query;
    keyed so that ``names.get(maybe_none, "")`` works."""
    wanted = {i for i in ids if i is not None}
    if not wanted:
        return {}
    rows = await uow.session.execute(select(User.id, User.display_name).where(User.id.in_(wanted)))
    return {uid: name for uid, name in rows}
