"""JSON API for video visits: room tokens for participants and guest invitations."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import Field

from clinic.web.api import ApiContext, ApiRouter
from clinic.web.schemas import Input, Output
from signaling import guests

router = ApiRouter()
T = ("video",)


class RoomTokenOut(Output):
    token: str
    role: str
    expires_at: datetime
    ws_url: str


class GuestIn(Input):
    role: Literal["caregiver", "interpreter", "clinician"]
    display_name: str = Field(min_length=1, max_length=80)


class GuestOut(Output):
    guest_id: uuid.UUID
    role: str
    display_name: str
    token: str
    expires_at: datetime
    join_path: str


@router.route("POST", "/encounters/{id}/room-token", response=RoomTokenOut, tags=T)
async def room_token(ctx: ApiContext) -> RoomTokenOut:
    """A room token (valid 10 minutes) for the visit's patient or the clinician who took it."""
    eid = ctx.path_uuid()
    issued = await guests.room_token(ctx.uow, ctx.principal, eid)
    return RoomTokenOut(token=issued.token, role=issued.role, expires_at=issued.expires_at,
                        ws_url=f"/ws/signal/{eid}")


@router.route("POST", "/encounters/{id}/guests", body=GuestIn, response=GuestOut, status=201, tags=T)
async def invite_guest(ctx: ApiContext) -> GuestOut:
    """Invite a caregiver, interpreter or second clinician: returns a join link valid for 10 minutes."""
    eid = ctx.path_uuid()
    inv = await guests.invite(ctx.uow, ctx.principal, eid, role=ctx.body.role, display_name=ctx.body.display_name)
    return GuestOut(guest_id=inv.guest.id, role=inv.guest.role, display_name=inv.guest.display_name,
                    token=inv.token, expires_at=inv.expires_at, join_path=f"/visit/{eid}/join#token={inv.token}")
