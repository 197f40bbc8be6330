"""One ``PaymentProvider`` interface, two implementations.

``NoneProvider`` (the default, embedded setup): the clinic collects money itself and staff mark a visit
paid or waived; nothing leaves the server. ``StripeProvider``: PaymentIntents with manual capture through
the official SDK's async client (``*_async`` methods over aiohttp), pointed at ``stripe_api_base`` when set.

Every Stripe call carries an idempotency key chosen by the caller, derived from our own ids and the
operation, so a retry after a timeout is recognised by Stripe as the same request and cannot charge twice.
Errors are reduced to three kinds the service understands: the card was declined (definite, the patient
may try another card), the provider was unreachable (outcome unknown: retry with the same key), and
anything else (a bug or misconfiguration: surface it).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Protocol

import aiohttp
import stripe

log = logging.getLogger(__name__)


class ProviderError(Exception):
    """The provider refused the request for a reason other than the card (bad request, bad key …)."""

    def __init__(self, message: str, code: str = "provider_error") -> None:
        super().__init__(message)
        self.message = message
        self.code = code


class PaymentDeclined(ProviderError):
    """The card (or other method) was declined: a definite answer, nothing was authorized."""


class ProviderUnavailable(ProviderError):
    """Timeout, connection failure, rate limit or 5xx: the outcome is unknown, retry with the same key."""


@dataclass(frozen=True)
class IntentResult:
    intent_id: str
    status: str  # the provider's own status (Stripe: requires_payment_method, requires_capture, succeeded …)
    client_secret: str = ""
    amount_received: int = 0
    raw: dict[str, Any] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class RefundResult:
    refund_id: str
    status: str
    amount: int


@dataclass(frozen=True)
class IntentRequest:
    amount: int  # minor units
    currency: str  # ISO 4217, any case
    customer_id: str | None
    idempotency_key: str
    description: str = ""
    metadata: dict[str, str] = field(default_factory=dict)


class PaymentProvider(Protocol):
    name: str
    #: Whether money moves through this provider (False: the clinic collects it and staff record it).
    online: bool

    def browser_config(self) -> dict[str, str]:
        """What the payment page needs (Stripe: the publishable key); never a secret."""
        ...

    async def ensure_customer(self, *, email: str, name: str, idempotency_key: str,
                              metadata: dict[str, str]) -> str | None: ...

    async def create_intent(self, req: IntentRequest) -> IntentResult:
        """Create a manual-capture intent; the money is authorized once it is confirmed with a method."""
        ...

    async def confirm(self, intent_id: str, *, payment_method: str, idempotency_key: str) -> IntentResult: ...

    async def capture(self, intent_id: str, *, amount: int | None, idempotency_key: str) -> IntentResult: ...

    async def cancel(self, intent_id: str, *, idempotency_key: str) -> IntentResult: ...

    async def refund(self, intent_id: str, *, amount: int, idempotency_key: str,
                     metadata: dict[str, str]) -> RefundResult: ...

    async def close(self) -> None: ...


class NoneProvider:
    """The clinic takes payment itself; online operations are never called (the service checks ``online``)."""

    name = "none"
    online = False

    def browser_config(self) -> dict[str, str]:
        return {}

    async def ensure_customer(self, *, email: str, name: str, idempotency_key: str,
                              metadata: dict[str, str]) -> str | None:
        return None

    async def create_intent(self, req: IntentRequest) -> IntentResult:
        raise ProviderError("this clinic collects payment itself", code="offline_payment")

    async def confirm(self, intent_id: str, *, payment_method: str, idempotency_key: str) -> IntentResult:
        raise ProviderError("this clinic collects payment itself", code="offline_payment")

    async def capture(self, intent_id: str, *, amount: int | None, idempotency_key: str) -> IntentResult:
        raise ProviderError("this clinic collects payment itself", code="offline_payment")

    async def cancel(self, intent_id: str, *, idempotency_key: str) -> IntentResult:
        raise ProviderError("this clinic collects payment itself", code="offline_payment")

    async def refund(self, intent_id: str, *, amount: int, idempotency_key: str,
                     metadata: dict[str, str]) -> RefundResult:
        raise ProviderError("this clinic collects payment itself", code="offline_payment")

    async def close(self) -> None:
        return None


def _plain(obj: Any) -> dict[str, Any]:
    # StripeObject is not a dict (no .get); the SDK converts it.
    return dict(obj.to_dict()) if hasattr(obj, "to_dict") else dict(obj)


def _intent(obj: Any) -> IntentResult:
    pi = _plain(obj)
    return IntentResult(intent_id=str(pi["id"]), status=str(pi["status"]),
                        client_secret=str(pi.get("client_secret") or ""),
                        amount_received=int(pi.get("amount_received") or 0), raw=pi)


class StripeProvider:
    name = "stripe"
    online = True

    def __init__(self, api_key: str, *, publishable_key: str = "", api_base: str = "", timeout: float = 20.0,
                 max_network_retries: int = 1) -> None:
        self._publishable_key = publishable_key
        # The SDK's aiohttp client creates its session lazily, on the loop of the first call.
        self._http = stripe.AIOHTTPClient(timeout=aiohttp.ClientTimeout(total=timeout))
        self.client = stripe.StripeClient(
            api_key,
            base_addresses={"api": api_base.rstrip("/")} if api_base else None,
            http_client=self._http,
            # The SDK resends the very same request (same idempotency key) on network errors.
            max_network_retries=max_network_retries,
        )

    def browser_config(self) -> dict[str, str]:
        return {"publishable_key": self._publishable_key}

    async def _call(self, what: str, coro: Any) -> Any:
        try:
            return await coro
        except stripe.CardError as exc:
            raise PaymentDeclined(exc.user_message or "the card was declined",
                                  code=str(exc.code or "card_declined")) from None
        except (stripe.APIConnectionError, stripe.RateLimitError) as exc:
            log.warning("stripe %s unreachable: %s", what, exc.__class__.__name__)
            raise ProviderUnavailable(f"payment provider unreachable ({what})", code="provider_unavailable") from None
        except stripe.APIError as exc:
            # 5xx (and anything Stripe itself calls transient) has an unknown outcome.
            log.warning("stripe %s failed with a server error: %s", what, exc)
            raise ProviderUnavailable(f"payment provider error ({what})", code="provider_unavailable") from None
        except stripe.StripeError as exc:
            log.error("stripe %s refused: %s", what, exc)
            raise ProviderError(exc.user_message or f"payment provider refused the {what} request",
                                code=str(exc.code or "provider_error")) from None

    async def ensure_customer(self, *, email: str, name: str, idempotency_key: str,
                              metadata: dict[str, str]) -> str | None:
        params: dict[str, Any] = {"name": name, "metadata": metadata}
        if email:
            params["email"] = email
        cus = await self._call("customer", self.client.v1.customers.create_async(
            params=params, options={"idempotency_key": idempotency_key}))  # type: ignore[arg-type]
        return str(cus["id"])

    async def create_intent(self, req: IntentRequest) -> IntentResult:
        params: dict[str, Any] = {
            "amount": req.amount,
            "currency": req.currency.lower(),
            # Authorize now, capture when the visit is completed (or release it on a timely cancellation).
            "capture_method": "manual",
            "payment_method_types": ["card"],
            "metadata": req.metadata,
        }
        if req.description:
            params["description"] = req.description
        if req.customer_id:
            params["customer"] = req.customer_id
        pi = await self._call("authorize", self.client.v1.payment_intents.create_async(
            params=params, options={"idempotency_key": req.idempotency_key}))  # type: ignore[arg-type]
        return _intent(pi)

    async def confirm(self, intent_id: str, *, payment_method: str, idempotency_key: str) -> IntentResult:
        pi = await self._call("confirm", self.client.v1.payment_intents.confirm_async(
            intent_id, params={"payment_method": payment_method}, options={"idempotency_key": idempotency_key}))
        return _intent(pi)

    async def capture(self, intent_id: str, *, amount: int | None, idempotency_key: str) -> IntentResult:
        params: dict[str, Any] = {} if amount is None else {"amount_to_capture": amount}
        pi = await self._call("capture", self.client.v1.payment_intents.capture_async(
            intent_id, params=params, options={"idempotency_key": idempotency_key}))  # type: ignore[arg-type]
        return _intent(pi)

    async def cancel(self, intent_id: str, *, idempotency_key: str) -> IntentResult:
        pi = await self._call("cancel", self.client.v1.payment_intents.cancel_async(
            intent_id, params={}, options={"idempotency_key": idempotency_key}))
        return _intent(pi)

    async def refund(self, intent_id: str, *, amount: int, idempotency_key: str,
                     metadata: dict[str, str]) -> RefundResult:
        rf = await self._call("refund", self.client.v1.refunds.create_async(
            params={"payment_intent": intent_id, "amount": amount, "metadata": metadata},
            options={"idempotency_key": idempotency_key}))
        data = _plain(rf)
        return RefundResult(refund_id=str(data["id"]), status=str(data["status"]), amount=int(data["amount"]))

    async def close(self) -> None:
        await self._http.close_async()


def provider_from_settings(settings: Any) -> PaymentProvider:
    if settings.payment_provider == "stripe":
        return StripeProvider(settings.stripe_api_key, publishable_key=settings.stripe_publishable_key,
                              api_base=settings.stripe_api_base)
    return NoneProvider()
