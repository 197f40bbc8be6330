"""E-mail construction and SMTP delivery.

Messages are plain ``email.message.EmailMessage`` objects so they can be serialised into the
outbox (for retries) and handed to any transport that implements :class:`Mailer`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Protocol

import aiosmtplib

from clinic.config import Settings

#: (filename, mime type such as "application/pdf", content)
Attachment = tuple[str, str, bytes]

_ICS_METHOD = re.compile(rb"^METHOD:([A-Z-]+)\r?$", re.MULTILINE)


class Mailer(Protocol):
    async def send(self, message: EmailMessage) -> None:
        """Deliver ``message`` or raise; the caller records the outcome."""


class SmtpMailer:
    """Delivers through the SMTP relay named in the settings (``smtp_*``)."""

    def __init__(self, settings: Settings, *, timeout: float = 15.0) -> None:
        self.host = settings.smtp_host
        self.port = settings.smtp_port
        self.username = settings.smtp_username or None
        self.password = settings.smtp_password or None
        self.starttls = settings.smtp_starttls
        self.timeout = timeout

    async def send(self, message: EmailMessage) -> None:
        # Port 465 is implicit TLS by convention; everything else is plain or STARTTLS as configured.
        # Opportunistic STARTTLS is switched off when not asked for, so a relay with a self-signed
        # certificate on a private network does not fail certificate validation unexpectedly.
        implicit_tls = self.port == 465
        await aiosmtplib.send(
            message,
            hostname=self.host,
            port=self.port,
            username=self.username,
            password=self.password,
            use_tls=implicit_tls,
            start_tls=None if implicit_tls else self.starttls,
            timeout=self.timeout,
        )


def _one_line(value: str) -> str:
    # Header values come from templates and user data; a newline there would be header injection.
    return " ".join(value.split())


def ics_method(ics: bytes) -> str:
    """The iTIP method of a calendar object; mail clients need it repeated in the Content-Type."""
    m = _ICS_METHOD.search(ics)
    return m.group(1).decode() if m else "PUBLISH"


def build_email(
    to: str,
    subject: str,
    text: str,
    html: str | None = None,
    attachments: Sequence[Attachment] = (),
    ics: bytes | None = None,
    *,
    sender: str = "telemed@localhost",
    reply_to: str | None = None,
) -> EmailMessage:
    """A multipart message: text (and HTML) alternatives, then attachments, then the invitation."""
    msg = EmailMessage()
    msg["From"] = _one_line(sender)
    msg["To"] = _one_line(to)
    msg["Subject"] = _one_line(subject)
    msg["Date"] = formatdate(localtime=False, usegmt=True)
    domain = sender.rsplit("@", 1)[-1].strip("> ") if "@" in sender else None
    msg["Message-ID"] = make_msgid(domain=domain or None)
    if reply_to:
        msg["Reply-To"] = _one_line(reply_to)
    msg.set_content(text)
    if html is not None:
        msg.add_alternative(html, subtype="html")
    for filename, mime, content in attachments:
        maintype, _, subtype = mime.partition("/")
        msg.add_attachment(content, maintype=maintype, subtype=subtype or "octet-stream", filename=filename)
    if ics is not None:
        # The method parameter must match METHOD inside the object, or Outlook/Gmail show a plain
        # attachment instead of an invitation with accept/decline buttons.
        msg.add_attachment(
            ics,
            maintype="text",
            subtype="calendar",
            filename="invite.ics",
            params={"method": ics_method(ics), "charset": "UTF-8"},
        )
    return msg
