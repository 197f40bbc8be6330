"""Cross-cutting request handling: errors, identity, CSRF, language and security headers."""

from __future__ import annotations

import ipaddress
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import replace

from aiohttp import web
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as SQLAlchemyTimeout

from clinic.db.base import utcnow
from clinic.errors import DomainError, TooManyRequests
from clinic.security.authz import ANONYMOUS, Principal
from clinic.security.secrets import constant_time_equals, hash_token, new_token
from clinic.services import accounts
from clinic.web import i18n
from clinic.web.api import error_response
from clinic.web.context import services

log = logging.getLogger("telemed.http")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

SESSION_COOKIE = "tm_session"
PRE_CSRF_COOKIE = "tm_csrf"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def is_api(request: web.Request) -> bool:
    return request.path.startswith("/api/")


def client_ip(request: web.Request) -> str:
    peer = request.remote or ""
    if not peer:
        # A Unix-socket peer is another worker of this server (clinic.serve) forwarding its caller's address.
        return request.headers.get("X-Forwarded-For", "").split(",")[-1].strip()
    trusted = services(request.app).settings.trusted_proxies
    if trusted and peer:
        try:
            addr = ipaddress.ip_address(peer)
            if any(addr in ipaddress.ip_network(n, strict=False) for n in trusted):
                fwd = request.headers.get("X-Forwarded-For", "")
                if fwd:
                    return fwd.split(",")[-1].strip()
        except ValueError:
            pass
    return peer


@web.middleware
async def security_headers(request: web.Request, handler: Handler) -> web.StreamResponse:
    request["request_id"] = request.headers.get("X-Request-Id", "")[:64] or uuid.uuid4().hex
    resp = await handler(request)
    h = resp.headers
    h.setdefault("X-Request-Id", request["request_id"])
    h.setdefault("X-Content-Type-Options", "nosniff")
    # Magic-link tokens travel in URLs; never leak them to other sites through Referer.
    h.setdefault("Referrer-Policy", "no-referrer")
    h.setdefault("X-Frame-Options", "DENY")
    h.setdefault("Permissions-Policy", "camera=(self), microphone=(self), display-capture=(self), geolocation=()")
    extra_src = services(request.app).extra.get("csp_extra", "")
    h.setdefault(
        "Content-Security-Policy",
        "default-src 'self'; img-src 'self' data: blob:; media-src 'self' blob:; "
        f"connect-src 'self' ws: wss:{extra_src}; script-src 'self'{extra_src}; "
        f"style-src 'self' 'unsafe-inline'; frame-src 'self'{extra_src}; "
        "frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    )
    if not request.path.startswith("/static/"):
        h.setdefault("Cache-Control", "no-store")
    if services(request.app).settings.cookies_secure:
        h.setdefault("Strict-Transport-Security", "max-age=31536000; includeSubDomains")
    return resp


async def audit_failure(request: web.Request, exc: DomainError) -> None:
    """Refusals are auditable events too (they may be probing), written in their own transaction
    because the request's transaction was rolled back."""
    spec = exc.extra.get("audit")
    action = exc.extra.get("action")
    if not spec and not action:
        return
    res = exc.extra.get("resource")
    principal: Principal = request.get("principal", ANONYMOUS)
    try:
        async with services(request.app).uow_factory() as uow:
            if spec:
                uow.audit.record(principal, spec["action"], object_type=spec.get("object_type", ""),
                                 object_id=spec.get("object_id"), outcome=spec.get("outcome", "failure"),
                                 detail=spec.get("detail"))
            else:
                uow.audit.record(
                    principal,
                    str(action),
                    object_type=getattr(res, "kind", ""),
                    object_id=getattr(res, "id", None),
                    organization_id=getattr(res, "organization_id", None),
                    patient_id=getattr(res, "patient_id", None),
                    outcome="denied",
                )
            await uow.commit()
    except Exception:
        log.exception("could not audit a refusal")


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except DomainError as exc:
        await audit_failure(request, exc)
        headers = {}
        if isinstance(exc, TooManyRequests) and "retry_after" in exc.extra:
            headers["Retry-After"] = str(exc.extra["retry_after"])
        if is_api(request) or "application/json" in request.headers.get("Accept", ""):
            return error_response(exc.status, exc.code, exc.message, exc.fields, headers,
                                  decision=exc.extra.get("decision"))
        if exc.status == 401 and request.method in SAFE_METHODS:
            raise web.HTTPFound(f"/login?next={request.path_qs}") from None
        from clinic.web.render import render

        return render(request, "error.html", {"status": exc.status, "message": exc.message, "code": exc.code},
                      status=exc.status, headers=headers)
    except web.HTTPException as exc:
        if is_api(request) and exc.status >= 400:
            code = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}.get(
                exc.status, "http_error")
            return error_response(exc.status, code, exc.reason)
        raise
    except SQLAlchemyTimeout:
        # The connection pool is exhausted: a transient overload, not a bug; tell clients to retry.
        log.warning("database pool exhausted on %s %s", request.method, request.path)
        if is_api(request):
            return error_response(503, "busy", "the server is busy; retry shortly", headers={"Retry-After": "2"})
        return web.Response(status=503, text="Busy, please retry.", headers={"Retry-After": "2"})
    except Exception as exc:
        if isinstance(exc, DBAPIError) and exc.connection_invalidated:
            # The database went away under us (restart, failover); the pool is renewed, so a retry succeeds.
            log.warning("database connection lost on %s %s; pool renewed", request.method, request.path)
            if is_api(request):
                return error_response(503, "database_reconnecting", "the database connection was reset; retry",
                                      headers={"Retry-After": "1"})
            return web.Response(status=503, text="Please retry.", headers={"Retry-After": "1"})
        log.exception("unhandled error on %s %s (request %s)", request.method, request.path,
                      request.get("request_id"))
        if is_api(request):
            return error_response(500, "internal_error",
                                  f"internal error; quote request id {request.get('request_id')}")
        return web.Response(status=500, text=f"Internal error. Request id: {request.get('request_id')}")


@web.middleware
async def identity(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Resolve who is calling: an API bearer token or a session cookie, else anonymous."""
    svc = services(request.app)
    ip = client_ip(request)
    request["principal"] = Principal(kind="anonymous", source_ip=ip)
    auth = request.headers.get("Authorization", "")
    token = request.cookies.get(SESSION_COOKIE)
    if request.path.startswith("/static/") or request.path in ("/healthz", "/metrics"):
        return await handler(request)
    if auth.lower().startswith("bearer "):
        async with svc.uow_factory() as uow:
            p = await accounts.principal_from_api_token(uow, auth[7:].strip(), ip=ip)
            await uow.commit()
        if p is None:
            return error_response(401, "invalid_token", "the API token is invalid, expired or revoked")
        request["principal"] = p
        request["auth_via"] = "token"
    elif token:
        key = hash_token(token)
        signed_in = svc.session_cache.get(key)
        if signed_in is None:
            async with svc.uow_factory() as uow:
                signed_in = await accounts.resolve_session(uow, key)
                await uow.commit()
            if signed_in is not None:
                svc.session_cache.put(key, signed_in.user.id, signed_in)
        if signed_in is not None and signed_in.valid(utcnow()):
            request["principal"] = replace(signed_in.principal, source_ip=ip)
            request["user"] = signed_in.user
            request["web_session"] = signed_in
            request["csrf_token"] = signed_in.csrf_secret
            request["auth_via"] = "cookie"
            request["org_2fa_off"] = signed_in.org_2fa_off
    return await handler(request)


@web.middleware
async def csrf(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Synchroniser token for signed-in browsers; double-submit cookie before sign-in."""
    if request.get("auth_via") == "cookie":
        if request.method not in SAFE_METHODS:
            sent = request.headers.get(CSRF_HEADER, "")
            if not sent and request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
                form = await request.post()
                sent = str(form.get("csrf_token", ""))
            if not sent or not constant_time_equals(sent, request["csrf_token"]):
                return _csrf_fail(request)
        return await handler(request)
    pre = request.cookies.get(PRE_CSRF_COOKIE)
    if request.method not in SAFE_METHODS and not is_api(request):
        sent = ""
        if request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
            form = await request.post()
            sent = str(form.get("csrf_token", ""))
        sent = sent or request.headers.get(CSRF_HEADER, "")
        if not pre or not sent or not constant_time_equals(sent, pre):
            return _csrf_fail(request)
    if not pre:
        pre = new_token(24)
        request["set_pre_csrf"] = pre
    request["csrf_token"] = pre
    resp = await handler(request)
    if request.get("set_pre_csrf") and not resp.prepared:
        resp.set_cookie(PRE_CSRF_COOKIE, pre, httponly=True, samesite="Strict", path="/",
                        secure=services(request.app).settings.cookies_secure)
    return resp


def _csrf_fail(request: web.Request) -> web.Response:
    return error_response(403, "csrf_failed", "missing or wrong CSRF token; reload the page and try again")


@web.middleware
async def language(request: web.Request, handler: Handler) -> web.StreamResponse:
    svc = services(request.app)
    user = request.get("user")
    chosen = request.cookies.get("tm_lang")
    loc = i18n.negotiate(request.headers.get("Accept-Language", ""),
                         (user.locale if user is not None else None) or chosen, svc.settings.default_locale)
    token = i18n.set_locale(loc)
    request["locale"] = loc
    try:
        resp = await handler(request)
        resp.headers.setdefault("Content-Language", loc)
        return resp
    finally:
        i18n._current.reset(token)


def set_session_cookie(request: web.Request, resp: web.StreamResponse, token: str) -> None:
    settings = services(request.app).settings
    resp.set_cookie(SESSION_COOKIE, token, httponly=True, samesite="Lax", path="/",
                    secure=settings.cookies_secure, max_age=settings.session_hours * 3600)


def clear_session_cookie(resp: web.StreamResponse) -> None:
    resp.del_cookie(SESSION_COOKIE, path="/")
