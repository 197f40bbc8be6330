"""Selecting the rule set in force for a patient's jurisdiction and time."""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterable
from pathlib import Path

from clinic.policy.context import PolicyContext, normalise_jurisdiction
from clinic.policy.evaluate import Decision, deny_by_default, evaluate, local_date
from clinic.policy.ruleset import RuleSet, RuleSetError, _Locator, load_rule_set

RULESET_DIR = Path(__file__).with_name("rulesets")
WILDCARD = "*"


def _line_of(rule_set: RuleSet, key: str) -> int | None:
    try:
        text = Path(rule_set.path).read_text(encoding="utf-8")
    except OSError:
        return None
    return _Locator(text).top(key)


def _link(sets: dict[str, RuleSet]) -> dict[str, RuleSet]:
    """Resolve ``extends`` into ``parent`` links; rejects unknown parents and cycles."""
    linked: dict[str, RuleSet] = {}

    def resolve(rs_id: str, trail: tuple[str, ...]) -> RuleSet:
        if rs_id in linked:
            return linked[rs_id]
        rs = sets[rs_id]
        parent = None
        if rs.extends is not None:
            line = _line_of(rs, "extends")
            if rs.extends not in sets:
                raise RuleSetError(rs.path, line, f"extends unknown rule set {rs.extends!r}")
            if rs.extends in trail or rs.extends == rs_id:
                cycle = " -> ".join((*trail, rs_id, rs.extends))
                raise RuleSetError(rs.path, line, f"extends cycle: {cycle}")
            parent = resolve(rs.extends, (*trail, rs_id))
        linked[rs_id] = dataclasses.replace(rs, parent=parent)
        return linked[rs_id]

    for rs_id in sets:
        resolve(rs_id, ())
    return linked


class PolicyEngine:
    """Holds validated rule sets and answers :meth:`decide` for every decision point.

    ``fallback_default`` opts into the permissive ``*`` rule set for jurisdictions or
    dates no other set covers; it exists for testing and is off unless asked for.
    """

    def __init__(self, rule_sets: Iterable[RuleSet], *, fallback_default: bool = False) -> None:
        by_id: dict[str, RuleSet] = {}
        for rs in rule_sets:
            if rs.id in by_id:
                raise RuleSetError(rs.path, _line_of(rs, "id"), f"duplicate rule set id {rs.id!r}")
            by_id[rs.id] = rs
        self._by_id = _link(by_id)
        self.fallback_default = fallback_default
        self._check_overlaps()

    @classmethod
    def from_directory(cls, path: str | Path | None = None, fallback_default: bool = False) -> PolicyEngine:
        directory = Path(path) if path is not None else RULESET_DIR
        files = sorted(directory.glob("*.toml"))
        return cls((load_rule_set(f) for f in files), fallback_default=fallback_default)

    def _check_overlaps(self) -> None:
        # Two sets in force for the same place and day would make the choice arbitrary.
        groups: dict[str, list[RuleSet]] = {}
        for rs in self._by_id.values():
            if not rs.abstract:
                groups.setdefault(rs.jurisdiction, []).append(rs)
        for sets in groups.values():
            ordered = sorted(sets, key=lambda r: r.effective_from)
            for earlier, later in itertools.pairwise(ordered):
                if earlier.effective_to is None or earlier.effective_to >= later.effective_from:
                    raise RuleSetError(
                        later.path,
                        _line_of(later, "effective_from"),
                        f"effective period overlaps {earlier.id} ({earlier.path})",
                    )

    @property
    def rule_sets(self) -> tuple[RuleSet, ...]:
        """All loaded sets (linked), ordered by jurisdiction then start date, for admin listings."""
        return tuple(sorted(self._by_id.values(), key=lambda r: (r.jurisdiction, r.effective_from, r.id)))

    def get(self, rule_set_id: str) -> RuleSet:
        return self._by_id[rule_set_id]

    def _candidates(self, jurisdiction: str) -> list[RuleSet]:
        exact = [rs for rs in self._by_id.values() if not rs.abstract and rs.jurisdiction == jurisdiction]
        if exact or "-" not in jurisdiction:
            return exact
        # A subdivision without its own file inherits national law only where the national set
        # says so; for federal systems (US) state law is missing and the case stays uncovered.
        country = jurisdiction.split("-", 1)[0]
        return [
            rs
            for rs in self._by_id.values()
            if not rs.abstract and rs.jurisdiction == country and rs.applies_to_subdivisions
        ]

    def select(self, ctx: PolicyContext) -> RuleSet | None:
        """The rule set in force at ``ctx.at`` in the patient's jurisdiction, if any."""
        jurisdiction = normalise_jurisdiction(ctx.jurisdiction)
        for rs in self._candidates(jurisdiction):
            if rs.in_force(local_date(rs, ctx)):
                return rs
        if self.fallback_default:
            for rs in self._by_id.values():
                if rs.jurisdiction == WILDCARD and not rs.abstract and rs.in_force(local_date(rs, ctx)):
                    return rs
        return None

    def decide(self, ctx: PolicyContext) -> Decision:
        """The single entry point for consult, prescribe, deliver and record checks."""
        rs = self.select(ctx)
        if rs is not None:
            return evaluate(rs, ctx)
        jurisdiction = normalise_jurisdiction(ctx.jurisdiction)
        if not self._candidates(jurisdiction):
            return deny_by_default(
                f"No rule set covers jurisdiction {jurisdiction}; denied by default.",
                f"관할 {jurisdiction}에 대한 규칙 세트가 없어 기본적으로 거부됩니다.",
            )
        when = ctx.at.isoformat()
        return deny_by_default(
            f"No rule set for {jurisdiction} is in force at {when}; denied by default.",
            f"{when} 시점에 {jurisdiction}에 시행 중인 규칙 세트가 없어 기본적으로 거부됩니다.",
        )
