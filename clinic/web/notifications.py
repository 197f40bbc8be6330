"""Wires notifications and periodic jobs into the app: booking e-mails with ICS, reminders, mail retries,
prescription status notices and prescription expiry."""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta
from typing import Any

from aiohttp import web

from clinic.db.base import utcnow
from clinic.db.clinical import Patient
from clinic.db.scheduling import Appointment
from clinic.db.uow import UnitOfWork
from clinic.jobs import register_job
from clinic.notify import Notifier, ReminderJob, SmtpMailer, retry_failed
from clinic.services import messaging
from clinic.web.context import services
from clinic.web.i18n import N_
from clinic.web.i18n import gettext as _

log = logging.getLogger("telemed.notify")

RX_MESSAGES = {
    "prescription.sent": N_("Your prescription was sent to the pharmacy."),
    "prescription.accepted": N_("The pharmacy accepted your prescription."),
    "prescription.rejected": N_("The pharmacy could not fill your prescription. Please choose another pharmacy."),
    "prescription.ready": N_("Your medicine is ready for pickup."),
    "prescription.dispensed": N_("Your medicine has been dispensed."),
    "prescription.cancelled": N_("Your prescription was cancelled by the prescriber."),
    "delivery.created": N_("Your medicine will be delivered."),
    "delivery.picked_up": N_("The courier has picked up your medicine."),
    "delivery.in_transit": N_("Your medicine is on its way."),
    "delivery.delivered": N_("Your medicine was delivered."),
    "delivery.failed": N_("The delivery failed. The pharmacy will contact you."),
    "delivery.returned": N_("The delivery was returned to the pharmacy."),
}


def notifier_of(app: web.Application) -> Notifier:
    n: Notifier = services(app).extra["notify"]
    return n


async def appointment_event(app: web.Application, uow: UnitOfWork, a: Appointment, kind: str) -> None:
    s = services(app)
    await messaging.appointment_message(uow, notifier_of(app), s.settings, a, kind)


def _rx_notifier(app: web.Application) -> Any:
    async def notify(patient_id: uuid.UUID, kind: str, detail: dict[str, Any]) -> None:
        s = services(app)
        text_en = RX_MESSAGES.get(kind)
        if text_en is None:
            return
        async with s.uow_factory() as uow:
            patient = await uow.session.get(Patient, patient_id)
            if patient is None or patient.erased_at is not None:
                return
            locale = patient.locale or s.settings.default_locale
            link = f"{s.settings.effective_base_url}/portal"
            body = f"{_(text_en, locale)}\n{link}"
            if patient.email:
                await notifier_of(app).send_email(uow, organization_id=patient.organization_id, to=patient.email,
                                                  subject=_(text_en, locale), text=body, kind=kind)
            elif patient.phone:
                await notifier_of(app).send_sms(uow, organization_id=patient.organization_id,
                                                to_e164=patient.phone, text=body)
            await uow.commit()

    return notify


async def reminders_pass(app: web.Application) -> int:
    s = services(app)
    lead = timedelta(minutes=s.settings.reminder_minutes_before)

    async def fetch(now: Any, lead_: timedelta) -> Any:
        async with s.uow_factory() as uow:
            return await messaging.reminder_candidates(uow, now, lead_)

    async def send(candidate: Any) -> None:
        async with s.uow_factory() as uow:
            if await messaging.send_reminder(uow, notifier_of(app), s.settings, candidate.appointment_id):
                await uow.commit()

    run = await ReminderJob(fetch, send, lead).run_once(utcnow())
    return len(run.sent)


async def mail_retry_pass(app: web.Application) -> int:
    s = services(app)
    if not s.settings.smtp_host:
        return 0
    return await retry_failed(s.sessionmaker, SmtpMailer(s.settings))


async def rx_expiry_pass(app: web.Application) -> int:
    from prescriptions.service import expire_due

    s = services(app)
    async with s.uow_factory() as uow:
        n = await expire_due(uow)
        await uow.commit()
    return n


async def _drain(app: web.Application) -> None:
    await notifier_of(app).drain()


def install(app: web.Application) -> None:
    s = services(app)
    s.extra.setdefault("notify", Notifier.from_settings(s.settings, s.sessionmaker))
    s.extra.setdefault("notifier", _rx_notifier(app))

    async def on_appointment(uow: UnitOfWork, a: Appointment, kind: str) -> None:
        await appointment_event(app, uow, a, kind)

    s.extra.setdefault("appointment_events", on_appointment)
    register_job(app, "reminders", 60, reminders_pass)
    register_job(app, "mail-retry", 300, mail_retry_pass)
    register_job(app, "rx-expiry", 300, rx_expiry_pass)
    app.on_cleanup.append(_drain)
