"""The pace of one (account, endpoint): a window limit learnt from 429s (pure).

Theory of operation
-------------------
Duo publishes neither its limits nor their shape (``docs/duo-api.md``), and
answers an excess with HTTP 429 and no Retry-After.  Three shapes are
plausible: a *sliding window* (at most ``B`` requests served in any ``W``
seconds), a *fixed window* (``B`` in each ``W`` seconds on the clock) and a
*token bucket* (a burst of ``b``, then one more every ``1/r`` seconds).  One
model fits all three from the client's side: **at most B requests in any W
seconds**, so the next request may go ``W`` seconds after the ``B``-th latest
request that was served.  A bucket is the same with ``B`` up to its burst and
``W = B / r``; a fixed window is a sliding one seen from its first request.

``WindowBudget`` learns ``B`` and ``W`` from what Duo serves and refuses, and
sends each request at the earliest time the model serves it:

* Until the first 429 nothing is known: requests go ``INITIAL_SPACING``
  apart (four a second) at first, and each served one shortens the spacing
  by ``UNTAUGHT_SPEEDUP`` down to none: a Duo that refuses nothing is asked
  as fast as it answers (catch-up is then bound by Duo's latency and this
  process, not by a guess).  At the first 429, ``B`` is
  the number of requests served in the minute before it (Duo speaks of
  limits per minute): the burst Duo took.
* A request is *gated* when the ``B``-th latest served one is less than the
  known bound ago: it goes at a *gap* after it, and says something of ``W``:
  served at gap ``d``, ``W <= d`` (``hi``); refused, ``W > d`` (``lo``).
  Otherwise the window has room and it goes at the ``FLOOR`` spacing.
* Exploring (no ``hi`` yet), each refused gap doubles (``GROW``), trying a
  round window (``ROUND_WINDOWS``: 1 s, 10 s, a minute...) when a doubling
  would step over one.  A window from a second to an hour is bounded in at
  most a dozen 429s.  Then the gaps bisect (geometrically) between ``lo``
  and ``hi``: always while ``hi / lo >= WIDEN``, and down to ``CONVERGED``
  only while the 429s this costs stay under ``PROBE_SHARE`` of the requests.
  Past that every burst opens at ``hi``.  A refused probe costs no time: the
  retry goes at ``hi``, when it would have gone anyway.
* A refusal at a gap already served (``d >= hi``) says the model is wrong:
  - inside a burst (requests less than ``BURST_GAP`` apart) after ``k < B``
    of it were served, ``B`` is ``k`` (a bucket's burst, a window's edge that
    the first burst straddled), and ``lo`` shrinks in proportion;
  - at the start of a burst, the window is longer: ``hi`` widens by
    ``WIDEN``; a second time before a burst was served again, the bounds
    were wrong (a fixed window's edge fell inside the exploration), and it
    explores again from there.
* A limit may be raised.  After ``PROBE_AFTER`` served requests in a row
  (doubling each time, up to ``PROBE_AFTER_CAP``) the budget alternately
  tries a burst one larger (kept once a whole burst of it was served, given
  back at the first 429) and halves ``lo`` so that the bisection probes a
  shorter gap again.

The endpoints of one account share a ``Siblings``: one budget explores at a
time, the others refused meanwhile follow its probes, and start from the
bounds it found.  With a limit shared by all five endpoints, the window is
explored once, not five times; with a limit per endpoint, each starts near
its own.

The bounds this gives, measured over the limits the tests try
(``tests/test_pacing_shapes.py``, ``tests/duo/test_window.py``,
``docs/fetching.md``): a backlog that spans twenty windows or more is caught
up within 1.15 times the optimum with at most a tenth of the requests
refused; a shorter one pays the exploration (about ``log2(W /
INITIAL_SPACING)`` 429s and up to one window's wait), which no client that
does not know ``W`` can avoid.

Times are request *departures* (``sent``): Duo counts arrivals, which are the
departures shifted by the latency, so gaps between departures are what it
sees.  One request per budget is in flight at a time (a fetcher's own).

Memory is bounded: the served times of the last ``max(RATE_WINDOW, 2 x the
longest gap in use)`` seconds, at most ``MAX_REMEMBERED`` of them.

Nothing here reads a clock or sleeps: times are passed in and returned.
"""

from __future__ import annotations

import bisect
import math
import random
from array import array
from typing import Final

from trio_dls.duo.pacing import forget_before

RATE_WINDOW: Final = 60.0  # seconds: Duo speaks of requests per minute
INITIAL_SPACING: Final = 0.25  # seconds between the first requests,
FIRST_EXPLORED: Final = 1.0  # seconds: the first gap tried after a first 429
UNTAUGHT_SPEEDUP: Final = 0.8  # times this after each served before a 429
UNTAUGHT_FASTEST: Final = 0.001  # below this, no spacing at all
FLOOR: Final = 0.1  # the shortest spacing, within a burst
BURST_GAP: Final = 1.0  # a request after a longer wait begins a burst
GROW: Final = 2.0  # an exploring gap doubles at each refusal
WIDEN: Final = 1.25  # a gap once served and now refused: the bound widens so
CONVERGED: Final = 1.05  # hi / lo at which the bisection stops
MAX_GAP: Final = 3600.0  # no gap is ever longer
MARGIN: Final = 0.005  # a burst opens this much after hi (Duo's clock vs ours)
PROBE_SHARE: Final = 0.03  # a gap shorter than hi is tried only while
# the refusals that were not exploring stay under this share of the requests
PROBE_AFTER: Final = 50  # served in a row before probing a faster limit,
PROBE_AFTER_CAP: Final = 400  # doubling each time up to this
MAX_REMEMBERED: Final = 1000  # served times kept, at most
FOLLOW: Final = 1.0  # seconds after the exploring sibling's probe that another follows
# Windows people configure: an exploring gap that would step over one of
# these tries it first (Duo's guidance speaks of minutes).
ROUND_WINDOWS: Final = (1.0, 10.0, 60.0, 600.0, 3600.0)


def _grown(gap: float) -> float:
    """The next gap to explore after *gap* was refused."""
    grown = gap * GROW
    for window in ROUND_WINDOWS:
        if gap < window < grown:
            return window * (1 + MARGIN)
    return min(MAX_GAP, grown)


class Siblings:
    """What the budgets of one account's endpoints share: one exploration.

    Whether Duo counts each endpoint's requests or all of them together, the
    same limit is configured for every endpoint of an account, most likely:
    one budget explores the window at a time (the *explorer*), the others
    refused meanwhile wait for its probes rather than each pay its own 429s,
    and the bounds found by one are where the others start.  Each keeps its
    own burst; an endpoint whose window is shorter finds it by the probes
    that lower ``lo`` now and then, one whose window is longer by widening.
    """

    __slots__ = ("explorer", "known")

    def __init__(self) -> None:
        """Start with nothing explored."""
        self.explorer: WindowBudget | None = None
        self.known: tuple[float, float] | None = None
        """(The longest gap refused, the shortest served) a sibling found."""


class WindowBudget:
    """When the next request of one (account, endpoint) may go, learnt from 429s."""

    __slots__ = (
        "_b",
        "_burst_served",
        "_burst_tried",
        "_explore",
        "_hi",
        "_last_sent",
        "_lo",
        "_pending",
        "_probe_after",
        "_probe_next",
        "_probing_refused",
        "_requests",
        "_served",
        "_siblings",
        "_spacing",
        "_streak",
        "_widened",
        "rng",
    )

    def __init__(
        self, rng: random.Random | None = None, siblings: Siblings | None = None
    ) -> None:
        """Start knowing nothing: requests go ``INITIAL_SPACING`` apart.

        *siblings* is shared by the budgets of one account's endpoints.
        """
        self.rng = rng or random.Random()  # noqa: S311 - jitter, not secrets
        self._siblings = siblings
        self._b: int | None = None  # requests per window; None: never refused
        self._lo = 0.0  # the longest gap refused (W > lo)
        self._hi: float | None = None  # the shortest gap served (W <= hi)
        self._explore = 0.0  # the next gap tried while hi is unknown
        self._last_sent = -math.inf
        # The request in flight: (sent, the gap it opened at, or None inside a burst).
        self._pending: tuple[float, float | None] | None = None
        self._streak = 0  # served in a row
        self._spacing = INITIAL_SPACING  # between requests, until the first 429
        self._widened = False  # hi was widened since an opening was served
        self._requests = 0  # sent since the first 429
        self._probing_refused = 0  # of them, refused while not exploring
        self._burst_served = 0  # served in the current burst
        self._probe_after = PROBE_AFTER
        self._probe_next = 0  # which probe comes next: 0 a larger burst, 1 a gap
        self._burst_tried: int | None = None  # B before a larger one was tried
        # Departures of served requests, oldest first (packed doubles: an idle
        # MSP child keeps five budgets).  None while empty.
        self._served: array[float] | None = None

    # -- what the fetcher asks ------------------------------------------------

    @property
    def taught(self) -> bool:
        """Whether Duo ever refused a request: the pace is no longer the first."""
        return self._b is not None

    @property
    def remembered(self) -> int:
        """How many served requests the budget holds (bounded; for tests)."""
        return len(self._served or ())

    @property
    def burst(self) -> int | None:
        """The requests per window the budget believes in (None: never refused)."""
        return self._b

    @property
    def window(self) -> tuple[float, float | None]:
        """What is known of the window: (longest gap refused, shortest served)."""
        return self._lo, self._hi

    @property
    def requests_per_minute(self) -> float:
        """The pace the budget holds, for logs (infinite before any 429)."""
        if self._b is None:
            return 60.0 / self._spacing if self._spacing else math.inf
        return 60.0 * self._b / max(self._gap(), FLOOR)

    def next_request_at(self) -> float:
        """Return the earliest time the next request may be sent."""
        return self._plan()[0]

    def sent(self, now: float) -> None:
        """Note that a request goes out at *now*."""
        _, gap = self._plan()
        opening = None
        if gap is not None:
            # The B-th latest served departure: the gap this request opens at.
            b = self._b or 1
            served = self._served or ()
            opening = now - served[-b] if len(served) >= b else math.inf
        if now - self._last_sent > BURST_GAP:
            self._burst_served = 0  # after a wait: a burst begins
        self._pending = (now, opening)
        self._last_sent = now
        if self._b is not None:
            self._requests += 1

    def accepted(self, now: float) -> None:
        """Note that the request in flight was served."""
        sent, opening = self._take(now)
        self._remember(sent)
        self._streak += 1
        self._burst_served += 1
        if self._b is None:
            spacing = self._spacing * UNTAUGHT_SPEEDUP
            self._spacing = spacing if spacing >= UNTAUGHT_FASTEST else 0.0
            return
        if opening is not None and math.isfinite(opening):
            self._widened = False
            explored = self._hi is None
            if self._hi is None or opening < self._hi:
                self._hi = opening
            if explored:
                self._publish()
            if opening <= self._lo:
                # Served at a gap once refused: the limit was raised (or the
                # latency changed).  What was refused is no longer known.
                self._lo = opening / GROW
        if (
            self._burst_tried is not None
            and opening is not None
            and self._streak > self._b
        ):
            self._burst_tried = None  # a whole larger burst was served: kept
        if self._streak >= self._probe_after:
            self._probe()

    def rate_limited(self, now: float, *, sent: float | None = None) -> float:  # noqa: ARG002
        """Note a 429 to the request in flight; return when to ask again."""
        sent_at, opening = self._take(now)
        self._streak = 0
        if self._burst_tried is not None:
            # Trying a larger burst: refused, so it is not (yet) allowed.
            self._b, self._burst_tried = self._burst_tried, None
        elif self._b is None:
            # The first 429: the burst Duo took is the minute's served requests.
            served = self._served or ()
            start = bisect.bisect_left(served, sent_at - RATE_WINDOW)
            self._b = max(1, len(served) - start)
            first = served[-self._b] if served else None
            self._lo = sent_at - first if first is not None else 0.0
            # The first gap tried is a second at least: a first burst sent
            # back to back says little of the window.
            self._explore = _grown(max(self._lo, FIRST_EXPLORED / GROW))
        elif opening is None:
            # Refused inside a burst: B is smaller than believed.
            self._probing_refused += 1
            self._refused_in_burst()
        elif self._hi is None:
            # Exploring: the window is longer still.
            self._lo = max(self._lo, min(opening, MAX_GAP))
            self._explore = _grown(max(self._explore, opening))
        elif opening < self._hi:
            self._probing_refused += 1
            self._lo = max(self._lo, opening)  # a bisection probe: refused
        else:
            # Refused at a gap already served: the window is longer.  Once,
            # it is just longer (a fixed window seen from a later request);
            # again before an opening was served, the bounds were wrong (a
            # window's edge fell inside the exploration): explore again.
            self._probing_refused += 1
            within = self._burst_served
            if 0 < within < self._b:
                # Refused inside a burst, after fewer than B were served in
                # it: B was counted over a window's edge (a fixed window, a
                # first burst that straddled two of them).
                self._shrink(within)
                return self.next_request_at()
            self._lo = opening
            if self._widened:
                self._hi = None
                self._explore = _grown(opening)
                if self._siblings is not None:
                    self._siblings.known = None  # wrong for every sibling
            else:
                self._hi = min(MAX_GAP, opening * WIDEN)
            self._widened = True
        return self.next_request_at()

    def parked(self, until: float) -> None:
        """The next request goes at *until* at the earliest: forget what it will."""
        self._forget_before(until - self._horizon())

    # -- the model -------------------------------------------------------------

    def _publish(self) -> None:
        """A window was found served: tell the siblings, explore no more."""
        siblings = self._siblings
        if siblings is None or self._hi is None:
            return
        if siblings.explorer is self:
            siblings.explorer = None
        siblings.known = (self._lo, self._hi)

    def _leader(self) -> WindowBudget | None:
        """The sibling exploring for this budget, if it should wait for one."""
        siblings = self._siblings
        if siblings is None or self._b is None or self._hi is not None:
            return None
        if siblings.known is not None:
            # A sibling found a window: start from it.  (A limit of this
            # endpoint's own that is shorter is found by the probes that
            # lower ``lo`` now and then.)
            lo, hi = siblings.known
            self._lo, self._hi = min(lo, hi), hi
            return None
        if siblings.explorer is None:
            siblings.explorer = self
        explorer = siblings.explorer
        return None if explorer is self else explorer

    def _gap(self) -> float:
        """The gap the next opening request goes at."""
        if self._hi is None:
            return self._explore
        hi, lo = self._hi, self._lo
        # Closing in costs a 429 now and then: allowed while they stay rare,
        # and always while hi may still be far (a quarter) above the window.
        rare = self._probing_refused < PROBE_SHARE * self._requests
        if lo > 0 and (hi / lo >= WIDEN or (rare and hi / lo > CONVERGED)):
            return math.sqrt(lo * hi)
        return hi * (1 + MARGIN)

    def _bound(self) -> float:
        """The gap known (or, exploring, tried) to serve: what gates a request."""
        return self._hi * (1 + MARGIN) if self._hi is not None else self._explore

    def _plan(self) -> tuple[float, float | None]:
        """(When the next request may go, the gap it opens at or None in a burst).

        A request is gated when the ``B``-th latest served one is less than
        the bound ago: it then goes at the gap (which may probe shorter than
        the bound).  Otherwise the window has room: it goes at the floor.
        """
        if self._b is None:
            return self._last_sent + self._spacing, None
        at = self._last_sent + FLOOR
        leader = self._leader()
        if leader is not None:
            # Refused while a sibling explores: go after its next probe, and
            # learn what it learns meanwhile.
            return max(at, leader.next_request_at() + FOLLOW), None
        served = self._served or ()
        if len(served) >= self._b:
            oldest = served[-self._b]
            if oldest + self._bound() >= at:
                return max(at, oldest + self._gap()), self._gap()
            return at, None
        if self._streak == 0:
            # Refused with fewer than B served to count from (a restart into
            # a full window): wait the gap from the refusal.
            return max(at, self._last_sent + self._gap()), self._gap()
        return at, None

    def _refused_in_burst(self) -> None:
        assert self._b is not None
        within = self._burst_served
        if 0 < within < self._b:
            # The burst Duo took is this one's served requests.  The window
            # was bounded counting from an older request: bisect it again.
            self._shrink(within)
        elif self._hi is not None:
            self._hi = min(MAX_GAP, self._hi * WIDEN)
        else:
            # Still exploring, and the window held more than the gap tried
            # (a first burst sent faster than the first gap): go on.
            self._explore = _grown(self._explore)

    def _shrink(self, burst: int) -> None:
        """Fewer requests fit a window than believed: *burst* do.

        The window was bounded counting from an older request: what was
        refused says less now.  A bucket's window shrinks with its burst,
        so ``lo`` shrinks in proportion and the bisection resumes.
        """
        assert self._b is not None
        self._lo = min(self._lo / GROW, self._lo * burst / self._b)
        self._b = burst

    def _probe(self) -> None:
        """Served long enough in a row: try whether the limit was raised."""
        self._streak = 0
        self._probe_after = min(PROBE_AFTER_CAP, self._probe_after * 2)
        if self._probe_next == 0 and self._b is not None:
            self._burst_tried = self._b
            self._b += 1
        elif self._hi is not None:
            self._lo = min(self._lo, self._hi) / GROW
        self._probe_next = 1 - self._probe_next

    def _take(self, now: float) -> tuple[float, float | None]:
        pending, self._pending = self._pending, None
        return pending if pending is not None else (now, None)

    def _horizon(self) -> float:
        longest = self._hi if self._hi is not None else self._explore
        return max(RATE_WINDOW, 2 * longest)

    def _remember(self, sent: float) -> None:
        if self._served is None:
            self._served = array("d")
        served = self._served
        served.append(sent)
        if len(served) > MAX_REMEMBERED:
            del served[: len(served) - MAX_REMEMBERED]
        self._forget_before(sent - self._horizon())

    def _forget_before(self, moment: float) -> None:
        self._served = forget_before(self._served, moment)
