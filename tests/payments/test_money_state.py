"""Minor-unit conversion and the payment state machine (pure, no database)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from clinic.db.payments import PaymentStatus as S
from clinic.documents import money
from clinic.payments.money import MoneyError, format_major, from_minor, minor_digits, share, to_minor
from clinic.payments.state import TRANSITIONS, can_transition, refund_status, stripe_intent_status


@pytest.mark.parametrize(("amount", "currency", "minor"), [
    ("15000", "KRW", 15000), (Decimal(15000), "krw", 15000), ("3000", "JPY", 3000),
    ("12.50", "USD", 1250), ("12.5", "EUR", 1250), ("0.01", "USD", 1), (7, "USD", 700), ("1.234", "KWD", 1234),
    ("0", "KRW", 0),
])
def test_to_minor(amount: object, currency: str, minor: int) -> None:
    assert to_minor(amount, currency) == minor  # type: ignore[arg-type]


@pytest.mark.parametrize(("amount", "currency"), [("100.5", "KRW"), ("1.5", "JPY"), ("12.505", "USD"),
                                                  ("abc", "USD"), ("NaN", "USD"), ("1", "US")])
def test_to_minor_refuses_what_the_currency_cannot_express(amount: str, currency: str) -> None:
    with pytest.raises(MoneyError):
        to_minor(amount, currency)


def test_from_minor_round_trips_and_keeps_the_exponent() -> None:
    assert from_minor(15000, "KRW") == Decimal(15000) and str(from_minor(15000, "KRW")) == "15000"
    assert str(from_minor(1250, "USD")) == "12.50"
    assert str(from_minor(3000, "JPY")) == "3000"
    assert format_major(5, "EUR") == "0.05"
    for cur in ("KRW", "JPY", "USD", "EUR", "KWD"):
        for minor in (0, 1, 99, 1250, 15000):
            assert to_minor(from_minor(minor, cur), cur) == minor
    assert minor_digits("krw") == 0 and minor_digits("USD") == 2 and minor_digits("BHD") == 3


def test_documents_money_agrees_with_minor_units() -> None:
    assert money(from_minor(1250, "USD"), "USD", "en") == "$12.50"
    assert "15,000" in money(from_minor(15000, "KRW"), "KRW", "ko")


def test_share_rounds_to_whole_minor_units() -> None:
    assert share(15000, 7000) == 10500  # 70 % of 15 000 won
    assert share(1250, 3333) == 417  # 416.6 cents → 417
    assert share(15000, 0) == 0 and share(15000, 10000) == 15000


def test_transitions_never_go_backwards() -> None:
    assert can_transition(S.REQUIRES_PAYMENT, S.AUTHORIZED)
    assert can_transition(S.AUTHORIZED, S.CAPTURED)
    assert can_transition(S.FAILED, S.AUTHORIZED)  # the patient retried with another card
    assert not can_transition(S.CAPTURED, S.AUTHORIZED)
    assert not can_transition(S.AUTHORIZED, S.FAILED)
    assert not can_transition(S.REFUNDED, S.CAPTURED)
    assert not can_transition(S.CAPTURED, S.CAPTURED)
    for final in (S.REFUNDED, S.CANCELLED, S.WAIVED):
        assert not TRANSITIONS[final]
    assert refund_status(1000, 400) is S.PARTIALLY_REFUNDED and refund_status(1000, 1000) is S.REFUNDED
    assert stripe_intent_status("requires_capture") is S.AUTHORIZED
    assert stripe_intent_status("requires_payment_method") is None


def test_status_query_names_match_the_enum() -> None:
    from typing import get_args

    from clinic.web.routes.payments import StatusName

    assert set(get_args(StatusName)) == {s.value for s in S}
