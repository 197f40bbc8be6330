"""Korean and English through Babel message catalogs (.po files read at start-up, no compile step).

Source strings are English; ``clinic/locale/<lang>/LC_MESSAGES/messages.po`` translates them.
The request's language is the user's setting, else the best Accept-Language match, else the default.
"""

from __future__ import annotations

import contextvars
from functools import cache
from pathlib import Path

from babel.messages.catalog import Catalog
from babel.messages.pofile import read_po

LOCALES = ("ko", "en")
LOCALE_DIR = Path(__file__).resolve().parent.parent / "locale"
_current: contextvars.ContextVar[str] = contextvars.ContextVar("telemed_locale", default="ko")


def catalog_files(locale: str) -> list[Path]:
    """The main catalog plus per-feature catalogs (``fragments/*.po``), so features translate independently."""
    base = LOCALE_DIR / locale / "LC_MESSAGES"
    main = base / "messages.po"
    return ([main] if main.exists() else []) + sorted((base / "fragments").glob("*.po"))


@cache
def catalog(locale: str) -> dict[str, str | tuple[str, ...]]:
    out: dict[str, str | tuple[str, ...]] = {}
    for path in catalog_files(locale):
        with path.open("rb") as fh:
            _merge(out, read_po(fh, locale=locale))
    return out


def _merge(out: dict[str, str | tuple[str, ...]], cat: Catalog) -> None:
    for msg in cat:
        if not msg.id or msg.fuzzy:
            continue
        key = str(msg.id[0] if isinstance(msg.id, tuple | list) else msg.id)
        if isinstance(msg.string, tuple | list):
            if all(msg.string):
                out[key] = tuple(str(x) for x in msg.string)
        elif msg.string:
            out[key] = str(msg.string)


def N_(message: str) -> str:
    """Marks a string for extraction where it is defined; it is translated where it is shown."""
    return message


def set_locale(locale: str) -> contextvars.Token[str]:
    return _current.set(locale if locale in LOCALES else LOCALES[0])


def get_locale() -> str:
    return _current.get()


def gettext(message: str, locale: str | None = None) -> str:
    t = catalog(locale or get_locale()).get(message)
    if isinstance(t, str):
        return t
    return message


def ngettext(singular: str, plural: str, n: int, locale: str | None = None) -> str:
    t = catalog(locale or get_locale()).get(singular)
    if isinstance(t, tuple):
        return t[0] if len(t) == 1 else t[0 if n == 1 else 1]
    if isinstance(t, str):
        return t
    return singular if n == 1 else plural


_ = gettext


def negotiate(accept_language: str, user_locale: str | None, default: str) -> str:
    if user_locale in LOCALES:
        return str(user_locale)
    best: tuple[float, str] | None = None
    for part in accept_language.split(","):
        bits = part.strip().split(";")
        tag = bits[0].strip().lower().split("-")[0]
        q = 1.0
        for b in bits[1:]:
            if b.strip().startswith("q="):
                try:
                    q = float(b.strip()[2:])
                except ValueError:
                    q = 0.0
        if tag in LOCALES and (best is None or q > best[0]):
            best = (q, tag)
    return best[1] if best else default
