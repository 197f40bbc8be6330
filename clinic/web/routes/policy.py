"""Jurisdiction policy API: the loaded rule sets, and a simulator that answers like ``telemed policy check``."""

from __future__ import annotations

from typing import Any

from pydantic import ConfigDict, Field, RootModel

from clinic.policy import PolicyEngine
from clinic.services import policy as svc
from clinic.web.api import ApiContext, ApiRouter
from clinic.web.context import services
from clinic.web.schemas import Output

router = ApiRouter()
T = ("policy",)

_EXAMPLE: dict[str, Any] = {
    "jurisdiction": "KR", "at": "2026-11-24T10:00:00+09:00", "action": "consult", "mode": "video",
    "patient": {"age": 40, "groups": [], "chronic": False,
                "prior_in_person": {"days_ago": 30, "same_condition": True, "same_institution": True}},
    "provider": {"institution_level": "clinic", "licensed_in": ["KR"], "telemedicine_share": 0.1},
}


def engine_of(ctx: ApiContext) -> PolicyEngine:
    """The app's engine (installed by ``clinic.policy_web``); loaded here only if that feature is absent."""
    service = services(ctx.app).extra.get("policy")
    if service is not None:
        engine: PolicyEngine = service.engine
        return engine
    from clinic.policy_web import load_engine

    return load_engine(services(ctx.app).settings.policy_fallback_default)


class SourceOut(Output):
    key: str
    title: str
    date: str | None
    url: str
    note: str = ""


class RuleSetOut(Output):
    id: str
    jurisdiction: str
    title: str
    effective_from: str
    effective_to: str | None
    extends: str | None
    abstract: bool
    applies_to_subdivisions: bool
    in_force: bool = Field(description="Selected for some date today (never for abstract sets)")
    timezone: str
    sources: list[SourceOut]
    notes: str
    sha256: str
    rule_count: int


class RuleSetList(Output):
    items: list[RuleSetOut]


class SimulateIn(RootModel[Any]):
    """The ``telemed policy check`` input object, unchanged (see docs/policy.md); it is parsed by the
    engine's own strict parser so that errors name the same dotted fields the CLI names."""

    model_config = ConfigDict(json_schema_extra={"type": "object", "examples": [_EXAMPLE]})


class ReasonOut(Output):
    rule: str
    message: str
    message_ko: str


class DecisionOut(Output):
    """The ``telemed policy check`` output object."""

    allowed: bool
    rule_set: str | None
    rule_set_hash: str | None
    reasons: list[ReasonOut]
    obligations: list[str]


@router.route("GET", "/policy/rule-sets", response=RuleSetList, tags=T)
async def list_rule_sets(ctx: ApiContext) -> RuleSetList:
    """Loaded rule sets with their periods, sources, notes and content hash (staff)."""
    svc.authorize_read(ctx.principal)
    return RuleSetList(items=[RuleSetOut.model_validate(d) for d in svc.describe_rule_sets(engine_of(ctx))])


@router.route("POST", "/policy/simulate", body=SimulateIn, response=DecisionOut, tags=T)
async def simulate(ctx: ApiContext) -> DecisionOut:
    """Decide a hypothetical case; same input and output as ``telemed policy check`` (staff)."""
    svc.authorize_read(ctx.principal)
    return DecisionOut.model_validate(svc.simulate(engine_of(ctx), ctx.body.root))
