"""E-mail bodies from Jinja2 templates in ``templates/email`` (``<kind>.txt`` and ``<kind>.html``).

Rendering takes an explicit locale because mail is usually sent for someone other than the
person making the request (the patient, not the clinician who booked).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo

import jinja2
from babel.dates import format_date, format_time

import templates as templates_pkg
from clinic.web import i18n
from clinic.web.i18n import N_

EMAIL_DIR = Path(templates_pkg.__file__).resolve().parent / "email"

Kind = Literal["invite", "confirmation", "reminder", "cancellation"]
KINDS: tuple[Kind, ...] = ("invite", "confirmation", "reminder", "cancellation")


SUBJECTS: dict[str, str] = {
    "invite": N_("Your video visit with %(organization)s"),
    "confirmation": N_("Appointment confirmed: %(when)s"),
    "reminder": N_("Reminder: your appointment at %(when)s"),
    "cancellation": N_("Appointment cancelled: %(when)s"),
}

MODE_LABELS: dict[str, str] = {
    "video": N_("Video visit"),
    "phone": N_("Phone call"),
    "in_person": N_("In person"),
}

_REQUIRED: dict[str, tuple[str, ...]] = {
    "invite": ("organization", "recipient_name", "visit_url"),
    "confirmation": ("organization", "recipient_name", "start", "timezone"),
    "reminder": ("organization", "recipient_name", "start", "timezone"),
    "cancellation": ("organization", "recipient_name", "start", "timezone"),
}
#: Keys the templates test for; defaulting them lets the environment stay strict about typos.
OPTIONAL_KEYS = ("clinician", "start", "end", "timezone", "visit_url", "manage_url", "rebook_url", "reason",
             "mode", "message", "expires_at", "organization_phone")


def format_when(value: datetime, timezone: str, locale: str) -> str:
    """Date and time in the organization's zone, with the zone named.

    24-hour time: "PM 2:30" vs "오후 2:30" vs "2:30 PM" is a common source of missed appointments.
    """
    if value.tzinfo is None:
        raise ValueError("datetime must be timezone-aware")
    local = value.astimezone(ZoneInfo(timezone))
    return f"{format_date(local, 'full', locale=locale)} {format_time(local, 'HH:mm', locale=locale)} ({timezone})"


@cache
def _env(locale: str) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(EMAIL_DIR),
        autoescape=jinja2.select_autoescape(["html"], default_for_string=False, default=False),
        extensions=["jinja2.ext.i18n"],
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.install_gettext_callables(  # type: ignore[attr-defined]
        lambda s: i18n.gettext(s, locale), lambda s, p, n: i18n.ngettext(s, p, n, locale), newstyle=True
    )
    return env


def render_email(kind: str, locale: str, context: Mapping[str, Any]) -> tuple[str, str, str]:
    """Return ``(subject, text, html)`` for one of :data:`KINDS` in ``locale`` ("ko" or "en")."""
    if kind not in SUBJECTS:
        raise ValueError(f"unknown e-mail kind {kind!r}")
    locale = locale if locale in i18n.LOCALES else i18n.LOCALES[0]
    missing = [k for k in _REQUIRED[kind] if context.get(k) in (None, "")]
    if missing:
        raise ValueError(f"{kind} e-mail needs {', '.join(missing)}")
    ctx: dict[str, Any] = dict.fromkeys(OPTIONAL_KEYS)
    ctx.update(context)
    ctx["locale"] = locale
    tz = ctx.get("timezone") or "UTC"
    ctx["when"] = format_when(ctx["start"], tz, locale) if ctx.get("start") else ""
    ctx["when_end"] = format_time(ctx["end"].astimezone(ZoneInfo(tz)), "HH:mm", locale=locale) if ctx.get("end") else ""
    ctx["expires"] = format_when(ctx["expires_at"], tz, locale) if ctx.get("expires_at") else ""
    mode_key = ctx.get("mode")
    label = MODE_LABELS.get(mode_key, "") if isinstance(mode_key, str) else ""
    ctx["mode_label"] = i18n.gettext(label, locale) if label else ""
    env = _env(locale)
    subject = i18n.gettext(SUBJECTS[kind], locale) % {"organization": ctx["organization"], "when": ctx["when"]}
    text = env.get_template(f"{kind}.txt").render(ctx)
    html = env.get_template(f"{kind}.html").render(ctx)
    return " ".join(subject.split()), text, html
