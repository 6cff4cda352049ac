"""What the real fetcher and account discovery tell their observer.

Rules for these tests: as in ``tests.test_fetching`` (the fake Duo API's
handler in-process, trio's virtual clock, the real ``serve`` tree with a
recording sender and a real ``CheckpointStore`` in ``tmp_path``), with a
``RecordingObserver`` given to the fetcher, its store and account discovery.
One test per kind of event these tell, each comparing the events with what
the fake and the recording sender saw.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import attrs
import trio
import trio.testing

from tests.duo_inprocess import InProcessDuo
from tests.observing import RecordingObserver
from tests.test_clock_skew import SkewedDaemon
from tests.test_fetching import (
    BASE,
    DAY,
    PATIENCE,
    Daemon,
    Key,
    config_for,
    held,
    make_app,
)
from trio_dls.duo.client import TransientApiError
from trio_dls.duo.discovery import AccountDiscovery
from trio_dls.endpoints import Endpoint
from trio_dls.fakeduo import DatasetSpec, FakeDuoApp, Faults, make_children
from trio_dls.observe import Counters, Fanout, LogObserver
from trio_dls.observe.events import (
    AccountListFailed,
    AccountsListed,
    ApiFailed,
    ApiRecovered,
    Backlog,
    Behind,
    CaughtUp,
    ClockSkew,
    ClockState,
    DlsCheckpointImported,
    Event,
    NoChildAccount,
    PageDelivered,
    PlanningWarning,
    RateLimited,
)
from trio_dls.supervisor import AccountRef, StopSignal

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    import pytest

    from trio_dls.fetcher import Fetching

HOUR = 3600.0
POLL = 120.0  # api.timeout in config_for
ACCOUNT = AccountRef("DIFAKEDUOINTEGRATION")
# Several pages of auth (1000 a page), all in one day.
PAGES = DatasetSpec(
    seed=23,
    span=DAY,
    end_before=600,
    admin_burst=0,
    counts={Endpoint.AUTH: 3500, Endpoint.TELEPHONY: 40},
)


async def run_past_complete(
    daemon: Daemon, expected: Callable[[], list[Key]], *, polls: int = 2
) -> None:
    """Run until everything expected arrived, then *polls* poll intervals more."""

    async def complete_then_poll() -> None:
        while not set(expected()) <= set(daemon.recorder.records):
            await daemon.recorder.changed.wait()
        await trio.sleep(polls * POLL)

    with trio.fail_after(PATIENCE):
        await daemon.run(complete_then_poll)


def of_pair(
    events: list[Any], endpoint: Endpoint, account: AccountRef = ACCOUNT
) -> list[Any]:
    """The events of (account, endpoint) among *events*."""
    return [e for e in events if (e.account, e.endpoint) == (account, endpoint)]


async def test_each_delivered_page_is_told_with_its_records_and_cursor(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """One PageDelivered per page the sender got, its records, its cursor moving on."""
    del autojump_clock
    app = make_app(PAGES)
    endpoints = [Endpoint.AUTH, Endpoint.TELEPHONY]
    seen = RecordingObserver()
    daemon = Daemon(app, config_for(tmp_path, endpoints), observer=seen)
    await run_past_complete(daemon, lambda: held(app, endpoints))

    delivered = seen.of(PageDelivered)
    assert daemon.recorder.pages == len(delivered)
    for endpoint in endpoints:
        pages = of_pair(delivered, endpoint)
        records = [k for k in daemon.recorder.records if k[1] is endpoint]
        assert len(records) == sum(page.records for page in pages)
        times = [page.cursor_time for page in pages]
        assert sorted(times) == times
        assert BASE - 3 * DAY <= times[0] <= times[-1] <= BASE + trio.current_time()
    assert len(of_pair(delivered, Endpoint.AUTH)) >= 4


async def test_a_backlog_is_told_until_caught_up_then_every_poll(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """Backlog for each answer with more to come; CaughtUp at each poll after."""
    del autojump_clock
    app = make_app(PAGES)
    seen = RecordingObserver()
    daemon = Daemon(app, config_for(tmp_path, [Endpoint.AUTH]), observer=seen)
    await run_past_complete(daemon, lambda: held(app, [Endpoint.AUTH]), polls=3)

    kinds = [
        type(e) for e in seen.events if isinstance(e, Backlog | CaughtUp | ApiFailed)
    ]
    first_caught_up = kinds.index(CaughtUp)
    # 3500 records, 1000 a page: at least three answers had more to come.
    assert first_caught_up >= 3
    assert {Backlog} == set(kinds[:first_caught_up])
    assert {CaughtUp} == set(kinds[first_caught_up:])
    caught_up = seen.of(CaughtUp)
    assert len(caught_up) >= 3  # the last poll and those after
    assert {3500} == {event.sent for event in caught_up}


async def test_the_lag_behind_now_is_told_after_each_answer(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """Behind starts days back (the offset) and ends within minutes of now."""
    del autojump_clock
    app = make_app(PAGES)
    seen = RecordingObserver()
    daemon = Daemon(app, config_for(tmp_path, [Endpoint.AUTH]), observer=seen)
    await run_past_complete(daemon, lambda: held(app, [Endpoint.AUTH]))

    lags = [event.seconds for event in seen.of(Behind)]
    assert len(lags) >= len(seen.of(PageDelivered))
    assert 2 * DAY < lags[0] <= 3 * DAY + HOUR
    assert 0 < lags[-1] < 10 * 60


async def test_each_429_is_told_with_the_pace_it_taught(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """Every 429 the fake sent is one RateLimited, with a pace that slows."""
    del autojump_clock
    app = make_app(PAGES, faults=Faults(rate_limit=2, rate_burst=1, seed=5))
    seen = RecordingObserver()
    daemon = Daemon(app, config_for(tmp_path, [Endpoint.AUTH]), observer=seen)
    await run_past_complete(daemon, lambda: held(app, [Endpoint.AUTH]))

    limited = seen.of(RateLimited)
    statuses = [status for _, status in daemon.outcomes]
    assert statuses.count(429) == len(limited) > 0
    assert all(event.retry_in > 0 for event in limited)
    assert limited[-1].per_minute < limited[0].per_minute


class FlakyDuo(InProcessDuo):
    """The fake, refusing the first ``failing`` log requests with a 503."""

    def __init__(self, app: FakeDuoApp, failing: int) -> None:
        """Fail *failing* log requests, then answer as the fake does."""
        super().__init__(app)
        self.failing = failing

    async def get(self, path: str, params: dict[str, str]) -> Any:
        """Raise as duo_client would for a 503, or answer."""
        if self.failing:
            self.failing -= 1
            await trio.sleep(1)
            raise TransientApiError(f"GET {path}: HTTP 503 (Service Unavailable)")
        return await super().get(path, params)


@attrs.define
class FlakyDaemon(Daemon):
    """The daemon of ``tests.test_fetching`` over a ``FlakyDuo``."""

    failing: int = 0

    def fetching(self) -> Fetching:
        """The fetcher, over one FlakyDuo."""
        duo = FlakyDuo(self.app, self.failing)
        return attrs.evolve(super().fetching(), api_for=lambda _account: duo)


async def test_every_failure_is_told_and_the_log_says_few(
    tmp_path: Path,
    autojump_clock: trio.testing.MockClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Twelve 503s are twelve ApiFailed, counted in a row; the log warns twice."""
    del autojump_clock
    caplog.set_level(logging.INFO)
    app = make_app(PAGES)
    seen = RecordingObserver()
    daemon = FlakyDaemon(
        app,
        config_for(tmp_path, [Endpoint.AUTH]),
        observer=Fanout(LogObserver(), seen),
        failing=12,
    )
    await run_past_complete(daemon, lambda: held(app, [Endpoint.AUTH]))

    failures = seen.of(ApiFailed)
    assert list(range(1, 13)) == [event.failures for event in failures]
    assert {"TransientApiError 503"} == {event.kind for event in failures}
    assert {failures[0].at} == {event.since for event in failures}
    assert all(event.retry_in > 0 for event in failures)
    [recovered] = seen.of(ApiRecovered)
    assert recovered.failures == 12
    assert recovered.at - failures[0].at == recovered.lasted > 0
    warnings = [r.getMessage() for r in caplog.records if "HTTP 503" in r.getMessage()]
    assert len(warnings) == 2
    assert "failed 10 times in a row" in warnings[1]


async def test_a_planning_warning_is_told_once(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """The administrator log's second too full to page through is told once."""
    del autojump_clock
    app = make_app(DatasetSpec(seed=2, span=DAY, end_before=600))
    seen = RecordingObserver()
    endpoints = [Endpoint.ADMINACTION]
    daemon = Daemon(app, config_for(tmp_path, endpoints), observer=seen)
    await run_past_complete(daemon, lambda: held(app, endpoints))

    [warning] = seen.of(PlanningWarning)
    assert (warning.account, warning.endpoint) == (ACCOUNT, Endpoint.ADMINACTION)
    assert "cannot be fetched from Duo and are skipped" in warning.message


async def test_the_clocks_are_told_at_each_plan_with_their_state(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """A clock 90 s fast is AHEAD; at 7 s it still is (hysteresis); at 0 in step."""
    del autojump_clock
    app = make_app(PAGES)
    seen = RecordingObserver()

    def skew(now: float) -> float:
        return 90.0 if now < HOUR else 7.0 if now < 2 * HOUR else 0.0

    daemon = SkewedDaemon(
        app, config_for(tmp_path, [Endpoint.AUTH]), observer=seen, skew=skew
    )

    async def three_hours() -> None:
        await trio.sleep(3 * HOUR)

    await daemon.run(three_hours)

    readings = seen.of(ClockSkew)
    # Duo's clock is known to the second, rounded down: up to a second more.
    expected = {
        (seconds + late, state)
        for seconds, state in [
            (90, ClockState.AHEAD),
            (7, ClockState.AHEAD),
            (0, ClockState.IN_STEP),
        ]
        for late in (0, 1)
    }
    assert {(round(r.seconds), r.state) for r in readings} <= expected
    states = [r.state for r in readings]
    assert list(dict.fromkeys(states)) == [ClockState.AHEAD, ClockState.IN_STEP]
    assert any(round(r.seconds) in {7, 8} for r in readings)
    assert len(readings) > 3 * HOUR / POLL


async def test_the_totals_of_a_run_match_what_was_delivered(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """Counters, given the fetchers' events, hold every page and record sent."""
    del autojump_clock
    app = make_app(PAGES)
    endpoints = [Endpoint.AUTH, Endpoint.TELEPHONY]
    counters = Counters()
    daemon = Daemon(app, config_for(tmp_path, endpoints), observer=counters)
    await run_past_complete(daemon, lambda: held(app, endpoints))

    assert {
        (ACCOUNT, endpoint): len(held(app, [endpoint])) for endpoint in endpoints
    } == dict(counters.records_delivered)
    assert daemon.recorder.pages == sum(counters.pages_delivered.values())
    assert set(counters.behind) == {(ACCOUNT, endpoint) for endpoint in endpoints}


async def test_a_dls_checkpoint_imported_at_a_first_start_is_told(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """The fetcher's store tells the DLS checkpoint it continues from, once."""
    del autojump_clock
    app = make_app(PAGES)
    state = tmp_path / "state"
    state.mkdir()
    checkpoint = state / "telephony_checkpoint_data.txt"
    checkpoint.write_text(f'"{int(BASE * 1000) - 3_600_000},x"')
    seen = RecordingObserver()
    daemon = Daemon(app, config_for(tmp_path, [Endpoint.TELEPHONY]), observer=seen)
    await run_past_complete(daemon, list)

    assert [DlsCheckpointImported(Endpoint.TELEPHONY, None, checkpoint)] == seen.of(
        DlsCheckpointImported
    )


# Account discovery --------------------------------------------------------------


class ListingDuo(InProcessDuo):
    """The fake's account list, empty the first ``empty`` times, failing before."""

    def __init__(self, app: FakeDuoApp, *, empty: int = 0, failing: int = 0) -> None:
        """Fail *failing* times, then list no child *empty* times, then list."""
        super().__init__(app)
        self.empty = empty
        self.failing = failing

    async def list_child_accounts(self) -> list[dict[str, Any]]:
        """Raise as for a 500, return [], or the fake's children, in that order."""
        await trio.sleep(1)
        if self.failing:
            self.failing -= 1
            msg = "POST /accounts/v1/account/list: HTTP 500 (Error)"
            raise TransientApiError(msg)
        if self.empty:
            self.empty -= 1
            return []
        return await super().list_child_accounts()


def msp_app(children: int = 3) -> FakeDuoApp:
    """A fake MSP parent with *children* children."""
    return make_app(
        DatasetSpec(seed=5, span=DAY, end_before=600, admin_burst=0),
        children=make_children(children, seed=6),
    )


async def discover(
    tmp_path: Path, listing: InProcessDuo, block: tuple[str, ...] = ()
) -> tuple[list[AccountRef], list[Event]]:
    """Run the real discovery once; return the accounts and what it told."""
    config = config_for(tmp_path, [Endpoint.AUTH], msp=True, block=block)
    seen = RecordingObserver()
    with trio.fail_after(DAY):
        accounts = await AccountDiscovery(listing, observer=seen)(config, StopSignal())
    return accounts, seen.events


async def test_a_listing_is_told_with_its_children_and_those_blocked(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """Three children, one in block_list: two to fetch, one skipped, told once."""
    del autojump_clock
    app = msp_app()
    blocked = app.config.children[2].account_id
    accounts, events = await discover(tmp_path, InProcessDuo(app), (blocked,))

    assert len(accounts) == 2
    assert [AccountsListed(children=2, blocked=1)] == events


async def test_each_list_without_a_child_is_told_with_its_count(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """Three empty lists are three NoChildAccount, counted, then the listing."""
    del autojump_clock
    accounts, events = await discover(tmp_path, ListingDuo(msp_app(2), empty=3))

    assert len(accounts) == 2
    assert [AccountsListed, NoChildAccount] * 3 + [AccountsListed] == [
        type(e) for e in events
    ]
    none = [e for e in events if isinstance(e, NoChildAccount)]
    assert [e.failures for e in none] == [1, 2, 3]
    assert {(0, 0)} == {(e.listed, e.blocked) for e in none}
    assert none[0].retry_in < none[2].retry_in
    assert AccountsListed(children=2, blocked=0) == events[-1]


async def test_each_failed_listing_is_told_with_its_count(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """Two failed listings are two AccountListFailed, counted, then the listing."""
    del autojump_clock
    accounts, events = await discover(tmp_path, ListingDuo(msp_app(2), failing=2))

    assert len(accounts) == 2
    failed = [e for e in events if isinstance(e, AccountListFailed)]
    assert [e.failures for e in failed] == [1, 2]
    assert {"TransientApiError 500"} == {e.kind for e in failed}
    assert {failed[0].at} == {e.since for e in failed}
    assert [AccountListFailed, AccountListFailed, AccountsListed] == [
        type(e) for e in events
    ]
