"""MSP account discovery: a parent with no child to fetch keeps running and looking.

Rules for these tests: as in ``tests.test_fetching`` (the fake's handler in-process,
trio's virtual clock, the real ``serve`` tree with a recording sender).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import trio
import trio.testing

from tests.duo_inprocess import InProcessDuo
from tests.test_fetching import (
    DAY,
    Daemon,
    assert_exactly_once,
    config_for,
    held,
    make_app,
)
from trio_dls.duo.discovery import AccountDiscovery
from trio_dls.duo.shards import Shard, owns
from trio_dls.endpoints import Endpoint
from trio_dls.fakeduo import DatasetSpec, FakeDuoApp, make_children
from trio_dls.supervisor import serve

if TYPE_CHECKING:
    from pathlib import Path

    import pytest

    from trio_dls.config import Config


class LateChildren(InProcessDuo):
    """The fake's account list, empty for the first ``empty`` calls."""

    def __init__(self, app: FakeDuoApp, empty: int) -> None:
        """List no child ``empty`` times, then the fake's children."""
        super().__init__(app)
        self.empty = empty
        self.listed = 0

    async def list_child_accounts(self) -> list[dict[str, Any]]:
        """Return [] at first, as a new MSP parent's list is."""
        self.listed += 1
        children = await super().list_child_accounts()
        return [] if self.listed <= self.empty else children


def msp_app() -> FakeDuoApp:
    """A fake MSP parent with two children, a day of logs each."""
    return make_app(
        DatasetSpec(seed=5, span=DAY, end_before=600, admin_burst=0),
        children=make_children(2, seed=6),
    )


async def run_tree(
    daemon: Daemon, config: Config, discovery: AccountDiscovery, seconds: float
) -> bool:
    """Run the tree for *seconds*; return whether it was still running then."""
    finished = False

    async def tree() -> None:
        nonlocal finished
        await serve(
            config,
            shutdown_trigger=trio.sleep_forever,
            fetcher=daemon.fetching(),
            sender=daemon.recorder,
            discover_accounts=discovery,
        )
        finished = True

    with trio.move_on_after(seconds):
        await tree()
    return not finished


async def test_a_parent_whose_children_are_all_blocked_keeps_running(
    tmp_path: Path,
    autojump_clock: trio.testing.MockClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Every child in block_list: no exit, the list is asked again, warned rarely."""
    del autojump_clock
    app = msp_app()
    blocked = tuple(child.account_id for child in app.config.children)
    config = config_for(tmp_path, [Endpoint.AUTH], msp=True, block=blocked)
    listing = LateChildren(app, empty=0)

    running = await run_tree(
        Daemon(app, config), config, AccountDiscovery(listing), DAY
    )

    assert running
    assert listing.listed >= 24  # at least hourly, over a day
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert 1 <= len(warnings) <= 30
    assert "no child account to fetch (2 listed, 2 in block_list)" in (
        warnings[0].getMessage()
    )


async def test_a_parent_with_no_child_yet_starts_fetching_when_one_appears(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """An empty list, asked again, then children: their logs arrive, once."""
    del autojump_clock
    app = msp_app()
    endpoints = [Endpoint.AUTH, Endpoint.TELEPHONY]
    config = config_for(tmp_path, endpoints, msp=True)
    daemon = Daemon(app, config)
    listing = LateChildren(app, empty=3)
    children: list[str | None] = [c.account_id for c in app.config.children]

    async def complete() -> None:
        while not set(held(app, endpoints, children)) <= set(daemon.recorder.records):
            await daemon.recorder.changed.wait()

    with trio.fail_after(DAY):
        await serve(
            config,
            shutdown_trigger=complete,
            fetcher=daemon.fetching(),
            sender=daemon.recorder,
            discover_accounts=AccountDiscovery(listing),
        )

    assert listing.listed == 4
    assert_exactly_once(daemon.recorder.records, held(app, endpoints, children))


async def test_two_shards_of_one_parent_fetch_every_child_once_between_them(
    tmp_path: Path,
    autojump_clock: trio.testing.MockClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Shards 0/2 and 1/2 on one checkpoint directory: each child's logs once, by one.

    ``block_list`` is applied first: a blocked child is no shard's.
    """
    del autojump_clock
    caplog.set_level(logging.INFO)
    app = make_app(
        DatasetSpec(seed=5, span=DAY, end_before=600, admin_burst=0),
        children=make_children(6, seed=6),
    )
    ids = [child.account_id for child in app.config.children]
    blocked = ids[4]
    endpoints = [Endpoint.AUTH, Endpoint.TELEPHONY]
    config = config_for(tmp_path, endpoints, msp=True, block=(blocked,))
    shards = [Shard(0, 2), Shard(1, 2)]
    owned: list[list[str | None]] = [
        [i for i in ids if i != blocked and owns(shard, i)] for shard in shards
    ]
    assert all(owned)  # these seeds give each shard children of its own
    daemons = [Daemon(app, config), Daemon(app, config)]

    async def shard_tree(index: int) -> None:
        daemon = daemons[index]
        expected = set(held(app, endpoints, owned[index]))

        async def complete() -> None:
            while not expected <= set(daemon.recorder.records):
                await daemon.recorder.changed.wait()

        discovery = AccountDiscovery(InProcessDuo(app), shard=shards[index])
        await serve(
            config,
            shutdown_trigger=complete,
            fetcher=daemon.fetching(),
            sender=daemon.recorder,
            discover_accounts=discovery,
            refresh_accounts=discovery.refresh,
        )

    with trio.fail_after(DAY):
        async with trio.open_nursery() as nursery:
            for index in range(len(shards)):
                nursery.start_soon(shard_tree, index)

    for daemon, mine in zip(daemons, owned, strict=True):
        assert {child for child, _, _ in daemon.recorder.records} == set(mine)
    assert_exactly_once(
        daemons[0].recorder.records + daemons[1].recorder.records,
        held(app, endpoints, [i for i in ids if i != blocked]),
    )
    said = [
        r.getMessage() for r in caplog.records if r.getMessage().startswith("shard")
    ]
    assert [
        f"shard 0/2: owning {len(owned[0])} of 5 child accounts",
        f"shard 1/2: owning {len(owned[1])} of 5 child accounts",
    ] == sorted(said)
