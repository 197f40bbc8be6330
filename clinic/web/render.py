"""Jinja2 page rendering with per-request language, CSRF token and principal in the context."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jinja2
from aiohttp import web

import templates as templates_pkg
from clinic.encounters.symptoms import SYMPTOMS
from clinic.web import i18n

TEMPLATE_DIR = Path(templates_pkg.__file__).resolve().parent
STATIC_DIR = TEMPLATE_DIR / "static"
JINJA: web.AppKey[jinja2.Environment] = web.AppKey("telemed_jinja", jinja2.Environment)


def make_environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATE_DIR),
        autoescape=jinja2.select_autoescape(["html", "xml"]),
        extensions=["jinja2.ext.i18n"],
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.install_gettext_callables(  # type: ignore[attr-defined]
        lambda s: i18n.gettext(s), lambda s, p, n: i18n.ngettext(s, p, n), newstyle=True
    )
    env.globals["symptoms"] = SYMPTOMS
    env.globals["symptom_words"] = symptom_words
    return env


def symptom_words(prefix: str = "") -> dict[str, str]:
    """Each check-in symptom code (keyed ``prefix + code``) as words in the request's language."""
    return {prefix + s.code: i18n.gettext(s.label) for s in SYMPTOMS}


def render(request: web.Request, template: str, context: dict[str, Any] | None = None, *, status: int = 200,
           headers: dict[str, str] | None = None) -> web.Response:
    env = request.app[JINJA]
    ctx: dict[str, Any] = {
        "request": request,
        "principal": request.get("principal"),
        "user": request.get("user"),
        "csrf_token": request.get("csrf_token", ""),
        "locale": i18n.get_locale(),
        "locales": i18n.LOCALES,
        "path": request.path,
        "org_2fa_off": request.get("org_2fa_off", False),
    }
    if context:
        ctx.update(context)
    html = env.get_template(template).render(ctx)
    return web.Response(text=html, status=status, content_type="text/html", charset="utf-8", headers=headers)
