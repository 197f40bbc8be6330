"""Declarative JSON API routes: one declaration gives validation, dispatch and the OpenAPI document.

Handlers stay thin: they receive an :class:`ApiContext` with the validated body and query, the
principal and a unit of work that commits when the handler returns, and they call services.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError
from pydantic.json_schema import models_json_schema
from sqlalchemy import bindparam, insert, select
from sqlalchemy.exc import IntegrityError

from clinic.db.base import new_id, utcnow
from clinic.db.models import IdempotencyRecord
from clinic.db.uow import UnitOfWork
from clinic.errors import Conflict, DomainError, Invalid, PayloadTooLarge, Unauthenticated
from clinic.security.authz import Principal
from clinic.web.schemas import ErrorEnvelope

log = logging.getLogger(__name__)

M = TypeVar("M", bound=BaseModel)
Handler = Callable[["ApiContext"], Awaitable[BaseModel | web.StreamResponse | None]]

IDEMPOTENCY_HEADER = "Idempotency-Key"
_KEY_RE = re.compile(r"^[A-Za-z0-9_\-:.]{8,200}$")


@dataclass
class ApiContext:
    request: web.Request
    principal: Principal
    uow: UnitOfWork
    body: Any = None
    query: Any = None
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def app(self) -> web.Application:
        return self.request.app

    def path_uuid(self, name: str = "id") -> uuid.UUID:
        raw = self.request.match_info.get(name, "")
        try:
            return uuid.UUID(raw)
        except ValueError:
            raise Invalid("malformed identifier", code="bad_id", fields={name: "must be a UUID"}) from None

    def path(self, name: str) -> str:
        return self.request.match_info[name]


@dataclass(frozen=True)
class RouteSpec:
    method: str
    path: str
    handler: Handler
    body: type[BaseModel] | None
    query: type[BaseModel] | None
    response: type[BaseModel] | None
    status: int
    summary: str
    tags: tuple[str, ...]
    public: bool
    idempotent: bool
    raw_response: str | None  # content type for handlers returning web.Response (PDF, CSV, FHIR)
    upload: str | None = None  # content type of a raw (e.g. multipart) body the handler reads itself


class ApiRouter:
    """Collects route declarations; :func:`mount` registers them on an app."""

    def __init__(self, prefix: str = "/api/v1") -> None:
        self.prefix = prefix
        self.specs: list[RouteSpec] = []

    def route(
        self,
        method: str,
        path: str,
        *,
        body: type[BaseModel] | None = None,
        query: type[BaseModel] | None = None,
        response: type[BaseModel] | None = None,
        status: int = 200,
        summary: str = "",
        tags: tuple[str, ...] = (),
        public: bool = False,
        idempotent: bool = False,
        raw_response: str | None = None,
        upload: str | None = None,
    ) -> Callable[[Handler], Handler]:
        def deco(fn: Handler) -> Handler:
            self.specs.append(
                RouteSpec(method.upper(), self.prefix + path, fn, body, query, response, status,
                          summary or (fn.__doc__ or "").strip().split("\n")[0], tags, public, idempotent,
                          raw_response, upload)
            )
            return fn

        return deco


def validation_fields(exc: ValidationError) -> dict[str, str]:
    out: dict[str, str] = {}
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"] if p != "__root__") or "body"
        out.setdefault(loc, err["msg"])
    return out


def error_response(status: int, code: str, message: str, fields: dict[str, str] | None = None,
                   headers: dict[str, str] | None = None, decision: dict[str, Any] | None = None) -> web.Response:
    err: dict[str, Any] = {"code": code, "message": message, "fields": fields or {}}
    if decision is not None:
        err["decision"] = decision  # policy refusals carry the engine's reasons (bilingual) and rule ids
    return web.json_response({"error": err}, status=status, headers=headers)


async def _read_json(request: web.Request, limit: int) -> Any:
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(f"request body exceeds {limit} bytes")
    raw = await request.content.read(limit + 1)
    if len(raw) > limit:
        raise PayloadTooLarge(f"request body exceeds {limit} bytes")
    if not raw.strip():
        return {}
    ctype = request.headers.get("Content-Type", "application/json").split(";")[0].strip().lower()
    if ctype not in ("application/json", "application/fhir+json", ""):
        raise DomainError("send application/json", code="unsupported_media_type")
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DomainError(f"malformed JSON: {exc}", code="malformed_json") from None


def _validate(model: type[M], data: Any, where: str) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise Invalid(f"invalid {where}", code="validation_failed", fields=validation_fields(exc)) from None


def _request_hash(spec: RouteSpec, request: web.Request, body: Any) -> str:
    blob = json.dumps([spec.method, request.path, body], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def _dispatch(spec: RouteSpec) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def handle(request: web.Request) -> web.StreamResponse:
        from clinic.web.context import services

        svc = services(request.app)
        principal: Principal = request["principal"]
        if not spec.public and not principal.authenticated:
            raise Unauthenticated("sign in required")
        if principal.extra.get("mfa_pending") and not spec.public:
            raise Unauthenticated("finish two-factor sign-in first", code="mfa_required")
        body_raw: Any = None
        body: Any = None
        if spec.body is not None:
            body_raw = await _read_json(request, svc.settings.max_body_bytes)
            body = _validate(spec.body, body_raw, "request body")
        elif spec.upload is None and request.method in ("POST", "PUT", "PATCH") and request.can_read_body:
            extra = await request.content.read(1)
            if extra:
                raise Invalid("this endpoint takes no request body", code="unexpected_body")
        query = _validate(spec.query, dict(request.query), "query") if spec.query is not None else None

        idem_key = request.headers.get(IDEMPOTENCY_HEADER) if spec.idempotent else None
        actor = principal.actor_id
        req_hash = ""
        if idem_key is not None and not _KEY_RE.match(idem_key):
            raise Invalid("bad Idempotency-Key", fields={IDEMPOTENCY_HEADER: "8-200 chars of [A-Za-z0-9_-:.]"})

        async with svc.uow_factory() as uow:
            if idem_key is not None:
                req_hash = _request_hash(spec, request, body_raw)
                replay = await _stored_response(uow, actor, idem_key, req_hash)
                if replay is not None:
                    return replay
            ctx = ApiContext(request=request, principal=principal, uow=uow, body=body, query=query)
            result = await spec.handler(ctx)
            if isinstance(result, web.StreamResponse):
                await uow.commit()
                return result
            payload: bytes | None = None
            if result is not None:
                payload = result.model_dump_json().encode()
            try:
                if idem_key is not None:
                    # A Core insert (nothing reads the record back in this request) instead of an ORM flush.
                    await (await uow.session.connection()).execute(_REMEMBER, {
                        "id": new_id(), "actor": actor, "key": idem_key, "method": spec.method, "path": request.path,
                        "request_hash": req_hash, "status_code": spec.status, "created_at": utcnow(),
                        "response": {"body": None if payload is None else json.loads(payload)}})
                await uow.commit()
            except IntegrityError:
                if idem_key is None:
                    raise
                # A concurrent retry with the same key won the race; answer with its result.
                await uow.rollback()
                async with svc.uow_factory() as again:
                    replay = await _stored_response(again, actor, idem_key, req_hash)
                if replay is not None:
                    return replay
                raise
        if payload is None:
            return web.Response(status=204 if spec.status == 200 else spec.status)
        return web.Response(body=payload, status=spec.status, content_type="application/json")

    handle.__name__ = spec.handler.__name__
    return handle


async def _stored_response(uow: UnitOfWork, actor: str, key: str, req_hash: str) -> web.Response | None:
    rec = (await uow.read(_STORED, {"actor": actor, "key": key})).one_or_none()
    if rec is None:
        return None
    if rec.request_hash != req_hash:
        raise Conflict("Idempotency-Key was already used for a different request", code="idempotency_key_reused")
    body = rec.response.get("body")
    if body is None:
        return web.Response(status=204)
    return web.json_response(body, status=rec.status_code, headers={"Idempotent-Replayed": "true"})


_REMEMBER = insert(IdempotencyRecord)

# Built once: every retry-safe request looks its key up first.
_STORED = select(IdempotencyRecord.request_hash, IdempotencyRecord.status_code, IdempotencyRecord.response).where(
    IdempotencyRecord.actor == bindparam("actor"), IdempotencyRecord.key == bindparam("key"))


def mount(app: web.Application, routers: list[ApiRouter]) -> list[RouteSpec]:
    specs: list[RouteSpec] = []
    for r in routers:
        for spec in r.specs:
            app.router.add_route(spec.method, spec.path, _dispatch(spec), name=None)
            specs.append(spec)
    return specs


# --- OpenAPI ---------------------------------------------------------------------------------------------


def openapi_document(specs: list[RouteSpec], *, title: str, version: str) -> dict[str, Any]:
    models: list[tuple[type[BaseModel], Any]] = [(ErrorEnvelope, "serialization")]
    for s in specs:
        if s.body:
            models.append((s.body, "validation"))
        if s.response:
            models.append((s.response, "serialization"))
    keyed, defs = models_json_schema(
        list(dict.fromkeys(models)), ref_template="#/components/schemas/{model}"
    )
    paths: dict[str, dict[str, Any]] = {}
    err_ref = {"$ref": "#/components/schemas/ErrorEnvelope"}
    for s in specs:
        op: dict[str, Any] = {
            "operationId": f"{s.handler.__module__.rsplit('.', 1)[-1]}_{s.handler.__name__}",
            "summary": s.summary,
            "tags": list(s.tags) or ["default"],
            "responses": {},
        }
        params: list[dict[str, Any]] = [
            {"name": n, "in": "path", "required": True, "schema": {"type": "string"}}
            for n in re.findall(r"{(\w+)}", s.path)
        ]
        if s.query is not None:
            qschema = s.query.model_json_schema()
            required = set(qschema.get("required", []))
            for name, prop in qschema.get("properties", {}).items():
                params.append({"name": name, "in": "query", "required": name in required, "schema": prop})
        if s.idempotent:
            params.append({"name": IDEMPOTENCY_HEADER, "in": "header", "required": False,
                           "schema": {"type": "string", "minLength": 8, "maxLength": 200},
                           "description": "Retries with the same key return the first result."})
        if params:
            op["parameters"] = params
        if s.upload is not None:
            op["requestBody"] = {"required": True, "content": {s.upload: {"schema": {"type": "object"}}}}
        if s.body is not None:
            op["requestBody"] = {"required": True, "content": {"application/json": {
                "schema": keyed[(s.body, "validation")]}}}
        if s.raw_response:
            op["responses"][str(s.status)] = {"description": "OK", "content": {s.raw_response: {}}}
        elif s.response is not None:
            op["responses"][str(s.status)] = {"description": "OK", "content": {"application/json": {
                "schema": keyed[(s.response, "serialization")]}}}
        else:
            op["responses"]["204"] = {"description": "No content"}
        for code, desc in (("401", "Not signed in"), ("403", "Not allowed"), ("404", "Not found"),
                           ("409", "Conflict"), ("413", "Body too large"), ("422", "Invalid input"),
                           ("429", "Rate limited")):
            op["responses"][code] = {"description": desc, "content": {"application/json": {"schema": err_ref}}}
        if not s.public:
            op["security"] = [{"session": []}, {"bearer": []}]
        paths.setdefault(s.path, {})[s.method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version,
                 "description": "Telemedicine platform API. Errors use one envelope: "
                                '{"error": {"code", "message", "fields"}}.'},
        "paths": paths,
        "components": {
            "schemas": defs.get("$defs", {}),
            "securitySchemes": {
                "session": {"type": "apiKey", "in": "cookie", "name": "tm_session",
                            "description": "Browser session; unsafe methods also need the X-CSRF-Token header."},
                "bearer": {"type": "http", "scheme": "bearer", "description": "Scoped API token (tm_…)"},
            },
        },
    }
