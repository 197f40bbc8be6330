"""Korean and English: every user-facing string in code and templates has a Korean translation."""

from __future__ import annotations

from pathlib import Path

from aiohttp.test_utils import TestClient
from babel.messages.extract import extract_from_dir

from clinic.web import i18n

ROOT = Path(__file__).resolve().parents[2]
PY_MAP = [("**.py", "python")]
TEMPLATE_MAP = [("**.html", "jinja2"), ("**.txt", "jinja2")]
OPTIONS = {"**.html": {"extensions": "jinja2.ext.i18n"}, "**.txt": {"extensions": "jinja2.ext.i18n"}}


def _source_messages() -> set[str]:
    out: set[str] = set()
    sources = [(ROOT / "templates", TEMPLATE_MAP)] + [
        (ROOT / pkg, PY_MAP) for pkg in ("clinic", "prescriptions", "signaling", "media")]
    for root, method_map in sources:
        for _fn, _line, msg, _comments, _ctx in extract_from_dir(root, method_map, OPTIONS):
            out.add(msg[0] if isinstance(msg, tuple) else msg)
    return {m for m in out if m}


def test_templates_are_scanned() -> None:
    # A message that only exists in a nested template must be found (guards the glob patterns above).
    assert "Join the visit:" in _source_messages()  # templates/email/invite.txt


def test_every_message_has_a_korean_translation() -> None:
    catalog = i18n.catalog("ko")
    missing = sorted(m for m in _source_messages() if m not in catalog)
    assert not missing, f"add Korean translations to clinic/locale/ko/LC_MESSAGES/messages.po: {missing[:30]}"


def test_negotiation() -> None:
    assert i18n.negotiate("en-US,en;q=0.9,ko;q=0.8", None, "ko") == "en"
    assert i18n.negotiate("fr-FR, ko;q=0.5", None, "en") == "ko"
    assert i18n.negotiate("fr", None, "ko") == "ko"
    assert i18n.negotiate("en", "ko", "en") == "ko"  # the user's setting wins


async def test_pages_render_in_korean_and_english(client: TestClient) -> None:
    r = await client.get("/login", headers={"Accept-Language": "ko-KR"})
    html = await r.text()
    assert '<html lang="ko">' in html and "로그인" in html and r.headers["Content-Language"] == "ko"
    r = await client.get("/login", headers={"Accept-Language": "en-US"})
    html = await r.text()
    assert '<html lang="en">' in html and "Sign in" in html and "로그인" not in html


async def test_every_page_carries_error_sentences_in_its_language(client: TestClient) -> None:
    import json
    import re

    for lang, hangul in (("ko-KR", True), ("en-US", False)):
        html = await (await client.get("/login", headers={"Accept-Language": lang})).text()
        raw = re.search(r'<script type="application/json" id="page-i18n-errors">(.*?)</script>', html, re.S)
        assert raw is not None
        words = json.loads(raw.group(1))
        assert {"err_network", "err_conflict", "err_invalid", "err_server", "err_unknown"} <= set(words)
        for sentence in words.values():
            assert bool(re.search(r"[\uac00-\ud7a3]", sentence)) == hangul, sentence
