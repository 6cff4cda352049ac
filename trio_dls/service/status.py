"""The one-line status of the daemon, kept from the pipeline's events (pure).

``ServiceStatus`` is an observer (``trio_dls.observe.Observer``): told every
event, it keeps the few facts a line such as::

    3 accounts, 15 fetchers: 2 catching up, 13 caught up; 1,234 records sent

needs: which accounts run, what state each (account, endpoint) fetcher was
last in, the records delivered, the servers failing now.  ``summary()``
makes that line; systemd shows it in ``systemctl status`` (``STATUS=``, sent
by ``trio_dls.service.systemd``).  Nothing here does I/O or reads a clock.

A fetcher's state follows the log observer's: *catching up* after an answer
with more to come, *caught up* after a poll that found nothing more, *rate
limited* after a 429, *failing* after a failed request, until the next of
these.  Before its first, it is *starting*.  What is kept is bounded by the
tree: an account's fetchers are forgotten when it is removed.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any, Final

from trio_dls.observe.events import (
    AccountAdded,
    AccountRemoved,
    ApiFailed,
    ApiRecovered,
    Backlog,
    CaughtUp,
    ChildRefused,
    PageDelivered,
    RateLimited,
    ServerFailed,
    ServerRecovered,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from trio_dls.endpoints import Endpoint
    from trio_dls.observe.events import Event
    from trio_dls.supervisor import AccountRef

__all__ = ["ServiceStatus"]

STARTING: Final = "starting"
CATCHING_UP: Final = "catching up"
RATE_LIMITED: Final = "rate limited"
FAILING: Final = "failing"
CAUGHT_UP: Final = "caught up"
# The order states are said in: what needs attention first.
STATES: Final = (FAILING, RATE_LIMITED, STARTING, CATCHING_UP, CAUGHT_UP)


def _plural(count: int, word: str) -> str:
    return f"{count:,} {word}{'' if count == 1 else 's'}"


class ServiceStatus:
    """What ``summary()`` says, kept from events (see the module docstring)."""

    def __init__(self, endpoints: int) -> None:
        """Observe a tree running *endpoints* fetchers per account."""
        self.endpoints = endpoints
        self._fetchers: dict[AccountRef, dict[Endpoint, str]] = {}
        self._states: Counter[str] = Counter()
        self._failing_servers: set[str] = set()
        self.records = 0
        """Records delivered to every server they are mapped to."""
        self.stopping = False
        self._handlers: dict[type[Any], Callable[[Any], None]] = {
            AccountAdded: self._account_added,
            AccountRemoved: self._account_removed,
            Backlog: lambda e: self._enter(e.account, e.endpoint, CATCHING_UP),
            ApiRecovered: lambda e: self._enter(e.account, e.endpoint, CATCHING_UP),
            CaughtUp: lambda e: self._enter(e.account, e.endpoint, CAUGHT_UP),
            RateLimited: lambda e: self._enter(e.account, e.endpoint, RATE_LIMITED),
            ApiFailed: lambda e: self._enter(e.account, e.endpoint, FAILING),
            ChildRefused: lambda e: self._enter(e.account, e.endpoint, FAILING),
            PageDelivered: self._page_delivered,
            ServerFailed: lambda e: self._failing_servers.add(e.server.id),
            ServerRecovered: lambda e: self._failing_servers.discard(e.server.id),
        }

    def __call__(self, event: Event, /) -> None:
        """Take note of *event*, if it changes the status."""
        handler = self._handlers.get(type(event))
        if handler is not None:
            handler(event)

    def _account_added(self, event: AccountAdded) -> None:
        self._fetchers.setdefault(event.account, {})

    def _account_removed(self, event: AccountRemoved) -> None:
        for state in self._fetchers.pop(event.account, {}).values():
            self._states[state] -= 1

    def _enter(self, account: AccountRef, endpoint: Endpoint, state: str) -> None:
        # An account is counted from its first event even if AccountAdded was
        # not seen (a tree observed by something else): the line stays true.
        states = self._fetchers.setdefault(account, {})
        previous = states.get(endpoint)
        if previous is not None:
            self._states[previous] -= 1
        states[endpoint] = state
        self._states[state] += 1

    def _page_delivered(self, event: PageDelivered) -> None:
        self.records += event.records

    def summary(self) -> str:
        """The status in one line (see the module docstring)."""
        accounts = len(self._fetchers)
        fetchers = sum(max(self.endpoints, len(s)) for s in self._fetchers.values())
        counts = dict(self._states)
        counts[STARTING] = fetchers - sum(self._states.values())
        states = ", ".join(f"{counts[s]:,} {s}" for s in STATES if counts.get(s))
        line = f"{_plural(accounts, 'account')}, {_plural(fetchers, 'fetcher')}"
        if states:
            line += f": {states}"
        line += f"; {_plural(self.records, 'record')} sent"
        if self._failing_servers:
            failing = sorted(self._failing_servers)
            line += (
                f"; {_plural(len(failing), 'server')} failing ({', '.join(failing)})"
            )
        if self.stopping:
            line = f"stopping, finishing deliveries in flight; {line}"
        return line
