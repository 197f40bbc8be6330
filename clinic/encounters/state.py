"""Encounter states and the only transitions between them.

booked → checked_in → in_consult → completed, with cancelled, no_show and abandoned as the other
endings. Each status maps onto FHIR Encounter.status for export.
"""

from __future__ import annotations

import enum


class EncounterStatus(enum.StrEnum):
    BOOKED = "booked"
    CHECKED_IN = "checked_in"
    IN_CONSULT = "in_consult"
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    NO_SHOW = "no_show"
    ABANDONED = "abandoned"

    @property
    def fhir(self) -> str:
        return _FHIR[self]

    @property
    def final(self) -> bool:
        return not TRANSITIONS[self]


_FHIR = {
    EncounterStatus.BOOKED: "planned",
    EncounterStatus.CHECKED_IN: "arrived",
    EncounterStatus.IN_CONSULT: "in-progress",
    EncounterStatus.COMPLETED: "finished",
    EncounterStatus.CANCELLED: "cancelled",
    EncounterStatus.NO_SHOW: "cancelled",
    EncounterStatus.ABANDONED: "cancelled",
}

S = EncounterStatus
TRANSITIONS: dict[EncounterStatus, frozenset[EncounterStatus]] = {
    S.BOOKED: frozenset({S.CHECKED_IN, S.CANCELLED, S.NO_SHOW}),
    # A checked-in patient may leave the waiting room before being seen (abandoned).
    S.CHECKED_IN: frozenset({S.IN_CONSULT, S.CANCELLED, S.ABANDONED}),
    # A call that drops without being finished is abandoned; a finished one is completed.
    S.IN_CONSULT: frozenset({S.COMPLETED, S.ABANDONED}),
    S.COMPLETED: frozenset(),
    S.CANCELLED: frozenset(),
    S.NO_SHOW: frozenset(),
    S.ABANDONED: frozenset(),
}


class TransitionError(Exception):
    def __init__(self, current: EncounterStatus, target: EncounterStatus) -> None:
        allowed = ", ".join(sorted(t.value for t in TRANSITIONS[current])) or "none (final state)"
        super().__init__(f"cannot go from {current.value} to {target.value}; allowed: {allowed}")
        self.current = current
        self.target = target


def allowed_targets(current: EncounterStatus) -> frozenset[EncounterStatus]:
    return TRANSITIONS[current]


def check_transition(current: EncounterStatus, target: EncounterStatus) -> None:
    if target not in TRANSITIONS[current]:
        raise TransitionError(current, target)
