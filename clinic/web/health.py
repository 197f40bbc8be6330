"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest
from sqlalchemy import text

from clinic.serve import WORKER_INDEX
from clinic.web.context import services

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

REQUESTS: web.AppKey[Counter] = web.AppKey("telemed_requests", Counter)
LATENCY: web.AppKey[Histogram] = web.AppKey("telemed_latency", Histogram)


def install_metrics(app: web.Application) -> None:
    reg = services(app).metrics
    app[REQUESTS] = Counter("telemed_http_requests_total", "HTTP requests", ["method", "route", "status"],
                            registry=reg)
    app[LATENCY] = Histogram("telemed_http_request_seconds", "HTTP request latency", ["method", "route"],
                             registry=reg)
    up = Gauge("telemed_up", "1 while the server runs", registry=reg)
    up.set(1)


@web.middleware
async def measure(request: web.Request, handler: Handler) -> web.StreamResponse:
    start = time.perf_counter()
    resource = request.match_info.route.resource
    route = resource.canonical if resource is not None else "unmatched"
    status = 500
    try:
        resp = await handler(request)
        status = resp.status
        return resp
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        request.app[REQUESTS].labels(request.method, route, str(status)).inc()
        request.app[LATENCY].labels(request.method, route).observe(time.perf_counter() - start)


async def healthz(request: web.Request) -> web.Response:
    body: dict[str, object] = {"status": "ok"}
    worker = services(request.app).extra.get(WORKER_INDEX)
    if worker is not None:  # several worker processes (clinic.serve): which one answered
        body["worker"] = worker
    return web.json_response(body)


async def readyz(request: web.Request) -> web.Response:
    try:
        async with services(request.app).engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
    except Exception as exc:
        return web.json_response({"status": "unavailable", "database": type(exc).__name__}, status=503)
    return web.json_response({"status": "ok", "database": "ok"})


async def metrics(request: web.Request) -> web.Response:
    body = generate_latest(services(request.app).metrics)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
