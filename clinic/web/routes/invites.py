"""Visit invites (links by e-mail or SMS) and the outbox admins read."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import Field
from sqlalchemy import select

from clinic.db.models import OutboxMessage
from clinic.security.authz import Resource, authorize
from clinic.services import messaging
from clinic.web.api import ApiContext, ApiRouter
from clinic.web.context import services
from clinic.web.schemas import Input, Output

router = ApiRouter()
T = ("invites",)


class InviteIn(Input):
    channel: Literal["email", "sms"]
    to: str | None = Field(default=None, max_length=254, description="Defaults to the patient's address")


class InviteOut(Output):
    id: uuid.UUID
    encounter_id: uuid.UUID
    channel: str
    recipient: str
    created_at: datetime
    expires_at: datetime
    revoked_at: datetime | None


class InviteList(Output):
    items: list[InviteOut]


def _notify(ctx: ApiContext):  # type: ignore[no-untyped-def]
    return services(ctx.app).extra["notify"]


@router.route("POST", "/encounters/{id}/invites", body=InviteIn, response=InviteOut, status=201, tags=T,
              idempotent=True)
async def send_invite(ctx: ApiContext) -> InviteOut:
    """Send the patient a single-use visit link; they join without an account. The link is never shown to staff."""
    inv, _url = await messaging.send_invite(ctx.uow, ctx.principal, _notify(ctx), services(ctx.app).settings,
                                            ctx.path_uuid(), channel=ctx.body.channel, to=ctx.body.to)
    return InviteOut.model_validate(inv)


@router.route("GET", "/encounters/{id}/invites", response=InviteList, tags=T)
async def list_invites(ctx: ApiContext) -> InviteList:
    """Invites sent for a visit."""
    rows = await messaging.list_invites(ctx.uow, ctx.principal, ctx.path_uuid())
    return InviteList(items=[InviteOut.model_validate(r) for r in rows])


@router.route("POST", "/invites/{id}/revoke", response=InviteOut, tags=T)
async def revoke_invite(ctx: ApiContext) -> InviteOut:
    """Stop a link from working."""
    return InviteOut.model_validate(await messaging.revoke_invite(ctx.uow, ctx.principal, ctx.path_uuid()))


@router.route("POST", "/invites/{id}/resend", response=InviteOut, status=201, tags=T)
async def resend_invite(ctx: ApiContext) -> InviteOut:
    """Send a fresh link to the same recipient; the old one stops working."""
    inv, _url = await messaging.resend_invite(ctx.uow, ctx.principal, _notify(ctx), services(ctx.app).settings,
                                              ctx.path_uuid())
    return InviteOut.model_validate(inv)


class OutboxOut(Output):
    id: uuid.UUID
    channel: str
    recipient: str
    subject: str
    body: str
    status: str
    attempts: int
    error: str
    created_at: datetime
    sent_at: datetime | None


class OutboxList(Output):
    items: list[OutboxOut]


class OutboxQuery(Input):
    channel: Literal["email", "sms"] | None = None
    limit: int = Field(default=100, ge=1, le=500)


@router.route("GET", "/organizations/{org_id}/outbox", query=OutboxQuery, response=OutboxList, tags=T)
async def outbox(ctx: ApiContext) -> OutboxList:
    """E-mail and SMS the organization sent (the default SMS provider delivers only here)."""
    org_id = ctx.path_uuid("org_id")
    authorize(ctx.principal, "outbox.read", Resource("Organization", organization_id=org_id))
    q = select(OutboxMessage).where(OutboxMessage.organization_id == org_id)
    if ctx.query.channel:
        q = q.where(OutboxMessage.channel == ctx.query.channel)
    rows = (await ctx.uow.session.execute(q.order_by(OutboxMessage.created_at.desc()).limit(ctx.query.limit)))
    items = [OutboxOut.model_validate(r) for r in rows.scalars()]
    ctx.uow.audit.record(ctx.principal, "outbox.read", object_type="Communication", organization_id=org_id,
                         detail={"count": len(items)})
    return OutboxList(items=items)
