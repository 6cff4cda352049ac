"""Idle fetchers: a caught-up fetcher parks, holding no task, and costs little.

Rules for these tests: as in ``tests.test_fetching``, the fake Duo API's request
handler runs in-process on trio's virtual clock and the real ``serve`` tree runs
the real fetchers with a recording sender and a real ``CheckpointStore`` in
``tmp_path``.  Tasks are counted by walking trio's task tree from the root
task; memory is Python's own allocations (``tracemalloc``, after a
collection), which are a count, not a timing.
"""

from __future__ import annotations

import functools
import gc
import tracemalloc
import weakref
from typing import TYPE_CHECKING

import attrs
import trio
import trio.lowlevel
import trio.testing

from tests.duo_inprocess import InProcessDuo
from tests.test_fetching import (
    DAY,
    PATIENCE,
    Daemon,
    Key,
    assert_exactly_once,
    config_for,
    held,
    make_app,
)
from trio_dls.duo.discovery import AccountDiscovery
from trio_dls.duo.window import WindowBudget
from trio_dls.endpoints import Endpoint
from trio_dls.fakeduo import DatasetSpec, FakeDuoApp, Faults, make_children
from trio_dls.fetcher import Fetching
from trio_dls.observe import LogObserver
from trio_dls.observe.events import CaughtUp, Event
from trio_dls.supervisor import (
    RUNNING_PER_PAGE,
    AccountRef,
    AccountTree,
    Fetcher,
    FetcherContext,
    Parked,
    serve,
)

if TYPE_CHECKING:
    from pathlib import Path

    from trio_dls.duo.client import DuoApi

POLL = 120.0  # api.timeout in config_for
# After the calls' timeouts (CALL_TIMEOUT, 60 s) and before the next poll.
BETWEEN_POLLS = 0.75 * POLL
ENDPOINTS = list(Endpoint)
SMALL = DatasetSpec(
    seed=31,
    span=DAY,
    end_before=600,
    admin_burst=0,
    hard_cases=False,
    counts=dict.fromkeys(ENDPOINTS, 30),
)
# Records keep coming after the start: two a minute per endpoint.
LIVE = attrs.evolve(SMALL, live=True)
EMPTY = attrs.evolve(SMALL, counts={})


@attrs.define
class CaughtUpCount:
    """An observer that counts ``CaughtUp`` events and passes every event on."""

    inner: LogObserver = attrs.Factory(LogObserver)
    count: int = 0
    changed: trio.Event = attrs.Factory(trio.Event)

    def __call__(self, event: Event) -> None:
        """Pass *event* on; count it if it is a ``CaughtUp``."""
        self.inner(event)
        if isinstance(event, CaughtUp):
            self.count += 1
            self.changed.set()
            self.changed = trio.Event()

    async def wait_for(self, count: int) -> None:
        """Return once *count* ``CaughtUp`` were told in all."""
        while self.count < count:
            await self.changed.wait()


def task_names() -> list[str]:
    """The names of every task of this run, from the root task down."""
    names: list[str] = []
    tasks = [trio.lowlevel.current_root_task()]
    while tasks:
        task = tasks.pop()
        if task is None:
            continue
        names.append(task.name)
        for nursery in task.child_nurseries:
            tasks.extend(nursery.child_tasks)
    return names


def account_nurseries() -> int:
    """How many nurseries the account tasks hold open now."""
    held = 0
    tasks = [trio.lowlevel.current_root_task()]
    while tasks:
        task = tasks.pop()
        if task is None:
            continue
        if task.name.startswith("account "):
            held += len(task.child_nurseries)
        for nursery in task.child_nurseries:
            tasks.extend(nursery.child_tasks)
    return held


def count(names: list[str], prefix: str) -> int:
    """How many of *names* start with *prefix*."""
    return sum(name.startswith(prefix) for name in names)


@attrs.define
class Tree:
    """The real tree run by a test: its daemon, its ``AccountTree``, its stop."""

    daemon: Daemon
    seen: CaughtUpCount
    stop: trio.Event = attrs.Factory(trio.Event)
    ended: trio.Event = attrs.Factory(trio.Event)
    # The fetcher to run; None: the daemon's.
    fetcher: Fetching | None = None

    async def start(self, nursery: trio.Nursery) -> AccountTree:
        """Start ``serve`` in *nursery*; return its tree once it runs."""
        daemon = self.daemon
        discovery = AccountDiscovery(InProcessDuo(daemon.app), observer=self.seen)

        async def run(task_status: trio.TaskStatus[AccountTree | None]) -> None:
            await serve(
                daemon.config,
                shutdown_trigger=self.stop.wait,
                grace=30,
                fetcher=self.fetcher or daemon.fetching(),
                sender=daemon.recorder,
                discover_accounts=discovery,
                task_status=task_status,
            )
            self.ended.set()

        tree = await nursery.start(run)
        assert isinstance(tree, AccountTree)
        return tree


def tree_for(tmp_path: Path, app: FakeDuoApp, *, msp: bool = True) -> Tree:
    """A tree fetching every endpoint of *app* (its children, with *msp*)."""
    seen = CaughtUpCount()
    config = config_for(tmp_path, ENDPOINTS, msp=msp)
    return Tree(Daemon(app, config, observer=seen), seen)


def children_of(app: FakeDuoApp) -> list[str | None]:
    """The fake's children, as ``held`` names them."""
    return [child.account_id for child in app.config.children]


async def test_a_caught_up_account_holds_no_task_between_polls(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """Between polls, caught-up children are parked: no task of theirs at all."""
    del autojump_clock
    app = make_app(SMALL, children=make_children(3, seed=32))
    tree = tree_for(tmp_path, app)
    samples: list[tuple[int, int, int, int]] = []
    with trio.fail_after(PATIENCE):
        async with trio.open_nursery() as nursery:
            accounts = len((await tree.start(nursery)).accounts)
            await tree.seen.wait_for(3 * len(ENDPOINTS))
            # Sampled across the poll interval, before the first resume.
            for _ in range(10):
                await trio.sleep(POLL / 12)
                names = task_names()
                samples.append(
                    (
                        count(names, "account "),
                        count(names, "fetcher "),
                        account_nurseries(),
                        count(names, "parked accounts"),
                    )
                )
            tree.stop.set()

    # Three accounts known, none with a task, a fetcher or a nursery: the
    # one task that starts them again when due holds them all.
    assert accounts == 3
    assert samples == [(0, 0, 0, 1)] * 10
    assert_exactly_once(
        tree.daemon.recorder.records, held(app, ENDPOINTS, children_of(app))
    )


async def test_a_parked_fetcher_resumes_after_the_poll_and_fetches_new_records(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """Records that arrive at Duo while parked are fetched at the next polls, once."""
    del autojump_clock
    app = make_app(LIVE)
    tree = tree_for(tmp_path, app, msp=False)
    recorder = tree.daemon.recorder
    caught_up: list[int] = []
    with trio.fail_after(PATIENCE):
        async with trio.open_nursery() as nursery:
            await tree.start(nursery)
            await tree.seen.wait_for(len(ENDPOINTS))
            first = len(recorder.records)
            fetchers = count(task_names(), "fetcher ")
            since = tree.seen.count
            # Duo serves a record some minutes after it happened.
            await trio.sleep(3 * POLL)
            due = held(app, ENDPOINTS)
            await trio.sleep(3 * POLL)
            caught_up.append(tree.seen.count - since)
            tree.stop.set()

    assert fetchers == 0
    assert len(due) > first
    delivered = recorder.records
    assert set(due) <= set(delivered)
    assert_exactly_once(delivered, [k for k in held(app, ENDPOINTS) if k in delivered])
    # One CaughtUp per endpoint and poll, as before parking existed: six
    # polls of each endpoint, give or take the one under way at the end.
    assert 5 * len(ENDPOINTS) <= caught_up[0] <= 6 * len(ENDPOINTS)


async def test_a_stop_while_parked_ends_at_once_and_resends_nothing(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """A stop during the poll wait ends the tree at once; a restart resends nothing."""
    del autojump_clock
    app = make_app(SMALL, children=make_children(2, seed=33))
    expected = held(app, ENDPOINTS, children_of(app))
    delivered: list[Key] = []
    took: list[float] = []
    for _ in range(2):
        tree = tree_for(tmp_path, app)
        with trio.fail_after(PATIENCE):
            async with trio.open_nursery() as nursery:
                await tree.start(nursery)
                await tree.seen.wait_for(2 * len(ENDPOINTS))
                await trio.sleep(POLL / 2)
                stopped = trio.current_time()
                tree.stop.set()
                await tree.ended.wait()
                took.append(trio.current_time() - stopped)
        delivered += tree.daemon.recorder.records

    # No delivery, save or Duo call is under way while parked: nothing to wait for.
    assert took == [0.0, 0.0]
    assert_exactly_once(delivered, expected)


async def test_a_parked_child_is_removed_cleanly(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """Removing a parked child ends it at once; its siblings keep polling."""
    del autojump_clock
    children = make_children(3, seed=34)
    app = make_app(LIVE, children=children)
    tree = tree_for(tmp_path, app)
    leaving = children[0]
    with trio.fail_after(PATIENCE):
        async with trio.open_nursery() as nursery:
            accounts = await tree.start(nursery)
            await tree.seen.wait_for(3 * len(ENDPOINTS))
            await trio.sleep(10)
            removed_at = trio.current_time()
            assert await accounts.remove(leaving.account_id)
            took = trio.current_time() - removed_at
            names = task_names()
            left = {account.account_id for account in accounts.accounts}
            before = len(tree.daemon.recorder.records)
            await trio.sleep(3 * POLL)
            after = tree.daemon.recorder.records[before:]
            tree.stop.set()

    assert took == 0.0
    # The others are parked: no account has a task between polls.
    assert count(names, "account ") == 0
    assert left == {child.account_id for child in children[1:]}
    # The others resumed and fetched what came meanwhile; the removed one did not.
    assert {k[0] for k in after} == left
    assert_exactly_once(
        tree.daemon.recorder.records,
        [
            k
            for k in held(app, ENDPOINTS, children_of(app))
            if k in tree.daemon.recorder.records
        ],
    )


async def idle_memory(tmp_path: Path, children: int) -> int:
    """Python memory (bytes) held by the tree once *children* children are parked.

    Counted: what trio-dls's code, trio's and attrs' generated methods
    allocate, the daemon's own state and what trio keeps for its tasks.  Left
    out: the fake's bookkeeping (it counts requests per child), and the
    standard library's and pytest's one-off growth (the interpreter's table
    of interned strings doubles now and then, 2 MB at once), which is no
    child's.
    """
    app = make_app(EMPTY, children=make_children(children, seed=35))
    tree = tree_for(tmp_path / str(children), app)
    # One client per child, shared by its fetchers, as the daemon has.
    clients: weakref.WeakValueDictionary[str | None, InProcessDuo] = (
        weakref.WeakValueDictionary()
    )

    def api_for(account: AccountRef) -> DuoApi:
        client = clients.get(account.account_id)
        if client is None:
            client = clients[account.account_id] = InProcessDuo(app, account.account_id)
        return client

    ignored = [
        tracemalloc.Filter(inclusive=True, filename_pattern="*/trio_dls/*"),
        tracemalloc.Filter(inclusive=True, filename_pattern="*/trio/*"),
        tracemalloc.Filter(inclusive=True, filename_pattern="<attrs generated*"),
        tracemalloc.Filter(inclusive=False, filename_pattern="*/fakeduo/*"),
    ]
    gc.collect()
    before = tracemalloc.take_snapshot().filter_traces(ignored)
    with trio.fail_after(PATIENCE):
        async with trio.open_nursery() as nursery:
            tree.fetcher = attrs.evolve(tree.daemon.fetching(), api_for=api_for)
            await tree.start(nursery)
            await tree.seen.wait_for(children * len(ENDPOINTS))
            # Between polls, once the calls' timeouts have passed: until then
            # trio's deadline heap still holds their cancel scopes.
            await trio.sleep(BETWEEN_POLLS)
            gc.collect()
            after = tracemalloc.take_snapshot().filter_traces(ignored)
            tree.stop.set()
    return sum(stat.size_diff for stat in after.compare_to(before, "filename"))


async def test_an_idle_child_costs_a_few_kb(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """Each parked MSP child (five endpoints) holds at most 2.5 KB of Python memory."""
    del autojump_clock
    tracemalloc.start()
    try:
        # A first run warms what is allocated once (caches, interned names),
        # so that it counts in neither of the two measured.
        await idle_memory(tmp_path, 10)
        few = await idle_memory(tmp_path, 40)
        many = await idle_memory(tmp_path, 140)
    finally:
        tracemalloc.stop()
    per_child = (many - few) / 100
    # Measured on CPython 3.11: 1.8 KB per parked child (five endpoints);
    # 5.2 KB while each parked fetcher kept its loop, run and budget, the
    # log observer an object per fetcher, and children starting at once
    # were a task each waiting for a slot (trio's sets keep the size they
    # grew to); 7.0 KB while backoffs, streaks, served times and events were kept for
    # every fetcher and the progress report named every one;
    # 10.7 KB while each parked child kept its account task, 22 KB before
    # the budgets kept their served times in an array, fetchers shared their
    # endpoint's channel ends and an account's nursery closed while all its
    # fetchers were parked, and 43 KB when each fetcher slept as a task.
    # 2.5 KB leaves a third for other Python and attrs versions, and fails
    # as soon as one of those comes back.
    assert per_child <= 2_500


@attrs.define
class Running:
    """A fetcher wrapper counting the fetchers running at once."""

    inner: Fetching
    now: int = 0
    most: int = 0

    async def __call__(self, context: FetcherContext) -> Parked | None:
        """Run *context*'s fetcher (or its resumption), counted while it runs."""
        return await self._counted(self.inner, context)

    async def _counted(
        self, fetcher: Fetcher, context: FetcherContext
    ) -> Parked | None:
        self.now += 1
        self.most = max(self.most, self.now)
        try:
            parked = await fetcher(context)
        finally:
            self.now -= 1
        if parked is None:
            return None
        # The resumption is counted too.
        resume = parked.resume
        return Parked(parked.until, functools.partial(self._counted, resume))


async def test_fetchers_running_at_once_are_bounded_whatever_the_children(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """Forty children x five endpoints with backlogs: 4 per page held run at once."""
    del autojump_clock
    app = make_app(SMALL, children=make_children(40, seed=36))
    tree = tree_for(tmp_path, app)
    bound = RUNNING_PER_PAGE * tree.daemon.config.dls_settings.api.max_pages_in_memory
    running = Running(tree.daemon.fetching())
    tree.fetcher = running  # type: ignore[assignment]
    most_tasks = 0
    with trio.fail_after(PATIENCE):
        async with trio.open_nursery() as nursery:
            await tree.start(nursery)
            while tree.seen.count < 40 * len(ENDPOINTS):
                most_tasks = max(most_tasks, count(task_names(), "fetcher "))
                await trio.sleep(0.05)
            tree.stop.set()

    assert 40 * len(ENDPOINTS) > bound
    assert running.most == bound  # the bound is reached, never passed
    assert most_tasks <= bound
    assert_exactly_once(
        tree.daemon.recorder.records, held(app, ENDPOINTS, children_of(app))
    )


async def test_a_fetcher_waiting_for_its_pace_parks(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """Under a limit of 2 requests a minute, a fetcher between requests is no task."""
    del autojump_clock
    spec = attrs.evolve(SMALL, counts={Endpoint.AUTH: 15_000})
    app = make_app(spec, faults=Faults(rate_limit=2, rate_burst=1))
    seen = CaughtUpCount()
    tree = Tree(Daemon(app, config_for(tmp_path, [Endpoint.AUTH]), observer=seen), seen)
    samples: list[int] = []
    with trio.fail_after(PATIENCE):
        async with trio.open_nursery() as nursery:
            await tree.start(nursery)
            # Once the pace is found (a few minutes), until caught up.
            await trio.sleep(180)
            while not tree.seen.count:
                samples.append(count(task_names(), "fetcher "))
                await trio.sleep(1)
            tree.stop.set()

    # A request every ~30 s takes well under a second: a task that slept
    # through its pace would show in every sample.
    assert len(samples) > 60
    assert sum(samples) < 0.1 * len(samples)
    assert_exactly_once(tree.daemon.recorder.records, held(app, [Endpoint.AUTH]))


def budgets_alive() -> list[WindowBudget]:
    """Every rate budget alive now."""
    gc.collect()
    return [o for o in gc.get_objects() if isinstance(o, WindowBudget)]


async def test_a_fetcher_with_nothing_to_remember_parks_as_its_cursor(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """Caught up with no failure and no 429, a parked fetcher keeps no budget.

    It goes on from the cursor it saved at the next poll: records that came
    meanwhile arrive once.
    """
    del autojump_clock
    app = make_app(LIVE)
    tree = tree_for(tmp_path, app, msp=False)
    with trio.fail_after(PATIENCE):
        async with trio.open_nursery() as nursery:
            await tree.start(nursery)
            await tree.seen.wait_for(len(ENDPOINTS))
            await trio.sleep(BETWEEN_POLLS)
            between = budgets_alive()
            # Three polls later, with new records each time.
            await tree.seen.wait_for(4 * len(ENDPOINTS))
            tree.stop.set()

    assert between == []
    assert_exactly_once(tree.daemon.recorder.records, held(app, ENDPOINTS))


async def test_a_fetcher_duo_refused_keeps_its_pace_while_parked(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """A budget taught by 429s is kept between polls: the next backlog starts at it."""
    del autojump_clock
    spec = attrs.evolve(SMALL, counts={Endpoint.AUTH: 3_000})
    app = make_app(spec, faults=Faults(rate_limit=2, rate_burst=1))
    seen = CaughtUpCount()
    tree = Tree(Daemon(app, config_for(tmp_path, [Endpoint.AUTH]), observer=seen), seen)
    with trio.fail_after(PATIENCE):
        async with trio.open_nursery() as nursery:
            await tree.start(nursery)
            await tree.seen.wait_for(1)
            await trio.sleep(BETWEEN_POLLS)
            between = budgets_alive()
            tree.stop.set()

    assert len(between) == 1
    assert between[0].taught
    # Paced at about Duo's limit, two a minute, not at a first budget's pace.
    assert between[0].requests_per_minute < 4
    assert_exactly_once(tree.daemon.recorder.records, held(app, [Endpoint.AUTH]))


async def test_accounts_wait_for_a_running_slot_as_data_not_as_tasks(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """300 children starting at once are account tasks as the slots allow, not 300."""
    del autojump_clock
    children = 300
    app = make_app(EMPTY, children=make_children(children, seed=37))
    tree = tree_for(tmp_path, app)
    bound = RUNNING_PER_PAGE * tree.daemon.config.dls_settings.api.max_pages_in_memory
    most_accounts = 0
    with trio.fail_after(PATIENCE):
        async with trio.open_nursery() as nursery:
            await tree.start(nursery)
            while tree.seen.count < children * len(ENDPOINTS):
                most_accounts = max(most_accounts, count(task_names(), "account "))
                # Each scheduling round: the start takes no virtual time.
                await trio.lowlevel.checkpoint()
            tree.stop.set()

    assert 2 * bound < children
    # They did run side by side, as many as the slots keep busy (five
    # fetchers each).  An account task holds a slot, but for the moment it
    # closes its nursery, when the slot is already someone else's.
    assert bound // len(ENDPOINTS) <= most_accounts <= 2 * bound


@attrs.define
class StartOrder:
    """A fetcher wrapper noting the account of each fetcher as it starts."""

    inner: Fetching
    accounts: list[str | None] = attrs.Factory(list)

    async def __call__(self, context: FetcherContext) -> Parked | None:
        """Note *context*'s account, then fetch (its resumption is not noted)."""
        self.accounts.append(context.account.account_id)
        return await self.inner(context)


async def test_slots_go_to_the_accounts_in_line_first(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """Forty children, 64 slots for 200 fetchers: each child starts one before any two.

    A slot set free while accounts wait in line goes to the earliest of
    them, not to a running account whose other fetchers are due.
    """
    del autojump_clock
    children = 40
    app = make_app(EMPTY, children=make_children(children, seed=38))
    tree = tree_for(tmp_path, app)
    order = StartOrder(tree.daemon.fetching())
    tree.fetcher = order  # type: ignore[assignment]
    with trio.fail_after(PATIENCE):
        async with trio.open_nursery() as nursery:
            await tree.start(nursery)
            await tree.seen.wait_for(children * len(ENDPOINTS))
            tree.stop.set()

    assert len(order.accounts) == children * len(ENDPOINTS)
    assert len(set(order.accounts[:children])) == children
