"""The one place that decides who may do what to which object.

Services call :func:`authorize` before touching an object, and :func:`orgs_for` to scope
list queries. Templates and handlers never decide access themselves.
"""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from clinic.db.base import utcnow
from clinic.db.models import Role
from clinic.errors import Forbidden, NotFound, Unauthenticated


class Scope(enum.StrEnum):
    """How a grant relates the principal to the object."""

    ORG = "org"  # the object belongs to an organization where the principal holds the role
    OWN_PATIENT = "own_patient"  # the object is about a patient record the principal is (or guards)
    ROUTED_PHARMACY = "routed_pharmacy"  # the object is routed to a pharmacy where the principal works
    SELF = "self"  # the object is the principal's own account
    ANY = "any"  # platform-wide


@dataclass(frozen=True)
class Grant:
    role: Role
    scope: Scope


@dataclass(frozen=True)
class Resource:
    kind: str
    organization_id: uuid.UUID | None = None
    id: uuid.UUID | None = None
    patient_id: uuid.UUID | None = None
    pharmacy_id: uuid.UUID | None = None
    owner_user_id: uuid.UUID | None = None


@dataclass(frozen=True)
class Principal:
    kind: Literal["user", "token", "anonymous", "system"]
    user_id: uuid.UUID | None = None
    label: str = ""
    roles: frozenset[tuple[uuid.UUID, Role]] = frozenset()
    platform_admin: bool = False
    patient_ids: frozenset[uuid.UUID] = frozenset()
    #: API tokens carry explicit action scopes and act only within their organization.
    scopes: frozenset[str] | None = None
    mfa_at: datetime | None = None
    source_ip: str = ""
    session_id: uuid.UUID | None = None
    extra: dict[str, str] = field(default_factory=dict, compare=False, hash=False)

    @property
    def authenticated(self) -> bool:
        return self.kind in ("user", "token", "system")

    @property
    def actor_id(self) -> str:
        return str(self.user_id) if self.user_id else self.label or self.kind

    def orgs_with(self, *roles: Role) -> set[uuid.UUID]:
        return {org for org, role in self.roles if role in roles}

    def has_role(self, role: Role, org: uuid.UUID | None = None) -> bool:
        if role is Role.PLATFORM_ADMIN:
            return self.platform_admin
        return any(r is role and (org is None or o == org) for o, r in self.roles)

    def mfa_fresh(self, within: timedelta) -> bool:
        return self.mfa_at is not None and utcnow() - self.mfa_at <= within


ANONYMOUS = Principal(kind="anonymous")
SYSTEM = Principal(kind="system", label="system", platform_admin=True)

_C, _P, _A, _PT = Role.CLINICIAN, Role.PHARMACIST, Role.ORG_ADMIN, Role.PATIENT


def _g(*pairs: tuple[Role, Scope]) -> tuple[Grant, ...]:
    return tuple(Grant(r, s) for r, s in pairs)


# Action → grants. Platform admins are deliberately NOT given clinical reads: running the platform
# does not entitle anyone to patient records.
POLICY: dict[str, tuple[Grant, ...]] = {
    # organizations and people
    "org.read": _g((_A, Scope.ORG), (_C, Scope.ORG), (_P, Scope.ORG), (Role.PLATFORM_ADMIN, Scope.ANY)),
    "org.create": _g((Role.PLATFORM_ADMIN, Scope.ANY)),
    "org.manage": _g((_A, Scope.ORG), (Role.PLATFORM_ADMIN, Scope.ANY)),
    "member.read": _g((_A, Scope.ORG), (_C, Scope.ORG), (_P, Scope.ORG)),
    "member.manage": _g((_A, Scope.ORG), (Role.PLATFORM_ADMIN, Scope.ANY)),
    "token.manage": _g((_A, Scope.ORG)),
    "audit.read": _g((_A, Scope.ORG), (Role.PLATFORM_ADMIN, Scope.ANY)),
    "outbox.read": _g((_A, Scope.ORG), (Role.PLATFORM_ADMIN, Scope.ANY)),
    "account.manage": _g((_PT, Scope.SELF), (_C, Scope.SELF), (_P, Scope.SELF), (_A, Scope.SELF)),
    # patients (clinical data)
    "patient.create": _g((_C, Scope.ORG), (_A, Scope.ORG)),
    "patient.list": _g((_C, Scope.ORG), (_A, Scope.ORG)),
    "patient.read": _g((_C, Scope.ORG), (_PT, Scope.OWN_PATIENT)),
    "patient.update": _g((_C, Scope.ORG), (_PT, Scope.OWN_PATIENT)),
    "patient.export": _g((_PT, Scope.OWN_PATIENT), (_A, Scope.ORG)),
    "patient.erase": _g((_PT, Scope.OWN_PATIENT), (_A, Scope.ORG)),
    "consent.manage": _g((_PT, Scope.OWN_PATIENT), (_C, Scope.ORG)),
    "invite.manage": _g((_C, Scope.ORG), (_A, Scope.ORG)),
    # scheduling and visits
    "schedule.read": _g((_C, Scope.ORG), (_A, Scope.ORG), (_PT, Scope.ORG)),
    "schedule.manage": _g((_C, Scope.ORG), (_A, Scope.ORG)),
    "visit_type.manage": _g((_A, Scope.ORG)),
    "appointment.book": _g((_PT, Scope.OWN_PATIENT), (_C, Scope.ORG), (_A, Scope.ORG)),
    "appointment.read": _g((_PT, Scope.OWN_PATIENT), (_C, Scope.ORG), (_A, Scope.ORG)),
    "appointment.manage": _g((_PT, Scope.OWN_PATIENT), (_C, Scope.ORG), (_A, Scope.ORG)),
    "encounter.read": _g((_PT, Scope.OWN_PATIENT), (_C, Scope.ORG)),
    "encounter.checkin": _g((_PT, Scope.OWN_PATIENT), (_C, Scope.ORG)),
    "encounter.manage": _g((_C, Scope.ORG)),
    "queue.read": _g((_C, Scope.ORG), (_A, Scope.ORG)),
    "note.read": _g((_C, Scope.ORG), (_PT, Scope.OWN_PATIENT)),
    "note.write": _g((_C, Scope.ORG)),
    "document.read": _g((_PT, Scope.OWN_PATIENT), (_C, Scope.ORG)),
    "chat.write": _g((_PT, Scope.OWN_PATIENT), (_C, Scope.ORG)),
    "analytics.read": _g((_A, Scope.ORG)),
    # prescriptions
    "prescription.write": _g((_C, Scope.ORG)),
    "prescription.read": _g((_C, Scope.ORG), (_PT, Scope.OWN_PATIENT), (_P, Scope.ROUTED_PHARMACY)),
    "prescription.route": _g((_PT, Scope.OWN_PATIENT), (_C, Scope.ORG)),
    "prescription.dispense": _g((_P, Scope.ROUTED_PHARMACY)),
    "pharmacy.inbox": _g((_P, Scope.ORG)),
    "delivery.read": _g((_PT, Scope.OWN_PATIENT), (_P, Scope.ROUTED_PHARMACY)),
    "delivery.manage": _g((_P, Scope.ROUTED_PHARMACY)),
    # payments
    "payment.read": _g((_PT, Scope.OWN_PATIENT), (_A, Scope.ORG)),
    "payment.pay": _g((_PT, Scope.OWN_PATIENT), (_A, Scope.ORG)),
    "payment.manage": _g((_A, Scope.ORG)),
    # policy
    "policy.read": _g((_A, Scope.ORG), (_C, Scope.ORG), (Role.PLATFORM_ADMIN, Scope.ANY)),
    # prescriptions (continued)
    "prescription.renew": _g((_PT, Scope.OWN_PATIENT)),
}

# Reads of an object the principal cannot see answer 404, so existence does not leak across tenants.
_HIDE_EXISTENCE = True


def _grant_matches(p: Principal, g: Grant, res: Resource | None) -> bool:
    if g.role is Role.PLATFORM_ADMIN:
        return p.platform_admin and g.scope is Scope.ANY
    if g.scope is Scope.SELF:
        return res is not None and p.user_id is not None and res.owner_user_id == p.user_id
    orgs = p.orgs_with(g.role)
    if not orgs or res is None:
        return False
    if g.scope is Scope.ORG:
        return res.organization_id in orgs
    if g.scope is Scope.OWN_PATIENT:
        return res.patient_id is not None and res.patient_id in p.patient_ids
    if g.scope is Scope.ROUTED_PHARMACY:
        return res.pharmacy_id is not None and res.pharmacy_id in orgs
    return False


def allowed(p: Principal, action: str, res: Resource | None = None) -> bool:
    grants = POLICY.get(action)
    if grants is None:
        raise KeyError(f"unknown action {action!r}")  # a typo must never silently deny or allow
    if p.kind == "system":
        return True
    if p.scopes is not None and action not in p.scopes:
        return False
    return any(_grant_matches(p, g, res) for g in grants)


def authorize(p: Principal, action: str, res: Resource | None = None, *, hide: bool | None = None) -> None:
    """Raise unless ``p`` may perform ``action`` on ``res``."""
    if not p.authenticated:
        raise Unauthenticated("sign in required")
    if allowed(p, action, res):
        return
    hide = _HIDE_EXISTENCE if hide is None else hide
    if hide and res is not None and res.id is not None:
        raise NotFound(f"{res.kind} not found", action=action, resource=res)
    raise Forbidden(f"not allowed: {action}", action=action, resource=res)


def orgs_for(p: Principal, action: str) -> set[uuid.UUID]:
    """Organizations in which ``p`` may perform ``action`` with organization scope (for list queries)."""
    if p.scopes is not None and action not in p.scopes:
        return set()
    return {
        org
        for g in POLICY[action]
        if g.scope is Scope.ORG and g.role is not Role.PLATFORM_ADMIN
        for org in p.orgs_with(g.role)
    }


def pharmacies_for(p: Principal, action: str) -> set[uuid.UUID]:
    if p.scopes is not None and action not in p.scopes:
        return set()
    return {
        org
        for g in POLICY[action]
        if g.scope is Scope.ROUTED_PHARMACY
        for org in p.orgs_with(g.role)
    }


def patients_for(p: Principal, action: str) -> set[uuid.UUID]:
    if p.scopes is not None and action not in p.scopes:
        return set()
    if any(g.scope is Scope.OWN_PATIENT and p.orgs_with(g.role) for g in POLICY[action]):
        return set(p.patient_ids)
    return set()


def platform_wide(p: Principal, action: str) -> bool:
    return p.platform_admin and any(g.role is Role.PLATFORM_ADMIN for g in POLICY[action])

