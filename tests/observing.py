"""The observer tests use instead of reading the log: it keeps every event.

``RecordingObserver`` is given to the real fetchers, senders, cursor store and
account discovery in place of (or with, through ``Fanout``) the daemon's
observers; a test then asks it for the events of one kind, or waits for them
when the code under test runs on real sockets.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeVar

import trio

if TYPE_CHECKING:
    from trio_dls.observe.events import Event

E = TypeVar("E")

__all__ = ["RecordingObserver"]


class RecordingObserver:
    """An observer that keeps every event it is told, in order."""

    def __init__(self) -> None:
        """Start with no event."""
        self.events: list[Event] = []
        self._changed = trio.Event()

    def __call__(self, event: Event, /) -> None:
        """Keep *event* and wake whoever waits for one."""
        self.events.append(event)
        self._changed.set()
        self._changed = trio.Event()

    def of(self, kind: type[E]) -> list[E]:
        """The events of *kind*, in the order they were told."""
        return [event for event in self.events if isinstance(event, kind)]

    def kinds(self) -> list[type[Event]]:
        """The kinds of every event, in order, repeats included."""
        return [type(event) for event in self.events]

    async def wait_for(self, kind: type[E], count: int = 1) -> list[E]:
        """Return the events of *kind* once there are *count* (caller bounds it)."""
        while len(found := self.of(kind)) < count:
            await self._changed.wait()
        return found
