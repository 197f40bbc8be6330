"""Prescription and delivery lifecycles: the only transitions between their states.

Prescription: draft → signed → sent → accepted → dispensed_partial/dispensed → closed, with
rejected, cancelled and expired as the other endings. ``rejected`` is not final: the pharmacy hands
the prescription back, and the patient may route it to another pharmacy (rejected → sent).

Delivery: created → picked_up → in_transit → delivered, with failed and returned as other endings.
"""

from __future__ import annotations

import enum

from clinic.errors import Conflict


class RxStatus(enum.StrEnum):
    DRAFT = "draft"
    SIGNED = "signed"
    SENT = "sent"
    ACCEPTED = "accepted"
    DISPENSED_PARTIAL = "dispensed_partial"
    DISPENSED = "dispensed"
    CLOSED = "closed"
    REJECTED = "rejected"
    CANCELLED = "cancelled"
    EXPIRED = "expired"

    @property
    def fhir(self) -> str:
        """FHIR MedicationRequest.status."""
        return _FHIR[self]

    @property
    def final(self) -> bool:
        return not RX_TRANSITIONS[self]


_FHIR = {
    RxStatus.DRAFT: "draft",
    RxStatus.SIGNED: "active",
    RxStatus.SENT: "active",
    RxStatus.ACCEPTED: "active",
    RxStatus.DISPENSED_PARTIAL: "active",
    RxStatus.DISPENSED: "completed",
    RxStatus.CLOSED: "completed",
    RxStatus.REJECTED: "on-hold",
    RxStatus.CANCELLED: "cancelled",
    RxStatus.EXPIRED: "stopped",
}

R = RxStatus
RX_TRANSITIONS: dict[RxStatus, frozenset[RxStatus]] = {
    R.DRAFT: frozenset({R.SIGNED, R.CANCELLED}),
    R.SIGNED: frozenset({R.SENT, R.CANCELLED, R.EXPIRED}),
    R.SENT: frozenset({R.ACCEPTED, R.REJECTED, R.CANCELLED, R.EXPIRED}),
    # An accepted prescription can still be handed back (e.g. out of stock) before anything is dispensed.
    R.ACCEPTED: frozenset({R.DISPENSED_PARTIAL, R.DISPENSED, R.REJECTED, R.CANCELLED, R.EXPIRED}),
    # Once medicine has left the pharmacy the prescriber can no longer cancel; the pharmacy closes the rest.
    R.DISPENSED_PARTIAL: frozenset({R.DISPENSED_PARTIAL, R.DISPENSED, R.CLOSED}),
    R.DISPENSED: frozenset({R.CLOSED}),
    R.REJECTED: frozenset({R.SENT, R.CANCELLED, R.EXPIRED}),
    R.CLOSED: frozenset(),
    R.CANCELLED: frozenset(),
    R.EXPIRED: frozenset(),
}

#: States in which the prescriber may still cancel (nothing dispensed yet).
CANCELLABLE = frozenset({R.DRAFT, R.SIGNED, R.SENT, R.ACCEPTED, R.REJECTED})
#: States that count as "active therapy" for duplicate-therapy checks.
ACTIVE = frozenset({R.SIGNED, R.SENT, R.ACCEPTED, R.DISPENSED_PARTIAL, R.DISPENSED, R.REJECTED})


class DeliveryStatus(enum.StrEnum):
    CREATED = "created"
    PICKED_UP = "picked_up"
    IN_TRANSIT = "in_transit"
    DELIVERED = "delivered"
    FAILED = "failed"
    RETURNED = "returned"


D = DeliveryStatus
DELIVERY_TRANSITIONS: dict[DeliveryStatus, frozenset[DeliveryStatus]] = {
    D.CREATED: frozenset({D.PICKED_UP, D.FAILED}),
    D.PICKED_UP: frozenset({D.IN_TRANSIT, D.FAILED, D.RETURNED}),
    D.IN_TRANSIT: frozenset({D.DELIVERED, D.FAILED, D.RETURNED}),
    # A failed attempt ends this order; the parcel goes back to the pharmacy.
    D.FAILED: frozenset({D.RETURNED}),
    D.DELIVERED: frozenset(),
    D.RETURNED: frozenset(),
}


def _check(table: dict[enum.StrEnum, frozenset[enum.StrEnum]], what: str, current: enum.StrEnum,
           target: enum.StrEnum) -> None:
    if target not in table[current]:
        allowed = ", ".join(sorted(t.value for t in table[current])) or "none (final state)"
        raise Conflict(f"{what} cannot go from {current.value} to {target.value}; allowed: {allowed}",
                       code="illegal_transition")


def check_rx(current: RxStatus, target: RxStatus) -> None:
    _check(RX_TRANSITIONS, "prescription", current, target)  # type: ignore[arg-type]


def check_delivery(current: DeliveryStatus, target: DeliveryStatus) -> None:
    _check(DELIVERY_TRANSITIONS, "delivery", current, target)  # type: ignore[arg-type]
