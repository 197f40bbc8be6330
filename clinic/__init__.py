"""Telemed clinic: the platform core and the clinic module (people, scheduling, queue, visits, notes)."""

__version__ = "0.1.0"
