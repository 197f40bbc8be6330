"""Pure evaluation of a rule set against a context."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

import holidays as holidays_lib

from clinic.policy.context import PolicyContext
from clinic.policy.ruleset import WEEKDAYS, RuleSet

DEFAULT_DENY = "default-deny"


@dataclass(frozen=True)
class Reason:
    rule: str
    message_en: str
    message_ko: str

    def as_json(self) -> dict[str, str]:
        return {"rule": self.rule, "message": self.message_en, "message_ko": self.message_ko}


@dataclass(frozen=True)
class Decision:
    """The outcome of one policy check, ready to be stored with the encounter or prescription."""

    allowed: bool
    rule_set_id: str | None
    rule_set_hash: str | None
    reasons: tuple[Reason, ...]
    obligations: tuple[str, ...] = ()
    # (id, sha256) of every file that contributed, root first, so layered decisions stay auditable.
    rule_set_chain: tuple[tuple[str, str], ...] = field(default=())

    def to_json(self) -> dict[str, Any]:
        """The ``telemed policy check`` output object."""
        return {
            "allowed": self.allowed,
            "rule_set": self.rule_set_id,
            "rule_set_hash": self.rule_set_hash,
            "reasons": [r.as_json() for r in self.reasons],
            "obligations": list(self.obligations),
        }

    def to_record(self) -> dict[str, Any]:
        """A JSON-serialisable record for storage alongside the encounter/prescription."""
        return {
            "allowed": self.allowed,
            "rule_set_id": self.rule_set_id,
            "rule_set_hash": self.rule_set_hash,
            "rule_set_chain": [{"id": rid, "sha256": digest} for rid, digest in self.rule_set_chain],
            "reasons": [{"rule": r.rule, "message_en": r.message_en, "message_ko": r.message_ko} for r in self.reasons],
            "obligations": list(self.obligations),
        }

    def dumps(self) -> str:
        return json.dumps(self.to_json(), ensure_ascii=True, separators=(",", ":"))


def deny_by_default(message_en: str, message_ko: str, rule_set: RuleSet | None = None) -> Decision:
    return Decision(
        allowed=False,
        rule_set_id=rule_set.id if rule_set else None,
        rule_set_hash=rule_set.sha256 if rule_set else None,
        reasons=(Reason(DEFAULT_DENY, message_en, message_ko),),
        rule_set_chain=tuple((rs.id, rs.sha256) for rs in rule_set.chain()) if rule_set else (),
    )


@lru_cache(maxsize=256)
def _holiday_calendar(code: str, year: int) -> holidays_lib.HolidayBase:
    # Cached because building a calendar is far slower than evaluating rules; the data is static.
    country, _, subdiv = code.partition("-")
    return holidays_lib.country_holidays(country, subdiv=subdiv or None, years=year)


def local_date(rule_set: RuleSet, ctx: PolicyContext) -> date:
    return ctx.at.astimezone(ZoneInfo(rule_set.timezone)).date()


def facts_for(rule_set: RuleSet, ctx: PolicyContext) -> dict[str, Any]:
    """Flatten the context into the fact names of the rule vocabulary.

    Time facts use the evaluated (most specific) rule set's timezone and holiday
    calendar, so inherited federal rules see the state's local time.
    """
    local = ctx.at.astimezone(ZoneInfo(rule_set.timezone))
    day = local.date()
    weekday = WEEKDAYS[day.weekday()]
    weekend = weekday in ("sat", "sun")
    holiday = bool(rule_set.holidays) and day in _holiday_calendar(str(rule_set.holidays), day.year)
    prior = ctx.patient.prior_in_person
    drug = ctx.drug
    return {
        "action": ctx.action,
        "mode": ctx.mode,
        "participants": ctx.participants,
        "jurisdiction": ctx.jurisdiction,
        "patient.age": ctx.patient.age,
        "patient.groups": ctx.patient.groups,
        "patient.chronic": ctx.patient.chronic,
        "patient.prior_in_person.days_ago": prior.days_ago if prior else None,
        "patient.prior_in_person.same_condition": prior.same_condition if prior else None,
        "patient.prior_in_person.same_institution": prior.same_institution if prior else None,
        "provider.institution_level": ctx.provider.institution_level,
        "provider.licensed_in": ctx.provider.licensed_in,
        "provider.telemedicine_share": ctx.provider.telemedicine_share,
        "drug.atc": drug.atc if drug else None,
        "drug.categories": drug.categories if drug else None,
        "drug.days_supply": drug.days_supply if drug else None,
        "at.date": day.isoformat(),
        "at.local_time": local.strftime("%H:%M"),
        "at.weekday": weekday,
        "at.weekend": weekend,
        "at.holiday": holiday,
        "at.day_off": weekend or holiday,
    }


def evaluate(rule_set: RuleSet, ctx: PolicyContext) -> Decision:
    """Decide ``ctx`` under ``rule_set`` (already linked to its parents). Pure: no I/O, no clock."""
    day = local_date(rule_set, ctx)
    chain = tuple((rs.id, rs.sha256) for rs in rule_set.chain())
    if not rule_set.in_force(day):
        return deny_by_default(
            f"Rule set {rule_set.id} is not in force on {day.isoformat()}.",
            f"규칙 세트 {rule_set.id}은(는) {day.isoformat()}에 시행 중이 아닙니다.",
            rule_set,
        )
    facts = facts_for(rule_set, ctx)
    denials: list[Reason] = []
    grants: list[Reason] = []
    obligations: list[str] = []
    permitted = False
    for rule in rule_set.effective_rules():
        if ctx.action not in rule.actions or not rule.in_force(day):
            continue
        holds = rule.when.holds(facts)
        reason = Reason(rule.id, rule.message_en, rule.message_ko)
        if (rule.effect == "forbid" and holds) or (rule.effect == "require" and not holds):
            denials.append(reason)
        elif rule.effect in ("permit", "oblige") and holds:
            permitted = permitted or rule.effect == "permit"
            grants.append(reason)
            obligations.extend(o for o in rule.obligations if o not in obligations)
    if denials:
        return Decision(False, rule_set.id, rule_set.sha256, tuple(denials), (), chain)
    if not permitted:
        return Decision(
            False,
            rule_set.id,
            rule_set.sha256,
            (
                Reason(
                    DEFAULT_DENY,
                    f"No rule in {rule_set.id} permits {ctx.action} in this situation; "
                    "uncovered cases are denied by default.",
                    f"{rule_set.id}에 이 상황의 {ctx.action}을(를) 허용하는 규칙이 없어 기본적으로 거부됩니다.",
                ),
            ),
            (),
            chain,
        )
    return Decision(True, rule_set.id, rule_set.sha256, tuple(grants), tuple(obligations), chain)
