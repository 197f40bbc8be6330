"""A local stand-in for the Stripe API, for the real ``stripe`` SDK to talk to.

It implements only what the platform calls (customers, payment_intents create/confirm/capture/cancel, refunds),
checks the form-encoded parameters the way Stripe would (integer minor-unit amounts, lowercase currency,
manual capture), requires an Idempotency-Key on every POST and honours it like Stripe: the same key with the
same parameters replays the first answer without acting again; with different parameters it is an error.
It can simulate a declined card (``pm_card_chargeDeclined``), a lost response (the request is processed but
the answer never arrives in time: a client timeout) and an outage (nothing processed, client timeout).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

API_KEY = "sk_test_standin"
#: Longer than the provider timeout the tests configure.
HANG_SECONDS = 1.5


@dataclass
class Seen:
    method: str
    path: str
    params: dict[str, str]
    key: str | None


@dataclass
class StandIn:
    requests: list[Seen] = field(default_factory=list)
    customers: dict[str, dict[str, Any]] = field(default_factory=dict)
    intents: dict[str, dict[str, Any]] = field(default_factory=dict)
    refunds: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: Idempotency-Key → (params, status, body): what Stripe keeps for 24 hours.
    replies: dict[str, tuple[dict[str, str], int, dict[str, Any]]] = field(default_factory=dict)
    #: Behaviours for the next matching requests: ("lost" | "down" | "500", path regex).
    faults: list[tuple[str, str]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    _ids: Any = field(default_factory=lambda: itertools.count(1))

    def fail_next(self, mode: str, path: str = r".*") -> None:
        self.faults.append((mode, path))

    def calls(self, path_re: str) -> list[Seen]:
        return [r for r in self.requests if re.fullmatch(path_re, r.path)]

    def _fault(self, path: str) -> str | None:
        for i, (mode, pat) in enumerate(self.faults):
            if re.fullmatch(pat, path):
                del self.faults[i]
                return mode
        return None

    def new_id(self, prefix: str) -> str:
        return f"{prefix}_{next(self._ids):06d}"

    # --- HTTP ----------------------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware])
        app.router.add_post("/v1/customers", self.create_customer)
        app.router.add_post("/v1/payment_intents", self.create_intent)
        app.router.add_post("/v1/payment_intents/{id}/confirm", self.confirm)
        app.router.add_post("/v1/payment_intents/{id}/capture", self.capture)
        app.router.add_post("/v1/payment_intents/{id}/cancel", self.cancel)
        app.router.add_post("/v1/refunds", self.create_refund)
        return app

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if request.headers.get("Authorization") != f"Bearer {API_KEY}":
            return _error(401, "invalid_request_error", "Invalid API Key provided", code="api_key_invalid")
        params = {k: str(v) for k, v in (await request.post()).items()}
        key = request.headers.get("Idempotency-Key")
        self.requests.append(Seen(request.method, request.path, params, key))
        if request.method == "POST" and not key:
            self.errors.append(f"{request.path}: no Idempotency-Key")
            return _error(400, "invalid_request_error", "this stand-in requires an Idempotency-Key")
        fault = self._fault(request.path)
        if fault == "down":
            await asyncio.sleep(HANG_SECONDS)  # nothing processed; the client gives up first
            return _error(503, "api_error", "unavailable")
        if fault == "500":
            return _error(500, "api_error", "internal error")
        if key in self.replies:
            old_params, status, body = self.replies[key]
            if old_params != params:
                return _error(400, "idempotency_error", "Keys for idempotent requests can only be used with the "
                              "same parameters they were first used with.")
            return web.json_response(body, status=status, headers={"Idempotent-Replayed": "true"})
        request["params"] = params
        resp = await handler(request)
        assert isinstance(resp, web.Response) and resp.text is not None
        if key is not None and resp.status < 500:
            self.replies[key] = (params, resp.status, json.loads(resp.text))
        if fault == "lost":
            await asyncio.sleep(HANG_SECONDS)  # processed, but the answer arrives too late
        return resp

    async def create_customer(self, request: web.Request) -> web.Response:
        p = request["params"]
        cus = {"id": self.new_id("cus"), "object": "customer", "name": p.get("name", ""), "email": p.get("email"),
               "metadata": _sub(p, "metadata")}
        self.customers[cus["id"]] = cus
        return web.json_response(cus)

    async def create_intent(self, request: web.Request) -> web.Response:
        p = request["params"]
        problems = []
        if not re.fullmatch(r"[1-9][0-9]*", p.get("amount", "")):
            problems.append("amount must be a positive integer in minor units")
        if not re.fullmatch(r"[a-z]{3}", p.get("currency", "")):
            problems.append("currency must be a lowercase ISO code")
        if p.get("capture_method") != "manual":
            problems.append("capture_method must be manual")
        if p.get("customer") and p["customer"] not in self.customers:
            problems.append("no such customer")
        if problems:
            self.errors.extend(problems)
            return _error(400, "invalid_request_error", "; ".join(problems), code="parameter_invalid")
        pi_id = self.new_id("pi")
        pi = {"id": pi_id, "object": "payment_intent", "amount": int(p["amount"]), "currency": p["currency"],
              "capture_method": "manual", "customer": p.get("customer"), "status": "requires_payment_method",
              "client_secret": f"{pi_id}_secret_x", "amount_received": 0, "amount_capturable": 0,
              "metadata": _sub(p, "metadata")}
        self.intents[pi_id] = pi
        return web.json_response(pi)

    def _intent(self, request: web.Request) -> dict[str, Any] | None:
        return self.intents.get(request.match_info["id"])

    async def confirm(self, request: web.Request) -> web.Response:
        pi = self._intent(request)
        if pi is None:
            return _error(404, "invalid_request_error", "No such payment_intent", code="resource_missing")
        if pi["status"] not in ("requires_payment_method", "requires_confirmation"):
            return _error(400, "invalid_request_error", "unexpected state", code="payment_intent_unexpected_state")
        pm = request["params"].get("payment_method", "")
        if pm == "pm_card_chargeDeclined":
            pi["status"] = "requires_payment_method"
            return _error(402, "card_error", "Your card was declined.", code="card_declined",
                          decline_code="generic_decline", payment_intent=pi)
        pi.update(status="requires_capture", amount_capturable=pi["amount"], payment_method=pm)
        return web.json_response(pi)

    async def capture(self, request: web.Request) -> web.Response:
        pi = self._intent(request)
        if pi is None or pi["status"] != "requires_capture":
            return _error(400, "invalid_request_error", "cannot capture", code="payment_intent_unexpected_state")
        amount = int(request["params"].get("amount_to_capture", pi["amount"]))
        pi.update(status="succeeded", amount_received=amount, amount_capturable=0)
        return web.json_response(pi)

    async def cancel(self, request: web.Request) -> web.Response:
        pi = self._intent(request)
        if pi is None or pi["status"] in ("succeeded", "canceled"):
            return _error(400, "invalid_request_error", "cannot cancel", code="payment_intent_unexpected_state")
        pi.update(status="canceled", amount_capturable=0)
        return web.json_response(pi)

    async def create_refund(self, request: web.Request) -> web.Response:
        p = request["params"]
        pi = self.intents.get(p.get("payment_intent", ""))
        if pi is None or pi["status"] != "succeeded":
            return _error(400, "invalid_request_error", "nothing to refund", code="charge_not_refundable")
        amount = int(p.get("amount", pi["amount_received"]))
        done = sum(r["amount"] for r in self.refunds.values() if r["payment_intent"] == pi["id"])
        if amount > pi["amount_received"] - done:
            return _error(400, "invalid_request_error", "amount too large", code="amount_too_large")
        rf = {"id": self.new_id("re"), "object": "refund", "amount": amount, "payment_intent": pi["id"],
              "status": "succeeded", "metadata": _sub(p, "metadata")}
        self.refunds[rf["id"]] = rf
        return web.json_response(rf)


def _sub(params: dict[str, str], name: str) -> dict[str, str]:
    prefix = name + "["
    return {k[len(prefix):-1]: v for k, v in params.items() if k.startswith(prefix) and k.endswith("]")}


def _error(status: int, etype: str, message: str, **extra: Any) -> web.Response:
    return web.json_response({"error": {"type": etype, "message": message, **extra}}, status=status)
