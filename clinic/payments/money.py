"""Minor-unit conversion: the one place that knows how many decimals a currency has.

Amounts are stored and sent to payment providers as integers in the currency's smallest unit. KRW and
JPY have no minor unit (15000 KRW is ``15000``); USD and EUR have cents (12.50 USD is ``1250``). The
tables follow Stripe's list rather than ISO 4217 alone, because Stripe is what receives the integers
(e.g. ISO gives ISK two decimals, Stripe treats it as zero-decimal).
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

ZERO_DECIMAL = frozenset({
    "BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "MGA", "PYG", "RWF", "UGX", "VND", "VUV", "XAF",
    "XOF", "XPF",
})
THREE_DECIMAL = frozenset({"BHD", "JOD", "KWD", "OMR", "TND"})


class MoneyError(ValueError):
    """An amount that cannot be expressed exactly in the currency (e.g. 100.5 KRW)."""


def minor_digits(currency: str) -> int:
    c = currency.upper()
    if len(c) != 3 or not c.isalpha():
        raise MoneyError(f"not an ISO 4217 code: {currency!r}")
    if c in ZERO_DECIMAL:
        return 0
    if c in THREE_DECIMAL:
        return 3
    return 2


def to_minor(amount: Decimal | int | str, currency: str) -> int:
    """Major units (``Decimal("12.50")``, ``"15000"``) → integer minor units; refuses sub-minor fractions."""
    try:
        value = Decimal(str(amount).strip())
    except InvalidOperation:
        raise MoneyError(f"not a number: {amount!r}") from None
    if not value.is_finite():
        raise MoneyError("amount must be finite")
    scaled = value.scaleb(minor_digits(currency))
    if scaled != scaled.to_integral_value():
        raise MoneyError(f"{currency.upper()} has {minor_digits(currency)} decimal places")
    return int(scaled)


def from_minor(amount: int, currency: str) -> Decimal:
    """Integer minor units → ``Decimal`` in major units with the currency's exponent (1250 USD → 12.50)."""
    digits = minor_digits(currency)
    return Decimal(amount).scaleb(-digits).quantize(Decimal(1).scaleb(-digits))


def share(amount: int, basis_points: int) -> int:
    """``amount × basis_points / 10000`` rounded half-up, in whole minor units (no fractional won or cents)."""
    return int((Decimal(amount) * basis_points / 10000).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def format_major(amount: int, currency: str) -> str:
    """Plain major-unit string for CSV and JSON (``"15000"``, ``"12.50"``), no grouping or symbol."""
    return str(from_minor(amount, currency))
