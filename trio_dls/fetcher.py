"""The fetcher task of one (account, endpoint), and MSP account discovery.

Theory of operation
-------------------
A fetcher runs the pure paging rules (``trio_dls.duo.paging``) against Duo:

1. Its cursor comes from the store (or a DLS checkpoint, or the configured
   offset on a first start).
2. ``plan_request`` says what to ask; nothing to ask means caught up: the
   fetcher *parks* until ``api.timeout`` seconds from now and plans again
   then.  Parking returns ``Parked`` to the account's scheduler
   (``trio_dls.supervisor``) with ``_Loop``, the plain data the loop goes on
   from (its cursor, where a first start begins, the ``_Run`` with its
   budget, backoffs and failure streak): between polls a fetcher is that
   data alone, with no task, frame or cancel scope of its own.
3. The ``WindowBudget`` says when (``trio_dls.duo.window``); then the
   fetcher waits for a ticket from the ``Admission`` (the global bound on
   pages held, fair to every fetcher, and for an MSP parent the pace its
   children share) and holds it from the
   request to the page's acknowledgement; the request goes out through
   ``DuoApi``.  Every wait comes before the ticket: a fetcher that waits, or
   is parked between polls, holds no page and no thread.
   A 429 teaches the budget Duo's limit; any other failure waits out a
   ``Backoff``.  Neither is ever fatal; only rejected credentials are.  An MSP
   child that Duo refuses (403/404: deleted, access revoked) waits a long
   backoff, from a minute to an hour, and tries again: one child's refusal
   stops neither its siblings nor the daemon (``trio_dls.duo.client`` says
   which refusals are the parent's, and fatal).
4. ``apply_response`` turns the answer into records and the next cursor; the
   records go to every mapped sender as one page (``Outputs.deliver`` returns
   once all of them wrote it), and only then is the cursor saved.
5. Fetching ahead: while page n is delivered, page n+1 is asked for, since
   its request depends on page n's answer alone (its cursor), not on the
   delivery.  One page ahead at most, asked in a task of a nursery that lasts
   one page's delivery, and only when it costs no wait: page n did not
   catch up, page n's cursor is to be saved (an unsettled first request's
   is not), the next request may go within ``PARK_LONGER_THAN``
   (the fetcher's pace and backoff, an MSP parent's shared pace) and a ticket
   is free now (``Admission.admit_nowait``).  Otherwise nothing is asked
   ahead, and once page n is saved the loop goes on as it always did: it
   plans, parks or waits its turn for a ticket.  The page ahead is delivered
   only after page n's cursor is saved, so what is saved, and when, is as
   without fetching ahead: a crash resumes from the last saved cursor, and
   the page ahead, never delivered, is asked again.

   Why a ticket without waiting: a fetcher that waited for ticket n+1 while
   holding ticket n could wait for ever if every ticket were held by such
   fetchers, or by pages stuck with a stalled server.  Taking only a ticket
   free at once rules that out by construction, whatever the senders do,
   and leaves fairness as it was: a free ticket is one no fetcher waits for
   (trio's semaphore hands a released place to its first waiter), so asking
   ahead only uses places that would stay idle.  With many fetchers busy,
   none asks ahead; with few, each holds up to two pages, and the global
   bound of ``max_pages_in_memory`` holds either way.

What happens is told to the fetcher's observer (``trio_dls.observe``) as it
happens (with fetching ahead, page n+1's ``RequestServed`` may come before
page n's ``PageDelivered`` and ``Behind``), every occurrence:
``RequestServed`` per answer, ``Backlog`` and ``CaughtUp``, ``PageDelivered``
and ``Behind`` per page, ``RateLimited`` per 429, ``ApiFailed`` per failure (with
how many in a row) and ``ApiRecovered`` at the end of a run of them,
``ChildRefused`` per refusal of a child's request, ``PlanningWarning`` and
``ClockSkew``.  This module writes no log line: what
is worth saying, and how often (a persisting failure at a falling rate), is
the log observer's decision.

"Now", for planning, is the earlier of this host's clock and Duo's (learnt
from the ``Date`` of every answer, ``DuoClock``, shared by all fetchers): a
fast local clock must not close windows over records Duo does not serve yet.
A first start whose offset reaches Duo's retention follows the retention
floor until its first page is in, so a Duo outage at the first start costs no
records and logs no "not fetched" warning.

While a backlog exists the fetcher loops without waiting beyond the budget, so
catching up takes as long as Duo's rate limit requires and no longer.

A stop cancels the waits and the Duo call (reads have no side effects) but
never a delivery or a save: a clean stop resends nothing at the next start.
The request ahead is cancelled too, and its ticket given back: its page was
not delivered, and the next start asks for it again.  Its failures are a
request's like any other (a 429 teaches the budget, a failure backs off);
the loop then goes on as after any failed request.  Rejected credentials
met ahead are raised once page n is saved.
A stop while parked drops the parked fetcher: its cursor is saved, and it
held nothing else.

Times: the paging rules take the wall clock (UTC epoch seconds, ``clock``);
waits use trio's clock.  Tests inject a ``clock`` tied to trio's virtual one.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

import attrs
import trio

from trio_dls.checkpoints import CheckpointStore
from trio_dls.duo.admission import Admission, Ticket
from trio_dls.duo.client import (
    AccountRefusedError,
    CredentialsRejectedError,
    DuoApi,
    RateLimitedError,
    TransientApiError,
    enrich,
    failure_kind,
)
from trio_dls.duo.clock import DuoClock
from trio_dls.duo.cursors import Cursor, units_per_second
from trio_dls.duo.pacing import Backoff
from trio_dls.duo.paging import (
    Limits,
    MalformedResponseError,
    Request,
    Step,
    apply_response,
    first_cursor,
    plan_request,
    reached_time,
)
from trio_dls.duo.window import Siblings, WindowBudget
from trio_dls.endpoints import EVENTTYPES
from trio_dls.observe import LogObserver, Observer
from trio_dls.observe.events import (
    ApiFailed,
    ApiRecovered,
    Backlog,
    Behind,
    CaughtUp,
    ChildRefused,
    ClockSkew,
    ClockState,
    PageDelivered,
    PlanningWarning,
    RateLimited,
    RequestServed,
)
from trio_dls.observe.reporting import Streak
from trio_dls.supervisor import AccountRef, FetcherContext, Page, Parked

if TYPE_CHECKING:
    from trio_dls.config import Config
    from trio_dls.endpoints import Endpoint

ApiFactory = Callable[[AccountRef], DuoApi]


@attrs.frozen
class FetchSettings:
    """How fetchers pace themselves and where a first start begins."""

    poll_interval: float
    offset_days: float
    limits: Limits = attrs.Factory(Limits)

    @classmethod
    def from_config(cls, config: Config) -> FetchSettings:
        """Read the settings of *config*."""
        api = config.dls_settings.api
        return cls(poll_interval=api.timeout, offset_days=api.offset)


# Beyond this many seconds between the clocks, they disagree (and agree again
# once within the lower figure): the gap keeps a clock that wavers about one
# figure from changing state at every plan.
CLOCK_SKEW_WARNING: Final = 10.0
CLOCK_SKEW_AGREED: Final = 5.0

# A child Duo refuses is asked again after this long, growing to the cap: a
# deletion is for good, a revoked access may be restored, and either way an
# hour's delay costs nothing (the cursor waits) while sparing Duo's limit,
# which the parent's children share.
REFUSED_RETRY_FIRST: Final = 60.0
REFUSED_RETRY_CAP: Final = 3600.0

# A fetcher whose next request is further off than this parks until then (it
# holds no task, no slot among the fetchers running); a shorter wait (the
# pace while a backlog pages freely) is slept through.
PARK_LONGER_THAN: Final = 1.0


class _ClockWatch:
    """Whether this host's clock and Duo's disagree, told at every reading."""

    def __init__(self) -> None:
        self.state = ClockState.IN_STEP

    def note(self, local: float, duo: float | None, observer: Observer) -> None:
        if duo is None:
            return
        # Duo's clock is known to the second, rounded down: a clock in step
        # reads up to a second "ahead".
        skew = local - duo
        if abs(skew) > CLOCK_SKEW_WARNING:
            self.state = ClockState.AHEAD if skew > 0 else ClockState.BEHIND
        elif abs(skew) < CLOCK_SKEW_AGREED:
            self.state = ClockState.IN_STEP
        observer(ClockSkew(skew, self.state))


@attrs.define
class _Clocks:
    """This host's and Duo's clock read together: the bounds of one plan."""

    now: float
    """The earlier of the two (where windows end)."""
    latest: float
    """The later of the two (where Duo's retention ends)."""


@attrs.define
class Fetching:
    """The fetcher task, as the supervisor's ``Fetcher`` callable.

    ``clock`` is the wall clock (UTC epoch seconds); ``duo_clock`` what is
    known of Duo's, shared by every fetcher, since one Duo deployment has one.
    ``observer`` is told what every fetcher does (see the module docstring).
    ``admission`` holds the global bound on pages and the shared pace of an
    MSP parent's children (``trio_dls.duo.admission``), also shared by all.
    """

    api_for: ApiFactory
    store: CheckpointStore
    settings: FetchSettings
    host: str
    clock: Callable[[], float] = time.time
    rng: random.Random = attrs.field(factory=random.Random)
    duo_clock: DuoClock = attrs.Factory(DuoClock)
    observer: Observer = attrs.Factory(LogObserver)
    admission: Admission = attrs.Factory(Admission)
    _clock_watch: _ClockWatch = attrs.field(factory=_ClockWatch, init=False)
    # The endpoints of the plain account explore Duo's window once between
    # them (``trio_dls.duo.window``); an MSP parent's children are paced by
    # the admission's shared budgets instead, and keep nothing here.
    _siblings: Siblings = attrs.field(factory=Siblings, init=False)

    def clocks(self, *, watch: bool = True) -> _Clocks:
        """Read this host's clock and Duo's (telling the skew, if *watch*)."""
        local = self.clock()
        duo = self.duo_clock.now(trio.current_time())
        if watch:
            self._clock_watch.note(local, duo, self.observer)
        if duo is None:
            return _Clocks(local, local)
        return _Clocks(min(local, duo), max(local, duo))

    def first_start(self, endpoint: Endpoint, clocks: _Clocks) -> Cursor:
        """Return where a first start begins: the offset, within Duo's retention."""
        return first_cursor(
            endpoint,
            clocks.now,
            self.settings.offset_days,
            self.settings.limits,
            latest=clocks.latest,
        )

    async def __call__(self, context: FetcherContext) -> Parked | None:
        """Fetch (account, endpoint) of *context* until caught up or told to stop."""
        account, endpoint = context.account, context.endpoint
        run = self.new_run(context)
        cursor = await self.store.load(endpoint, account.account_id)
        # An offset that reaches Duo's retention means "all Duo has": until a
        # first page is in, the start follows the retention floor as it moves
        # (a Duo outage at the first start then skips nothing that is still
        # served).  A shorter offset is a fixed point in time.
        follow_floor = self.settings.offset_days >= self.settings.limits.retention_days
        first = None
        if cursor is None and not follow_floor:
            first = self.first_start(endpoint, self.clocks())
        return await _Loop(self, run, cursor, first)(context)

    def new_run(self, context: FetcherContext, sent: int = 0) -> _Run:
        """A run for *context*: a first budget, no failure, *sent* records so far."""
        return _Run(
            context=context,
            api=self.api_for(context.account),
            observer=self.observer,
            budget=WindowBudget(
                rng=self.rng,
                siblings=None if context.account.account_id else self._siblings,
            ),
            rng=self.rng,
            duo_clock=self.duo_clock,
            admission=self.admission,
            sent=sent,
        )


class _Plain:
    """A fetcher parked with nothing to remember but its cursor.

    Caught up, with no failure and a budget Duo never refused, a fetcher's
    loop and run (its budget, its Duo client) would only be made again as
    they are: a parked MSP child keeps, per endpoint, this and its cursor
    (``docs/scale.md``), and its loop is made again when due.
    """

    __slots__ = ("cursor", "fetching", "sent")

    def __init__(self, fetching: Fetching, cursor: Cursor, sent: int) -> None:
        self.fetching = fetching
        self.cursor = cursor
        self.sent = sent

    async def __call__(self, context: FetcherContext) -> Parked | None:
        """Go on for *context* from the cursor saved."""
        fetching = self.fetching
        run = fetching.new_run(context, self.sent)
        return await _Loop(fetching, run, self.cursor, None)(context)


@attrs.define(eq=False)
class _Loop:
    """A fetcher's loop, and all it keeps between polls (plain data, no task).

    Calling it runs the loop until caught up, when it returns itself,
    ``Parked`` until the next poll, or until a stop, when it returns None.
    A page asked ahead lives in the loop's frame only, never in this data: a
    parked fetcher holds no page.
    """

    fetching: Fetching
    run: _Run
    cursor: Cursor | None
    """The saved cursor; None until a first page is in."""
    first: Cursor | None
    """Where a first start begins; None while it follows the retention floor."""

    def park(self) -> Parked:
        """Tell the poll caught up and park until the next one.

        A fetcher that has nothing to remember but its cursor (``_Run.plain``)
        parks as that alone (``_Plain``).
        """
        run = self.run
        run.caught_up()
        until = trio.current_time() + max(0.0, self.fetching.settings.poll_interval)
        run.budget.parked(until)
        if self.cursor is not None and self.first is None and run.plain(until):
            return Parked(until, _Plain(self.fetching, self.cursor, run.sent))
        return Parked(until, self)

    def parked(self, until: float) -> Parked:
        """Park until *until* (trio's clock), keeping only what will matter then."""
        self.run.budget.parked(until)
        return Parked(until, self)

    def current(self, endpoint: Endpoint, clocks: _Clocks) -> Cursor:
        """Where the next request starts: the saved cursor, or the first start."""
        if self.cursor is not None:
            return self.cursor
        if self.first is not None:
            return self.first
        return self.fetching.first_start(endpoint, clocks)

    async def __call__(self, context: FetcherContext) -> Parked | None:
        """Fetch for *context* until caught up (parked) or told to stop (None)."""
        # The page asked ahead while the one before was delivered, if any:
        # it holds its own ticket, given back here if it is never delivered.
        page: _Fetched | None = None
        try:
            while not context.stop.is_set:
                if page is None:
                    fetched = await self.fetch(context)
                    if isinstance(fetched, Parked):
                        return fetched
                    if fetched is None:
                        continue  # failed (the next admission waits), or stopped
                    page, fetched = fetched, None
                current, page = page, None
                # Page n's ticket is given back once the request ahead ended
                # too: until then its records are still referenced.
                with current.ticket:
                    page = await self.hand_on(context, current.step)
                    caught_up = current.step.caught_up
                    # The page is out: no record stays referenced once its
                    # ticket is given back, nor while waiting.
                    del current
                if page is None and caught_up:
                    return self.park()
        finally:
            if page is not None:
                page.ticket.release()
        return None

    async def fetch(self, context: FetcherContext) -> _Fetched | Parked | None:
        """Plan, wait and ask for the next page: the page, parked, or None.

        None when the request failed (the next admission waits) or a stop came.
        """
        fetching, run = self.fetching, self.run
        clocks = fetching.clocks()
        request = plan_request(
            context.endpoint,
            self.current(context.endpoint, clocks),
            clocks.now,
            fetching.settings.limits,
            latest=clocks.latest,
        )
        if request is None:
            return self.park()
        # A wait longer than a moment (the pace Duo allows, a backoff)
        # is parked through, as the poll is: the fetcher holds no task
        # and no running slot meanwhile (``trio_dls.supervisor``).
        due = run.due()
        if due - trio.current_time() > PARK_LONGER_THAN:
            return self.parked(due)
        # Every wait (the pace, a backoff, a place for the page) comes
        # before the ticket: a ticket is held from the request to the
        # page's acknowledgement only, so pages in memory stay bounded.
        ticket = await run.admit()
        if ticket is None:
            return None  # stopped while waiting
        step = None
        try:
            step = await run.ask(request)
        finally:
            if step is None:  # failed, stopped, or cancelled: no page held
                ticket.release()
        return None if step is None else _Fetched(ticket, step)

    async def hand_on(self, context: FetcherContext, step: Step) -> _Fetched | None:
        """Deliver *step*'s page, save its cursor, and ask for the next meanwhile.

        Return the next page if it was asked ahead and came, to be delivered
        once this one's cursor is saved.  A stop cancels the request ahead,
        never the delivery or the save; rejected credentials met ahead are
        raised once this page is saved.
        """
        fetching, run = self.fetching, self.run
        account, endpoint = context.account, context.endpoint
        observer = fetching.observer
        # Planning's warnings travel in the step: they are told once,
        # when the cursor that carries their decision is saved, not at
        # each retry.
        for warning in step.warnings:
            observer(PlanningWarning(account, endpoint, warning))
        if not step.caught_up:
            observer(Backlog(account, endpoint))
        # An unsettled first request taught only Duo's clock: a first start
        # keeps following the floor, and its cursor is not saved.
        saved = step.settled or self.cursor is not None
        ahead = _Ahead()
        try:
            async with trio.open_nursery() as nursery:
                if saved and not step.caught_up:
                    nursery.start_soon(self.fetch_ahead, context, step.cursor, ahead)
                position = step.cursor.mintime / units_per_second(endpoint)
                if step.records:
                    await run.deliver(step.records, fetching.host, position)
                if saved:
                    await fetching.store.save(endpoint, account.account_id, step.cursor)
                    self.cursor = step.cursor
                    self.first = None  # no longer needed: not kept while idle
                    # Read again: the request and the delivery took time.
                    # Only planning watches the clocks.
                    now = fetching.clocks(watch=False).now
                    reached = reached_time(endpoint, step.cursor) / units_per_second(
                        endpoint
                    )
                    observer(
                        Behind(account, endpoint, now - position, position, reached)
                    )
        except BaseException:
            ahead.release()
            raise
        if ahead.fatal is not None:
            raise ahead.fatal
        return ahead.page

    async def fetch_ahead(
        self, context: FetcherContext, cursor: Cursor, ahead: _Ahead
    ) -> None:
        """Ask for the page after *cursor* into *ahead*, if it may go at once.

        Only if the next request may go within ``PARK_LONGER_THAN`` (the
        fetcher's pace, its backoff, an MSP parent's shared pace) and a ticket
        is free now: otherwise nothing is asked, and the loop goes on after
        the delivery as it would without asking ahead (parks, or waits its
        turn for a ticket).  A failure is handled as any request's is.
        """
        run, fetching = self.run, self.fetching
        endpoint = context.endpoint
        due = max(run.due(), run.admission.next_request_at(endpoint))
        wait = due - trio.current_time()
        if wait > PARK_LONGER_THAN or not await context.stop.sleep(wait):
            return
        clocks = fetching.clocks()
        request = plan_request(
            endpoint,
            cursor,
            clocks.now,
            fetching.settings.limits,
            latest=clocks.latest,
        )
        if request is None:
            return  # caught up after all: the loop plans again, and parks
        ticket = run.admit_nowait()
        if ticket is None:
            return  # every page place is taken or waited for
        ahead.ticket = ticket
        try:
            step = await run.ask(request)
        except CredentialsRejectedError as exc:
            # Fatal, but not before the page being delivered is saved.
            ahead.fatal = exc
            step = None
        if step is None:
            ahead.release()
        else:
            ahead.page = _Fetched(ticket, step)


@attrs.define(eq=False)
class _Fetched:
    """A page asked for and answered, and the ticket it holds until acknowledged."""

    ticket: Ticket
    step: Step


@attrs.define(eq=False)
class _Ahead:
    """What asking ahead came to: a page, nothing, or rejected credentials."""

    ticket: Ticket | None = None
    """Held from the request ahead until its page is handed on, or it failed."""
    page: _Fetched | None = None
    fatal: CredentialsRejectedError | None = None

    def release(self) -> None:
        """Give the ticket back: the page will not be delivered."""
        if self.ticket is not None:
            self.ticket.release()
        self.ticket = self.page = None


@attrs.define
class _Run:
    """The state of one fetcher between requests.

    What only failures need (the two backoffs, the streak of failures) is
    made at the first failure and dropped at the next success: a thousand
    healthy idle children keep none of it.
    """

    context: FetcherContext
    api: DuoApi
    observer: Observer
    budget: WindowBudget
    rng: random.Random
    duo_clock: DuoClock
    admission: Admission
    backoff: Backoff | None = None
    """Since the last success, for transient failures; None while none failed."""
    refused: Backoff | None = None
    """Since the last success, for a refused child; None while none was refused."""
    streak: Streak | None = None
    sent: int = 0
    # When the next request may go at the earliest (trio's clock): after a
    # failure's backoff or a 429.
    resume_at: float = float("-inf")

    def caught_up(self) -> None:
        context = self.context
        self.observer(CaughtUp(context.account, context.endpoint, self.sent))

    def plain(self, until: float) -> bool:
        """Whether, parked until *until*, nothing but the cursor would matter.

        No failure is being backed off, nothing waits beyond *until*, Duo
        never refused the budget and it remembers no request served (once
        parked until *until*): a new budget would decide as this one.
        """
        return (
            self.backoff is None
            and self.refused is None
            and self.streak is None
            and self.resume_at <= until
            and not self.budget.taught
            and not self.budget.remembered
        )

    def due(self) -> float:
        """When the next request may go at the earliest (trio's clock)."""
        return max(self.budget.next_request_at(), self.resume_at)

    async def admit(self) -> Ticket | None:
        """Wait until a request may go, then for its ticket; None if a stop came."""
        stop = self.context.stop
        # Again after each sleep: what the budget waits for may have moved
        # meanwhile (a sibling exploring Duo's window was refused again).
        while (wait := self.due() - trio.current_time()) > 0:
            if not await stop.sleep(wait):
                return None
        if stop.is_set:
            return None
        ticket = None
        with stop.cancels():
            ticket = await self.admission.admit(
                self.context.endpoint, self.context.outputs.server_ids
            )
        return ticket  # noqa: RET504 - None when a stop cancelled the wait

    def admit_nowait(self) -> Ticket | None:
        """Return a ticket if one is free now (for a page asked ahead), else None."""
        return self.admission.admit_nowait(
            self.context.endpoint, self.context.outputs.server_ids
        )

    async def ask(self, request: Request) -> Step | None:
        """Send *request*; None if it failed (the next admission waits) or stopped."""
        stop = self.context.stop
        account, endpoint = self.context.account, self.context.endpoint
        sent = trio.current_time()
        self.budget.sent(sent)
        try:
            with stop.cancels():
                answer = await self.api.get(request.path, request.params_dict())
                if answer.date is not None:
                    self.duo_clock.observe(answer.date, trio.current_time())
                step = apply_response(request, answer.body, duo_now=answer.date)
        except CredentialsRejectedError as exc:
            who = f"account {account.name}" + (
                f" (child {account.account_id})" if account.account_id else ""
            )
            msg = f"{who}, endpoint {endpoint}: {exc}"
            raise CredentialsRejectedError(msg) from None
        except RateLimitedError:
            now = trio.current_time()
            shared = self.admission.refused(endpoint, now, sent=sent)
            # An MSP child's 429 is waited out by the admission, in turn with
            # the other children; an ordinary account's, here.
            budget = shared or self.budget
            resume = (
                budget.next_request_at()
                if shared
                else budget.rate_limited(now, sent=sent)
            )
            self.resume_at = resume
            self.observer(
                RateLimited(
                    account,
                    endpoint,
                    per_minute=budget.requests_per_minute,
                    retry_in=max(0.0, resume - now),
                    shared=shared is not None,
                )
            )
            return None
        except AccountRefusedError as exc:
            if self.refused is None:
                self.refused = Backoff(
                    rng=self.rng, first=REFUSED_RETRY_FIRST, cap=REFUSED_RETRY_CAP
                )
            delay = self.refused.failed()
            self.failed(ChildRefused, failure_kind(exc), str(exc), delay)
            return None
        except (TransientApiError, MalformedResponseError) as exc:
            if self.backoff is None:
                self.backoff = Backoff(rng=self.rng)
            delay = self.backoff.failed()
            self.failed(ApiFailed, failure_kind(exc), str(exc), delay)
            return None
        if stop.is_set:
            return None
        now = trio.current_time()
        self.budget.accepted(now)
        self.admission.served(endpoint, now)
        self.observer(RequestServed(account, endpoint))
        # Succeeded: the next failure waits as the first did.
        self.backoff = self.refused = None
        streak, self.streak = self.streak, None
        failures, since = (0, 0.0) if streak is None else streak.succeeded()
        if failures:
            self.observer(
                ApiRecovered(
                    account,
                    endpoint,
                    failures=failures,
                    lasted=now - since,
                    at=now,
                )
            )
        return step

    def failed(
        self,
        event: type[ApiFailed | ChildRefused],
        kind: str,
        message: str,
        delay: float,
    ) -> None:
        """Count a failed request and tell it as *event*; the next in *delay* s.

        A refused child (``ChildRefused``) and any other failure (``ApiFailed``)
        are told with the same facts; only what the observers make of them differs.
        """
        now = trio.current_time()
        self.resume_at = now + delay
        if self.streak is None:
            self.streak = Streak()
        streak = self.streak
        streak.failed(kind, now)
        self.observer(
            event(
                self.context.account,
                self.context.endpoint,
                kind=kind,
                message=message,
                failures=streak.failures,
                since=streak.since,
                at=now,
                retry_in=delay,
            )
        )

    async def deliver(
        self, records: tuple[dict[str, Any], ...], host: str, position: float
    ) -> None:
        """Enrich *records* as DLS did and hand them to every mapped sender.

        *position* is where the cursor that follows them stands.
        """
        context = self.context
        eventtype = EVENTTYPES[context.endpoint]
        child = context.account.account_id
        page = tuple(enrich(record, eventtype, host, child) for record in records)
        await context.outputs.deliver(Page(context.account, context.endpoint, page))
        self.sent += len(page)
        self.observer(
            PageDelivered(context.account, context.endpoint, len(page), position)
        )
