"""Stripe webhooks: signature and timestamp checked, each event applied once, never backwards."""

from __future__ import annotations

import time
from typing import Any

from aiohttp.test_utils import TestClient
from sqlalchemy import func, select

from clinic.db.payments import PaymentStatus as S
from clinic.db.payments import StripeEvent
from clinic.payments.provider import StripeProvider
from tests.conftest import Db
from tests.payments.conftest import Booking, book, event, intent_obj, load_payment, sign
from tests.world import World


async def _post(client: TestClient, payload: bytes, sig: str | None = None) -> tuple[int, Any]:
    r = await client.post("/api/v1/payments/stripe/webhook", data=payload,
                          headers={"Stripe-Signature": sign(payload) if sig is None else sig,
                                   "Content-Type": "application/json"})
    return r.status, await r.json()


async def test_events_apply_once_and_never_regress(stripe_client: TestClient, db: Db, world: World,
                                                   booking: Booking, provider: StripeProvider) -> None:
    _, p = await book(db, world, booking, 10, provider=provider)
    authorized = event("payment_intent.amount_capturable_updated", intent_obj(p, "requires_capture"), "evt_auth")
    status, body = await _post(stripe_client, authorized)
    assert status == 200 and body["outcome"] == "applied"
    assert (await load_payment(db, p.id)).status is S.AUTHORIZED
    # The same event delivered again: acknowledged, nothing happens twice.
    status, body = await _post(stripe_client, authorized)
    assert status == 200 and body["outcome"] == "duplicate"
    succeeded = event("payment_intent.succeeded", intent_obj(p, "succeeded", amount_received=15000))
    assert (await _post(stripe_client, succeeded))[1]["outcome"] == "applied"
    # Out of order: a late "failed" and a late "authorized" (new event ids) must not move a captured payment back.
    late_failed = event("payment_intent.payment_failed", intent_obj(p, "requires_payment_method",
                                                                   last_payment_error={"code": "card_declined"}))
    late_auth = event("payment_intent.amount_capturable_updated", intent_obj(p, "requires_capture"))
    assert (await _post(stripe_client, late_failed))[1]["outcome"] == "ignored"
    assert (await _post(stripe_client, late_auth))[1]["outcome"] == "ignored"
    p2 = await load_payment(db, p.id)
    assert p2.status is S.CAPTURED and p2.captured_amount == 15000
    refunded = {"id": "ch_1", "object": "charge", "payment_intent": p.intent_id, "amount_refunded": 5000}
    assert (await _post(stripe_client, event("charge.refunded", refunded)))[1]["outcome"] == "applied"
    # A replay of an older refund total under a new id changes nothing.
    assert (await _post(stripe_client, event("charge.refunded", refunded)))[1]["outcome"] == "ignored"
    p3 = await load_payment(db, p.id)
    assert p3.status is S.PARTIALLY_REFUNDED and p3.refunded_amount == 5000
    async with db.uow() as uow:
        n = (await uow.session.execute(select(func.count()).select_from(StripeEvent))).scalar_one()
    assert n == 6


async def test_success_before_authorization_still_ends_captured(stripe_client: TestClient, db: Db, world: World,
                                                                 booking: Booking, provider: StripeProvider) -> None:
    _, p = await book(db, world, booking, 10, provider=provider)
    await _post(stripe_client, event("payment_intent.succeeded", intent_obj(p, "succeeded", amount_received=15000)))
    await _post(stripe_client, event("payment_intent.amount_capturable_updated", intent_obj(p, "requires_capture")))
    assert (await load_payment(db, p.id)).status is S.CAPTURED


async def test_failed_event_marks_failed_and_allows_retry(stripe_client: TestClient, db: Db, world: World,
                                                          booking: Booking, provider: StripeProvider) -> None:
    _, p = await book(db, world, booking, 10, provider=provider)
    failed = intent_obj(p, "requires_payment_method",
                        last_payment_error={"code": "card_declined", "message": "Your card was declined."})
    assert (await _post(stripe_client, event("payment_intent.payment_failed", failed)))[1]["outcome"] == "applied"
    p2 = await load_payment(db, p.id)
    assert p2.status is S.FAILED and p2.attempt == 2
    await _post(stripe_client, event("payment_intent.amount_capturable_updated", intent_obj(p, "requires_capture")))
    assert (await load_payment(db, p.id)).status is S.AUTHORIZED


async def test_forged_and_replayed_events_are_refused(stripe_client: TestClient, db: Db, world: World,
                                                      booking: Booking, provider: StripeProvider) -> None:
    _, p = await book(db, world, booking, 10, provider=provider)
    payload = event("payment_intent.succeeded", intent_obj(p, "succeeded", amount_received=15000))
    status, body = await _post(stripe_client, payload, sign(payload, secret="whsec_wrong"))
    assert status == 400 and body["error"]["code"] == "bad_signature"
    status, _ = await _post(stripe_client, payload, sign(payload, at=int(time.time()) - 3600))
    assert status == 400
    status, _ = await _post(stripe_client, payload, "")
    assert status == 400
    tampered = payload.replace(b"15000", b"99999")
    status, _ = await _post(stripe_client, tampered, sign(payload))
    assert status == 400
    assert (await load_payment(db, p.id)).status is S.REQUIRES_PAYMENT


async def test_unknown_objects_are_acknowledged(stripe_client: TestClient) -> None:
    obj = {"id": "pi_unknown", "object": "payment_intent", "status": "succeeded", "metadata": {}}
    status, body = await _post(stripe_client, event("payment_intent.succeeded", obj))
    assert status == 200 and body["outcome"] == "unknown_object"
    status, body = await _post(stripe_client, event("customer.created", {"id": "cus_1", "object": "customer"}))
    assert status == 200 and body["outcome"] == "ignored"
