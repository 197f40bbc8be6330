"""The visit (FHIR Encounter) lifecycle as an explicit state machine, free of I/O."""

from clinic.encounters.state import EncounterStatus, TransitionError, allowed_targets, check_transition

__all__ = ["EncounterStatus", "TransitionError", "allowed_targets", "check_transition"]
