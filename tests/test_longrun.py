"""Long runs on the virtual clock: state stays bounded, failures stay visible.

Rules for these tests: the real ``serve`` tree and ``Fetching`` run on trio's virtual
clock against a cheap scripted Duo (``QuietDuo``) that answers in-process, so a week
of polling by a hundred fetchers takes seconds.  Memory is judged by the sizes of the
long-lived structures each fetcher keeps (rate budget, cursor, failure and state
logs) and by the number of live objects, sampled after a day and after a week.
"""

from __future__ import annotations

import gc
import logging
import random
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
import trio
import trio.testing

from tests.test_fetching import BASE, DAY, config_for
from trio_dls.checkpoints import CheckpointStore
from trio_dls.duo.client import DuoAnswer, RateLimitedError, TransientApiError
from trio_dls.duo.cursors import AdminCursor
from trio_dls.duo.discovery import AccountDiscovery
from trio_dls.duo.window import WindowBudget
from trio_dls.endpoints import Endpoint
from trio_dls.fakeduo import make_children
from trio_dls.fetcher import Fetching, FetchSettings
from trio_dls.observe.reporting import FailureReport
from trio_dls.supervisor import SenderContext, serve

if TYPE_CHECKING:
    import pytest

    from trio_dls.config import Config

HOUR = 3600.0
WEEK = 7 * DAY


@attrs.define
class QuietDuo:
    """A Duo that has little to say: empty pages, a record now and then, some errors.

    Answers are dated by the virtual clock, as Duo's are by its own.
    """

    children: list[dict[str, Any]]
    rng: random.Random
    fail: str | None = None  # when set, every log call fails with this message
    calls: int = 0

    async def get(self, path: str, params: dict[str, str]) -> DuoAnswer:
        """Answer a log request the way a quiet account's endpoint does."""
        await trio.lowlevel.checkpoint()
        self.calls += 1
        if self.fail is not None:
            raise TransientApiError(self.fail)
        roll = self.rng.random()
        if roll < 0.01:
            raise RateLimitedError(f"GET {path}: HTTP 429 (42901 Too Many Requests)")
        if roll < 0.02:
            raise TransientApiError(f"GET {path}: HTTP 503 (Service Unavailable)")
        date = float(int(BASE + trio.current_time()))
        records = []
        if roll > 0.98:
            stamp = int(params["mintime"])
            records = [{"txid": f"t{self.calls}", "timestamp": stamp}]
        if path.endswith("/administrator"):
            stamp = int(params["mintime"]) + 1
            body: object = [
                {"action": "a", "timestamp": stamp, "n": n} for n in range(len(records))
            ]
        else:
            key = "events" if "trust_monitor" in path else "items"
            key = "authlogs" if path.endswith("authentication") else key
            body = {key: records, "metadata": {}}
        return DuoAnswer(body, date)

    async def list_child_accounts(self) -> list[dict[str, Any]]:
        """Return the parent's children."""
        await trio.lowlevel.checkpoint()
        return self.children


class CountingSender:
    """A sender that acknowledges every page and keeps only a count."""

    def __init__(self) -> None:
        """Nothing delivered yet."""
        self.records = 0

    async def __call__(self, context: SenderContext) -> None:
        """Acknowledge each delivery."""
        async with context.deliveries:
            async for delivery in context.deliveries:
                self.records += len(delivery.page.records)
                delivery.done.set()


@attrs.frozen
class Sizes:
    """The long-lived state of every fetcher, summed."""

    budgets: int
    remembered: int
    admin_sent: int
    reports: int
    objects: int


def sizes() -> Sizes:
    """Measure the fetchers' state now, from the objects alive."""
    gc.collect()
    alive = gc.get_objects()
    budgets = [o for o in alive if isinstance(o, WindowBudget)]
    return Sizes(
        budgets=len(budgets),
        remembered=sum(b.remembered for b in budgets),
        admin_sent=sum(len(o.sent) for o in alive if isinstance(o, AdminCursor)),
        reports=sum(o.failures for o in alive if isinstance(o, FailureReport)),
        objects=len(alive),
    )


def fetching(config: Config, duo: QuietDuo, poll: float | None = None) -> Fetching:
    """The daemon's fetcher over *duo*, with checkpoints off (no file I/O)."""
    settings = FetchSettings.from_config(config)
    if poll is not None:
        settings = attrs.evolve(settings, poll_interval=poll)
    return Fetching(
        api_for=lambda _account: duo,
        store=CheckpointStore(Path("unused"), enabled=False),
        settings=settings,
        host="localhost",
        clock=lambda: BASE + trio.current_time(),
        rng=random.Random(3),
    )


async def test_a_week_of_polling_by_a_hundred_fetchers_keeps_memory_flat(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """20 MSP children x 5 endpoints poll for a week; their state does not grow."""
    del autojump_clock
    children = [
        {"account_id": c.account_id, "name": c.name, "api_hostname": c.api_hostname}
        for c in make_children(20, seed=1)
    ]
    duo = QuietDuo(children, random.Random(2))
    config = config_for(tmp_path, list(Endpoint), msp=True, offset=0)
    # Polling every 20 minutes (api.timeout: 1200) rather than DLS's default
    # 2: what is measured is per fetcher and per poll, so a shorter interval
    # would only repeat the same cycles ten times more.  That is 50,400
    # requests in the week, 500 per fetcher, many times what any structure
    # needs to show growth; 600 s took twice as long and showed the same.
    poll = 1200.0
    sender = CountingSender()
    samples: list[Sizes] = []

    async def sample_then_stop() -> None:
        await trio.sleep(DAY)
        samples.append(sizes())
        await trio.sleep(WEEK - DAY)
        samples.append(sizes())

    await serve(
        config,
        shutdown_trigger=sample_then_stop,
        fetcher=fetching(config, duo, poll),
        sender=sender,
        discover_accounts=AccountDiscovery(duo),
    )

    day, week = samples
    assert duo.calls > 100 * WEEK / poll  # every fetcher polled all week
    assert sender.records > 0
    # At most one budget per fetcher: one parked with nothing to remember
    # keeps none (a new one is made when it resumes).
    assert day.budgets <= 100
    assert week.budgets <= 100
    # A served request is remembered for a minute: at most one per budget here.
    assert week.remembered <= week.budgets
    assert week.admin_sent <= 20 * 2
    assert week.reports <= 100
    # Nothing else accumulates either: the same live objects, give or take pages
    # in flight and the odd cached value.
    assert week.objects <= day.objects * 1.02


async def test_an_endpoint_failing_for_a_day_is_reported_at_a_falling_rate(
    tmp_path: Path,
    autojump_clock: trio.testing.MockClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A 400 for a day is said at failures 1, 10, 100, then hourly; recovery once."""
    del autojump_clock
    caplog.set_level(logging.INFO)
    duo = QuietDuo(
        [],
        random.Random(5),
        fail="GET /admin/v2/logs/authentication: "
        "HTTP 400 (40002 Invalid request parameters)",
    )
    config = config_for(tmp_path, [Endpoint.AUTH], offset=1)

    async def fail_a_day_then_recover() -> None:
        await trio.sleep(DAY)
        duo.fail = None
        await trio.sleep(HOUR)

    await serve(
        config,
        shutdown_trigger=fail_a_day_then_recover,
        fetcher=fetching(config, duo),
        sender=CountingSender(),
        discover_accounts=AccountDiscovery(duo),
    )

    said = [r.getMessage() for r in caplog.records if "HTTP 400" in r.getMessage()]
    # About 300 failures in a day (backoff capped at 5 minutes): the 1st, 10th and
    # 100th, then one an hour for the rest of the day.
    assert 3 + 12 <= len(said) <= 3 + 20
    assert "failed 10 times in a row" in said[1]
    assert "failed 100 times in a row" in said[2]
    assert all(
        r.levelno == logging.WARNING
        for r in caplog.records
        if "HTTP 400" in r.getMessage()
    )
    recovered = [
        r.getMessage() for r in caplog.records if "working again" in r.getMessage()
    ]
    found = re.search(
        r"working again after (\d+) failure\(s\) over (\S+) h", recovered[0]
    )
    assert found is not None
    assert int(found[1]) >= 250  # about 24 h at one try in 5 min
    assert 23.5 <= float(found[2]) <= 24.5
