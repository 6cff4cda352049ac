"""Fetching ahead: page n+1 is asked for while page n is delivered.

Rules for these tests: as in ``tests.test_fetching``, the fake Duo API's
request handler runs in-process on trio's virtual clock, the real ``serve``
tree runs the real fetchers with a real ``CheckpointStore`` in ``tmp_path``,
and what was delivered is compared with what the fake holds.  The senders
here hold a page's acknowledgement until the fake has seen the next request
(bounded by a virtual deadline, so that a fetcher that does not ask ahead
fails the test instead of hanging it), and read the cursor on disk meanwhile.
"""

from __future__ import annotations

import gc
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
import pytest
import trio
import trio.testing

from tests.test_fetching import (
    DAY,
    PATIENCE,
    Daemon,
    Key,
    Recorder,
    assert_exactly_once,
    config_for,
    held,
    inline,
    make_app,
)
from tests.test_msp_scale import Gauge
from trio_dls.checkpoints import CheckpointStore
from trio_dls.config import Config
from trio_dls.duo.admission import Admission
from trio_dls.duo.client import CALL_TIMEOUT, DuoApi, TransientApiError
from trio_dls.duo.cursors import Cursor, WindowCursor
from trio_dls.duo.paging import Limits, Step
from trio_dls.endpoints import Endpoint
from trio_dls.fakeduo import DatasetSpec, Faults, make_children
from trio_dls.fakeduo.data import record_key

if TYPE_CHECKING:
    from trio_dls.duo.client import DuoAnswer
    from trio_dls.supervisor import SenderContext

AUTH = Endpoint.AUTH
# Four pages of auth, 1000 records a page.
FOUR_PAGES = DatasetSpec(
    seed=41, span=DAY, end_before=600, counts={AUTH: 3500}, hard_cases=False
)
# How long a sender waits for the next request before the test fails.
ASK_WITHIN = 30.0


@attrs.define
class Asks:
    """The log requests each account's stand-in was given, in order."""

    params: list[dict[str, str]] = attrs.Factory(list)
    changed: trio.Event = attrs.Factory(trio.Event)
    # Called at each request with its number (1, 2, ...): may hold it.
    hold: Any = None

    def wrap(self, api: DuoApi) -> DuoApi:
        """Return *api*, its requests noted."""
        return _Noted(api, self)

    async def arrived(self, count: int) -> None:
        """Return once *count* requests arrived; fail after ``ASK_WITHIN`` s."""
        with trio.fail_after(ASK_WITHIN):
            while len(self.params) < count:
                await self.changed.wait()


@attrs.define
class _Noted:
    api: DuoApi
    asks: Asks

    async def get(self, path: str, params: dict[str, str]) -> DuoAnswer:
        self.asks.params.append(params)
        self.asks.changed.set()
        self.asks.changed = trio.Event()
        if self.asks.hold is not None:
            await self.asks.hold(len(self.asks.params))
        return await self.api.get(path, params)

    async def list_child_accounts(self) -> list[dict[str, Any]]:
        return await self.api.list_child_accounts()


async def saved(config: Config) -> Cursor | None:
    """The auth cursor on disk now, as a restart would read it."""
    directory = Path(config.dls_settings.checkpointing.directory)
    return await CheckpointStore(directory, offload=inline).load(AUTH, None)


@attrs.define
class Witness:
    """A sender that holds each page until the next request arrived.

    It notes, in order, each page written and acknowledged and each request
    seen meanwhile, with the cursor on disk at each of those moments.
    """

    asks: Asks
    config: Config
    pages: int
    """Hold the first *pages* pages (the last one has no request after it)."""
    records: list[Key] = attrs.Factory(list)
    log: list[tuple[str, int]] = attrs.Factory(list)
    at_write: list[Cursor | None] = attrs.Factory(list)
    at_hold: list[Cursor | None] = attrs.Factory(list)
    done: trio.Event = attrs.Factory(trio.Event)
    """Set once the page after the held ones is acknowledged."""

    async def __call__(self, context: SenderContext) -> None:
        """Write each page; hold the first ones' acknowledgement as said."""
        async with context.deliveries:
            async for delivery in context.deliveries:
                page = delivery.page
                n = len(self.at_write) + 1
                self.log.append(("written", n))
                self.at_write.append(await saved(self.config))
                self.records.extend(
                    (None, page.endpoint, record_key(page.endpoint, r))
                    for r in page.records
                )
                if n <= self.pages:
                    await self.asks.arrived(n + 1)
                    self.log.append(("asked", n + 1))
                    self.at_hold.append(await saved(self.config))
                delivery.done.set()
                self.log.append(("acked", n))
                if n == self.pages + 1:
                    self.done.set()


async def test_the_next_page_is_asked_before_this_one_is_acknowledged(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """Request n+1 arrives while page n is held; page n's cursor is saved after.

    While page n is held (request n+1 already in), the cursor on disk is page
    n-1's (none at a first start); when page n+1 is written, it is page n's:
    the cursor request n+1 continues from.
    """
    del autojump_clock
    app = make_app(FOUR_PAGES)
    config = config_for(tmp_path, [AUTH])
    asks = Asks()
    witness = Witness(asks, config, pages=3)
    daemon = Daemon(app, config, wrap=asks.wrap)
    daemon.recorder = witness  # type: ignore[assignment]
    with trio.fail_after(PATIENCE):
        await daemon.run(witness.done.wait)

    assert witness.log[:9] == [
        ("written", 1),
        ("asked", 2),
        ("acked", 1),
        ("written", 2),
        ("asked", 3),
        ("acked", 2),
        ("written", 3),
        ("asked", 4),
        ("acked", 3),
    ]
    # Page n's cursor is the one request n+1 continues from (its next_offset).
    after = [
        WindowCursor(int(p["mintime"]), int(p["maxtime"]), p["next_offset"])
        for p in asks.params[1:4]
    ]
    assert witness.at_hold == [None, after[0], after[1]]
    assert witness.at_write[:4] == [None, after[0], after[1], after[2]]
    assert len(set(witness.records)) == len(witness.records) == 3500


async def test_a_stop_while_asking_ahead_ends_at_once_and_resends_nothing(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """A stop cancels the request ahead, not the delivery; a restart resends nothing.

    Request 2 hangs (as a call that never answers does, until its timeout);
    the stop comes while page 1 is still held.  The run ends once page 1 is
    acknowledged and saved, long before the call's timeout, and the next
    run starts from page 1's cursor.
    """
    del autojump_clock
    app = make_app(FOUR_PAGES)
    config = config_for(tmp_path, [AUTH])
    asks = Asks()
    cancelled: list[int] = []

    async def hang_the_second(n: int) -> None:
        if n != 2:
            return
        try:
            await trio.sleep(CALL_TIMEOUT)
        except trio.Cancelled:
            cancelled.append(n)
            raise
        msg = "GET: no answer"
        raise TransientApiError(msg)

    asks.hold = hang_the_second
    stop = trio.Event()
    acked: list[float] = []
    records: list[Key] = []

    class Holding(Recorder):
        async def __call__(self, context: SenderContext) -> None:
            async with context.deliveries:
                async for delivery in context.deliveries:
                    await asks.arrived(2)
                    stop.set()
                    await trio.sleep(5)  # the delivery goes on after the stop
                    records.extend(
                        (None, AUTH, record_key(AUTH, r)) for r in delivery.page.records
                    )
                    delivery.done.set()
                    acked.append(trio.current_time())

    daemon = Daemon(app, config, wrap=asks.wrap)
    daemon.recorder = Holding()
    with trio.fail_after(PATIENCE):
        await daemon.run(stop.wait)
    ended = trio.current_time()

    assert len(acked) == 1
    assert len(records) == 1000
    assert cancelled == [2]
    assert 0 <= ended - acked[0] < 1  # not the call's timeout: cancelled
    assert await saved(config) == WindowCursor(
        int(asks.params[1]["mintime"]),
        int(asks.params[1]["maxtime"]),
        asks.params[1]["next_offset"],
    )

    restart = Daemon(app, config)
    await restart.run_until_complete(
        lambda: [k for k in held(app, [AUTH]) if k not in records], or_duplicate=True
    )
    assert_exactly_once(records + restart.recorder.records, held(app, [AUTH]))


async def test_duos_latency_and_the_writing_overlap(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """Each page costs the longer of Duo's answer and its writing, not both.

    Twenty pages, each answered in 2 s and written in 3 s: asked one after
    the other's acknowledgement they take 20 x 5 s; asked ahead, 20 x 3 s
    and the first answer.
    """
    del autojump_clock
    latency, writing, pages = 2.0, 3.0, 20
    spec = DatasetSpec(
        seed=5, span=DAY, end_before=600, counts={AUTH: 100 * pages}, hard_cases=False
    )
    app = make_app(spec, faults=Faults(delay=latency))
    daemon = Daemon(app, config_for(tmp_path, [AUTH]), limits=Limits(page_size=100))
    daemon.recorder.write_time = writing
    await daemon.run_until_complete(lambda: held(app, [AUTH]))

    assert daemon.recorder.pages == pages
    assert_exactly_once(daemon.recorder.records, held(app, [AUTH]))
    assert trio.current_time() <= pages * max(latency, writing) + 2 * latency


def steps_alive() -> int:
    """How many answered pages exist: asked ahead, or being delivered."""
    return sum(isinstance(o, Step) for o in gc.get_objects())


@pytest.mark.parametrize(("children", "pages"), [(4, 1), (2, 3), (4, 6)])
async def test_pages_held_never_exceed_the_bound_when_asking_ahead(
    children: int, pages: int, tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """Children asking ahead (two pages wanted each) hold at most the bound.

    Counted twice, every tenth of a virtual second: the tickets out, and from
    outside the admission, the calls in flight plus the pages answered and
    not yet acknowledged.  Without asking ahead a fetcher holds one ticket at
    most; with more places than children, the children hold them all.
    """
    del autojump_clock
    spec = DatasetSpec(
        seed=5, span=DAY, end_before=600, counts={AUTH: 400}, hard_cases=False
    )
    app = make_app(spec, children=make_children(children), faults=Faults(delay=0.3))
    recorder = Recorder()
    recorder.write_time = 0.5
    gauge = Gauge()
    admission = Admission(pages=pages)
    daemon = Daemon(
        app,
        config_for(tmp_path, [AUTH], msp=True),
        recorder=recorder,
        limits=Limits(page_size=50),
        admission=admission,
        wrap=gauge.wrap,
    )
    expected = held(app, [AUTH], [c.account_id for c in app.config.children])
    tickets: list[int] = []
    counted: list[int] = []

    async def sample() -> None:
        while True:
            tickets.append(admission.pages_held)
            counted.append(gauge.in_flight + steps_alive())
            await trio.sleep(0.1)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(sample)
        await daemon.run_until_complete(lambda: expected)
        nursery.cancel_scope.cancel()

    assert_exactly_once(recorder.records, expected)
    assert len(tickets) > 50  # seconds of backlog, sampled
    assert max(tickets) == pages
    assert max(counted) <= pages
