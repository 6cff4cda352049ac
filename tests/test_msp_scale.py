"""MSP at scale: the global bound on pages, fairness, and limits shared by children.

Rules for these tests: as in ``tests.test_fetching``, the fake Duo API's request
handler runs in-process on trio's virtual clock, the real ``serve`` tree runs
the real fetchers with a recording sender and a real ``CheckpointStore`` in
``tmp_path``, and what was delivered is compared with what the fake holds.
Duo's limits have no published shape, so the shared-limit tests run against
each ``RateScope`` of the fake, and the bound asserted holds for all of them.
"""

from __future__ import annotations

import gc
from typing import TYPE_CHECKING, Any

import attrs
import pytest
import trio
import trio.testing

from tests.test_fetching import (
    DAY,
    Daemon,
    assert_exactly_once,
    config_for,
    held,
    make_app,
)
from trio_dls.duo.admission import Admission
from trio_dls.duo.client import DuoApi
from trio_dls.duo.paging import Limits
from trio_dls.endpoints import Endpoint
from trio_dls.fakeduo import DatasetSpec, Faults, RateScope, make_children
from trio_dls.supervisor import Page

if TYPE_CHECKING:
    from pathlib import Path

    from trio_dls.duo.client import DuoAnswer
    from trio_dls.fakeduo import FakeDuoApp

AUTH = Endpoint.AUTH


@attrs.define
class Gauge:
    """Counts the Duo calls in flight over every account's stand-in."""

    in_flight: int = 0

    def wrap(self, api: DuoApi) -> DuoApi:
        """Return *api*, its calls counted."""
        return _Counted(api, self)


@attrs.define
class _Counted:
    api: DuoApi
    gauge: Gauge

    async def get(self, path: str, params: dict[str, str]) -> DuoAnswer:
        self.gauge.in_flight += 1
        try:
            return await self.api.get(path, params)
        finally:
            self.gauge.in_flight -= 1

    async def list_child_accounts(self) -> list[dict[str, Any]]:
        return await self.api.list_child_accounts()


def pages_alive() -> int:
    """How many pages exist in memory: on their way to, or at, the sender."""
    return sum(isinstance(o, Page) for o in gc.get_objects())


def children_ids(app: FakeDuoApp) -> list[str | None]:
    """The fake's children, as ``held`` names them."""
    return [child.account_id for child in app.config.children]


async def test_pages_held_stay_within_the_global_bound(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """Forty children with backlogs and a slow receiver hold at most six pages.

    A page is held from its request (a call in flight) to its acknowledgement
    (a ``Page`` on its way to the sender, or being written); both are counted
    from outside the fetchers, every virtual second of the run.
    """
    del autojump_clock
    spec = DatasetSpec(
        seed=5, span=DAY, end_before=600, counts={AUTH: 150}, hard_cases=False
    )
    app = make_app(spec, children=make_children(40), faults=Faults(delay=0.3))
    gauge = Gauge()
    daemon = Daemon(
        app,
        config_for(tmp_path, [AUTH], msp=True),
        limits=Limits(page_size=50),
        admission=Admission(pages=6),
        wrap=gauge.wrap,
    )
    daemon.recorder.write_time = 0.5
    expected = held(app, [AUTH], children_ids(app))
    samples: list[int] = []

    async def sample() -> None:
        while True:
            samples.append(gauge.in_flight + pages_alive())
            await trio.sleep(1)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(sample)
        await daemon.run_until_complete(lambda: expected)
        nursery.cancel_scope.cancel()

    assert_exactly_once(daemon.recorder.records, expected)
    # 120 pages of 0.5 s each, one receiver: a minute or more of samples.
    assert len(samples) >= 60
    assert max(samples) == 6


async def test_a_big_child_does_not_starve_the_small_ones(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """Every small child's page is delivered before a big child's second one."""
    del autojump_clock
    spec = DatasetSpec(
        seed=6, span=DAY, end_before=600, counts={AUTH: 40}, hard_cases=False
    )
    children = make_children(16)
    app = make_app(spec, children=children)
    big = children[0].account_id
    # Forty pages more for the big child: copies of the others' records.
    for child in children[1:]:
        for n, record in enumerate(app.held_records(AUTH, child.account_id)):
            body = {**record.body, "txid": f"big-{child.account_id}-{n}"}
            app.add_record(AUTH, body, record.ts_ms, big)
    daemon = Daemon(
        app,
        config_for(tmp_path, [AUTH], msp=True),
        limits=Limits(page_size=40),
        admission=Admission(pages=4),
    )
    daemon.recorder.write_time = 1.0
    expected = held(app, [AUTH], children_ids(app))
    await daemon.run_until_complete(lambda: expected)

    assert_exactly_once(daemon.recorder.records, expected)
    pages = [child for child, _, _ in daemon.recorder.records[::40]]
    second_big_page = [i for i, child in enumerate(pages) if child == big][1]
    small = {child.account_id for child in children[1:]}
    assert small <= set(pages[:second_big_page])


@attrs.frozen
class Shared:
    """A rate limit of the fake, and how many children share it."""

    scope: RateScope
    per_minute: int
    children: int
    pages: int  # per child and endpoint
    endpoints: tuple[Endpoint, ...] = (AUTH,)

    def optimum_minutes(self) -> float:
        """The catch-up time of a client that knew the limit all along."""
        requests = self.children * self.pages * len(self.endpoints)
        if self.scope is RateScope.ENDPOINT:
            return requests / len(self.endpoints) / self.per_minute
        return self.pages / self.per_minute  # each child alone


# Limits per endpoint, shared by the children or each child's own; a limit
# shared by several endpoints is the pacing issue's (each endpoint's budget
# then competes with the others' for it).
SHARED = [
    Shared(RateScope.ENDPOINT, per_minute=10, children=20, pages=6),
    Shared(RateScope.ENDPOINT, per_minute=60, children=5, pages=30),
    Shared(RateScope.ENDPOINT, per_minute=2, children=10, pages=6),
    Shared(RateScope.ACCOUNT_ENDPOINT, per_minute=10, children=20, pages=20),
    Shared(RateScope.ACCOUNT_ENDPOINT, per_minute=2, children=40, pages=10),
]
# The 429s of finding a limit, paid once for all the children rather than
# by each: up to three runs of the waits that double from the initial pace
# to half a minute (8 each), and a few more.
EXPLORING = 30


@pytest.mark.parametrize("seed", [1, 2])
@pytest.mark.parametrize("case", SHARED, ids=repr)
async def test_children_sharing_a_limit_catch_up_near_its_pace(
    case: Shared, seed: int, tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """Whether a limit is each child's or shared, catch-up is within 4x the optimum.

    The optimum is computed from the fake's limit: the requests that count
    against one bucket, divided by its rate.  429s are bounded by one
    exploration for all the children, plus one request in ten.
    """
    del autojump_clock
    page = 50
    counts = dict.fromkeys(case.endpoints, case.pages * page - 1)
    spec = DatasetSpec(
        seed=9, span=DAY, end_before=600, counts=counts, hard_cases=False
    )
    app = make_app(
        spec,
        children=make_children(case.children),
        faults=Faults(rate_limit=case.per_minute, rate_burst=1, rate_scope=case.scope),
    )
    daemon = Daemon(
        app,
        config_for(tmp_path, list(case.endpoints), msp=True),
        limits=Limits(page_size=page),
        seed=seed,
    )
    expected = held(app, list(case.endpoints), children_ids(app))
    start = trio.current_time()
    await daemon.run_until_complete(lambda: expected)
    minutes = (trio.current_time() - start) / 60

    assert_exactly_once(daemon.recorder.records, expected)
    # trio's scheduling order varies from run to run; over 24 orders (seeded
    # scheduler) of each case: 1.1x to 1.7x typically, 3.0x at worst, for a
    # limit per child (the pacing issue is to tighten this), and at most 11
    # 429s over the bound's one in ten.
    assert minutes <= 4 * case.optimum_minutes()
    statuses = [status for _, status in daemon.outcomes]
    assert statuses.count(429) <= EXPLORING + 0.1 * len(statuses)
