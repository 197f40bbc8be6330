"""Jurisdiction policy engine: which consultations, prescriptions, deliveries and recordings
the law in force where the patient is allows, and why.

Rules live as data in ``rulesets/*.toml`` (vocabulary: ``docs/policy.md``).
"""

from clinic.policy.context import (
    DrugFacts,
    PatientFacts,
    PolicyContext,
    PolicyInputError,
    PriorVisit,
    ProviderFacts,
)
from clinic.policy.engine import RULESET_DIR, PolicyEngine
from clinic.policy.evaluate import DEFAULT_DENY, Decision, Reason, evaluate
from clinic.policy.ruleset import Rule, RuleSet, RuleSetError, Source, load_rule_set

__all__ = [
    "DEFAULT_DENY",
    "RULESET_DIR",
    "Decision",
    "DrugFacts",
    "PatientFacts",
    "PolicyContext",
    "PolicyEngine",
    "PolicyInputError",
    "PriorVisit",
    "ProviderFacts",
    "Reason",
    "Rule",
    "RuleSet",
    "RuleSetError",
    "Source",
    "evaluate",
    "load_rule_set",
]
