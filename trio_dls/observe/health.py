"""Whether the daemon is healthy: the pure rules behind ``/healthz``.

Theory of operation
-------------------
``Health`` is told the pipeline's events, each with the time it was told at
(trio's clock), and answers ``verdict(now)``: healthy, or the reasons it is
not, one per (account, endpoint) or server.  It does no I/O and reads no
clock; ``trio_dls.observe.metrics`` feeds it and ``trio_dls.observe.metrics_http``
serves its verdict.

A fetcher is unhealthy once it has made no progress for longer than
``stall_after`` seconds.  Progress is a request Duo served
(``RequestServed``), a page delivered (``PageDelivered``) or a caught-up poll
(``CaughtUp``); a fetcher is watched from its account's start
(``AccountAdded``, for every endpoint the config maps) or its first event.

Waiting one's turn is not a stall.  An MSP parent's children share one pace
per endpoint and take turns through it (``docs/scale.md``): with 1,000
children behind a tight limit, each child may be served once in many minutes
while the endpoint as a whole goes on.  So a fetcher whose latest outcome was
not a failure (it was served, or told to wait by a 429) counts the progress
of its *flow*: the children's on its endpoint for an MSP child, its own
otherwise.  A fetcher whose latest request failed (``ApiFailed``,
``ChildRefused``) counts only its own progress: its siblings' answers say
nothing about it.  Hence a fetcher waiting on a 429 pace is healthy for as
long as Duo serves its flow, and unhealthy once Duo has served none of it for
``stall_after`` (the reason then says "last: 429 rate limited").  A fetcher
blocked on a server that does not take its pages makes no progress either:
the server is named as well.

A server is unhealthy once it has been unreachable for longer than
``stall_after``: from the first failed write of a run (``ServerFailed``) to
the write that succeeds again (``ServerRecovered``).

Everything kept is per (account, endpoint) and per server, and an account's
entries go with it (``AccountRemoved``), so memory follows the tree.  The
verdict names at most ``MAX_REASONS`` of them, then how many more.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final, TypeAlias

import attrs

from trio_dls.observe.events import (
    AccountAdded,
    AccountRemoved,
    ApiFailed,
    CaughtUp,
    ChildRefused,
    PageDelivered,
    RateLimited,
    RequestServed,
    ServerFailed,
    ServerRecovered,
    ServerRef,
)

if TYPE_CHECKING:
    from collections.abc import Hashable

    from trio_dls.endpoints import Endpoint
    from trio_dls.observe.events import Event
    from trio_dls.supervisor import AccountRef

    Pair: TypeAlias = tuple[AccountRef, Endpoint]

__all__ = ["MAX_REASONS", "Health", "Verdict", "describe_account"]

# A body of 5,000 lines (every child of a large MSP parent stalled at once)
# tells no more than its first lines and a count.
MAX_REASONS: Final = 50
# An error's text in a reason is cut to this many characters: a malformed
# answer's message may quote much of it.
MAX_DETAIL: Final = 200


@attrs.frozen
class Verdict:
    """What ``/healthz`` answers: healthy if there is no reason not to be."""

    reasons: tuple[str, ...] = ()
    more: int = 0
    """Reasons left out beyond ``MAX_REASONS``."""

    @property
    def healthy(self) -> bool:
        """Whether nothing is wrong."""
        return not self.reasons

    def text(self) -> str:
        """The body of the answer: ``ok``, or one reason a line."""
        if self.healthy:
            return "ok\n"
        lines = list(self.reasons)
        if self.more:
            lines.append(f"... and {self.more} more")
        return "".join(f"{line}\n" for line in lines)


@attrs.define
class _Fetcher:
    progress_at: float
    failing: bool = False
    last: str = ""
    """What happened last that was not progress, for the reason."""


@attrs.define
class _Server:
    ref: ServerRef
    down_since: float
    reason: str


def describe_account(account: AccountRef) -> str:
    """Name *account* as the log does: its name, and an MSP child's id."""
    if account.account_id:
        return f"account {account.name} (child {account.account_id})"
    return f"account {account.name}"


def _cut(text: str) -> str:
    return text if len(text) <= MAX_DETAIL else text[: MAX_DETAIL - 3] + "..."


class Health:
    """The rules of the module docstring, over events told with their times."""

    def __init__(self, stall_after: float, endpoints: tuple[Endpoint, ...]) -> None:
        """Judge stalls beyond *stall_after* s; an account fetches *endpoints*."""
        self.stall_after = stall_after
        self.endpoints = endpoints
        self._fetchers: dict[Pair, _Fetcher] = {}
        self._flows: dict[Hashable, float] = {}
        """When each flow (see the module docstring) last made progress."""
        self._servers: dict[str, _Server] = {}
        """The servers unreachable now, by id."""

    def __len__(self) -> int:
        """How many fetchers and unreachable servers are kept."""
        return len(self._fetchers) + len(self._servers) + len(self._flows)

    @staticmethod
    def _flow(pair: Pair) -> Hashable:
        account, endpoint = pair
        # An MSP parent's children share one pace per endpoint.
        return ("children", endpoint) if account.account_id else pair

    def _fetcher(self, pair: Pair, at: float) -> _Fetcher:
        fetcher = self._fetchers.get(pair)
        if fetcher is None:
            fetcher = self._fetchers[pair] = _Fetcher(progress_at=at)
        return fetcher

    def note(self, event: Event, at: float) -> None:
        """Take *event*, told at *at* (trio's clock), into account."""
        match event:
            case RequestServed() | PageDelivered() | CaughtUp():
                pair = (event.account, event.endpoint)
                fetcher = self._fetcher(pair, at)
                fetcher.progress_at = at
                fetcher.failing = False
                fetcher.last = ""
                self._flows[self._flow(pair)] = at
            case RateLimited():
                fetcher = self._fetcher((event.account, event.endpoint), at)
                fetcher.failing = False
                fetcher.last = "429 rate limited"
            case ApiFailed() | ChildRefused():
                fetcher = self._fetcher((event.account, event.endpoint), at)
                fetcher.failing = True
                refused = "refused: " if isinstance(event, ChildRefused) else ""
                fetcher.last = _cut(f"{refused}{event.kind}: {event.message}")
            case AccountAdded():
                for endpoint in self.endpoints:
                    self._fetcher((event.account, endpoint), at)
            case AccountRemoved():
                for pair in [p for p in self._fetchers if p[0] == event.account]:
                    del self._fetchers[pair]
                    self._flows.pop(pair, None)
            case ServerFailed():
                server = self._servers.get(event.server.id)
                if server is None:
                    self._servers[event.server.id] = _Server(
                        event.server, at, _cut(event.reason)
                    )
                else:
                    server.reason = _cut(event.reason)
            case ServerRecovered():
                self._servers.pop(event.server.id, None)
            case _:
                pass

    def seconds_since_progress(self, pair: Pair, now: float) -> float | None:
        """How long the fetcher of *pair* has made no progress, by the rules."""
        fetcher = self._fetchers.get(pair)
        if fetcher is None:
            return None
        since = fetcher.progress_at
        if not fetcher.failing:
            since = max(since, self._flows.get(self._flow(pair), since))
        return max(0.0, now - since)

    def pairs(self) -> list[Pair]:
        """Every (account, endpoint) watched."""
        return list(self._fetchers)

    def verdict(self, now: float) -> Verdict:
        """Say what is wrong at *now*, if anything."""
        reasons: list[str] = []
        for server in self._servers.values():
            down = now - server.down_since
            if down > self.stall_after:
                ref = server.ref
                reasons.append(
                    f"server {ref.id} ({ref.hostname}:{ref.port}): unreachable "
                    f"for {down:.0f} s: {server.reason}"
                )
        for pair, fetcher in self._fetchers.items():
            idle = self.seconds_since_progress(pair, now)
            if idle is not None and idle > self.stall_after:
                account, endpoint = pair
                last = f" (last: {fetcher.last})" if fetcher.last else ""
                reasons.append(
                    f"{endpoint} of {describe_account(account)}: no progress "
                    f"for {idle:.0f} s{last}"
                )
        return Verdict(tuple(reasons[:MAX_REASONS]), max(0, len(reasons) - MAX_REASONS))
