"""Payment states and the only transitions between them (pure: no database access and no I/O; the enum
lives with the model, as AppointmentStatus does).


requires_payment → authorized → captured → partially_refunded → refunded, with failed (a declined card;
the patient may try again), cancelled (released or never collected) and waived (the clinic forgoes the
fee) as the other paths. Webhooks may arrive late or twice: anything not in the table is "backwards" and
is ignored by the webhook handler, refused (409) when a person asks for it.
"""

from __future__ import annotations

from clinic.db.payments import PaymentStatus

__all__ = ["TRANSITIONS", "PaymentStatus", "PaymentTransitionError", "can_transition", "check_transition"]

S = PaymentStatus
TRANSITIONS: dict[PaymentStatus, frozenset[PaymentStatus]] = {
    # captured directly: the clinic marks it paid (no provider), or Stripe reports success first.
    S.REQUIRES_PAYMENT: frozenset({S.AUTHORIZED, S.CAPTURED, S.FAILED, S.CANCELLED, S.WAIVED}),
    S.FAILED: frozenset({S.AUTHORIZED, S.CAPTURED, S.CANCELLED, S.WAIVED}),
    S.AUTHORIZED: frozenset({S.CAPTURED, S.CANCELLED}),
    S.CAPTURED: frozenset({S.PARTIALLY_REFUNDED, S.REFUNDED}),
    # partially_refunded → partially_refunded is a second partial refund.
    S.PARTIALLY_REFUNDED: frozenset({S.PARTIALLY_REFUNDED, S.REFUNDED}),
    S.REFUNDED: frozenset(),
    S.CANCELLED: frozenset(),
    S.WAIVED: frozenset(),
}


class PaymentTransitionError(Exception):
    def __init__(self, current: PaymentStatus, target: PaymentStatus) -> None:
        allowed = ", ".join(sorted(t.value for t in TRANSITIONS[current])) or "none (final state)"
        super().__init__(f"payment cannot go from {current.value} to {target.value}; allowed: {allowed}")
        self.current = current
        self.target = target


def can_transition(current: PaymentStatus, target: PaymentStatus) -> bool:
    return target in TRANSITIONS[current]


def check_transition(current: PaymentStatus, target: PaymentStatus) -> None:
    if not can_transition(current, target):
        raise PaymentTransitionError(current, target)


def refund_status(captured: int, refunded: int) -> PaymentStatus:
    return S.REFUNDED if refunded >= captured else S.PARTIALLY_REFUNDED


def stripe_intent_status(status: str) -> PaymentStatus | None:
    """Our status for a Stripe PaymentIntent status; None while the patient still has to act."""
    return {
        "requires_capture": S.AUTHORIZED,
        "succeeded": S.CAPTURED,
        "canceled": S.CANCELLED,
    }.get(status)
