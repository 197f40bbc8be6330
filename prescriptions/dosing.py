"""Structured dosage frequency and the quantity a prescription must carry.

quantity = dose × administrations per day × days. For PRN ("as needed") items the prescriber gives the
maximum administrations per day, and the quantity covers that maximum.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_CEILING, Decimal

from clinic.errors import Invalid


@dataclass(frozen=True)
class Frequency:
    code: str
    per_day: Decimal
    text_en: str
    #: FHIR Timing.repeat as (frequency, period, periodUnit).
    timing: tuple[int, Decimal, str]
    #: Administrations are per_day per this many days (7 for weekly), kept integral so no rounding creeps in.
    every_days: int = 1


FREQUENCIES: dict[str, Frequency] = {f.code: f for f in (
    Frequency("QD", Decimal(1), "once daily", (1, Decimal(1), "d")),
    Frequency("BID", Decimal(2), "twice daily", (2, Decimal(1), "d")),
    Frequency("TID", Decimal(3), "three times daily", (3, Decimal(1), "d")),
    Frequency("QID", Decimal(4), "four times daily", (4, Decimal(1), "d")),
    Frequency("QHS", Decimal(1), "at bedtime", (1, Decimal(1), "d")),
    Frequency("Q4H", Decimal(6), "every 4 hours", (1, Decimal(4), "h")),
    Frequency("Q6H", Decimal(4), "every 6 hours", (1, Decimal(6), "h")),
    Frequency("Q8H", Decimal(3), "every 8 hours", (1, Decimal(8), "h")),
    Frequency("Q12H", Decimal(2), "every 12 hours", (1, Decimal(12), "h")),
    # Weekly: one administration per 7 days; quantity rounds up to whole administrations (see below).
    Frequency("QW", Decimal(1), "once weekly", (1, Decimal(1), "wk"), every_days=7),
    Frequency("PRN", Decimal(0), "as needed", (1, Decimal(1), "d")),
)}

MAX_DOSE = Decimal(10_000)
MAX_DAYS = 366
MAX_PRN_PER_DAY = 24


def per_day(code: str, prn_max_per_day: int | None) -> Decimal:
    """Administrations per day; PRN uses its declared maximum."""
    f = FREQUENCIES.get(code)
    if f is None:
        raise Invalid("unknown frequency", fields={"frequency": f"one of {', '.join(FREQUENCIES)}"})
    if code == "PRN":
        if prn_max_per_day is None or not 1 <= prn_max_per_day <= MAX_PRN_PER_DAY:
            raise Invalid("PRN needs a maximum per day",
                          fields={"prn_max_per_day": f"required for PRN, 1–{MAX_PRN_PER_DAY}"})
        return Decimal(prn_max_per_day)
    return f.per_day


def expected_quantity(dose: Decimal, code: str, days: int, prn_max_per_day: int | None = None) -> Decimal:
    """dose × frequency × days, rounded up to whole administrations for weekly schedules."""
    if not Decimal(0) < dose <= MAX_DOSE:
        raise Invalid("dose out of range", fields={"dose": f"must be > 0 and ≤ {MAX_DOSE}"})
    if not 1 <= days <= MAX_DAYS:
        raise Invalid("duration out of range", fields={"duration_days": f"1–{MAX_DAYS}"})
    pd = per_day(code, prn_max_per_day)
    administrations = (pd * days / FREQUENCIES[code].every_days).to_integral_value(rounding=ROUND_CEILING)
    return normalize(dose * administrations)


def normalize(d: Decimal) -> Decimal:
    """Canonical form (no trailing zeros, no exponent) so stored, signed and compared values agree."""
    n = d.normalize()
    return n.quantize(Decimal(1)) if n == n.to_integral_value() else n


def dec_str(d: Decimal) -> str:
    return format(normalize(d), "f")
