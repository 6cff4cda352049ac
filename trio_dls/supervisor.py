"""The supervision tree: who runs, who feeds whom, and how it all stops.

Theory of operation
-------------------
``serve`` opens the only root nursery.  Inside it:

* one **sender** task per server that some endpoint is mapped to; it owns the
  connection to that server and reads ``Delivery`` items from one bounded
  memory channel, whose send end every fetcher mapped to it shares (one
  ``Outputs`` per endpoint, for all accounts).  The tree keeps that end open
  until every account has ended, so that fetchers come and go freely and no
  fetcher holds an end (a clone) of its own;
* one **account** task per Duo account with work to do (the account itself,
  or each MSP child), with a nursery holding one **fetcher** task per mapped
  endpoint that has work to do.  Accounts live in an ``AccountTree``, keyed by account
  id, each in its own cancel scope and with its own ``StopSignal``: they are
  added and removed while the rest runs, by the optional ``AccountRefresh``
  task that ``serve`` starts beside them (the tree knows nothing of what
  decides: for MSP children, the listing in ``trio_dls.duo.discovery``).

A fetcher that is caught up does not sleep as a task until its next poll: it
*parks*, returning ``Parked`` (when to go on, and a callable over the plain
data it needs to go on: its cursor, its budgets; not a suspended coroutine).
So does one whose next request is more than a second off (the pace Duo
allows, a backoff).  The account task is the account's scheduler
(``_Schedule``): it keeps the parked fetchers in a heap (at most one entry
per endpoint) and starts the due ones in the account's nursery, which is
open only while one of them runs.  Once every fetcher is parked, the account
parks too: its task ends, and ``AccountTree.run_parked``, one task for all
accounts, starts it again when its earliest fetcher is due.  An MSP parent
with a thousand caught-up children thus holds one sleeping task between
polls, not six thousand, and each child costs a few KB of Python memory, its
schedule and stop signal (``docs/scale.md``).

At most ``Routing.max_running`` fetchers run at once, all accounts together
(four per page that may be held, ``api.max_pages_in_memory``): an account
task takes a slot, first come first served, before it starts a due fetcher,
which gives it back when it parks or ends.  A fetcher waiting for a slot is
a heap entry, not a task, so the start of a thousand children, all due at
once, is not five thousand tasks waiting in line for a ticket.

A fetcher hands each page to ``Outputs.deliver``, which puts one ``Delivery``
into the channel of every mapped sender and returns only when each of them has
set ``Delivery.done`` (the page is fully written).  Only then may the fetcher
save its cursor and ask Duo for more.  Channels have no buffer, so a stalled
server stops its fetchers and memory stays flat.

Stopping (SIGTERM, SIGINT, or any ``shutdown_trigger``) is graceful: the
``StopSignal`` cancels what fetchers registered with ``StopSignal.cancels``
(their Duo calls and waits; reads have no side effects), while deliveries
already under way are left to finish.  Parked fetchers are dropped (they
hold nothing to finish: their cursors are saved), running ones return, the
accounts end, the tree closes the channels' send ends, senders drain and
return, and ``serve`` returns.  A grace deadline
bounds all of this; when it passes, whatever is still running is cancelled
and the page it held is sent again at the next start (the cursor was not
saved).  A second signal cancels at once.

Removing an account is the same clean stop for that account alone: its stop
signal is set, a page in delivery is finished, and after the grace its scope
is cancelled, abandoning a delivery before its acknowledgement, so that its
cursor is not saved.  Nothing is lost; nothing is sent twice unless the grace
ran out.  Its cursors stay where they are, for when it comes back.

Fetchers and senders are given narrow settings (``Routing``: which servers
each endpoint goes to; a sender's server and log format), not the whole
config, so that a reload can replace them.

A task that meets a failure it cannot handle raises; the exception cancels the
whole tree and leaves ``serve`` in an exception group for the CLI to report.
"""

from __future__ import annotations

import contextlib
import functools
import heapq
import logging
import math
from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Final, Generic, TypeVar

import attrs
import trio

from trio_dls.config import Config, Server
from trio_dls.endpoints import ENDPOINT_INDEX, Endpoint
from trio_dls.observe.events import AccountAdded, AccountRemoved
from trio_dls.siem.formats import JsonStyle, LogFormat

if TYPE_CHECKING:
    from trio_dls.observe.observer import Observer

log = logging.getLogger(__name__)
T = TypeVar("T")

DEFAULT_GRACE: Final = 5.0  # seconds; below Docker's 10 s before SIGKILL
# Fetchers running at once per page that may be held (api.max_pages_in_memory):
# enough waiting for each ticket that none is ever idle for want of one.
RUNNING_PER_PAGE: Final = 4
# Endpoints by their ``ENDPOINT_INDEX``.
_ENDPOINTS: Final = tuple(ENDPOINT_INDEX)


class StopSignal:
    """The request to stop fetching, and the cancel scopes it ends.

    A signal made by ``child`` is set when its parent is: an account's signal
    stops that account alone, the tree's stops them all.
    """

    __slots__ = ("_children", "_event", "_parent", "_scopes", "_set")

    def __init__(self) -> None:
        """Start unset, with no scopes registered."""
        self._set = False
        # Made when first waited for (the tree's, the sender's): an account's
        # signal is only ever read and set.
        self._event: trio.Event | None = None
        # Both made when first needed: a thousand idle children's signals
        # register no scope between polls and have no children.
        self._scopes: set[trio.CancelScope] | None = None
        self._children: set[StopSignal] | None = None
        self._parent: StopSignal | None = None

    @property
    def is_set(self) -> bool:
        """Whether a stop was asked for."""
        return self._set

    def set(self) -> None:
        """Ask to stop: cancel every registered scope, wake every waiter."""
        self._set = True
        if self._event is not None:
            self._event.set()
        for scope in self._scopes or ():
            scope.cancel()
        for child in list(self._children or ()):
            child.set()

    async def wait(self) -> None:
        """Return once a stop was asked for."""
        if self._event is None:
            self._event = trio.Event()
            if self._set:
                self._event.set()
        await self._event.wait()

    async def sleep(self, seconds: float) -> bool:
        """Sleep *seconds* unless a stop comes first; return whether to go on."""
        # One cancel scope, whose deadline is the end of the sleep: what
        # ``cancels()`` around ``trio.sleep`` does with two scopes and a
        # generator.  Thousands of idle fetchers sleep here between polls.
        scope = trio.CancelScope(deadline=trio.current_time() + max(0.0, seconds))
        if self.is_set:
            scope.cancel()
        self._register(scope)
        try:
            with scope:
                await trio.sleep_forever()
        finally:
            self._forget(scope)
        return not self.is_set

    async def wait_for(self, event: trio.Event, deadline: float) -> None:
        """Wait for *event* until *deadline* (trio's clock), unless a stop comes."""
        # As ``sleep``: one scope, no generator; every account waits here.
        scope = trio.CancelScope(deadline=deadline)
        if self.is_set:
            scope.cancel()
        self._register(scope)
        try:
            with scope:
                await event.wait()
        finally:
            self._forget(scope)

    def child(self) -> StopSignal:
        """Return a signal that is set when this one is (or on its own)."""
        child = StopSignal()
        child._parent = self
        if self._children is None:
            self._children = set()
        self._children.add(child)
        if self.is_set:
            child.set()
        return child

    def detach(self) -> None:
        """Stop following the parent (the account is gone; forget it)."""
        parent = self._parent
        if parent is not None and parent._children is not None:  # noqa: SLF001
            parent._children.discard(self)  # noqa: SLF001 - same class
        self._parent = None

    @contextlib.contextmanager
    def cancels(self) -> Iterator[trio.CancelScope]:
        """Run the body in a scope that a stop cancels (at once if already set)."""
        scope = trio.CancelScope()
        if self.is_set:
            scope.cancel()
        self._register(scope)
        try:
            with scope:
                yield scope
        finally:
            self._forget(scope)

    def _register(self, scope: trio.CancelScope) -> None:
        if self._scopes is None:
            self._scopes = set()
        self._scopes.add(scope)

    def _forget(self, scope: trio.CancelScope) -> None:
        if self._scopes is not None:
            self._scopes.discard(scope)
            if not self._scopes:
                # A set keeps the table it grew to; an idle account's signal
                # keeps none, rather than one sized for all its fetchers.
                self._scopes = None


@attrs.frozen
class AccountRef:
    """The Duo account a fetcher works for."""

    name: str
    # The MSP child's account id, sent as ``account_id`` with every call;
    # None for the account whose credentials are in the config.
    account_id: str | None = None
    # The MSP child's own API host from the account list, where its calls go
    # with ``account.msp_api_host: child``.  Not part of what the account is:
    # the tree knows it by ``account_id`` alone, and a host changed in a later
    # listing does not make it another account.
    api_hostname: str | None = attrs.field(default=None, eq=False)


@attrs.frozen
class Page:
    """Records of one (account, endpoint), shipped and acknowledged as a unit."""

    account: AccountRef
    endpoint: Endpoint
    records: tuple[Mapping[str, Any], ...]


@attrs.define(eq=False)
class Delivery:
    """One page on its way to one sender; ``done`` is set once fully written."""

    page: Page
    done: trio.Event = attrs.Factory(trio.Event)


class Outputs:
    """The channels to the senders one endpoint is mapped to.

    One per endpoint, shared by every account's fetcher of that endpoint:
    the tree holds the channels' send ends open until every account has
    ended, so a fetcher needs no end (no clone) of its own to close.
    """

    __slots__ = ("_channels", "server_ids")

    def __init__(
        self, channels: Mapping[str, trio.MemorySendChannel[Delivery]]
    ) -> None:
        """Send to *channels* (server id → channel end); the tree closes them."""
        self.server_ids: tuple[str, ...] = tuple(channels)
        """The ids of the servers this endpoint feeds."""
        self._channels = tuple(channels.values())

    async def deliver(self, page: Page) -> None:
        """Hand *page* to every sender; return once each has fully written it."""
        deliveries = [Delivery(page) for _ in self._channels]
        for channel, delivery in zip(self._channels, deliveries, strict=True):
            try:
                await channel.send(delivery)
            except trio.BrokenResourceError:
                # A sender only closes its end by raising; its error is
                # already cancelling the tree and is the one worth reporting.
                await trio.sleep_forever()
        for delivery in deliveries:
            await delivery.done.wait()


@attrs.frozen
class Routing:
    """Where each endpoint's pages go: the tree's narrow view of the config."""

    servers: tuple[Server, ...]
    """The servers some endpoint is mapped to, in the config's order."""
    endpoints: Mapping[Endpoint, tuple[str, ...]] = attrs.field(hash=False)
    """The server ids of each mapped endpoint."""
    log_format: LogFormat
    max_running: int | None = None
    """The most fetchers running at once, all accounts together (None: no bound)."""
    json_style: JsonStyle = JsonStyle.DLS

    @classmethod
    def from_config(cls, config: Config) -> Routing:
        """Read the routing of *config* (unmapped servers are left out)."""
        account = config.account
        endpoints = {e: account.servers_for(e) for e in account.endpoints}
        mapped = {server_id for ids in endpoints.values() for server_id in ids}
        return cls(
            servers=tuple(s for s in config.servers if s.id in mapped),
            endpoints=endpoints,
            log_format=config.dls_settings.log_format,
            json_style=config.dls_settings.json_style,
            max_running=RUNNING_PER_PAGE * config.dls_settings.api.max_pages_in_memory,
        )


@attrs.frozen
class FetcherContext:
    """What a fetcher task is given."""

    account: AccountRef
    endpoint: Endpoint
    outputs: Outputs
    stop: StopSignal


@attrs.frozen
class SenderContext:
    """What a sender task is given."""

    server: Server
    log_format: LogFormat
    deliveries: trio.MemoryReceiveChannel[Delivery]
    json_style: JsonStyle = JsonStyle.DLS


@attrs.frozen
class Parked:
    """What a caught-up fetcher returns: call ``resume`` again at ``until``.

    ``resume`` is a callable over the fetcher's plain state (not a suspended
    coroutine), so that a parked fetcher costs that state alone: no task,
    no frame, no cancel scope.
    """

    until: float
    """When to go on, on trio's clock."""
    resume: Fetcher
    """Goes on where the fetcher left off; may park again."""


Fetcher = Callable[[FetcherContext], Awaitable[Parked | None]]
"""Fetches for its context until told to stop (None) or caught up (``Parked``)."""
Sender = Callable[[SenderContext], Awaitable[None]]
AccountDiscovery = Callable[[Config, StopSignal], Awaitable[list[AccountRef]]]
AccountRefresh = Callable[[Config, "AccountTree", StopSignal], Awaitable[None]]
Trigger = Callable[[], Awaitable[object]]


def account_key(account: AccountRef) -> str | None:
    """The key of *account* in the tree: its child account id (None: the account)."""
    return account.account_id


class _Due(Generic[T]):
    """Items due at given times (trio's clock), earliest first: a heap.

    Each entry is (until, turn, item): the turn, a counter, orders items due
    at the same time by arrival and spares comparing the items themselves.
    A caller may give the turns itself, each unique among the items waiting
    (an account's fetchers: their endpoints'), and read them back with
    ``take``: a parked fetcher is then one tuple and its float.
    """

    __slots__ = ("_heap", "_turns")

    def __init__(self) -> None:
        """Start empty."""
        self._heap: list[tuple[float, int, T]] = []
        self._turns = 0

    def __bool__(self) -> bool:
        """Whether any item waits."""
        return bool(self._heap)

    @property
    def earliest(self) -> float:
        """When the earliest item is due (infinity when none waits)."""
        return self._heap[0][0] if self._heap else math.inf

    def push(self, until: float, item: T, turn: int | None = None) -> None:
        """Make *item* due at *until*, after those due then already (or in *turn*)."""
        if turn is None:
            self._turns += 1
            turn = self._turns
        heapq.heappush(self._heap, (until, turn, item))

    @property
    def due(self) -> bool:
        """Whether the earliest item is due now."""
        return self.earliest <= trio.current_time()

    def pop(self) -> T:
        """Take the earliest item."""
        return heapq.heappop(self._heap)[2]

    def times(self) -> Iterator[float]:
        """When each item is due, in no order."""
        return (entry[0] for entry in self._heap)

    def take(self) -> tuple[int, T]:
        """Take the earliest item, with its turn."""
        _, turn, item = heapq.heappop(self._heap)
        return turn, item

    def clear(self) -> None:
        """Forget every item."""
        self._heap.clear()


class _Slots:
    """The fetchers that may run at once, all accounts together (FIFO).

    Without a bound (``None``) every take succeeds at once.  *line* is the
    tree's heap of accounts waiting for a slot: while one is due there, a
    slot set free goes to it, never to a running account that asks first.
    """

    __slots__ = ("_line", "_semaphore")

    def __init__(self, bound: int | None, line: _Due[Any] | None = None) -> None:
        """Allow *bound* at once (None: any number), *line* served first."""
        self._semaphore = trio.Semaphore(bound) if bound else None
        self._line = line

    async def take(self, stop: StopSignal) -> bool:
        """Wait for a slot, in line; False if *stop* came first."""
        if self._semaphore is None:
            return True
        taken = False
        with stop.cancels():
            await self._semaphore.acquire()
            taken = True
        return taken  # noqa: RET504 - False when the stop cancelled the wait

    def take_now(self) -> bool:
        """Take a slot if one is free and nobody waits in line for one."""
        if self._semaphore is None:
            return True
        if self._line is not None and self._line.due:
            # A slot given back in the same turn as another is free for a
            # moment, before the tree takes it for the earliest in line.
            return False
        try:
            self._semaphore.acquire_nowait()
        except trio.WouldBlock:
            return False
        return True

    def give(self) -> None:
        """Give a slot back."""
        if self._semaphore is not None:
            self._semaphore.release()


@attrs.define(eq=False)
class _Running:
    """One account in the tree: its fetchers' schedule, its stop signal, its end.

    ``active`` while its task runs (or is about to); otherwise it is parked in
    the tree's heap, as data.  ``scope`` is the running task's.
    """

    account: AccountRef
    stop: StopSignal
    schedule: _Schedule
    scope: trio.CancelScope | None = None
    active: bool = False
    ended: bool = False
    # Made for a removal that waits for the end: a thousand idle children
    # keep no event.
    _done: trio.Event | None = None

    async def wait_ended(self) -> None:
        """Return once the account has ended."""
        if self.ended:
            return
        if self._done is None:
            self._done = trio.Event()
        await self._done.wait()

    def end(self) -> None:
        """The account has ended: wake who waits for it."""
        self.ended = True
        if self._done is not None:
            self._done.set()


class AccountTree:
    """The accounts being fetched for, which can be added and removed while running.

    ``serve`` hands it out through its ``task_status`` once the tree runs,
    and runs ``run_parked`` beside the accounts.

    An account whose fetchers are all parked is parked too: its task ends
    and the tree keeps it in a heap of (due, turn, key) until its earliest
    fetcher is due, when ``run_parked`` starts its task again.  So an idle
    child holds no task, no frame and no cancel scope: its schedule and its
    stop signal, plain data.
    """

    def __init__(
        self,
        nursery: trio.Nursery,
        *,
        routing: Routing,
        inputs: Mapping[str, trio.MemorySendChannel[Delivery]],
        fetcher: Fetcher,
        stop: StopSignal,
        grace: float,
        observer: Observer | None = None,
    ) -> None:
        """Run accounts in *nursery*, feeding *inputs* as *routing* says.

        *observer* is told of each account added and removed.  At most
        ``routing.max_running`` fetchers run at once, all accounts together
        (None: no bound); the others wait as heap entries of their account.
        """
        self._parked: _Due[str | None] = _Due()
        self._slots = _Slots(routing.max_running, self._parked)
        self._nursery = nursery
        self._routing = routing
        self._fetcher = fetcher
        self._stop = stop
        self._grace = grace
        self._observer = observer
        self._running: dict[str | None, _Running] = {}
        self._changed = trio.Event()
        self._outputs = {
            endpoint: Outputs({server_id: inputs[server_id] for server_id in ids})
            for endpoint, ids in routing.endpoints.items()
        }
        self._wake = trio.Event()

    @property
    def accounts(self) -> tuple[AccountRef, ...]:
        """The accounts running now."""
        return tuple(running.account for running in self._running.values())

    def add(self, account: AccountRef) -> bool:
        """Start fetching for *account*; False if it runs already or the tree stops."""
        key = account_key(account)
        if key in self._running or self._stop.is_set:
            return False
        stop = self._stop.child()
        schedule = _Schedule(account, self._outputs, stop)
        now = trio.current_time()
        for endpoint in self._outputs:
            schedule.park(now, self._fetcher, endpoint)
        running = _Running(account, stop, schedule)
        self._running[key] = running
        if self._observer is not None:
            self._observer(AccountAdded(account))
        # Due now: it starts as the parked ones do, once a slot is free.
        self._parked.push(now, key)
        self._wake.set()
        return True

    async def remove(self, key: str | None) -> bool:
        """Stop fetching for the account *key* as a clean stop does; False if absent.

        Returns once its fetchers have ended: a page in delivery is finished
        within the grace period, or abandoned unacknowledged after it.  A
        parked account ends at once.
        """
        running = self._running.get(key)
        if running is None:
            return False
        running.stop.set()
        if not running.active:
            self._finish(running)
        with trio.move_on_after(self._grace):
            await running.wait_ended()
        if running.scope is not None:
            running.scope.cancel()
        await running.wait_ended()
        return True

    async def wait_empty(self) -> None:
        """Return once no account runs (after a stop, all have ended)."""
        while self._running:
            await self._changed.wait()

    async def run_parked(self) -> None:
        """Hand out the running slots, in turn, until the stop.

        Each entry of the tree's heap is an account wanting a slot at a given
        time: a parked (or new) account, for its earliest fetcher, or a
        running one, for a due fetcher beyond the slots it holds.  Once a
        slot is free, the earliest entry gets it: a parked account's task
        starts and is handed it; a running account starts its fetcher with
        it (``_Schedule.grant``).  So fetchers get slots first come, first
        served, across accounts, and no account waits for one as a task: a
        thousand children starting at once are never a thousand tasks (nor
        trio's sets of them, which keep the size they grew to).  At the
        stop, the parked accounts end at once: nothing of theirs is in
        flight, and their cursors are saved.
        """
        stop = self._stop
        try:
            while not stop.is_set:
                await stop.wait_for(self._wake, self._parked.earliest)
                self._wake = trio.Event()
                while self._parked.due and await self._slots.take(stop):
                    if not self._hand_slot():
                        self._slots.give()
        finally:
            self._parked.clear()
            for running in list(self._running.values()):
                if not running.active:
                    self._finish(running)

    def _hand_slot(self) -> bool:
        """Hand a slot taken to the earliest due entry that can use it."""
        while self._parked.due:
            running = self._running.get(self._parked.pop())
            if running is None:
                continue  # gone meanwhile
            if running.active:
                if running.schedule.grant():
                    return True
            elif running.schedule.due:
                running.active = True
                self._nursery.start_soon(
                    self._run_account, running, name=f"account {running.account.name}"
                )
                return True
            # Otherwise a slot asked for by a run that has ended: the
            # account's entry for its next due time is in the heap too.
        return False

    def _want_slot(self, key: str | None) -> None:
        """The running account *key* has a fetcher due beyond its slots."""
        self._parked.push(trio.current_time(), key)
        self._wake.set()

    async def _run_account(self, running: _Running) -> None:
        due: float | None = None
        key = account_key(running.account)
        try:
            running.scope = trio.CancelScope()
            with running.scope:
                due = await running.schedule.run(
                    self._slots, functools.partial(self._want_slot, key)
                )
        finally:
            running.active = False
            running.scope = None
            if due is None or running.stop.is_set:
                self._finish(running)
            else:
                # Every fetcher parked (or waits for a slot): so is the
                # account, until *due*.
                self._parked.push(due, key)
                self._wake.set()

    def _finish(self, running: _Running) -> None:
        """The account has ended: forget it (once) and tell the observer."""
        if running.ended:
            return
        running.stop.detach()
        del self._running[account_key(running.account)]
        running.end()
        if self._observer is not None:
            self._observer(AccountRemoved(running.account))
        self._changed.set()
        self._changed = trio.Event()


class _Schedule:
    """One account's fetchers: running in its nursery, or parked until due.

    ``run`` is the account task's own loop.  Parked fetchers wait as
    (endpoint, resume) items of a ``_Due`` heap, at most one per endpoint;
    a fetcher's context is made as it starts.

    The account's nursery lives only while some fetcher runs: once all are
    parked it closes, and the next due one opens a new one.  A nursery keeps
    sets sized for the most tasks it ever held, so an idle child keeps
    neither a nursery nor what its fetchers' tasks left behind in one.
    """

    __slots__ = (
        "_account",
        "_ask",
        "_held",
        "_in_line",
        "_nursery",
        "_outputs",
        "_parked",
        "_running",
        "_slots",
        "_stop",
        "_wake",
    )

    def __init__(
        self,
        account: AccountRef,
        outputs: Mapping[Endpoint, Outputs],
        stop: StopSignal,
    ) -> None:
        """Schedule *account*'s fetchers until *stop*; *outputs* are the tree's."""
        self._account = account
        self._outputs = outputs
        self._stop = stop
        # While ``run`` runs only: the slots, how to ask for one, how many
        # handed over are not yet used and whether one is asked for; a parked
        # account keeps none of it, nor an event.
        self._slots: _Slots | None = None
        self._ask: Callable[[], None] | None = None
        self._held = 0
        self._in_line = False
        self._nursery: trio.Nursery | None = None
        self._running = 0
        # Turns are the endpoints' indexes: at most one entry per endpoint.
        self._parked: _Due[Fetcher] = _Due()
        self._wake: trio.Event | None = None

    def park(self, until: float, fetcher: Fetcher, endpoint: Endpoint) -> None:
        """Run *fetcher* for *endpoint* at *until* (trio's clock)."""
        self._parked.push(until, fetcher, ENDPOINT_INDEX[endpoint])

    @property
    def due(self) -> bool:
        """Whether a parked fetcher is due."""
        return self._parked.due

    async def run(self, slots: _Slots, ask: Callable[[], None]) -> float | None:
        """Run the due fetchers, each holding one of *slots*, until all are parked.

        The account's task is started holding one slot, for its first
        fetcher; for each further due fetcher it calls *ask*, and the tree
        hands it a slot in turn (``grant``).  Returns when the account is due
        next: its earliest fetcher's time, or now if fetchers are due but
        none runs (it queues again, behind the others).  None once none is
        left (all ended: a stop).  A stop drops the parked ones: they hold
        no page, and their cursors are saved.
        """
        self._slots, self._ask, self._held, self._in_line = slots, ask, 1, False
        try:
            return await self._run()
        finally:
            for _ in range(self._held):
                slots.give()
            self._slots = self._ask = None
            self._held, self._in_line = 0, False

    def grant(self) -> bool:
        """Take a slot the tree hands over and start a due fetcher; False if none is.

        A slot asked for may come after the need passed (the fetcher
        started with another, or the account stops): the tree then gives it
        to the next in line.
        """
        self._in_line = False
        if self._nursery is None or self._stop.is_set or not self._parked.due:
            return False
        self._held += 1
        self._start_due()
        return True

    async def _run(self) -> float | None:
        stop = self._stop
        while self._parked and not stop.is_set:
            if not self._parked.due:
                return self._parked.earliest
            if not self._held:
                return trio.current_time()  # due, but no slot: in line again
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                self._wake = trio.Event()
                try:
                    self._start_due()
                    while self._running and not stop.is_set:
                        # Until a fetcher not yet due is, or a running one
                        # parks or ends (each ends at the stop, within the
                        # grace), or a slot is granted: bounded either way.
                        await stop.wait_for(self._wake, self._next_due())
                        self._wake = trio.Event()
                        self._start_due()
                finally:
                    # Closing (or cancelled): no slot granted from here on
                    # may start a fetcher in it.
                    self._nursery = self._wake = None
            # Closed: not even this frame may keep it.
            del nursery
        self._parked.clear()
        return None

    def _next_due(self) -> float:
        """When the earliest fetcher not yet due is (those due wait for a slot)."""
        now = trio.current_time()
        return min((t for t in self._parked.times() if t > now), default=math.inf)

    def _start_due(self) -> None:
        """Start, in the open nursery, the due fetchers the slots allow.

        Each takes a slot held, or one free (only while nobody waits for
        one).  For the due fetchers beyond them one slot is asked for at a
        time, so that fetchers take turns across accounts: the ask waits
        in line with every account's, as a heap entry of the tree, not as a
        task.  The wait is bounded by the fetchers running, which all give
        their slot back when they park (any wait longer than a moment parks)
        or end.
        """
        assert self._nursery is not None
        stop = self._stop
        if stop.is_set:
            return
        slots = self._slots
        assert slots is not None
        while self._parked.due and (self._held or slots.take_now()):
            if self._held:
                self._held -= 1
            index, fetcher = self._parked.take()
            endpoint = _ENDPOINTS[index]
            context = FetcherContext(
                account=self._account,
                endpoint=endpoint,
                outputs=self._outputs[endpoint],
                stop=stop,
            )
            self._running += 1
            self._nursery.start_soon(
                self._fetch,
                fetcher,
                context,
                name=f"fetcher {context.account.name}/{context.endpoint}",
            )
        assert self._ask is not None
        if self._parked.due and not self._in_line:
            # One place in line at a time: once granted, the next due
            # fetcher asks again, behind every other account's.
            self._in_line = True
            self._ask()

    async def _fetch(self, fetcher: Fetcher, context: FetcherContext) -> None:
        slots = self._slots
        assert slots is not None
        try:
            parked = await fetcher(context)
        finally:
            self._running -= 1
            slots.give()
        if parked is not None:
            self.park(parked.until, parked.resume, context.endpoint)
        if self._wake is not None:  # always, while the nursery is open
            self._wake.set()


async def serve(
    config: Config,
    *,
    shutdown_trigger: Trigger,
    force_trigger: Trigger | None = None,
    grace: float = DEFAULT_GRACE,
    fetcher: Fetcher,
    sender: Sender,
    discover_accounts: AccountDiscovery,
    refresh_accounts: AccountRefresh | None = None,
    observer: Observer | None = None,
    task_status: trio.TaskStatus[AccountTree | None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run the tree for *config* until *shutdown_trigger* returns.

    *force_trigger*, awaited after the shutdown began, cancels at once when it
    returns; *grace* bounds the graceful part (and the removal of an account).
    *refresh_accounts*, if given, runs beside the accounts once the tree runs,
    adding and removing accounts as it sees fit (MSP children that come and
    go), until the stop.  *observer* is told of accounts added and removed.
    Reports readiness
    through *task_status*, with the ``AccountTree``, once every task is running
    (None if stopped before that).
    """
    stop = StopSignal()
    finished = False

    async with trio.open_nursery() as root:

        async def stop_when_triggered() -> None:
            await shutdown_trigger()
            log.info("stopping: finishing deliveries in flight (up to %gs)", grace)
            stop.set()
            root.cancel_scope.deadline = min(
                root.cancel_scope.deadline, trio.current_time() + grace
            )
            if force_trigger is not None:
                await force_trigger()
                log.warning("stopping now, as asked a second time")
                root.cancel_scope.cancel()

        root.start_soon(stop_when_triggered)
        accounts: list[AccountRef] = []
        with stop.cancels():
            accounts = await discover_accounts(config, stop)
        if stop.is_set:
            task_status.started(None)
        else:
            routing = Routing.from_config(config)

            async def refresh(tree: AccountTree) -> None:
                if refresh_accounts is not None:
                    await refresh_accounts(config, tree, stop)

            await _run_tree(
                routing,
                accounts,
                refresh,
                stop,
                fetcher,
                sender,
                grace,
                observer,
                task_status,
            )
        finished = True
        # The tree is done: stop listening for signals.
        root.cancel_scope.cancel()

    if not finished:
        log.warning(
            "stopped before deliveries in flight were acknowledged; their pages "
            "will be sent again at the next start"
        )
    log.info("stopped")


async def _run_tree(  # noqa: PLR0917 - a private step of serve
    routing: Routing,
    accounts: list[AccountRef],
    refresh: Callable[[AccountTree], Awaitable[None]],
    stop: StopSignal,
    fetcher: Fetcher,
    sender: Sender,
    grace: float,
    observer: Observer | None,
    task_status: trio.TaskStatus[AccountTree | None],
) -> None:
    async with trio.open_nursery() as tree:
        inputs: dict[str, trio.MemorySendChannel[Delivery]] = {}
        for server in routing.servers:
            send, receive = trio.open_memory_channel[Delivery](0)
            inputs[server.id] = send
            tree.start_soon(
                sender,
                SenderContext(
                    server=server,
                    log_format=routing.log_format,
                    json_style=routing.json_style,
                    deliveries=receive,
                ),
                name=f"sender {server.id}",
            )
        async with trio.open_nursery() as fetching:
            living = AccountTree(
                fetching,
                routing=routing,
                inputs=inputs,
                fetcher=fetcher,
                stop=stop,
                grace=grace,
                observer=observer,
            )
            for account in accounts:
                living.add(account)
            log.info(
                "started: %d account(s), %d endpoint(s), %d server(s)",
                len(accounts),
                len(routing.endpoints),
                len(inputs),
            )
            task_status.started(living)
            fetching.start_soon(living.run_parked, name="parked accounts")
            # It ends at the stop, like the fetchers in this nursery.
            fetching.start_soon(refresh, living, name="account refresh")
            # The tree lives until the stop; then every account ends as a
            # clean stop does, and only then do the senders see their end.
            await stop.wait()
            await living.wait_empty()
        for send in inputs.values():
            await send.aclose()
