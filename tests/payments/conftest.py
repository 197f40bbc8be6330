from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from clinic.db.payments import Payment
from clinic.db.scheduling import Appointment, VisitMode
from clinic.payments import service as pay
from clinic.payments.provider import PaymentProvider, StripeProvider
from clinic.payments.web import RETRY_LOOP_KEY
from clinic.security.authz import SYSTEM
from clinic.services import booking as bsvc
from clinic.web.app import create_app
from tests.conftest import Db, make_settings
from tests.payments.standin import API_KEY, StandIn
from tests.scheduling.conftest import Booking, booking, principal_of
from tests.world import World

WEBHOOK_SECRET = "whsec_test_secret"


@pytest.fixture
async def standin(aiohttp_server: Any) -> AsyncIterator[tuple[StandIn, TestServer]]:
    s = StandIn()
    server = await aiohttp_server(s.app())
    yield s, server


@pytest.fixture
async def provider(standin: tuple[StandIn, TestServer]) -> AsyncIterator[StripeProvider]:
    _, server = standin
    # Retries off and a short timeout, so the tests decide when a request is resent.
    p = StripeProvider(API_KEY, publishable_key="pk_test_standin", api_base=str(server.make_url("")).rstrip("/"),
                       timeout=0.4, max_network_retries=0)
    yield p
    await p.close()


@pytest.fixture
def stand(standin: tuple[StandIn, TestServer]) -> StandIn:
    return standin[0]


@pytest.fixture
async def client(aiohttp_client: Any, db_url: str, tmp_path: Path, world: World) -> TestClient:
    """The app with the default (none) provider."""
    app = create_app(make_settings(db_url, tmp_path))
    return await aiohttp_client(app)  # type: ignore[no-any-return]


@pytest.fixture
async def stripe_client(aiohttp_client: Any, db_url: str, tmp_path: Path, world: World,
                        provider: StripeProvider) -> TestClient:
    settings = make_settings(db_url, tmp_path, payment_provider="stripe", stripe_api_key=API_KEY,
                             stripe_publishable_key="pk_test_standin", stripe_webhook_secret=WEBHOOK_SECRET)
    app = create_app(settings, overrides={pay.PROVIDER_KEY: provider, RETRY_LOOP_KEY: False})
    return await aiohttp_client(app)  # type: ignore[no-any-return]


async def book(db: Db, world: World, b: Booking, hh: int, *, visit_type: uuid.UUID | None = None,
               provider: PaymentProvider | None = None, patient: str = "patient") -> tuple[Appointment, Payment]:
    """Book through the scheduling service, then call the payments hook as the booking code will."""
    pat = world.a.patient if patient == "patient" else world.a.other_patient
    assert pat is not None
    async with db.uow() as uow:
        a = await bsvc.book(uow, SYSTEM, patient_id=pat.id, practitioner_user_id=b.doc,
                            visit_type_id=visit_type or b.consult, start=b.at(hh), mode=VisitMode.VIDEO)
        p = await pay.on_appointment_booked(uow, a, provider=provider)
        await uow.commit()
    return a, p


async def load_payment(db: Db, payment_id: uuid.UUID) -> Payment:
    async with db.uow() as uow:
        p = await uow.session.get(Payment, payment_id)
        assert p is not None
        return p


def sign(payload: bytes, secret: str = WEBHOOK_SECRET, at: int | None = None) -> str:
    """Stripe's scheme: ``t=<unix>,v1=HMAC-SHA256(secret, "<t>.<payload>")``."""
    t = int(time.time()) if at is None else at
    mac = hmac.new(secret.encode(), f"{t}.".encode() + payload, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def event(etype: str, obj: dict[str, Any], event_id: str | None = None) -> bytes:
    return json.dumps({"id": event_id or f"evt_{uuid.uuid4().hex[:16]}", "object": "event", "type": etype,
                       "api_version": "2024-06-20", "created": int(time.time()),
                       "data": {"object": obj}}).encode()


def intent_obj(p: Payment, status: str, **extra: Any) -> dict[str, Any]:
    return {"id": p.intent_id, "object": "payment_intent", "status": status, "amount": p.amount,
            "currency": p.currency.lower(), "metadata": {"payment_id": str(p.id)}, **extra}


__all__ = ["Booking", "book", "booking", "datetime", "event", "intent_obj", "load_payment", "principal_of", "sign"]
