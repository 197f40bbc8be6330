"""Organization analytics on a small fixture with known waiting times (exact p50/p90) and no-shows."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from aiohttp.test_utils import TestClient

from clinic.db.encounters import Encounter
from clinic.db.scheduling import Appointment, AppointmentStatus, VisitMode, VisitType
from clinic.encounters.state import EncounterStatus
from clinic.services.analytics import percentile
from tests.conftest import Db
from tests.notes.conftest import as_user
from tests.world import World

SEOUL = ZoneInfo("Asia/Seoul")
D = date(2026, 3, 2)


def local(day: date, hh: int, mm: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hh, mm, tzinfo=SEOUL).astimezone(UTC)


def test_percentile_interpolates_between_ranks() -> None:
    assert percentile([60, 120, 180, 240, 600], 0.5) == 180
    assert percentile([600, 60, 240, 120, 180], 0.9) == pytest.approx(456)
    assert percentile([300, 900], 0.9) == pytest.approx(840)
    assert percentile([42], 0.9) == 42
    with pytest.raises(ValueError):
        percentile([], 0.5)


async def _fixture(db: Db, world: World) -> None:
    a = world.a
    doc, doc2 = a.users["clinician"].id, a.users["clinician2"].id

    def enc(checked_in: datetime, wait_min: float | None, who: object, *, status: EncounterStatus =
            EncounterStatus.COMPLETED, admitted: bool = True, org: object = a.clinic.id) -> Encounter:
        seen = checked_in + timedelta(minutes=wait_min) if wait_min is not None else None
        return Encounter(organization_id=org, patient_id=a.patient.id, claimed_by_id=who, status=status,  # type: ignore[union-attr]
                         checked_in_at=checked_in, admitted_at=seen if admitted else None, started_at=seen,
                         ended_at=seen + timedelta(minutes=10) if seen and status is EncounterStatus.COMPLETED
                         else None)

    rows = [
        # Day D: waits 1, 2, 3, 4, 10 minutes (one without an admission stamp: its call start counts).
        enc(local(D, 9), 1, doc), enc(local(D, 10), 2, doc), enc(local(D, 11), 3, doc, admitted=False),
        enc(local(D, 12), 4, doc),
        enc(local(D, 23, 55), 10, doc),  # checked in late on D (Seoul), seen after midnight: still D's wait
        # Day D+1: waits 5 and 15 minutes, plus one who left without being seen and one still in the call.
        enc(local(D + timedelta(days=1), 8), 5, doc2), enc(local(D + timedelta(days=1), 9), 15, doc2),
        enc(local(D + timedelta(days=1), 10), None, None, status=EncounterStatus.ABANDONED),
        enc(local(D + timedelta(days=1), 11), 20, doc2, status=EncounterStatus.IN_CONSULT),
        # Outside the range in Seoul time (though D-1 22:00 Seoul and D+2 00:10 are near the edges in UTC).
        enc(local(D - timedelta(days=1), 22), 60, doc2), enc(local(D + timedelta(days=2), 0, 10), 60, doc2),
    ]
    # Tenant B's visits never count for A.
    rows.append(Encounter(organization_id=world.b.clinic.id, patient_id=world.b.patient.id,  # type: ignore[union-attr]
                          claimed_by_id=world.b.users["clinician"].id, status=EncounterStatus.COMPLETED,
                          checked_in_at=local(D, 9), admitted_at=local(D, 11), started_at=local(D, 11)))
    async with db.uow() as uow:
        for r in rows:
            uow.add(r)
        vt = VisitType(organization_id=a.clinic.id, code="c", name="Consult", duration_minutes=30, modes=["video"])
        uow.add(vt)
        await uow.session.flush()
        statuses = [AppointmentStatus.FULFILLED, AppointmentStatus.FULFILLED, AppointmentStatus.NOSHOW,
                    AppointmentStatus.BOOKED, AppointmentStatus.CANCELLED, AppointmentStatus.PROPOSED]
        for i, st in enumerate(statuses):
            start = local(D, 9 + i)
            uow.add(Appointment(organization_id=a.clinic.id, practitioner_user_id=doc, patient_id=a.patient.id,  # type: ignore[union-attr]
                                visit_type_id=vt.id, start=start, end=start + timedelta(minutes=30), status=st,
                                mode=VisitMode.VIDEO))
        late = local(D + timedelta(days=3), 9)
        uow.add(Appointment(organization_id=a.clinic.id, practitioner_user_id=doc, patient_id=a.patient.id,  # type: ignore[union-attr]
                            visit_type_id=vt.id, start=late, end=late + timedelta(minutes=30),
                            status=AppointmentStatus.NOSHOW, mode=VisitMode.VIDEO))
        await uow.commit()


async def test_analytics_numbers(client: TestClient, world: World, db: Db) -> None:
    await _fixture(db, world)
    admin = await as_user(client, world.a.users["org_admin"])
    url = f"/api/v1/organizations/{world.a.clinic.id}/analytics?from={D}&to={D + timedelta(days=1)}"
    status, out = await admin.get(url)
    assert status == 200, out
    assert out["timezone"] == "Asia/Seoul" and out["start"] == str(D)
    assert out["waits"] == [
        {"day": str(D), "count": 5, "p50_seconds": 180.0, "p90_seconds": pytest.approx(456.0)},
        {"day": str(D + timedelta(days=1)), "count": 3, "p50_seconds": 900.0, "p90_seconds": pytest.approx(1140.0)},
    ]
    # Overall: 1, 2, 3, 4, 5, 10, 15, 20 minutes.
    assert out["wait_count"] == 8
    assert out["wait_p50_seconds"] == pytest.approx(270.0)
    assert out["wait_p90_seconds"] == pytest.approx(990.0)
    assert [(v["user_id"], v["visits"]) for v in out["visits"]] == [
        (str(world.a.users["clinician"].id), 5), (str(world.a.users["clinician2"].id), 2)]
    assert out["visits"][0]["name"] == world.a.users["clinician"].display_name
    assert out["appointments_expected"] == 4 and out["no_shows"] == 1 and out["no_show_rate"] == 0.25

    status, one_day = await admin.get(f"/api/v1/organizations/{world.a.clinic.id}/analytics?from={D}&to={D}")
    assert status == 200 and one_day["wait_count"] == 5 and one_day["wait_p90_seconds"] == pytest.approx(456.0)

    status, empty = await admin.get(f"/api/v1/organizations/{world.a.clinic.id}/analytics?from=2020-01-01"
                                    "&to=2020-01-02")
    assert status == 200 and empty["wait_p50_seconds"] is None and empty["no_show_rate"] is None
    assert [w["count"] for w in empty["waits"]] == [0, 0]


async def test_analytics_validation_and_access(client: TestClient, world: World, db: Db) -> None:
    admin = await as_user(client, world.a.users["org_admin"])
    base = f"/api/v1/organizations/{world.a.clinic.id}/analytics"
    status, err = await admin.get(f"{base}?from=2026-03-02&to=2026-03-01")
    assert status == 422 and "to" in err["error"]["fields"]
    status, err = await admin.get(f"{base}?from=2024-01-01&to=2026-01-01")
    assert status == 422
    status, err = await admin.get(f"{base}?to=2026-01-01")
    assert status == 422 and "from" in err["error"]["fields"]
    for who in (world.a.users["clinician"], world.a.users["patient"], world.b.users["org_admin"]):
        api = await as_user(client, who)
        status, _ = await api.get(f"{base}?from=2026-03-01&to=2026-03-02")
        assert status in (403, 404), who.email
