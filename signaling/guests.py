"""Who may join a call: the room rules, room-token issuing and guest invitations.

Only three kinds of people ever get into an encounter's call: its patient, the clinician who claimed it
(``Encounter.claimed_by_id``), and guests that clinician invited (:class:`~clinic.db.video.CallGuest`).
Everything here goes through the encounter service's ``load`` first, so another tenant's encounter
answers 404 exactly like the rest of the API.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from clinic.db.encounters import Encounter
from clinic.db.uow import UnitOfWork
from clinic.db.video import CallGuest
from clinic.errors import Conflict, Forbidden, Invalid
from clinic.security.authz import Principal
from clinic.services import encounters as svc
from signaling import tokens

#: Guest roles a clinician may invite, mapped to the role they have in the room.
GUEST_ROLES = {"caregiver": "caregiver", "interpreter": "interpreter", "clinician": "clinician"}


def ensure_open(e: Encounter) -> None:
    if e.status.final:
        raise Conflict(f"the visit is {e.status.value}", code="visit_closed")


def role_of(principal: Principal, e: Encounter) -> str:
    """The room role of a signed-in participant, or Forbidden."""
    if e.patient_id in principal.patient_ids:
        return "patient"
    if principal.user_id is not None and principal.user_id == e.claimed_by_id:
        return "clinician"
    raise Forbidden("only the visit's patient and the clinician who took it can join this call",
                    code="not_a_participant")


@dataclass(frozen=True)
class IssuedToken:
    token: str
    role: str
    expires_at: datetime


async def room_token(uow: UnitOfWork, principal: Principal, encounter_id: uuid.UUID) -> IssuedToken:
    e = await svc.load(uow, principal, encounter_id, "encounter.read")
    role = role_of(principal, e)
    ensure_open(e)
    token, row = await tokens.issue(uow, e.id, role, user_id=principal.user_id)
    uow.audit.record(principal, "call.token", object_type="Encounter", object_id=e.id,
                     organization_id=e.organization_id, patient_id=e.patient_id, detail={"role": role})
    return IssuedToken(token=token, role=role, expires_at=row.expires_at)


@dataclass(frozen=True)
class Invitation:
    guest: CallGuest
    token: str
    expires_at: datetime


async def invite(uow: UnitOfWork, principal: Principal, encounter_id: uuid.UUID, *, role: str,
                 display_name: str) -> Invitation:
    e = await svc.load(uow, principal, encounter_id, "encounter.manage")
    if principal.user_id is None or principal.user_id != e.claimed_by_id:
        raise Forbidden("only the clinician running the visit can invite guests", code="not_claimed")
    ensure_open(e)
    if role not in GUEST_ROLES:
        raise Invalid("unknown guest role", fields={"role": "caregiver, interpreter or clinician"})
    guest = CallGuest(encounter_id=e.id, role=role, display_name=display_name.strip()[:80],
                      invited_by_id=principal.user_id)
    uow.add(guest)
    await uow.session.flush()
    token, row = await tokens.issue(uow, e.id, GUEST_ROLES[role], guest_id=guest.id)
    uow.audit.record(principal, "call.invite", object_type="Encounter", object_id=e.id,
                     organization_id=e.organization_id, patient_id=e.patient_id,
                     detail={"guest": str(guest.id), "role": role})
    return Invitation(guest=guest, token=token, expires_at=row.expires_at)
