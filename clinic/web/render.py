"""Jinja2 page rendering with per-request language, CSRF token and principal in the context."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jinja2
from aiohttp import web

import templates as templates_pkg
from clinic.encounters.symptoms import SYMPTOMS
from clinic.web import i18n
from clinic.web.i18n import N_

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
    env.globals["error_words"] = error_words
    return env


#: What a page says when a call fails and it has no words of its own for the error's code (see live.js).
_ERROR_WORDS = {
    "err_network": N_("The network is not reachable. Check your connection and try again."),
    "err_unauthenticated": N_("Your session has ended. Sign in again."),
    "err_forbidden": N_("You are not allowed to do that."),
    "err_not_found": N_("This no longer exists. Reload the page."),
    "err_conflict": N_("That could not be done because something changed in the meantime. Reload the page and try "
                       "again."),
    "err_invalid": N_("That was not accepted. Check what you entered and try again."),
    "err_rate_limited": N_("Too many attempts. Wait a moment and try again."),
    "err_server": N_("The service is briefly unavailable. Try again in a moment."),
    "err_unknown": N_("Something went wrong. Try again."),
}


def error_words() -> dict[str, str]:
    """The generic error sentences, in the request's language, for every page's scripts."""
    return {k: i18n.gettext(v) for k, v in _ERROR_WORDS.items()}

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
