"""E-mail construction and SMTP delivery.

Messages are standard-library ``email.message.Message`` objects, serialised once into an :class:`Envelope`
that the outbox stores (for retries) and any transport implementing :class:`Mailer` delivers. They are built with the
classic ``email.mime`` classes: the modern ``EmailMessage`` API parses every header it sets through its
header registry, which made composing a booking confirmation cost as much CPU as the booking itself.
"""

from __future__ import annotations

import asyncio
import re
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from email import policy
from email.encoders import encode_base64
from email.header import Header
from email.message import Message
from email.mime.base import MIMEBase
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.utils import formataddr, formatdate, make_msgid, parseaddr
from typing import Protocol

import aiosmtplib

from clinic.config import Settings

#: (filename, mime type such as "application/pdf", content)
Attachment = tuple[str, str, bytes]

_ICS_METHOD = re.compile(rb"^METHOD:([A-Z-]+)\r?$", re.MULTILINE)


@dataclass(frozen=True)
class Envelope:
    """A message as it goes on the wire: the SMTP envelope and the bytes (as stored in the outbox)."""

    sender: str
    recipients: tuple[str, ...]
    data: bytes


class Mailer(Protocol):
    async def send(self, envelope: Envelope) -> None:
        """Deliver ``envelope`` or raise; the caller records the outcome."""


class SmtpMailer:
    """Delivers through the SMTP relay named in the settings (``smtp_*``)."""

    def __init__(self, settings: Settings, *, timeout: float = 15.0) -> None:
        self.host = settings.smtp_host
        self.port = settings.smtp_port
        self.username = settings.smtp_username or None
        self.password = settings.smtp_password or None
        self.starttls = settings.smtp_starttls
        self.helo_name = settings.smtp_helo_name
        self.timeout = timeout

    async def send(self, envelope: Envelope) -> None:
        # Port 465 is implicit TLS by convention; everything else is plain or STARTTLS as configured.
        # Opportunistic STARTTLS is switched off when not asked for, so a relay with a self-signed
        # certificate on a private network does not fail certificate validation unexpectedly.
        implicit_tls = self.port == 465
        await aiosmtplib.send(
            envelope.data,
            sender=envelope.sender,
            recipients=list(envelope.recipients),
            hostname=self.host,
            port=self.port,
            username=self.username,
            password=self.password,
            use_tls=implicit_tls,
            start_tls=None if implicit_tls else self.starttls,
            local_hostname=await self._helo(),
            timeout=self.timeout,
        )

    async def _helo(self) -> str:
        # Left to aiosmtplib, the name would be looked up (a blocking DNS query, in a thread) for every message.
        if not self.helo_name:
            self.helo_name = await asyncio.to_thread(socket.getfqdn)
        return self.helo_name


def _one_line(value: str) -> str:
    # Header values come from templates and user data; a newline there would be header injection.
    return " ".join(value.split())


def ics_method(ics: bytes) -> str:
    """The iTIP method of a calendar object; mail clients need it repeated in the Content-Type."""
    m = _ICS_METHOD.search(ics)
    return m.group(1).decode() if m else "PUBLISH"


def _address(value: str) -> str:
    # A display name may be Korean: RFC 2047-encode it, leave the address as it is.
    name, addr = parseaddr(_one_line(value))
    return formataddr((name, addr), charset="utf-8") if addr else _one_line(value)


def _attachment(maintype: str, subtype: str, content: bytes, filename: str, **params: str) -> MIMEBase:
    part = MIMEBase(maintype, subtype)
    for key, value in params.items():
        part.set_param(key, value)
    part.set_payload(content)
    encode_base64(part)
    part.add_header("Content-Disposition", "attachment", filename=filename)
    return part


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
) -> Message:
    """A multipart message: text (and HTML) alternatives, then attachments, then the invitation."""
    body: Message = MIMEText(text, "plain", "utf-8")
    if html is not None:
        body = MIMEMultipart("alternative", _subparts=[body, MIMEText(html, "html", "utf-8")])
    parts: list[Message] = [_attachment(*_split(mime), content, filename) for filename, mime, content in attachments]
    if ics is not None:
        # The method parameter must match METHOD inside the object, or Outlook/Gmail show a plain
        # attachment instead of an invitation with accept/decline buttons.
        parts.append(_attachment("text", "calendar", ics, "invite.ics", method=ics_method(ics), charset="UTF-8"))
    msg = MIMEMultipart("mixed", _subparts=[body, *parts]) if parts else body
    msg["From"] = _address(sender)
    msg["To"] = _address(to)
    # header_name: the first line is folded knowing "Subject: " comes before it.
    msg["Subject"] = Header(_one_line(subject), "utf-8", header_name="Subject").encode()
    msg["Date"] = formatdate(localtime=False, usegmt=True)
    domain = sender.rsplit("@", 1)[-1].strip("> ") if "@" in sender else None
    msg["Message-ID"] = make_msgid(domain=domain or None)
    if reply_to:
        msg["Reply-To"] = _address(reply_to)
    return msg


def _split(mime: str) -> tuple[str, str]:
    maintype, _, subtype = mime.partition("/")
    return maintype, subtype or "octet-stream"


#: How messages are written out: what SMTP expects (CRLF line ends), in the classic classes' own policy.
WIRE_POLICY = policy.compat32.clone(linesep="\r\n")


def message_bytes(message: Message) -> bytes:
    return message.as_bytes(policy=WIRE_POLICY)
