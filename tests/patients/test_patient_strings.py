"""The patient pages' Korean: every message the visit page script shows exists, and this feature's catalog is
what the pages get (a later fragment translating the same English differently would win silently)."""

from __future__ import annotations

import re
from pathlib import Path

from babel.messages.pofile import read_po

from clinic.web import i18n
from clinic.web.visit_pages import strings

ROOT = Path(__file__).resolve().parents[2]
FRAGMENT = ROOT / "clinic/locale/ko/LC_MESSAGES/fragments/patient.po"


def test_visit_page_script_uses_only_strings_it_is_given() -> None:
    js = (ROOT / "templates/static/visit.js").read_text()
    used = set(re.findall(r"\bS\.(\w+)", js)) | set(re.findall(r'\[\s*"(ci_\w+|network_error)"', js))
    token = i18n.set_locale("ko")
    try:
        given = strings()
    finally:
        i18n._current.reset(token)
    assert used and not used - set(given), f"add to strings() in clinic/web/visit_pages.py: {used - set(given)}"
    # the check-in refusals are whole Korean sentences, with no English server text in them
    for key in ("ci_identity", "ci_too_early", "ci_closed", "ci_missing", "ci_other", "network_error"):
        assert re.search(r"[가-힣]", given[key]) and not re.search(r"[A-Za-z]{3,}", given[key]), given[key]


def test_this_features_translations_are_the_ones_used() -> None:
    with FRAGMENT.open("rb") as fh:
        mine = [m for m in read_po(fh, locale="ko") if m.id]
    assert len(mine) > 50
    merged = i18n.catalog("ko")
    overridden = {m.id: merged.get(str(m.id)) for m in mine if merged.get(str(m.id)) != m.string}
    assert not overridden, f"another catalog translates these differently: {overridden}"


def test_consent_state_is_not_the_policy_forms_not_given() -> None:
    # The portal once showed a missing consent as "지정 안 함" (the policy simulator's "Not given").
    portal = (ROOT / "templates/portal/index.html").read_text()
    assert '_("Not given")' not in portal
    assert i18n.gettext("Not consented", "ko") == "동의하지 않음"
