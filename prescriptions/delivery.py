"""Home delivery of dispensed medicine, only where the law in force allows it for this patient."""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import uuid
from dataclasses import dataclass
from datetime import datetime

from clinic.db.base import utcnow
from clinic.db.clinical import Patient
from clinic.db.models import Organization
from clinic.db.uow import UnitOfWork
from clinic.errors import Conflict, Invalid, NotFound, PayloadTooLarge
from clinic.security.authz import Principal, Resource, authorize
from clinic.services.policy import PolicyService, Subject
from prescriptions.models import DeliveryOrder, MedicationRequest
from prescriptions.service import NO_HOOKS, Hooks, load
from prescriptions.state import DeliveryStatus, RxStatus, check_delivery

#: Postal code formats per country; other countries only need a non-empty code.
POSTAL_CODES: dict[str, re.Pattern[str]] = {
    "KR": re.compile(r"^\d{5}$"),
    "US": re.compile(r"^\d{5}(-\d{4})?$"),
    "DE": re.compile(r"^\d{5}$"),
    "JP": re.compile(r"^\d{3}-?\d{4}$"),
    "GB": re.compile(r"^[A-Z]{1,2}\d[A-Z\d]? ?\d[A-Z]{2}$", re.I),
}
MAX_PROOF_BYTES = 256 * 1024
_MAGIC = {b"\x89PNG\r\n\x1a\n": "image/png", b"\xff\xd8\xff": "image/jpeg"}


@dataclass(frozen=True)
class Address:
    recipient_name: str
    address: str
    postal_code: str
    country: str
    phone: str = ""


def validate_address(a: Address) -> Address:
    errors: dict[str, str] = {}
    country = a.country.strip().upper()
    if not re.fullmatch(r"[A-Z]{2}", country):
        errors["country"] = "ISO 3166-1 alpha-2"
    if not a.recipient_name.strip():
        errors["recipient_name"] = "required"
    if not a.address.strip():
        errors["address"] = "required"
    pc = a.postal_code.strip()
    pattern = POSTAL_CODES.get(country)
    if not pc or (pattern is not None and not pattern.fullmatch(pc)):
        errors["postal_code"] = "5 digits" if country == "KR" else f"not a valid postal code for {country}"
    if errors:
        raise Invalid("delivery address is not valid", fields=errors)
    return Address(a.recipient_name.strip(), a.address.strip(), pc, country, a.phone.strip())


def decode_proof(data: str) -> tuple[bytes, str]:
    """A data URL (or bare base64) of a PNG or JPEG, at most 256 KiB."""
    raw = data.split(",", 1)[1] if data.startswith("data:") else data
    if len(raw) > (MAX_PROOF_BYTES * 4) // 3 + 8:
        raise PayloadTooLarge(f"proof image exceeds {MAX_PROOF_BYTES} bytes")
    try:
        blob = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        raise Invalid("proof is not base64", fields={"proof": "PNG or JPEG data URL"}) from None
    if len(blob) > MAX_PROOF_BYTES:
        raise PayloadTooLarge(f"proof image exceeds {MAX_PROOF_BYTES} bytes")
    for magic, mime in _MAGIC.items():
        if blob.startswith(magic):
            return blob, mime
    raise Invalid("proof must be a PNG or JPEG image", fields={"proof": "PNG or JPEG data URL"})


def _resource(d: DeliveryOrder, rx: MedicationRequest) -> Resource:
    return Resource("DeliveryOrder", organization_id=rx.organization_id, id=d.id, patient_id=d.patient_id,
                    pharmacy_id=d.pharmacy_id)


def _audit(uow: UnitOfWork, p: Principal, action: str, d: DeliveryOrder, rx: MedicationRequest,
           **detail: object) -> None:
    uow.audit.record(p, action, object_type="DeliveryOrder", object_id=d.id, organization_id=rx.organization_id,
                     patient_id=d.patient_id, detail={"request_id": str(rx.id), **detail})


async def delivery_decision(uow: UnitOfWork, policy: PolicyService, rx: MedicationRequest,
                            at: datetime | None = None) -> dict[str, object]:
    """The policy record allowing delivery for this patient, or PolicyDenied with the reasons."""
    patient = await uow.session.get(Patient, rx.patient_id)
    org = await uow.session.get(Organization, rx.organization_id)
    assert patient is not None and org is not None
    subject = Subject(patient=patient, organization=org, practitioner_user_id=rx.prescriber_id, at=at or utcnow())
    return await policy.require(uow, subject, "deliver", point="deliver")


async def create_delivery(
    uow: UnitOfWork, principal: Principal, policy: PolicyService, rx_id: uuid.UUID, *, address: Address,
    courier: str, tracking_code: str = "", hooks: Hooks = NO_HOOKS, at: datetime | None = None,
) -> DeliveryOrder:
    rx = await load(uow, principal, rx_id, "delivery.manage", lock=True)
    if rx.status not in (RxStatus.DISPENSED, RxStatus.DISPENSED_PARTIAL):
        raise Conflict("dispense before handing to delivery", code="bad_state")
    if rx.fulfilment:
        raise Conflict(f"already set for {rx.fulfilment}", code="bad_state")
    if not courier.strip():
        raise Invalid("courier is required", fields={"courier": "required"})
    addr = validate_address(address)
    record = await delivery_decision(uow, policy, rx, at)
    assert rx.pharmacy_id is not None
    now = utcnow()
    d = DeliveryOrder(request_id=rx.id, pharmacy_id=rx.pharmacy_id, patient_id=rx.patient_id,
                      country=addr.country, recipient_name=addr.recipient_name, address=addr.address,
                      postal_code=addr.postal_code, phone=addr.phone, courier=courier.strip(),
                      tracking_code=tracking_code.strip(), policy_decision=record,
                      events=[{"status": DeliveryStatus.CREATED.value, "at": now.isoformat(),
                               "actor_id": principal.actor_id, "note": ""}])
    uow.add(d)
    rx.fulfilment = "delivery"
    rx.policy_decisions = [*rx.policy_decisions, record]
    await uow.session.flush()
    _audit(uow, principal, "delivery.create", d, rx, courier=d.courier)
    hooks.notify(uow, rx.patient_id, "delivery.created", {"delivery_id": str(d.id), "courier": d.courier,
                                                          "tracking_code": d.tracking_code})
    return d


async def load_delivery(uow: UnitOfWork, principal: Principal, delivery_id: uuid.UUID,
                        action: str) -> tuple[DeliveryOrder, MedicationRequest]:
    d = await uow.session.get(DeliveryOrder, delivery_id)
    if d is None:
        raise NotFound("delivery not found")
    rx = await uow.session.get(MedicationRequest, d.request_id)
    assert rx is not None
    authorize(principal, action, _resource(d, rx))
    return d, rx


async def get_delivery(uow: UnitOfWork, principal: Principal, delivery_id: uuid.UUID) -> DeliveryOrder:
    d, rx = await load_delivery(uow, principal, delivery_id, "delivery.read")
    _audit(uow, principal, "delivery.read", d, rx)
    return d


async def advance(
    uow: UnitOfWork, principal: Principal, delivery_id: uuid.UUID, target: DeliveryStatus, *,
    note: str = "", tracking_code: str | None = None, proof_recipient: str | None = None,
    proof_kind: str | None = None, proof: str | None = None, hooks: Hooks = NO_HOOKS,
) -> DeliveryOrder:
    d, rx = await load_delivery(uow, principal, delivery_id, "delivery.manage")
    check_delivery(d.status, target)
    now = utcnow()
    if target is DeliveryStatus.DELIVERED:
        errors = {}
        if not (proof_recipient or "").strip():
            errors["proof_recipient"] = "name of the person who received it"
        if proof_kind not in ("signature", "photo"):
            errors["proof_kind"] = "signature or photo"
        if not proof:
            errors["proof"] = "PNG or JPEG data URL"
        if errors:
            raise Invalid("proof of delivery is required", fields=errors)
        assert proof is not None and proof_recipient is not None
        blob, _mime = decode_proof(proof)
        d.proof_recipient, d.proof_kind = proof_recipient.strip()[:200], proof_kind
        d.proof_data = base64.b64encode(blob).decode()
        d.proof_sha256 = hashlib.sha256(blob).hexdigest()
        d.delivered_at = now
    if tracking_code is not None:
        d.tracking_code = tracking_code.strip()[:100]
    d.status = target
    d.updated_at = now
    d.events = [*d.events, {"status": target.value, "at": now.isoformat(), "actor_id": principal.actor_id,
                            "note": note[:500]}]
    _audit(uow, principal, "delivery." + target.value, d, rx, note=note[:200])
    hooks.notify(uow, d.patient_id, "delivery." + target.value,
                 {"delivery_id": str(d.id), "tracking_code": d.tracking_code})
    return d
