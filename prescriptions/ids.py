"""Prescription numbers with a check digit pair, and the secret access code.

Format (modelled on the gematik E-Rezept PrescriptionID): ``FFF.NNN.NNN.NNN.NNN.CC`` — a 3-digit
flow type (160 = ordinary prescription), 12 random digits and two check digits computed with
ISO 7064 MOD 97-10 over the 15 preceding digits (the IBAN algorithm: the whole 17-digit number is
≡ 1 mod 97). It catches every single-digit error and every adjacent transposition.

The access code is 32 random bytes (64 hex characters); only its SHA-256 is stored, so a database
reader cannot redeem prescriptions.
"""

from __future__ import annotations

import re
import secrets

from clinic.errors import Invalid
from clinic.security.secrets import constant_time_equals, hash_token

FLOW_TYPE = "160"
_FORMAT = re.compile(r"^\d{3}\.\d{3}\.\d{3}\.\d{3}\.\d{3}\.\d{2}$")


def check_digits(digits15: str) -> str:
    if len(digits15) != 15 or not digits15.isdigit():
        raise ValueError("need 15 digits")
    return f"{98 - (int(digits15) * 100) % 97:02d}"


def format_rx_number(digits17: str) -> str:
    d = digits17
    return f"{d[0:3]}.{d[3:6]}.{d[6:9]}.{d[9:12]}.{d[12:15]}.{d[15:17]}"


def new_rx_number(flow_type: str = FLOW_TYPE) -> str:
    body = flow_type + "".join(str(secrets.randbelow(10)) for _ in range(12))
    return format_rx_number(body + check_digits(body))


def is_valid_rx_number(value: str) -> bool:
    value = value.strip()
    if _FORMAT.match(value):
        digits = value.replace(".", "")
    elif value.isdigit() and len(value) == 17:
        digits = value
    else:
        return False
    return int(digits) % 97 == 1


def parse_rx_number(value: str, field: str = "rx_number") -> str:
    """The canonical dotted form, or Invalid naming the field."""
    v = value.strip()
    if not is_valid_rx_number(v):
        raise Invalid("not a valid prescription number", code="bad_rx_number",
                      fields={field: "expected FFF.NNN.NNN.NNN.NNN.CC with valid check digits"})
    return v if "." in v else format_rx_number(v)


def new_access_code() -> str:
    return secrets.token_hex(32)


def hash_access_code(code: str) -> str:
    return hash_token(code.strip().lower())


def access_code_matches(code: str, stored_hash: str) -> bool:
    return constant_time_equals(hash_access_code(code), stored_hash)
