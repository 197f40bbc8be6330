"""Patient data export and erasure, and organization analytics."""

from __future__ import annotations

import json
import uuid
from datetime import date, datetime
from typing import Any, Literal

from aiohttp import web
from pydantic import ConfigDict, Field

from clinic.photos import PhotoStore
from clinic.services import analytics
from clinic.services import records as svc
from clinic.web.api import ApiContext, ApiRouter
from clinic.web.context import services
from clinic.web.schemas import Input, Output

router = ApiRouter()
T = ("records",)
TA = ("analytics",)


class ExportQuery(Input):
    format: Literal["json", "fhir"] = "json"


@router.route("GET", "/patients/{id}/export", query=ExportQuery, tags=T, raw_response="application/json")
async def export_patient(ctx: ApiContext) -> web.Response:
    """Everything held about the patient, as JSON or as a FHIR R4 collection Bundle (``format=fhir``)."""
    fmt = ctx.query.format
    doc = await svc.export_patient(ctx.uow, ctx.principal, ctx.path_uuid(), fmt)
    ctype = "application/fhir+json" if fmt == "fhir" else "application/json"
    name = f"patient-{ctx.path_uuid().hex[:8]}-{fmt}.json"
    return web.Response(text=json.dumps(doc, ensure_ascii=False), content_type=ctype,
                        headers={"Content-Disposition": f'attachment; filename="{name}"',
                                 "Cache-Control": "no-store"})


class ErasureIn(Input):
    #: Erasure cannot be undone: the caller confirms it explicitly.
    confirm: Literal[True]
    reason: str = Field(default="", max_length=1000)


class ErasureOut(Output):
    id: uuid.UUID
    patient_id: uuid.UUID
    status: str
    requested_by_role: str
    requested_at: datetime
    completed_at: datetime | None
    summary: dict[str, Any]


@router.route("POST", "/patients/{id}/erasure-requests", body=ErasureIn, response=ErasureOut, status=201, tags=T)
async def request_erasure(ctx: ApiContext) -> ErasureOut:
    """Erase the patient's data: delete what may go, anonymize what the law requires to keep."""
    store = services(ctx.app).extra.get("photo_store")
    req = await svc.erase_patient(ctx.uow, ctx.principal, ctx.path_uuid(), reason=ctx.body.reason,
                                  photo_store=store if isinstance(store, PhotoStore) else None)
    return ErasureOut(id=req.id, patient_id=req.patient_id, status=req.status.value,
                      requested_by_role=req.requested_by_role, requested_at=req.requested_at,
                      completed_at=req.completed_at, summary=req.summary)


class AnalyticsQuery(Input):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    start: date = Field(alias="from")
    end: date = Field(alias="to")


class DayWaitOut(Output):
    day: date
    count: int
    p50_seconds: float | None
    p90_seconds: float | None


class ClinicianVisitsOut(Output):
    user_id: uuid.UUID
    name: str
    visits: int


class AnalyticsOut(Output):
    organization_id: uuid.UUID
    #: The requested range (``from``/``to``), inclusive, in the organization's time zone.
    start: date
    end: date
    timezone: str
    wait_count: int
    wait_p50_seconds: float | None
    wait_p90_seconds: float | None
    waits: list[DayWaitOut]
    visits: list[ClinicianVisitsOut]
    appointments_expected: int
    no_shows: int
    no_show_rate: float | None


@router.route("GET", "/organizations/{org_id}/analytics", query=AnalyticsQuery, response=AnalyticsOut, tags=TA)
async def organization_analytics(ctx: ApiContext) -> AnalyticsOut:
    """Waiting time p50/p90 per local day, completed visits per clinician, and the no-show rate."""
    q = ctx.query
    a = await analytics.organization_analytics(ctx.uow, ctx.principal, ctx.path_uuid("org_id"), q.start, q.end)
    return AnalyticsOut(
        organization_id=a.organization_id, start=a.start, end=a.end, timezone=a.timezone, wait_count=a.wait_count,
        wait_p50_seconds=a.wait_p50_seconds, wait_p90_seconds=a.wait_p90_seconds,
        waits=[DayWaitOut(day=w.day, count=w.count, p50_seconds=w.p50_seconds, p90_seconds=w.p90_seconds)
               for w in a.waits],
        visits=[ClinicianVisitsOut(user_id=v.user_id, name=v.name, visits=v.visits) for v in a.visits],
        appointments_expected=a.appointments_expected, no_shows=a.no_shows, no_show_rate=a.no_show_rate,
    )
