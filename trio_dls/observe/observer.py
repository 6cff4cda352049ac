"""What an observer is, and how several observe one pipeline together."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from trio_dls.observe.events import Event


class Observer(Protocol):
    """Anything told of events: a callable taking one event, returning None.

    It is called synchronously, on the emitter's task, so it must be quick and
    must not block or await; a slow consumer (a network exporter) keeps its
    own buffer and task.
    """

    def __call__(self, event: Event, /) -> None:
        """Take note of *event*."""


class Fanout:
    """Several observers as one: each is told every event, in order."""

    def __init__(self, *observers: Observer) -> None:
        """Tell each of *observers*, in this order."""
        self.observers = observers

    def __call__(self, event: Event, /) -> None:
        """Tell every observer of *event*."""
        for observer in self.observers:
            observer(event)
