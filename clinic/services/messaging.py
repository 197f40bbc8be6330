"""What the clinic tells patients: booking confirmations with calendar invitations, cancellations,
reminders before the visit, and visit invites (single-use links by e-mail or SMS).

Messages are written to the outbox in the caller's transaction and leave after commit
(``clinic.notify``), so a rolled-back booking never sends mail.
"""

from __future__ import annotations

import base64
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from sqlalchemy import bindparam, select

from clinic.config import Settings
from clinic.db.base import utcnow
from clinic.db.clinical import Patient
from clinic.db.encounters import Encounter, VisitInvite
from clinic.db.models import MagicLink, MagicLinkPurpose, Membership, Organization, OutboxMessage, Role, User
from clinic.db.scheduling import Appointment, AppointmentStatus
from clinic.db.uow import UnitOfWork
from clinic.errors import Conflict, Invalid, NotFound
from clinic.notify import Notifier, appointment_ics, appointment_uid, render_email
from clinic.notify.reminders import ReminderCandidate
from clinic.security.authz import SYSTEM, Principal, Resource, authorize
from clinic.services import accounts
from clinic.web.i18n import gettext as _


@dataclass(frozen=True)
class Links:
    base_url: str

    def visit(self, encounter_id: uuid.UUID) -> str:
        return f"{self.base_url}/visit/{encounter_id}"

    def portal(self) -> str:
        return f"{self.base_url}/portal"

    def book(self) -> str:
        return f"{self.base_url}/book"

    @property
    def host(self) -> str:
        return urlsplit(self.base_url).hostname or "telemed"


async def _context(uow: UnitOfWork, a: Appointment) -> tuple[Patient, Organization, str, uuid.UUID | None]:
    """The patient, clinic, clinician's name and encounter id a message about ``a`` needs."""
    patient = await uow.session.get(Patient, a.patient_id)
    org = await uow.session.get(Organization, a.organization_id)
    assert patient is not None and org is not None
    clinician, enc_id = (await uow.read(
        _NAME_AND_ENCOUNTER, {"user": a.practitioner_user_id, "appointment": a.id})).one()
    return patient, org, clinician or "", enc_id


# Built once, one round trip: every booking confirmation runs it.
_NAME_AND_ENCOUNTER = select(
    select(User.display_name).where(User.id == bindparam("user")).scalar_subquery(),
    select(Encounter.id).where(Encounter.appointment_id == bindparam("appointment")).scalar_subquery())


async def appointment_message(uow: UnitOfWork, notifier: Notifier, settings: Settings, a: Appointment,
                              kind: str) -> None:
    """Confirmation (also after a reschedule), cancellation or reminder, with an ICS invitation."""
    patient, org, clinician, enc = await _context(uow, a)
    if not patient.email or patient.erased_at is not None:
        return
    links = Links(settings.effective_base_url)
    locale = patient.locale or settings.default_locale
    visit_url = links.visit(enc) if enc else links.portal()
    ctx = {"organization": org.name, "recipient_name": patient.full_name, "start": a.start, "end": a.end,
           "timezone": org.timezone, "clinician": clinician, "mode": a.mode.value,
           "visit_url": visit_url, "manage_url": links.portal(),
           "rebook_url": links.book(), "reason": a.cancellation_reason, "organization_phone": org.phone}
    subject, text, html = render_email(kind, locale, ctx)
    cancelled = a.status is AppointmentStatus.CANCELLED
    ics = appointment_ics(
        appointment_uid(a.id, links.host), a.start, a.end, summary=f"{org.name}: {_('Video visit', locale)}",
        description=text, location_url=visit_url, organizer_email=settings.mail_from,
        attendee_email=patient.email, method="CANCEL" if cancelled else "REQUEST", sequence=a.ics_sequence,
        status="CANCELLED" if cancelled else "CONFIRMED", organizer_name=org.name, attendee_name=patient.full_name,
    )
    await notifier.send_email(uow, organization_id=org.id, to=patient.email, subject=subject, text=text, html=html,
                              ics=ics, kind=f"appointment.{kind}")


# --- reminders ---------------------------------------------------------------------------------------------------


async def reminder_candidates(uow: UnitOfWork, now: datetime, lead: timedelta) -> list[ReminderCandidate]:
    rows = (await uow.session.execute(
        select(Appointment).where(Appointment.status == AppointmentStatus.BOOKED, Appointment.start > now,
                                  Appointment.start <= now + lead, Appointment.reminder_sent_at.is_(None))
    )).scalars().all()
    return [ReminderCandidate(appointment_id=a.id, start_utc=a.start) for a in rows]


async def send_reminder(uow: UnitOfWork, notifier: Notifier, settings: Settings, appointment_id: uuid.UUID) -> bool:
    """Send and stamp in one transaction, so a crash can never remind twice."""
    a = (await uow.session.execute(
        select(Appointment).where(Appointment.id == appointment_id).with_for_update())).scalar_one_or_none()
    if a is None or a.reminder_sent_at is not None or a.status is not AppointmentStatus.BOOKED:
        return False
    await appointment_message(uow, notifier, settings, a, "reminder")
    patient, org, _c, enc = await _context(uow, a)
    if patient.phone and enc is not None:
        locale = patient.locale or settings.default_locale
        when = a.start.astimezone(ZoneInfo(org.timezone)).strftime("%m/%d %H:%M")
        text = _("%(organization)s: your video visit is at %(when)s. Join: %(url)s", locale) % {
            "organization": org.name, "when": when, "url": Links(settings.effective_base_url).visit(enc)}
        await notifier.send_sms(uow, organization_id=org.id, to_e164=patient.phone, text=text)
    a.reminder_sent_at = utcnow()
    uow.audit.record(SYSTEM, "appointment.reminder", object_type="Appointment", object_id=a.id,
                     organization_id=a.organization_id, patient_id=a.patient_id)
    return True


# --- invites -----------------------------------------------------------------------------------------------------


async def _patient_user(uow: UnitOfWork, patient: Patient) -> User:
    """Patients join without creating an account: a password-less user stands behind the link."""
    if patient.user_id is not None:
        u = await uow.session.get(User, patient.user_id)
        if u is not None:
            return u
    taken = patient.email and (await uow.session.execute(
        select(User.id).where(User.email == patient.email.lower()))).scalar_one_or_none()
    email = patient.email.lower() if patient.email and not taken else f"patient-{patient.id}@invite.invalid"
    u = User(email=email, display_name=patient.full_name, password_hash=None, locale=patient.locale)
    uow.add(u)
    await uow.session.flush()
    uow.add(Membership(user_id=u.id, organization_id=patient.organization_id, role=Role.PATIENT))
    patient.user_id = u.id
    return u


async def send_invite(uow: UnitOfWork, principal: Principal, notifier: Notifier, settings: Settings,
                      encounter_id: uuid.UUID, *, channel: str, to: str | None = None) -> tuple[VisitInvite, str]:
    e = await uow.session.get(Encounter, encounter_id)
    if e is None:
        raise NotFound("encounter not found")
    authorize(principal, "invite.manage", Resource("Encounter", organization_id=e.organization_id, id=e.id,
                                                   patient_id=e.patient_id))
    if e.status.final:
        raise Conflict(f"the visit is {e.status.value}", code="visit_closed")
    patient = await uow.session.get(Patient, e.patient_id)
    org = await uow.session.get(Organization, e.organization_id)
    assert patient is not None and org is not None
    if channel not in ("email", "sms"):
        raise Invalid("unknown channel", fields={"channel": "email or sms"})
    recipient = (to or (patient.email if channel == "email" else patient.phone)).strip()
    if not recipient:
        raise Invalid("the patient has no address for this channel", fields={"to": "required"})
    if channel == "sms":
        from clinic.services.patients import normalize_phone

        recipient = normalize_phone(recipient, patient.jurisdiction)
    user = await _patient_user(uow, patient)
    links = Links(settings.effective_base_url)
    token, link = await accounts.issue_magic_link(
        uow, settings, user=user, purpose=MagicLinkPurpose.INVITE, next_path=f"/visit/{e.id}",
        created_by=principal, organization_id=e.organization_id, encounter_id=e.id)
    url = f"{links.base_url}/m/{token}"
    locale = patient.locale or settings.default_locale
    if channel == "email":
        subject, text, html = render_email("invite", locale, {
            "organization": org.name, "recipient_name": patient.full_name, "visit_url": url,
            "expires_at": link.expires_at, "timezone": org.timezone, "organization_phone": org.phone})
        msg = await notifier.send_email(uow, organization_id=org.id, to=recipient, subject=subject, text=text,
                                        html=html, kind="visit.invite")
    else:
        text = _("%(organization)s invites you to a video visit: %(url)s", locale) % {
            "organization": org.name, "url": url}
        msg = await notifier.send_sms(uow, organization_id=org.id, to_e164=recipient, text=text)
    inv = VisitInvite(encounter_id=e.id, magic_link_id=link.id, channel=channel, recipient=recipient,
                      outbox_message_id=msg.id, created_by_id=principal.user_id, expires_at=link.expires_at)
    uow.add(inv)
    await uow.session.flush()
    uow.audit.record(principal, "invite.send", object_type="VisitInvite", object_id=inv.id,
                     organization_id=e.organization_id, patient_id=e.patient_id, detail={"channel": channel})
    return inv, url


async def _invite(uow: UnitOfWork, principal: Principal, invite_id: uuid.UUID) -> tuple[VisitInvite, Encounter]:
    inv = await uow.session.get(VisitInvite, invite_id)
    e = await uow.session.get(Encounter, inv.encounter_id) if inv else None
    if inv is None or e is None:
        raise NotFound("invite not found")
    authorize(principal, "invite.manage", Resource("VisitInvite", organization_id=e.organization_id, id=inv.id,
                                                   patient_id=e.patient_id))
    return inv, e


async def revoke_invite(uow: UnitOfWork, principal: Principal, invite_id: uuid.UUID) -> VisitInvite:
    inv, e = await _invite(uow, principal, invite_id)
    if inv.revoked_at is not None:
        raise Conflict("already revoked", code="already_revoked")
    now = utcnow()
    inv.revoked_at = now
    link = await uow.session.get(MagicLink, inv.magic_link_id)
    if link is not None and link.revoked_at is None:
        link.revoked_at = now
    uow.audit.record(principal, "invite.revoke", object_type="VisitInvite", object_id=inv.id,
                     organization_id=e.organization_id, patient_id=e.patient_id)
    return inv


async def resend_invite(uow: UnitOfWork, principal: Principal, notifier: Notifier, settings: Settings,
                        invite_id: uuid.UUID) -> tuple[VisitInvite, str]:
    """A fresh link to the same recipient; the old one stops working."""
    inv, e = await _invite(uow, principal, invite_id)
    if inv.revoked_at is None:
        await revoke_invite(uow, principal, invite_id)
    return await send_invite(uow, principal, notifier, settings, e.id, channel=inv.channel, to=inv.recipient)


async def list_invites(uow: UnitOfWork, principal: Principal, encounter_id: uuid.UUID) -> list[VisitInvite]:
    e = await uow.session.get(Encounter, encounter_id)
    if e is None:
        raise NotFound("encounter not found")
    authorize(principal, "invite.manage", Resource("Encounter", organization_id=e.organization_id, id=e.id,
                                                   patient_id=e.patient_id))
    rows = (await uow.session.execute(select(VisitInvite).where(VisitInvite.encounter_id == e.id)
                                      .order_by(VisitInvite.created_at.desc()))).scalars().all()
    return list(rows)


# --- the outbox, as admins read it ---------------------------------------------------------------------------


@dataclass(frozen=True)
class OutboxAttachment:
    filename: str
    content_type: str
    content: bytes


async def outbox_attachment(uow: UnitOfWork, principal: Principal, message_id: uuid.UUID,
                            filename: str) -> OutboxAttachment:
    """One attachment of a stored e-mail, exactly as it was sent (a calendar invitation, a visit summary)."""
    row = await uow.session.get(OutboxMessage, message_id)
    if row is None or row.channel != "email" or "raw" not in (row.payload or {}):
        raise NotFound("message not found")
    authorize(principal, "outbox.read", Resource("OutboxMessage", id=row.id, organization_id=row.organization_id))
    message = BytesParser(policy=policy.default).parsebytes(base64.b64decode(row.payload["raw"]))
    assert isinstance(message, EmailMessage)
    for part in message.iter_attachments():
        if part.get_filename() == filename:
            content = part.get_payload(decode=True)
            assert isinstance(content, bytes)
            uow.audit.record(principal, "outbox.attachment.read", object_type="OutboxMessage", object_id=row.id,
                             organization_id=row.organization_id, detail={"filename": filename})
            return OutboxAttachment(filename, part.get_content_type(), content)
    raise NotFound("attachment not found")
