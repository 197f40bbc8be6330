"""Account pages: sign-in, second factor, enrollment, magic links, account settings, home."""

from __future__ import annotations

import io
from collections.abc import Awaitable, Callable

import segno
from aiohttp import web

from clinic.db.models import Role, User
from clinic.errors import DomainError
from clinic.services import accounts
from clinic.web.context import services
from clinic.web.i18n import LOCALES
from clinic.web.i18n import gettext as _
from clinic.web.middleware import audit_failure, clear_session_cookie, set_session_cookie
from clinic.web.render import render


def _safe_next(raw: str | None) -> str:
    if not raw or not raw.startswith("/") or raw.startswith("//") or "\\" in raw:
        return "/"
    return raw


def home_for(request: web.Request) -> str:
    """Where a signed-in user starts, by role."""
    p = request["principal"]
    if p.patient_ids and not p.orgs_with(Role.CLINICIAN, Role.PHARMACIST, Role.ORG_ADMIN):
        return "/portal"
    if p.orgs_with(Role.CLINICIAN):
        return "/console"
    if p.orgs_with(Role.PHARMACIST):
        return "/pharmacy"
    if p.orgs_with(Role.ORG_ADMIN) or p.platform_admin:
        return "/admin"
    return "/account"


def _router_has(request: web.Request, path: str) -> bool:
    for res in request.app.router.resources():
        if res.canonical == path:
            return True
    return False


async def home(request: web.Request) -> web.StreamResponse:
    p = request["principal"]
    if p.extra.get("mfa_pending"):
        raise web.HTTPFound("/login/2fa")
    if not p.authenticated:
        return render(request, "home.html", {})
    target = home_for(request)
    if target != "/" and _router_has(request, target):
        raise web.HTTPFound(target)
    return render(request, "home.html", {})


async def login_page(request: web.Request) -> web.Response:
    return render(request, "login.html", {"next": _safe_next(request.query.get("next")), "error": None,
                                          "email": ""})


async def login_submit(request: web.Request) -> web.StreamResponse:
    svc = services(request.app)
    form = await request.post()
    email = str(form.get("email", ""))[:254]
    password = str(form.get("password", ""))[:1024]
    nxt = _safe_next(str(form.get("next", "/")))
    try:
        async with svc.uow_factory() as uow:
            res = await accounts.login_with_password(uow, svc.settings, svc.login_limiter, email=email,
                                                     password=password, ip=request["principal"].source_ip,
                                                     ua=request.headers.get("User-Agent", ""),
                                                     uow_factory=svc.uow_factory)
            await uow.commit()
    except DomainError as exc:
        await audit_failure(request, exc)
        msg = _("E-mail or password is incorrect.") if exc.status == 401 else _(
            "Too many sign-in attempts. Please wait a few minutes and try again.")
        return render(request, "login.html", {"next": nxt, "error": msg, "email": email}, status=exc.status)
    target = "/login/2fa" if res.needs_second_factor else "/login/enroll" if res.needs_enrollment else nxt
    if target != nxt:
        target += f"?next={nxt}"
    resp = web.HTTPFound(target)
    set_session_cookie(request, resp, res.session_token)
    raise resp


def _pending(request: web.Request) -> tuple[accounts.SignedIn, accounts.SessionUser]:
    ws = request.get("web_session")
    user = request.get("user")
    if ws is None or user is None:
        raise web.HTTPFound("/login")
    return ws, user


async def mfa_page(request: web.Request) -> web.Response:
    _pending(request)
    return render(request, "mfa.html", {"next": _safe_next(request.query.get("next")), "error": None})


SecondFactorCheck = Callable[..., Awaitable[None]]


async def _check_code(request: web.Request, check: SecondFactorCheck) -> tuple[str, str | None]:
    """Runs ``check`` (verify, or confirm an enrollment) on the code posted for the pending sign-in, in one
    transaction. Returns where to go next and, if the code was refused, what to tell the person."""
    svc = services(request.app)
    ws, user = _pending(request)
    form = await request.post()
    nxt = _safe_next(str(form.get("next", "/")))
    try:
        async with svc.uow_factory() as uow:
            ws2 = await uow.session.get(accounts.WebSession, ws.id)
            u2 = await uow.session.get(User, user.id)
            assert ws2 is not None and u2 is not None
            await check(uow, svc.settings, svc.mfa_limiter, ws2, u2, str(form.get("code", ""))[:8],
                        ip=request["principal"].source_ip)
            await uow.commit()
    except DomainError as exc:
        await audit_failure(request, exc)
        if exc.status == 429:
            return nxt, _("Too many codes tried. Please wait a few minutes and try again.")
        return nxt, _("That code is not valid. Try the current one.")
    return nxt, None


async def mfa_submit(request: web.Request) -> web.StreamResponse:
    nxt, error = await _check_code(request, accounts.verify_second_factor)
    if error is not None:
        return render(request, "mfa.html", {"next": nxt, "error": error}, status=422)
    raise web.HTTPFound(nxt)


def _enroll_page(request: web.Request, secret: str, uri: str, nxt: str, error: str | None,
                 status: int = 200) -> web.Response:
    buf = io.BytesIO()
    segno.make(uri, error="m").save(buf, kind="svg", scale=5, xmldecl=False, svgns=True,
                                    title=_("QR code for your authenticator app"))
    return render(request, "enroll.html", {"secret": secret, "qr_svg": buf.getvalue().decode(), "next": nxt,
                                           "error": error}, status=status)


async def enroll_page(request: web.Request) -> web.Response:
    svc = services(request.app)
    _ws, user = _pending(request)
    if user.totp_enabled_at is not None:
        raise web.HTTPFound("/login/2fa")
    # A new secret each time the page is opened: one shown earlier (to whoever had the password) stops working.
    async with svc.uow_factory() as uow:
        u2 = await uow.session.get(User, user.id)
        assert u2 is not None
        secret, uri = await accounts.begin_totp_enrollment(uow, svc.settings, u2)
        await uow.commit()
    return _enroll_page(request, secret, uri, _safe_next(request.query.get("next")), None)


async def enroll_submit(request: web.Request) -> web.StreamResponse:
    nxt, error = await _check_code(request, accounts.confirm_totp_enrollment)
    if error is None:
        raise web.HTTPFound(nxt)
    # The same secret again: the person has scanned it already and only mistyped (or was too slow).
    svc = services(request.app)
    _ws, user = _pending(request)
    async with svc.uow_factory() as uow:
        u2 = await uow.session.get(User, user.id)
        assert u2 is not None
        secret, uri = accounts.pending_totp_enrollment(svc.settings, u2)
    return _enroll_page(request, secret, uri, nxt, error, status=422)


async def logout_submit(request: web.Request) -> web.StreamResponse:
    svc = services(request.app)
    ws = request.get("web_session")
    if ws is not None:
        async with svc.uow_factory() as uow:
            row = await uow.session.get(accounts.WebSession, ws.id)
            if row is not None:
                await accounts.logout(uow, row)
            await uow.commit()
    resp = web.HTTPFound("/login")
    clear_session_cookie(resp)
    raise resp


async def magic_link(request: web.Request) -> web.StreamResponse:
    """Single-use sign-in link (invites). Consumed on GET; the token is never stored in the clear."""
    svc = services(request.app)
    token = request.match_info["token"]
    try:
        async with svc.uow_factory() as uow:
            session_token, link, user = await accounts.consume_magic_link(
                uow, svc.settings, token, ip=request["principal"].source_ip, ua=request.headers.get("User-Agent", ""))
            pending = await accounts.second_factor_required(uow, user) or user.totp_enabled_at is not None
            await uow.commit()
    except DomainError as exc:
        await audit_failure(request, exc)
        return render(request, "error.html", {"status": exc.status, "code": exc.code, "message": _(
            "This link has expired or was already used. Ask the clinic to send a new one.")}, status=exc.status)
    target = link.next_path
    if pending:
        target = f"/login/{'2fa' if user.totp_enabled_at else 'enroll'}?next={target}"
    resp = web.HTTPFound(target)
    set_session_cookie(request, resp, session_token)
    raise resp


async def account_page(request: web.Request) -> web.Response:
    p = request["principal"]
    if not p.authenticated or p.extra.get("mfa_pending"):
        raise web.HTTPFound("/login?next=/account")
    async with services(request.app).uow_factory() as uow:
        memberships = await accounts.memberships_of(uow, p.user_id)
    return render(request, "account.html", {"saved": request.query.get("saved"), "memberships": memberships})


async def set_language(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    lang = str(form.get("lang", ""))
    nxt = _safe_next(str(form.get("next", "/")))
    resp = web.HTTPFound(nxt)
    if lang in LOCALES:
        resp.set_cookie("tm_lang", lang, max_age=3600 * 24 * 365, samesite="Lax", path="/", httponly=True)
        user = request.get("user")
        if user is not None and not request["principal"].extra.get("mfa_pending"):
            async with services(request.app).uow_factory() as uow:
                u2 = await uow.session.get(User, user.id)
                if u2 is not None:
                    u2.locale = lang
                await uow.commit()
    raise resp


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/", home)
    r.add_get("/login", login_page)
    r.add_post("/login", login_submit)
    r.add_get("/login/2fa", mfa_page)
    r.add_post("/login/2fa", mfa_submit)
    r.add_get("/login/enroll", enroll_page)
    r.add_post("/login/enroll", enroll_submit)
    r.add_post("/logout", logout_submit)
    r.add_get("/m/{token}", magic_link)
    r.add_get("/account", account_page)
    r.add_post("/language", set_language)
