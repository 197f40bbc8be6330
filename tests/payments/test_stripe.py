"""The Stripe provider through the real SDK against the local stand-in: amounts, manual capture, idempotency,
declines, timeouts and the retry job, capture on completion, the cancellation window and refunds."""

from __future__ import annotations

import uuid
from datetime import timedelta

from aiohttp.test_utils import TestClient
from sqlalchemy import select

from clinic.db.encounters import Encounter
from clinic.db.payments import PaymentStatus as S
from clinic.db.scheduling import AppointmentStatus, VisitMode
from clinic.payments import service as pay
from clinic.payments.provider import StripeProvider
from clinic.security.authz import SYSTEM
from clinic.services import booking as bsvc
from tests.conftest import Db
from tests.payments.conftest import Booking, book, load_payment
from tests.payments.standin import StandIn
from tests.world import World, hdr, login


async def _visit_type(db: Db, world: World, code: str, fee: int, currency: str) -> uuid.UUID:
    async with db.uow() as uow:
        vt = await bsvc.create_visit_type(uow, SYSTEM, world.a.clinic.id, bsvc.VisitTypeInput(
            code=code, name=code, duration_minutes=30, modes=(VisitMode.VIDEO,), fee_amount=fee, currency=currency))
        await uow.commit()
    return vt.id


async def _authorize(db: Db, provider: StripeProvider, payment_id: uuid.UUID, pm: str = "pm_card_visa") -> None:
    async with db.uow() as uow:
        await pay.start_payment(uow, SYSTEM, payment_id, provider, payment_method=pm)
        await uow.commit()


async def test_booking_creates_a_manual_capture_intent_in_won(db: Db, world: World, booking: Booking,
                                                                provider: StripeProvider, stand: StandIn) -> None:
    a, p = await book(db, world, booking, 10, provider=provider)
    assert p.status is S.REQUIRES_PAYMENT and p.intent_id and p.client_secret and not p.pending_op
    [cus] = stand.calls("/v1/customers")
    assert cus.key == f"tm-patient-{a.patient_id}-customer"
    [create] = stand.calls("/v1/payment_intents")
    assert create.params["amount"] == "15000" and create.params["currency"] == "krw"
    assert create.params["capture_method"] == "manual"
    assert create.params["metadata[payment_id]"] == str(p.id)
    assert create.params["customer"].startswith("cus_")
    assert create.key == f"tm-pay-{p.id}-intent-1"
    assert not stand.errors
    # A second booking of the same patient reuses the stored customer.
    await book(db, world, booking, 12, provider=provider)
    assert len(stand.calls("/v1/customers")) == 1


async def test_usd_and_jpy_amounts(db: Db, world: World, booking: Booking, provider: StripeProvider,
                                   stand: StandIn) -> None:
    usd = await _visit_type(db, world, "usd", 1250, "USD")
    jpy = await _visit_type(db, world, "jpy", 3000, "JPY")
    await book(db, world, booking, 10, visit_type=usd, provider=provider)
    await book(db, world, booking, 11, visit_type=jpy, provider=provider)
    amounts = [(c.params["amount"], c.params["currency"]) for c in stand.calls("/v1/payment_intents")]
    assert amounts == [("1250", "usd"), ("3000", "jpy")]


async def test_fee_api_converts_major_units(stripe_client: TestClient, world: World, booking: Booking,
                                            db: Db, provider: StripeProvider, stand: StandIn) -> None:
    csrf = await login(stripe_client, world.a.users["org_admin"].email)
    org = world.a.clinic.id
    r = await stripe_client.put(f"/api/v1/organizations/{org}/fees/{booking.consult}",
                                json={"fee": "12.50", "currency": "USD", "billing_code": "AA157"}, headers=hdr(csrf))
    body = await r.json()
    assert r.status == 200, body
    assert body["fee_amount"] == 1250 and body["fee_display"] == "12.50" and body["billing_code"] == "AA157"
    r = await stripe_client.put(f"/api/v1/organizations/{org}/fees/{booking.consult}",
                                json={"fee": "12.505"}, headers=hdr(csrf))
    assert r.status == 422
    r = await stripe_client.put(f"/api/v1/organizations/{org}/fees/{booking.consult}",
                                json={"fee": "100.5", "currency": "KRW"}, headers=hdr(csrf))
    assert r.status == 422
    await book(db, world, booking, 10, provider=provider)
    [create] = stand.calls("/v1/payment_intents")
    assert (create.params["amount"], create.params["currency"]) == ("1250", "usd")


async def test_declined_card_keeps_the_booking_and_the_patient_can_retry(
        stripe_client: TestClient, db: Db, world: World, booking: Booking, provider: StripeProvider,
        stand: StandIn) -> None:
    a, p = await book(db, world, booking, 10, provider=provider)
    csrf = await login(stripe_client, world.a.users["patient"].email)
    r = await stripe_client.post(f"/api/v1/payments/{p.id}/pay", json={"payment_method": "pm_card_chargeDeclined"},
                                 headers=hdr(csrf))
    body = await r.json()
    assert r.status == 200, body
    assert body["status"] == "failed" and body["failure_code"] == "card_declined"
    assert "declined" in body["failure_message"]
    async with db.uow() as uow:
        appt = await bsvc.get_appointment(uow, SYSTEM, a.id)
        assert appt.status is AppointmentStatus.BOOKED
    r = await stripe_client.post(f"/api/v1/payments/{p.id}/pay", json={"payment_method": "pm_card_visa"},
                                 headers=hdr(csrf))
    body = await r.json()
    assert r.status == 200 and body["status"] == "authorized" and body["failure_message"] == ""
    keys = [c.key for c in stand.calls(r"/v1/payment_intents/.+/confirm")]
    assert keys == [f"tm-pay-{p.id}-confirm-1", f"tm-pay-{p.id}-confirm-2"]
    assert len(stand.intents) == 1  # the same intent, confirmed again
    r = await stripe_client.post(f"/api/v1/payments/{p.id}/pay", json={"payment_method": "pm_card_visa"},
                                 headers=hdr(csrf))
    assert r.status == 409 and (await r.json())["error"]["code"] == "already_paid"


async def test_unreachable_stripe_at_booking_then_retry_never_charges_twice(
        db: Db, world: World, booking: Booking, provider: StripeProvider, stand: StandIn) -> None:
    stand.fail_next("lost", "/v1/payment_intents")  # Stripe creates it, but the answer never arrives
    a, p = await book(db, world, booking, 10, provider=provider)
    assert p.pending_op == "authorize" and p.intent_id is None and p.status is S.REQUIRES_PAYMENT
    async with db.uow() as uow:  # the booking stands
        assert (await bsvc.get_appointment(uow, SYSTEM, a.id)).status is AppointmentStatus.BOOKED
    stand.fail_next("down", "/v1/payment_intents")  # still unreachable on the first retry
    assert await pay.retry_pending(db.uow, provider) == 0
    assert (await load_payment(db, p.id)).pending_op == "authorize"
    assert await pay.retry_pending(db.uow, provider) == 1
    p2 = await load_payment(db, p.id)
    assert not p2.pending_op and p2.intent_id is not None and p2.client_secret
    creates = stand.calls("/v1/payment_intents")
    assert len(creates) == 3 and {c.key for c in creates} == {f"tm-pay-{p.id}-intent-1"}
    assert len(stand.intents) == 1  # one intent, however many times the request was sent
    assert await pay.retry_pending(db.uow, provider) == 0  # nothing left to do


async def test_timed_out_confirm_is_retried_with_the_same_key(db: Db, world: World, booking: Booking,
                                                              provider: StripeProvider, stand: StandIn) -> None:
    _, p = await book(db, world, booking, 10, provider=provider)
    stand.fail_next("lost", r"/v1/payment_intents/.+/confirm")
    await _authorize(db, provider, p.id)
    assert (await load_payment(db, p.id)).pending_op == "confirm"
    assert await pay.retry_pending(db.uow, provider) == 1
    p2 = await load_payment(db, p.id)
    assert p2.status is S.AUTHORIZED and not p2.pending_op
    confirms = stand.calls(r"/v1/payment_intents/.+/confirm")
    assert [c.key for c in confirms] == [f"tm-pay-{p.id}-confirm-1"] * 2


async def test_capture_when_the_visit_completes(db: Db, world: World, booking: Booking, provider: StripeProvider,
                                                stand: StandIn) -> None:
    a, p = await book(db, world, booking, 10, provider=provider)
    await _authorize(db, provider, p.id)
    async with db.uow() as uow:
        enc = (await uow.session.execute(select(Encounter).where(Encounter.appointment_id == a.id))).scalar_one()
        stand.fail_next("500", r"/v1/payment_intents/.+/capture")
        await pay.on_encounter_completed(uow, enc, provider=provider)
        await uow.commit()
    assert (await load_payment(db, p.id)).pending_op == "capture"
    assert await pay.retry_pending(db.uow, provider) == 1
    p2 = await load_payment(db, p.id)
    assert p2.status is S.CAPTURED and p2.captured_amount == 15000 and p2.method == "card"
    assert {c.key for c in stand.calls(r"/v1/payment_intents/.+/capture")} == {f"tm-pay-{p.id}-capture"}
    assert stand.intents[p2.intent_id]["status"] == "succeeded"  # type: ignore[index]


async def test_hook_without_provider_defers_capture_to_the_job(db: Db, world: World, booking: Booking,
                                                               provider: StripeProvider) -> None:
    a, p = await book(db, world, booking, 10, provider=provider)
    await _authorize(db, provider, p.id)
    async with db.uow() as uow:
        enc = (await uow.session.execute(select(Encounter).where(Encounter.appointment_id == a.id))).scalar_one()
        await pay.on_encounter_completed(uow, enc)
        await uow.commit()
    assert (await load_payment(db, p.id)).pending_op == "capture"
    await pay.retry_pending(db.uow, provider)
    assert (await load_payment(db, p.id)).status is S.CAPTURED


async def test_timely_cancellation_releases_the_authorization(db: Db, world: World, booking: Booking,
                                                              provider: StripeProvider, stand: StandIn) -> None:
    a, p = await book(db, world, booking, 10, provider=provider)
    await _authorize(db, provider, p.id)
    async with db.uow() as uow:
        a2 = await bsvc.cancel(uow, SYSTEM, a.id, reason="better")
        await pay.on_appointment_cancelled(uow, a2, provider=provider)
        await uow.commit()
    p2 = await load_payment(db, p.id)
    assert p2.status is S.CANCELLED and p2.captured_amount == 0
    assert [c.key for c in stand.calls(r"/v1/payment_intents/.+/cancel")] == [f"tm-pay-{p.id}-cancel-1"]


async def test_late_cancellation_captures_the_fee(db: Db, world: World, booking: Booking,
                                                  provider: StripeProvider, stand: StandIn) -> None:
    a, p = await book(db, world, booking, 10, provider=provider)
    await _authorize(db, provider, p.id)
    async with db.uow() as uow:
        a2 = await bsvc.cancel(uow, SYSTEM, a.id, now=a.start - timedelta(hours=2))  # window is 24 h
        await pay.on_appointment_cancelled(uow, a2, provider=provider)
        await uow.commit()
    p2 = await load_payment(db, p.id)
    assert p2.status is S.CAPTURED and p2.captured_amount == 15000
    assert not stand.calls(r"/v1/payment_intents/.+/cancel")


async def test_timely_cancellation_after_capture_refunds(db: Db, world: World, booking: Booking,
                                                         provider: StripeProvider, stand: StandIn) -> None:
    a, p = await book(db, world, booking, 10, provider=provider)
    await _authorize(db, provider, p.id)
    async with db.uow() as uow:
        pp = await uow.session.get(pay.Payment, p.id)
        assert pp is not None
        await pay._capture(uow, provider, pp)
        await uow.commit()
    async with db.uow() as uow:
        a2 = await bsvc.cancel(uow, SYSTEM, a.id)
        await pay.on_appointment_cancelled(uow, a2, provider=provider, by_clinic=True)
        await uow.commit()
    p2 = await load_payment(db, p.id)
    assert p2.status is S.REFUNDED and p2.refunded_amount == 15000
    [rf] = stand.calls("/v1/refunds")
    assert rf.key == f"tm-pay-{p.id}-refund-1" and rf.params["amount"] == "15000"


async def test_cancelling_an_unpaid_visit(db: Db, world: World, booking: Booking, provider: StripeProvider,
                                          stand: StandIn) -> None:
    a, p = await book(db, world, booking, 10, provider=provider)
    async with db.uow() as uow:
        a2 = await bsvc.cancel(uow, SYSTEM, a.id)
        await pay.on_appointment_cancelled(uow, a2, provider=provider)
        await uow.commit()
    assert (await load_payment(db, p.id)).status is S.CANCELLED
    assert len(stand.calls(r"/v1/payment_intents/.+/cancel")) == 1


async def test_admin_refunds_partially_then_fully(stripe_client: TestClient, db: Db, world: World, booking: Booking,
                                                  provider: StripeProvider, stand: StandIn) -> None:
    a, p = await book(db, world, booking, 10, provider=provider)
    await _authorize(db, provider, p.id)
    async with db.uow() as uow:
        enc = (await uow.session.execute(select(Encounter).where(Encounter.appointment_id == a.id))).scalar_one()
        await pay.on_encounter_completed(uow, enc, provider=provider)
        await uow.commit()
    csrf = await login(stripe_client, world.a.users["org_admin"].email)
    r = await stripe_client.post(f"/api/v1/payments/{p.id}/refund", json={"amount": 5000, "reason": "partial"},
                                 headers=hdr(csrf, Idempotency_Key="refund-click-0001"))
    body = await r.json()
    assert r.status == 200, body
    assert body["status"] == "partially_refunded" and body["refunded_amount"] == 5000
    # The browser resends the same click: answered from the stored response, Stripe is not called again.
    r = await stripe_client.post(f"/api/v1/payments/{p.id}/refund", json={"amount": 5000, "reason": "partial"},
                                 headers=hdr(csrf, Idempotency_Key="refund-click-0001"))
    assert r.status == 200 and r.headers.get("Idempotent-Replayed") == "true"
    assert len(stand.calls("/v1/refunds")) == 1
    r = await stripe_client.post(f"/api/v1/payments/{p.id}/refund", json={"amount": 20000}, headers=hdr(csrf))
    assert r.status == 422
    r = await stripe_client.post(f"/api/v1/payments/{p.id}/refund", json={}, headers=hdr(csrf))
    body = await r.json()
    assert r.status == 200 and body["status"] == "refunded" and body["refunded_amount"] == 15000
    assert [c.key for c in stand.calls("/v1/refunds")] == [f"tm-pay-{p.id}-refund-1", f"tm-pay-{p.id}-refund-2"]
    r = await stripe_client.post(f"/api/v1/payments/{p.id}/refund", json={}, headers=hdr(csrf))
    assert r.status == 409
    # Patients cannot refund.
    stripe_client.session.cookie_jar.clear()
    csrf_p = await login(stripe_client, world.a.users["patient"].email)
    r = await stripe_client.post(f"/api/v1/payments/{p.id}/refund", json={}, headers=hdr(csrf_p))
    assert r.status == 403


async def test_csp_allows_stripe_only_when_configured(stripe_client: TestClient, client: TestClient) -> None:
    r = await stripe_client.get("/login")
    assert "https://js.stripe.com" in r.headers["Content-Security-Policy"]
    r = await client.get("/login")
    assert "stripe" not in r.headers["Content-Security-Policy"]
