"""The daemon's wall clock off Duo's: ahead, behind, jumping; nothing is lost.

Rules for these tests: as in ``tests.test_fetching``, the fake Duo API's handler runs
in-process on trio's virtual clock, and its "now" is ``BASE`` plus that clock.  Its
records appear live (two a minute per endpoint) and become visible only 120 s after
their time, as Duo's do, so a window that a fast clock closes too early loses records
and the comparison with what the fake could serve shows it.  The fetchers' wall clock
is the fake's plus a skew that each test chooses, and may change while running; their
waits, like the fake's, run on trio's (monotonic) clock, as in the daemon.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

import attrs
import pytest
import trio
import trio.testing

from tests.test_fetching import (
    BASE,
    DAY,
    Daemon,
    Key,
    assert_exactly_once,
    config_for,
    held,
    make_app,
)
from trio_dls.endpoints import Endpoint
from trio_dls.fakeduo import DatasetSpec, FakeDuoApp

if TYPE_CHECKING:
    from pathlib import Path

    from trio_dls.fetcher import Fetching

HOUR = 3600.0
Skew = Callable[[float], float]


@attrs.define
class SkewedDaemon(Daemon):
    """The daemon of ``tests.test_fetching`` with its wall clock ``skew(t)`` off."""

    skew: Skew = lambda _t: 0.0

    def fetching(self) -> Fetching:
        """The fetcher, reading the fake's clock plus the skew."""

        def clock() -> float:
            now = trio.current_time()
            return BASE + now + self.skew(now)

        return attrs.evolve(super().fetching(), clock=clock)


def live_app() -> FakeDuoApp:
    """A fake with a day of backlog and two new records a minute per endpoint."""
    return make_app(
        DatasetSpec(
            seed=41,
            span=DAY,
            end_before=600,
            admin_burst=0,
            live=True,
            live_bucket=60.0,
            live_per_bucket=2,
        )
    )


def servable_before(
    app: FakeDuoApp, endpoints: list[Endpoint], age: float
) -> list[Key]:
    """What a correct client had been able to fetch ``age`` seconds ago."""
    as_of = BASE + trio.current_time() - age
    return [
        (None, endpoint, record.key)
        for endpoint in endpoints
        for record in app.servable_records(endpoint, as_of=as_of)
    ]


async def run_for(daemon: Daemon, seconds: float) -> None:
    """Run *daemon* for *seconds* of virtual time, then stop it cleanly."""

    async def after() -> None:
        await trio.sleep(seconds)

    await daemon.run(after)


def assert_nothing_lost(daemon: SkewedDaemon, endpoints: list[Endpoint]) -> None:
    """Everything servable a few polls ago arrived, once, and nothing unknown."""
    delivered = daemon.recorder.records
    # Two poll intervals and a margin: what a fetcher could not have asked yet.
    settled = servable_before(daemon.app, endpoints, age=600)
    assert set(settled) <= set(delivered), "records were lost"
    assert set(delivered) <= set(held(daemon.app, endpoints))
    assert_exactly_once(delivered, sorted(set(delivered)))


@pytest.mark.parametrize("ahead", [90.0, 121.0, HOUR])
async def test_a_clock_ahead_of_duos_loses_nothing(
    ahead: float, tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """A wall clock 90 s (or more) fast still gets every live record, once."""
    del autojump_clock
    endpoints = list(Endpoint)
    daemon = SkewedDaemon(
        live_app(), config_for(tmp_path, endpoints, offset=180), skew=lambda _t: ahead
    )
    await run_for(daemon, 3 * HOUR)
    assert_nothing_lost(daemon, endpoints)
    # The live records of the last hours are in, not just the backlog.
    assert len(daemon.recorder.records) > len(held(daemon.app, endpoints)) - 5 * 30


async def test_a_clock_jumping_back_and_forth_by_an_hour_loses_nothing(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """An hour forwards, then an hour back (two hours' jump), then right: all arrive."""
    del autojump_clock

    def skew(t: float) -> float:
        if HOUR <= t < 2 * HOUR:
            return HOUR
        if 2 * HOUR <= t < 3 * HOUR:
            return -HOUR
        return 0.0

    endpoints = list(Endpoint)
    daemon = SkewedDaemon(
        live_app(), config_for(tmp_path, endpoints, offset=180), skew=skew
    )
    await run_for(daemon, 5 * HOUR)
    assert_nothing_lost(daemon, endpoints)


async def test_a_clock_ahead_of_duos_is_reported_once(
    tmp_path: Path,
    autojump_clock: trio.testing.MockClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The operator is told, once, that this host's clock runs ahead of Duo's."""
    del autojump_clock
    caplog.set_level(logging.INFO)
    endpoints = [Endpoint.AUTH, Endpoint.ADMINACTION]
    daemon = SkewedDaemon(
        live_app(), config_for(tmp_path, endpoints), skew=lambda _t: 90.0
    )
    await run_for(daemon, HOUR)
    said = [r.getMessage() for r in caplog.records if "Duo's" in r.getMessage()]
    assert len(said) == 1
    assert said[0].startswith("this host's clock is 90 s ahead of Duo's")


async def test_polls_that_bring_a_few_records_log_nothing(
    tmp_path: Path,
    autojump_clock: trio.testing.MockClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Once caught up, live records arriving every poll are no "backlog" to log."""
    del autojump_clock
    caplog.set_level(logging.INFO)
    endpoints = list(Endpoint)
    daemon = SkewedDaemon(live_app(), config_for(tmp_path, endpoints))
    await run_for(daemon, 3 * HOUR)
    backlog = [r for r in caplog.records if "fetching a backlog" in r.getMessage()]
    caught_up = [r for r in caplog.records if "caught up" in r.getMessage()]
    # One of each per endpoint, for the day of backlog at the start.
    assert len(backlog) <= len(endpoints)
    assert len(caught_up) == len(endpoints)
