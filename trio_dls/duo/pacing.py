"""When to ask Duo next: the request budget and the retry backoff (pure).

Theory of operation
-------------------
Duo publishes no rate limit for its log endpoints and answers an excess with
HTTP 429 and no Retry-After.  A fetcher with a backlog wants every request Duo
will serve and not one more, so each (account, endpoint) has a ``RateBudget``
that *finds* the limit and then stays just under it:

* Requests are spaced ``interval`` seconds apart.  It starts short (4 a
  second), so a backlog is not throttled by a guess.
* A 429 right after another one means the pace is far too fast: the interval
  doubles (a few steps reach Duo's two requests a minute from anywhere).
* A 429 after a served request means the limit lies just above the pace
  Duo served during the last minute (the time since the oldest request it
  served in that minute, divided by their number): the interval becomes that
  (and at least 5% longer than the one just refused), and the *probe* (the 2%
  by which each served request shortens the interval) is halved, down to
  0.1%.  So the pace settles ever more closely under the limit, and a 429
  becomes rare.
* Fifty served requests in a row double the probe again (up to 5%): a limit
  that was raised is found again.

This works whether Duo counts requests in a sliding minute or in a token
bucket, and wastes nothing but the occasional refused request (which returns
no records and moves no cursor).  The wait after a 429 is one interval plus up
to 10% jitter, so that many fetchers do not all retry at the same instant.
A 429 to a request sent before the pace last changed (at that very instant
included: every wait after a 429 is longer than zero) was paced by the old
pace, and teaches nothing.

An MSP parent's children may share one limit (Duo does not say whether its
limits are per child or per parent).  Each endpoint then also has a *shared*
budget, the same rules over the requests of every child (``RateBudget.shared``):
it starts free (``interval`` 0, no spacing at all) and only a 429 that the
refused child cannot have caused itself teaches it (``trio_dls.duo.admission``
says which); from then on it spaces the requests of all children, and its
probing frees it again once the limit is gone.  One rule differs: once its
pace was *measured* (over at least two served requests spread in time), a 429
right after another waits longer each time but keeps the pace, because with a
limit per child the refusals in a row may come from different children and
say nothing of the flow.  An unmeasured pace (the first refusal of a burst
sent while free) explores by doubling, like any budget.  Its memory is bounded
the same way, at ``SHARED_REMEMBERED`` requests.

Other transient failures (timeouts, resets, 5xx, malformed answers) go through
``Backoff``: capped exponential waits with jitter, reset by a success.

Memory is bounded by design: the budget remembers only the requests served in
the last ``RATE_WINDOW`` (trimmed as each one is served), and at most
``RATE_WINDOW / MIN_INTERVAL`` of them, however long it runs.

Nothing here reads a clock or sleeps: times are passed in and returned, and
randomness comes from an injected ``random.Random``, so tests are exact.
"""

from __future__ import annotations

import bisect
import random
from array import array
from typing import Final

import attrs

RATE_WINDOW: Final = 60.0  # seconds: Duo speaks of requests per minute
INITIAL_INTERVAL: Final = 0.25
MIN_INTERVAL: Final = 0.1
MAX_INTERVAL: Final = 120.0
PROBE: Final = 0.02  # shrink the interval by 2% after each accepted request,
MIN_PROBE: Final = 0.001  # less after each 429 found by probing,
MAX_PROBE: Final = 0.05  # more after each
PROBE_RAISE_AFTER: Final = 50  # accepted requests in a row
SLOWDOWN: Final = 1.05  # a 429 after a success lengthens the interval by 5%
JITTER: Final = 0.1  # waits after a failure are lengthened by up to 10%
# The most served requests one window can hold at the fastest pace.
MAX_REMEMBERED: Final = int(RATE_WINDOW / MIN_INTERVAL)
# A shared budget has no fastest pace: it remembers the latest this many
# served requests, enough to measure any pace Duo serves to a parent.
SHARED_REMEMBERED: Final = 1000
# A shared budget probed below this interval is free again.
SHARED_FREE: Final = 0.001

BACKOFF_FIRST: Final = 1.0
BACKOFF_CAP: Final = 300.0


def forget_before(times: array[float] | None, moment: float) -> array[float] | None:
    """Drop the *times* (ascending) before *moment*; None once none is left.

    Times are appended in order, so the old ones are a prefix.
    """
    if times is None:
        return None
    old = bisect.bisect_left(times, moment)
    if old == len(times):
        return None
    if old:
        del times[:old]
    return times


@attrs.define
class RateBudget:
    """The pace of requests to one (account, endpoint), learnt from 429s."""

    rng: random.Random = attrs.field(factory=random.Random)
    interval: float = INITIAL_INTERVAL
    floor: float = MIN_INTERVAL
    """The shortest interval; 0 for a shared budget, which may be free."""
    memory: int = MAX_REMEMBERED
    holds_pace: bool = False
    """Whether a 429 in a row waits longer, rather than slow a measured pace."""
    _next_at: float = attrs.field(default=float("-inf"), init=False)
    _refused_in_a_row: int = attrs.field(default=0, init=False)
    _streak: int = attrs.field(default=0, init=False)
    _probe: float = attrs.field(default=PROBE, init=False)
    _changed_at: float = attrs.field(default=float("-inf"), init=False)
    _measured: bool = attrs.field(default=False, init=False)
    # Served times, oldest first: a packed array of doubles, not a deque,
    # because an idle MSP child keeps five budgets between polls and a deque
    # costs some 600 bytes even empty (an array, 64 plus 8 per time).  None
    # while empty: a budget parked until after its last minute keeps none.
    _accepted: array[float] | None = attrs.field(default=None, init=False)

    @classmethod
    def shared(cls, rng: random.Random) -> RateBudget:
        """Return a budget for the requests of many children: free until a 429."""
        return cls(
            rng=rng,
            interval=0.0,
            floor=0.0,
            memory=SHARED_REMEMBERED,
            holds_pace=True,
        )

    @property
    def taught(self) -> bool:
        """Whether Duo ever refused a request: the pace is no longer the first."""
        return self._changed_at != float("-inf")

    @property
    def free(self) -> bool:
        """Whether the budget spaces nothing (a shared one not yet refused)."""
        return self.interval == 0.0

    def next_request_at(self) -> float:
        """Return the earliest time the next request may be sent."""
        return self._next_at

    def sent(self, now: float) -> None:
        """Note that a request goes out at *now*."""
        self._next_at = now + self.interval

    def accepted(self, now: float) -> None:
        """Note that the request sent at *now* was served (not a 429)."""
        if self._accepted is None:
            self._accepted = array("d")
        accepted = self._accepted
        accepted.append(now)
        if len(accepted) > self.memory:
            del accepted[: len(accepted) - self.memory]
        self._forget_before(now - RATE_WINDOW)
        self._refused_in_a_row = 0
        self._streak += 1
        if self._streak % PROBE_RAISE_AFTER == 0:
            self._probe = min(MAX_PROBE, self._probe * 2)
        self.interval = max(self.floor, self.interval * (1 - self._probe))
        if self.interval < SHARED_FREE:
            self.interval = 0.0  # only a shared budget goes this low

    def rate_limited(self, now: float, *, sent: float | None = None) -> float:
        """Note a 429 at *now* (to a request sent at *sent*); return when to ask again.

        A request sent before the pace last changed was paced by the old
        pace: its refusal says nothing new (several in flight at once are
        refused together), and changes nothing.
        """
        if sent is not None and sent <= self._changed_at:
            # At the very instant of a change, too: every wait after a 429 is
            # longer than zero, so a request sent at that instant went before
            # the change was known (a burst refused all at once).
            return self._next_at
        # A shared budget may be free (interval 0): the "or"s below give it
        # a first interval; a per-endpoint one (floor MIN_INTERVAL) never is.
        wait = None
        if self._refused_in_a_row and self.holds_pace and self._measured:
            # Refused again: the limit has not let up yet (a window still
            # full, buckets still empty).  Wait longer each time, but keep
            # the pace: it is measured again at the next first refusal.
            base = max(self.interval, INITIAL_INTERVAL)
            wait = min(MAX_INTERVAL, base * 2.0**self._refused_in_a_row)
        elif self._refused_in_a_row:
            # Refused again right away: far above the limit, explore quickly.
            self.interval = max(self.interval, self.floor or INITIAL_INTERVAL / 2) * 2
        else:
            # Refused after being served: the limit lies just above the pace
            # that was served during the last minute.  Step back to it (at
            # least a little), and probe more gently from now on.
            self._forget_before(now - RATE_WINDOW)
            accepted = self._accepted or ()
            served = (now - accepted[0]) / len(accepted) if accepted else 0.0
            # A pace is measured only over served requests spread in time: one
            # request, or a burst served at one instant, says nothing of it.
            self._measured = len(accepted) > 1 and served > 0
            self.interval = max(
                self.interval * SLOWDOWN, served, self.floor or INITIAL_INTERVAL
            )
            self._probe = max(MIN_PROBE, self._probe / 2)
        self._refused_in_a_row += 1
        self._streak = 0
        self.interval = min(MAX_INTERVAL, max(self.floor, self.interval))
        if wait is None:
            wait = self.interval
        self._next_at = now + wait * (1 + JITTER * self.rng.random())
        self._changed_at = now
        return self._next_at

    def parked(self, until: float) -> None:
        """The next request goes at *until* at the earliest: forget what it will.

        Every use of the served times first forgets those older than a minute
        (``RATE_WINDOW``), so the ones that will be by *until* are dropped now,
        which changes no decision: a fetcher parked for its next poll keeps
        none.
        """
        self._forget_before(until - RATE_WINDOW)

    def _forget_before(self, moment: float) -> None:
        self._accepted = forget_before(self._accepted, moment)

    @property
    def remembered(self) -> int:
        """How many served requests the budget holds (bounded; for tests)."""
        return len(self._accepted or ())

    @property
    def requests_per_minute(self) -> float:
        """The current pace, for logs (infinite while free)."""
        return 60.0 / self.interval if self.interval else float("inf")


@attrs.define
class Backoff:
    """Capped exponential backoff with jitter, for transient failures."""

    rng: random.Random = attrs.field(factory=random.Random)
    first: float = BACKOFF_FIRST
    cap: float = BACKOFF_CAP
    failures: int = 0

    def failed(self) -> float:
        """Note a failure; return how long to wait before trying again."""
        base = min(self.cap, self.first * 2.0**self.failures)
        self.failures += 1
        return base * (1 + JITTER * self.rng.random())

    def succeeded(self) -> None:
        """Note a success: the next failure waits ``first`` again."""
        self.failures = 0
