"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator

import aiohttp
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample
from sqlalchemy import text

from clinic.serve import WORKER_INDEX, worker_socket
from clinic.web.context import services

log = logging.getLogger(__name__)

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
    svc = services(request.app)
    index = svc.extra.get(WORKER_INDEX)
    if index is None:
        body = generate_latest(svc.metrics)
    else:
        body = await _all_workers(request.app, index)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def worker_metrics(request: web.Request) -> web.Response:
    """This worker's own figures, for the sibling answering ``/metrics``; only over the workers' Unix sockets."""
    if not isinstance(request.transport.get_extra_info("sockname") if request.transport else None, str):
        raise web.HTTPNotFound()
    return web.Response(body=generate_latest(services(request.app).metrics),
                        headers={"Content-Type": CONTENT_TYPE_LATEST})


#: How long a scrape waits for a sibling; one that does not answer is reported down rather than stalling it.
SIBLING_TIMEOUT = 2.0


async def _sibling(app: web.Application, index: int) -> str | None:
    path = worker_socket(services(app).settings, index)
    try:
        async with aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=str(path)),
                                         timeout=aiohttp.ClientTimeout(total=SIBLING_TIMEOUT)) as http:
            async with http.get("http://worker/metrics/worker") as r:
                return await r.text() if r.status == 200 else None
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        log.warning("worker %s did not give its metrics: %s", index, exc)
        return None


async def _all_workers(app: web.Application, me: int) -> bytes:
    """Every worker's figures, each series labelled with its ``worker``; sum them in queries. A scrape reaches
    one worker (the kernel picks it), so one scrape must speak for all."""
    svc = services(app)
    others = [i for i in range(svc.settings.workers) if i != me]
    texts = dict(zip(others, await asyncio.gather(*(_sibling(app, i) for i in others)), strict=True))
    texts[me] = generate_latest(svc.metrics).decode()
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Labelled(texts))
    return generate_latest(registry)


class _Labelled:
    """The workers' expositions merged into one, each sample with a ``worker`` label, plus
    ``telemed_worker_up`` saying which workers answered."""

    def __init__(self, texts: dict[int, str | None]) -> None:
        self._texts = texts

    def collect(self) -> Iterator[Metric]:
        merged: dict[str, Metric] = {}
        for index, body in sorted(self._texts.items()):
            if body is None:
                continue
            for family in text_string_to_metric_families(body):
                into = merged.get(family.name)
                if into is None:
                    into = merged[family.name] = Metric(family.name, family.documentation, family.type, family.unit)
                into.samples.extend(_with_worker(family.samples, index))
        up = Metric("telemed_worker_up", "1 if the worker answered this scrape", "gauge")
        up.samples.extend(Sample("telemed_worker_up", {"worker": str(i)}, 0.0 if body is None else 1.0, None, None)
                          for i, body in sorted(self._texts.items()))
        yield up
        yield from merged.values()


def _with_worker(samples: Iterable[Sample], index: int) -> Iterator[Sample]:
    for s in samples:
        yield s._replace(labels={**s.labels, "worker": str(index)})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/metrics/worker", worker_metrics)
