"""The living tree: accounts added and removed while the others run.

Rules for these tests: as in ``tests.test_fetching`` (the fake's handler
in-process, trio's virtual clock, the real ``serve`` tree and fetchers, cursors in
``tmp_path``).  The tree is reached through the ``AccountTree`` that ``serve``
hands out once it runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import trio
import trio.testing

from tests.observing import RecordingObserver
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
from trio_dls.checkpoints import cursor_file_name
from trio_dls.endpoints import Endpoint
from trio_dls.fakeduo import DatasetSpec, FakeDuoApp, Faults, make_children
from trio_dls.fakeduo.data import record_key
from trio_dls.observe.events import AccountAdded, AccountRemoved
from trio_dls.supervisor import (
    AccountRef,
    AccountTree,
    Page,
    SenderContext,
    StopSignal,
    serve,
)

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable
    from pathlib import Path

    from trio_dls.config import Config
    from trio_dls.fetcher import Fetching

ENDPOINTS = [Endpoint.AUTH, Endpoint.TELEPHONY]


def msp_app() -> FakeDuoApp:
    """Three MSP children with several pages each, paced by a rate limit."""
    return make_app(
        DatasetSpec(
            seed=13,
            span=2 * DAY,
            end_before=600,
            admin_burst=0,
            counts={Endpoint.AUTH: 2500, Endpoint.TELEPHONY: 1500},
        ),
        children=make_children(3, seed=14),
        faults=Faults(rate_limit=6, rate_burst=1),
    )


def refs(app: FakeDuoApp) -> list[AccountRef]:
    """The fake's children as the tree names them."""
    return [AccountRef(c.name, c.account_id) for c in app.config.children]


class Sender:
    """Records every page it acknowledges; may hold a page before acknowledging."""

    def __init__(self) -> None:
        """Nothing received yet."""
        self.records: list[Key] = []
        self.changed = trio.Event()
        self.hold: Callable[[Page], Awaitable[None]] | None = None

    async def __call__(self, context: SenderContext) -> None:
        """Acknowledge each page after the hold, if any, and record it then."""
        async with context.deliveries:
            async for delivery in context.deliveries:
                page = delivery.page
                if self.hold is not None:
                    await self.hold(page)
                self.records += [
                    (
                        page.account.account_id,
                        page.endpoint,
                        record_key(page.endpoint, r),
                    )
                    for r in page.records
                ]
                delivery.done.set()
                self.changed.set()
                self.changed = trio.Event()

    async def wait_for(self, done: Callable[[], bool]) -> None:
        """Return once *done* holds."""
        while not done():
            await self.changed.wait()


async def start_tree(
    nursery: trio.Nursery,
    config: Config,
    fetching: Fetching,
    sender: Sender,
    first: list[AccountRef],
    stop: trio.Event,
    observer: RecordingObserver | None = None,
) -> AccountTree:
    """Start ``serve`` with *first* accounts; return its tree."""

    async def discover(config: Config, signal: StopSignal) -> list[AccountRef]:
        del config, signal
        return first

    tree = await nursery.start(
        lambda task_status: serve(
            config,
            shutdown_trigger=stop.wait,
            grace=30,
            fetcher=fetching,
            sender=sender,
            discover_accounts=discover,
            observer=observer,
            task_status=task_status,
        )
    )
    assert isinstance(tree, AccountTree)
    return tree


def of(records: list[Key], account: AccountRef) -> list[Key]:
    """The records of *account*."""
    return [k for k in records if k[0] == account.account_id]


async def test_an_account_added_while_others_catch_up_gets_all_its_records(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """A child added mid-backlog is fetched whole; the others, whole and once."""
    del autojump_clock
    app = msp_app()
    children = refs(app)
    config = config_for(tmp_path, ENDPOINTS, msp=True)
    sender = Sender()
    stop = trio.Event()
    everything = held(app, ENDPOINTS, [c.account_id for c in children])
    observer = RecordingObserver()
    with trio.fail_after(PATIENCE):
        async with trio.open_nursery() as nursery:
            tree = await start_tree(
                nursery,
                config,
                Daemon(app, config).fetching(),
                sender,
                children[:2],
                stop,
                observer,
            )
            await sender.wait_for(lambda: len(sender.records) > 1000)
            assert of(sender.records, children[2]) == []
            assert tree.add(children[2])
            assert not tree.add(children[2])  # already running
            await sender.wait_for(lambda: set(everything) <= set(sender.records))
            stop.set()
    assert_exactly_once(sender.records, everything)
    assert [e.account for e in observer.of(AccountAdded)] == children
    assert sorted(e.account.name for e in observer.of(AccountRemoved)) == sorted(
        c.name for c in children
    )


async def test_an_account_removed_mid_delivery_loses_and_repeats_nothing(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """A child removed mid-page finishes it, keeps its cursor, resumes when back."""
    del autojump_clock
    app = msp_app()
    children = refs(app)
    leaving = children[1]
    config = config_for(tmp_path, ENDPOINTS, msp=True)
    sender = Sender()
    stop = trio.Event()
    removed = trio.Event()
    everything = held(app, ENDPOINTS, [c.account_id for c in children])
    with trio.fail_after(PATIENCE):
        async with trio.open_nursery() as nursery:
            tree = await start_tree(
                nursery,
                config,
                Daemon(app, config).fetching(),
                sender,
                children,
                stop,
            )

            held_pages: list[Page] = []

            async def remove_during(page: Page) -> None:
                if page.account == leaving and len(of(sender.records, leaving)) > 0:
                    sender.hold = None
                    held_pages.append(page)
                    nursery.start_soon(remove_then_note)
                    await trio.sleep(5)  # the page is still being written

            async def remove_then_note() -> None:
                assert await tree.remove(leaving.account_id)
                removed.set()

            sender.hold = remove_during
            await removed.wait()
            assert leaving not in tree.accounts
            partial = of(sender.records, leaving)
            assert 0 < len(partial) < len(of(everything, leaving))
            # The page being written when the removal came was finished...
            [page] = held_pages
            last = (
                leaving.account_id,
                page.endpoint,
                record_key(page.endpoint, page.records[-1]),
            )
            assert last in partial
            # ... and its cursor saved, and kept for when the account comes back.
            name = cursor_file_name(page.endpoint, leaving.account_id)
            assert (tmp_path / "state" / name).is_file()
            # The others go on to the end while it is away.
            others = [k for k in everything if k[0] != leaving.account_id]
            await sender.wait_for(lambda: set(others) <= set(sender.records))
            assert of(sender.records, leaving) == partial
            assert tree.add(leaving)
            await sender.wait_for(lambda: set(everything) <= set(sender.records))
            stop.set()
    assert_exactly_once(sender.records, everything)
