"""HTML → PDF with Jinja2 and WeasyPrint.

The stylesheet and font configuration are built once per process: parsing CSS and resolving
fonts dominate the cost of the first render. WeasyPrint embeds only the glyphs a document uses
(font subsetting), so a Korean PDF stays a few hundred kilobytes despite the large CJK font.

Rendering holds a lock: the shared font configuration wraps Pango/fontconfig objects that are not
safe to use from several threads at once. One page takes roughly 0.1–0.2 s, so serialising is
cheaper than the memory of a font configuration per worker thread.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from collections.abc import Mapping
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

import jinja2
from weasyprint import CSS, HTML
from weasyprint.text.fonts import FontConfiguration

import templates as templates_pkg
from clinic.documents import formatting
from clinic.documents.models import Document
from clinic.web import i18n

DOCUMENT_DIR = Path(templates_pkg.__file__).resolve().parent / "documents"
STYLESHEET = DOCUMENT_DIR / "print.css"

_lock = threading.Lock()


@cache
def _env(locale: str) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(DOCUMENT_DIR),
        autoescape=True,
        extensions=["jinja2.ext.i18n"],
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.install_gettext_callables(  # type: ignore[attr-defined]
        lambda s: i18n.gettext(s, locale), lambda s, p, n: i18n.ngettext(s, p, n, locale), newstyle=True
    )
    env.filters["long_date"] = lambda d: formatting.long_date(d, locale) if d else ""
    env.filters["money"] = lambda amount, currency: formatting.money(amount, currency, locale)
    return env


@cache
def _style() -> tuple[FontConfiguration, CSS]:
    fonts = FontConfiguration()
    return fonts, CSS(filename=str(STYLESHEET), font_config=fonts)


def _context(context: Document | Mapping[str, Any], locale: str) -> dict[str, Any]:
    if dataclasses.is_dataclass(context) and not isinstance(context, type):
        ctx: dict[str, Any] = {"doc": context}
        org = getattr(context, "organization", None)
        generated_at = getattr(context, "generated_at", None)
    else:
        ctx = dict(context)  # type: ignore[arg-type]
        org = ctx.get("organization")
        generated_at = ctx.get("generated_at")
    tz = getattr(org, "timezone", None) or "UTC"
    ctx["locale"] = locale
    ctx["timezone"] = tz
    ctx["generated"] = formatting.local_datetime(generated_at or datetime.now(UTC), tz, locale)
    qr = getattr(ctx.get("doc"), "qr", "") or ""
    ctx["qr_src"] = qr if qr.startswith("data:") else formatting.svg_data_uri(qr) if qr else ""
    ctx["local_datetime"] = lambda dt: formatting.local_datetime(dt, tz, locale) if dt else ""
    return ctx


def render_html(template_name: str, context: Document | Mapping[str, Any], *, locale: str) -> str:
    locale = locale if locale in i18n.LOCALES else i18n.LOCALES[0]
    return _env(locale).get_template(template_name).render(_context(context, locale))


def render_pdf(template_name: str, context: Document | Mapping[str, Any], *, locale: str) -> bytes:
    """Render ``templates/documents/<template_name>`` to PDF bytes (blocking; see :func:`render_pdf_async`)."""
    html = render_html(template_name, context, locale=locale)
    fonts, css = _style()
    with _lock:
        pdf = HTML(string=html, base_url=str(DOCUMENT_DIR)).write_pdf(stylesheets=[css], font_config=fonts)
    assert pdf is not None
    return bytes(pdf)


async def render_pdf_async(template_name: str, context: Document | Mapping[str, Any], *, locale: str) -> bytes:
    """The same, off the event loop: a render takes long enough to stall every other request."""
    return await asyncio.to_thread(render_pdf, template_name, context, locale=locale)


def render_document(doc: Document, *, locale: str) -> bytes:
    return render_pdf(doc.template, doc, locale=locale)


async def render_document_async(doc: Document, *, locale: str) -> bytes:
    return await render_pdf_async(doc.template, doc, locale=locale)


def warm_up() -> None:
    """Build the caches (call at start-up so the first user does not pay for it)."""
    _style()
    for locale in i18n.LOCALES:
        _env(locale)
