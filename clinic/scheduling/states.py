"""The appointment state machine (FHIR Appointment.status, reduced to what the clinic uses)."""

from __future__ import annotations

import enum

from clinic.db.scheduling import AppointmentStatus as S


class Event(enum.StrEnum):
    CONFIRM = "confirm"  # an on-demand request is taken by a clinician
    RESCHEDULE = "reschedule"
    CANCEL = "cancel"
    NO_SHOW = "no_show"
    ARRIVE = "arrive"
    CHECK_IN = "check_in"
    FULFIL = "fulfil"
    UNASSIGN = "unassign"  # an on-demand request taken by a clinician goes back to waiting for any clinician


class TransitionError(Exception):
    def __init__(self, status: S, event: Event) -> None:
        self.status = status
        self.event = event
        super().__init__(f"cannot {event.value.replace('_', ' ')} an appointment that is {status.value}")


TRANSITIONS: dict[tuple[S, Event], S] = {
    (S.PROPOSED, Event.CONFIRM): S.BOOKED,
    (S.PROPOSED, Event.CANCEL): S.CANCELLED,
    (S.BOOKED, Event.RESCHEDULE): S.BOOKED,
    (S.BOOKED, Event.CANCEL): S.CANCELLED,
    (S.BOOKED, Event.NO_SHOW): S.NOSHOW,
    (S.BOOKED, Event.ARRIVE): S.ARRIVED,
    (S.BOOKED, Event.CHECK_IN): S.CHECKED_IN,
    (S.ARRIVED, Event.CHECK_IN): S.CHECKED_IN,
    (S.ARRIVED, Event.CANCEL): S.CANCELLED,
    (S.ARRIVED, Event.FULFIL): S.FULFILLED,
    (S.CHECKED_IN, Event.FULFIL): S.FULFILLED,
    (S.CHECKED_IN, Event.UNASSIGN): S.PROPOSED,
    (S.CHECKED_IN, Event.CANCEL): S.CANCELLED,
    # fulfilled, cancelled and noshow are terminal
}

#: States in which the appointment holds the practitioner's time.
OCCUPYING = frozenset({S.BOOKED, S.ARRIVED, S.CHECKED_IN, S.FULFILLED})


def transition(status: S, event: Event) -> S:
    try:
        return TRANSITIONS[(status, event)]
    except KeyError:
        raise TransitionError(status, event) from None


def allowed_events(status: S) -> list[Event]:
    return [e for (s, e) in TRANSITIONS if s is status]
