from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from media import LocalMediaRelay

from .clients import Client, EventLog


@pytest.fixture
def events() -> EventLog:
    return EventLog()


@pytest.fixture
async def relay(events: EventLog) -> AsyncIterator[LocalMediaRelay]:
    relay = LocalMediaRelay(on_event=events, negotiation_timeout=5.0)
    yield relay
    await relay.close()


@pytest.fixture
async def clients() -> AsyncIterator[list[Client]]:
    made: list[Client] = []
    yield made
    for client in made:
        await client.close()
