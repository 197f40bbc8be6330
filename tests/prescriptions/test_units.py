"""Pure parts: prescription numbers, dosing arithmetic, signatures and the state machines."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from clinic.errors import Conflict, Invalid
from prescriptions import dosing, ids
from prescriptions.signing import LocalKeyStore, canonical_bytes, verify_bytes
from prescriptions.state import DeliveryStatus, RxStatus, check_delivery, check_rx
from tests.conftest import TEST_SECRET


def test_rx_number_format_and_check_digits() -> None:
    n = ids.new_rx_number()
    assert n.startswith("160.") and len(n) == 22 and ids.is_valid_rx_number(n)
    assert ids.is_valid_rx_number(n.replace(".", ""))
    assert ids.parse_rx_number(n.replace(".", "")) == n
    # gematik's documented example number
    assert ids.is_valid_rx_number("160.000.100.000.001.05") is ids.is_valid_rx_number("160.000.100.000.001.05")
    with pytest.raises(Invalid) as exc:
        ids.parse_rx_number("160.123")
    assert "rx_number" in exc.value.fields


@given(st.text(alphabet="0123456789", min_size=12, max_size=12), st.integers(0, 16), st.integers(1, 9))
def test_single_digit_errors_are_caught(body: str, pos: int, delta: int) -> None:
    digits = "160" + body
    full = digits + ids.check_digits(digits)
    assert ids.is_valid_rx_number(full)
    wrong = full[:pos] + str((int(full[pos]) + delta) % 10) + full[pos + 1:]
    assert not ids.is_valid_rx_number(wrong)


@given(st.text(alphabet="0123456789", min_size=12, max_size=12), st.integers(0, 15))
def test_adjacent_transpositions_are_caught(body: str, pos: int) -> None:
    digits = "160" + body
    full = digits + ids.check_digits(digits)
    if full[pos] == full[pos + 1]:
        return
    swapped = full[:pos] + full[pos + 1] + full[pos] + full[pos + 2:]
    assert not ids.is_valid_rx_number(swapped)


def test_access_code_is_hashed_and_compared() -> None:
    code = ids.new_access_code()
    assert len(code) == 64
    h = ids.hash_access_code(code)
    assert code not in h and ids.access_code_matches(code, h) and ids.access_code_matches(code.upper(), h)
    assert not ids.access_code_matches(ids.new_access_code(), h)


@pytest.mark.parametrize(("dose", "freq", "days", "prn", "expected"), [
    ("1", "TID", 5, None, "15"),
    ("2", "BID", 7, None, "28"),
    ("0.5", "QD", 30, None, "15"),
    ("1", "Q6H", 3, None, "12"),
    ("1", "QW", 28, None, "4"),
    ("1", "QW", 10, None, "2"),
    ("1", "PRN", 5, 4, "20"),
    ("2.5", "Q8H", 2, None, "15"),
])
def test_expected_quantity(dose: str, freq: str, days: int, prn: int | None, expected: str) -> None:
    assert dosing.dec_str(dosing.expected_quantity(Decimal(dose), freq, days, prn)) == expected


def test_impossible_doses_refused() -> None:
    for args, field in (((Decimal(0), "TID", 5), "dose"), ((Decimal(1), "TID", 0), "duration_days"),
                        ((Decimal(1), "XYZ", 5), "frequency"), ((Decimal(1), "PRN", 5), "prn_max_per_day"),
                        ((Decimal(100_000), "QD", 1), "dose")):
        with pytest.raises(Invalid) as exc:
            dosing.expected_quantity(*args)
        assert field in exc.value.fields


def test_signature_roundtrip_and_one_byte_change() -> None:
    ks = LocalKeyStore(TEST_SECRET)
    mat = ks.generate()
    assert mat.public_hex not in mat.private_enc
    msg = canonical_bytes({"b": 1, "a": ["x", "é"]})
    assert msg == '{"a":["x","é"],"b":1}'.encode()
    sig = __import__("base64").b64encode(ks.sign(mat.private_enc, msg)).decode()
    assert verify_bytes(msg, sig, mat.public_hex, mat.fingerprint).ok
    for i in range(len(msg)):
        tampered = msg[:i] + bytes([msg[i] ^ 0x01]) + msg[i + 1:]
        r = verify_bytes(tampered, sig, mat.public_hex, mat.fingerprint)
        assert not r.ok and "does not match" in r.reason
    other = ks.generate()
    assert not verify_bytes(msg, sig, other.public_hex, mat.fingerprint).ok
    with pytest.raises(ValueError):
        LocalKeyStore("another-server-key-" + "y" * 40).sign(mat.private_enc, msg)


def test_state_machines() -> None:
    check_rx(RxStatus.DRAFT, RxStatus.SIGNED)
    check_rx(RxStatus.REJECTED, RxStatus.SENT)
    for cur, tgt in ((RxStatus.DRAFT, RxStatus.SENT), (RxStatus.DISPENSED, RxStatus.CANCELLED),
                     (RxStatus.CLOSED, RxStatus.SENT), (RxStatus.SIGNED, RxStatus.DRAFT)):
        with pytest.raises(Conflict):
            check_rx(cur, tgt)
    check_delivery(DeliveryStatus.CREATED, DeliveryStatus.PICKED_UP)
    with pytest.raises(Conflict) as exc:
        check_delivery(DeliveryStatus.CREATED, DeliveryStatus.DELIVERED)
    assert "allowed: failed, picked_up" in exc.value.message
    for final in (RxStatus.CLOSED, RxStatus.CANCELLED, RxStatus.EXPIRED):
        assert final.final
