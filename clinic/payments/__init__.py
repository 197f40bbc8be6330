"""Visit fees and payments: providers (none, Stripe), the payment lifecycle, receipts and billing export.

The booking and encounter services call the three hooks below; pass ``provider=payment_provider(app)``
to talk to Stripe at once, or leave it out to let :func:`retry_pending` do the provider work later.
"""

from clinic.db.payments import PaymentStatus
from clinic.payments.money import from_minor, minor_digits, to_minor
from clinic.payments.provider import NoneProvider, PaymentProvider, StripeProvider
from clinic.payments.service import (
    on_appointment_booked,
    on_appointment_cancelled,
    on_encounter_completed,
    retry_pending,
)

__all__ = [
    "NoneProvider",
    "PaymentProvider",
    "PaymentStatus",
    "StripeProvider",
    "from_minor",
    "minor_digits",
    "on_appointment_booked",
    "on_appointment_cancelled",
    "on_encounter_completed",
    "retry_pending",
    "to_minor",
]
