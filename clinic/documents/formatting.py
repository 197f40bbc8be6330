"""Formatting helpers shared by document templates: money, dates, QR codes, prescription IDs."""

from __future__ import annotations

import base64
import io
from datetime import date, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import segno
from babel.dates import format_date, format_datetime
from babel.numbers import format_currency


def money(amount: Decimal | int | float | str, currency: str, locale: str) -> str:
    """Locale-formatted amount with the currency's own minor unit (KRW/JPY none, USD/EUR two).

    Babel rounds to the ISO 4217 digits, so ``15000.4 KRW`` prints without a fraction.
    """
    return format_currency(Decimal(str(amount)), currency.upper(), locale=locale)


def local_datetime(value: datetime, timezone: str, locale: str) -> str:
    if value.tzinfo is None:
        raise ValueError("datetime must be timezone-aware")
    local = value.astimezone(ZoneInfo(timezone))
    return f"{format_datetime(local, 'yyyy-MM-dd HH:mm', locale=locale)} ({timezone})"


def long_date(value: date, locale: str) -> str:
    return format_date(value, "long", locale=locale)


def qr_svg(data: str) -> str:
    """QR code as standalone SVG markup (no XML declaration), sized in millimetres for print."""
    qr = segno.make(data, error="m", micro=False)
    buf = io.BytesIO()
    qr.save(buf, kind="svg", xmldecl=False, svgns=True, nl=False, unit="mm", scale=0.5, border=2)
    return buf.getvalue().decode("utf-8")


def svg_data_uri(svg: str) -> str:
    return "data:image/svg+xml;base64," + base64.b64encode(svg.encode("utf-8")).decode("ascii")


def qr_data_uri(data: str) -> str:
    return svg_data_uri(qr_svg(data))


def mod97_check(digits: str) -> str:
    """ISO 7064 MOD 97-10 check digits (as used in IBANs and gematik e-prescription IDs)."""
    if not digits.isdigit():
        raise ValueError("digits only")
    return f"{98 - (int(digits) * 100) % 97:02d}"


def prescription_id(flow_type: int, serial: int) -> str:
    """``FFF.SSS.SSS.SSS.SSS.CC``: 3-digit flow type, 12-digit serial, 2 check digits."""
    if not (0 <= flow_type <= 999 and 0 <= serial < 10**12):
        raise ValueError("flow_type must have 3 digits and serial at most 12")
    body = f"{flow_type:03d}{serial:012d}"
    digits = body + mod97_check(body)
    return ".".join(digits[i : i + 3] for i in range(0, 15, 3)) + "." + digits[15:]


def is_valid_prescription_id(value: str) -> bool:
    digits = value.replace(".", "")
    return len(digits) == 17 and digits.isdigit() and int(digits) % 97 == 1
