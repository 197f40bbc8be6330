"""Notifications: e-mail (SMTP), SMS (outbox), calendar invitations and appointment reminders.

Every message is an ``OutboxMessage`` row; see :mod:`clinic.notify.service` for the lifecycle.
"""

from clinic.notify.ics import appointment_ics, appointment_uid
from clinic.notify.mail import Attachment, Envelope, Mailer, SmtpMailer, build_email
from clinic.notify.reminders import ReminderCandidate, ReminderJob, ReminderRun, due_reminders
from clinic.notify.service import Notifier, retry_failed
from clinic.notify.sms import OutboxSmsProvider, SmsProvider
from clinic.notify.templates import KINDS, format_when, render_email

__all__ = [
    "KINDS",
    "Attachment",
    "Envelope",
    "Mailer",
    "Notifier",
    "OutboxSmsProvider",
    "ReminderCandidate",
    "ReminderJob",
    "ReminderRun",
    "SmsProvider",
    "SmtpMailer",
    "appointment_ics",
    "appointment_uid",
    "build_email",
    "due_reminders",
    "format_when",
    "render_email",
    "retry_failed",
]
