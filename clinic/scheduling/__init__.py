"""Pure scheduling domain: slot generation, cancellation window and the appointment state machine.

Nothing here touches the database or the clock; callers pass ``now`` and plain data in.
"""

from clinic.scheduling.slots import (
    Busy,
    DateException,
    Interval,
    RuleSpec,
    ScheduleSpec,
    Slot,
    can_cancel,
    generate_slots,
    grid_cells,
    is_on_grid,
)
from clinic.scheduling.states import Event, TransitionError, allowed_events, transition

__all__ = [
    "Busy",
    "DateException",
    "Event",
    "Interval",
    "RuleSpec",
    "ScheduleSpec",
    "Slot",
    "TransitionError",
    "allowed_events",
    "can_cancel",
    "generate_slots",
    "grid_cells",
    "is_on_grid",
    "transition",
]
