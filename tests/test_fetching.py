"""Fetching: every record Duo holds arrives once, across stops, kills and faults.

Rules for these tests: the fake Duo API's request handler runs in-process
(``duo_inprocess.InProcessDuo``) so that hours of catching up run on trio's
virtual clock; the fake's "now" and the fetchers' wall clock are both tied to
it.  Fetchers run inside the real ``serve`` tree, with a sender that records
what it is given and a real ``CheckpointStore`` in ``tmp_path``.  Every test
compares what was delivered with what the fake reports holding.
"""

from __future__ import annotations

import collections
import logging
import math
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio
import trio.testing

from tests.duo_inprocess import InProcessDuo
from trio_dls.checkpoints import CheckpointStore
from trio_dls.config import Config, Environment, load_config_text
from trio_dls.duo.admission import Admission
from trio_dls.duo.client import CredentialsRejectedError, DuoApi
from trio_dls.duo.discovery import AccountDiscovery
from trio_dls.duo.pacing import INITIAL_INTERVAL, MAX_INTERVAL
from trio_dls.duo.paging import Limits
from trio_dls.endpoints import Endpoint
from trio_dls.fakeduo import (
    DatasetSpec,
    FakeDuoApp,
    FakeDuoConfig,
    Faults,
    make_children,
)
from trio_dls.fakeduo.data import record_key
from trio_dls.fetcher import Fetching, FetchSettings
from trio_dls.observe import LogObserver, Observer
from trio_dls.supervisor import AccountRef, SenderContext, serve

BASE = 1_790_000_000.0  # 2026-09-21T14:13:20Z; any fixed UTC epoch will do
DAY = 86_400.0
# A run that has not delivered everything after this much virtual time never will.
PATIENCE = 7 * DAY
# The fake generates its data when created, before trio's clock starts at 0.
Key = tuple[str | None, Endpoint, str]


def config_for(
    tmp_path: Path,
    endpoints: list[Endpoint],
    *,
    msp: bool = False,
    block: tuple[str, ...] = (),
    offset: float | None = 3,
    timeout: float | None = 120,
    refresh: float | None = None,
) -> Config:
    """A config fetching *endpoints* to one server, cursors in tmp_path.

    An *offset*, *timeout* or *refresh* (``msp_refresh_interval``) of None
    leaves its key out, for the default.
    """
    names = ", ".join(e.value for e in endpoints)
    api = {"offset": offset, "timeout": timeout}
    settings = ", ".join(f"{k}: {v}" for k, v in api.items() if v is not None)
    api_line = f"  api: {{{settings}}}\n" if settings else ""
    refresh_line = f"  msp_refresh_interval: {refresh}\n" if refresh is not None else ""
    text = f"""\
version: '1.0.0'
dls_settings:
{api_line}  checkpointing: {{directory: {tmp_path / "state"}}}
servers:
  - {{id: siem, hostname: 127.0.0.1, port: 9000, protocol: TCP}}
account:
  ikey: DIFAKEDUOINTEGRATION
  skey: fake-duo-secret-key-0123456789abcdefghij
  hostname: localhost
  is_msp: {msp}
  block_list: [{", ".join(block)}]
{refresh_line}  endpoint_server_mappings:
    - {{endpoints: [{names}], server: siem}}
"""
    env = Environment(base_directory=tmp_path, environ={}, euid=1000)
    return load_config_text(text, "c.yml", env)


def make_app(spec: DatasetSpec | None = None, **config: Any) -> FakeDuoApp:
    """A fake whose "now" is BASE plus trio's (virtual) clock."""

    def now() -> float:
        try:
            return BASE + trio.current_time()
        except RuntimeError:  # outside trio: when the data set is generated
            return BASE

    spec = spec or DatasetSpec(seed=11, span=2 * DAY, end_before=600)
    return FakeDuoApp(FakeDuoConfig(dataset=spec, **config), clock=now, wall_clock=None)


async def inline(function: Callable[..., Any], *args: Any) -> Any:
    """Run file work on the event loop: the virtual clock must not jump meanwhile."""
    await trio.lowlevel.checkpoint()
    return function(*args)


class Recorder:
    """A sender that keeps every record it is given, in order."""

    def __init__(self) -> None:
        """Start empty."""
        self.records: list[Key] = []
        self.pages = 0
        self.changed = trio.Event()
        # A kill: cancel this scope on receiving page number ``kill_at``,
        # before or after acknowledging it.
        self.kill: trio.CancelScope | None = None
        self.kill_at = 0
        self.kill_before_ack = False
        # How long writing one page takes (a slow receiver), on trio's clock.
        self.write_time = 0.0

    async def __call__(self, context: SenderContext) -> None:
        """Record each delivery's records and acknowledge it."""
        async with context.deliveries:
            async for delivery in context.deliveries:
                page = delivery.page
                await trio.sleep(self.write_time)
                for record in page.records:
                    self.records.append(
                        (
                            record.get("child_account_id"),
                            page.endpoint,
                            record_key(page.endpoint, record),
                        )
                    )
                self.pages += 1
                killing = self.kill is not None and self.pages == self.kill_at
                if killing and self.kill_before_ack:
                    self.kill.cancel()  # type: ignore[union-attr]
                    await trio.sleep_forever()
                delivery.done.set()
                if killing:
                    self.kill.cancel()  # type: ignore[union-attr]
                self.changed.set()
                self.changed = trio.Event()


def held(
    app: FakeDuoApp, endpoints: list[Endpoint], children: list[str | None] | None = None
) -> list[Key]:
    """What a correct client has fetched from the fake by now."""
    return [
        (child, endpoint, record.key)
        for child in children or [None]
        for endpoint in endpoints
        for record in app.servable_records(endpoint, child)
    ]


@attrs.define
class Daemon:
    """The tree with the in-process fake, started and stopped by tests."""

    app: FakeDuoApp
    config: Config
    recorder: Recorder = attrs.Factory(Recorder)
    seed: int = 0
    limits: Limits = attrs.Factory(Limits)
    skey: str | None = None  # None: the fake's own, so the signatures match
    outcomes: list[tuple[float, int]] = attrs.Factory(list)  # (time, status)
    # Told by the fetchers, their store and account discovery; None: each of
    # a run's parts logs, as it does by default.
    observer: Observer | None = None
    # The global bounds; None: what the config says, as the daemon has.
    admission: Admission | None = None
    # Wraps each account's Duo stand-in (to watch its calls); None: as it is.
    wrap: Callable[[DuoApi], DuoApi] | None = None

    def fetching(self) -> Fetching:
        """The fetcher of this daemon, with a fresh store object."""
        observer = self.observer or LogObserver()
        store = CheckpointStore(
            Path(self.config.dls_settings.checkpointing.directory),
            enabled=self.config.dls_settings.checkpointing.enabled,
            offload=inline,
            observer=observer,
        )

        def api_for(account: AccountRef) -> DuoApi:
            api = InProcessDuo(
                self.app, account.account_id, skey=self.skey, outcomes=self.outcomes
            )
            return api if self.wrap is None else self.wrap(api)

        rng = random.Random(self.seed)
        return Fetching(
            api_for=api_for,
            store=store,
            settings=attrs.evolve(
                FetchSettings.from_config(self.config), limits=self.limits
            ),
            host="localhost",
            clock=lambda: BASE + trio.current_time(),
            rng=rng,
            observer=observer,
            admission=self.admission or Admission.from_config(self.config, rng),
        )

    async def run(self, shutdown: Callable[[], Any], grace: float = 30) -> None:
        """Run the tree until *shutdown* returns."""
        discovery = AccountDiscovery(
            InProcessDuo(self.app), observer=self.observer or LogObserver()
        )
        await serve(
            self.config,
            shutdown_trigger=shutdown,
            grace=grace,
            fetcher=self.fetching(),
            sender=self.recorder,
            discover_accounts=discovery,
            refresh_accounts=discovery.refresh,
        )

    async def run_until_complete(
        self, expected: Callable[[], list[Key]], *, or_duplicate: bool = False
    ) -> None:
        """Run until the recorder holds every expected record, then stop.

        With *or_duplicate*, stop at the first record delivered twice as well,
        so that a daemon sending one page again and again fails at once.
        """

        def done() -> bool:
            records = self.recorder.records
            if or_duplicate and len(set(records)) < len(records):
                return True
            return set(expected()) <= set(records)

        async def complete() -> None:
            while not done():
                await self.recorder.changed.wait()

        with trio.fail_after(PATIENCE):
            await self.run(complete)


def assert_exactly_once(delivered: list[Key], expected: list[Key]) -> None:
    """Every expected record was delivered, none twice, nothing else."""
    duplicates = [k for k, n in collections.Counter(delivered).items() if n > 1]
    assert duplicates == []
    assert sorted(expected) == sorted(delivered)


@pytest.mark.parametrize("endpoint", list(Endpoint))
async def test_backlog_arrives_complete_and_once(
    endpoint: Endpoint, tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """Each endpoint's backlog, hard cases included, arrives whole, no duplicate."""
    del autojump_clock
    app = make_app()
    daemon = Daemon(app, config_for(tmp_path, [endpoint]))
    await daemon.run_until_complete(lambda: held(app, [endpoint]))
    assert len(daemon.recorder.records) > 100
    assert_exactly_once(daemon.recorder.records, held(app, [endpoint]))


@pytest.mark.parametrize("tz", ["America/New_York", "Asia/Kolkata"])
async def test_local_time_zone_changes_nothing(
    tz: str,
    tmp_path: Path,
    autojump_clock: trio.testing.MockClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With TZ set to another zone, the same records arrive as in UTC."""
    del autojump_clock
    monkeypatch.setenv("TZ", tz)
    time.tzset()
    try:
        app = make_app()
        endpoints = list(Endpoint)
        daemon = Daemon(app, config_for(tmp_path, endpoints))
        await daemon.run_until_complete(lambda: held(app, endpoints))
        assert_exactly_once(daemon.recorder.records, held(app, endpoints))
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()


# Enough records for several pages per endpoint (1000 a page, 500 for trust
# monitor), so that stops and kills land in the middle of backlogs.
BIG = DatasetSpec(
    seed=21,
    span=DAY,
    end_before=600,
    counts={
        Endpoint.AUTH: 3500,
        Endpoint.ADMINACTION: 2500,
        Endpoint.TELEPHONY: 2200,
        Endpoint.ACTIVITY: 2700,
        Endpoint.TRUSTMONITOR: 1600,
    },
)


async def test_msp_children_are_fetched_with_their_ids(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """An MSP parent's children are each fetched; block_list skips one."""
    del autojump_clock
    children = make_children(3, seed=4)
    app = make_app(
        DatasetSpec(seed=3, span=DAY, end_before=600, admin_burst=0),
        children=children,
    )
    endpoints = [Endpoint.AUTH, Endpoint.TRUSTMONITOR]
    blocked = children[2].account_id
    config = config_for(tmp_path, endpoints, msp=True, block=(blocked,))
    daemon = Daemon(app, config)
    fetched = [c.account_id for c in children[:2]]
    await daemon.run_until_complete(lambda: held(app, endpoints, list(fetched)))
    assert_exactly_once(daemon.recorder.records, held(app, endpoints, list(fetched)))
    assert blocked not in {k[0] for k in daemon.recorder.records}


async def test_rejected_credentials_stop_the_daemon(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """A 401 is fatal, with one message naming what was refused."""
    del autojump_clock
    app = make_app()
    daemon = Daemon(
        app, config_for(tmp_path, [Endpoint.AUTH]), skey="not-the-skey-duo-knows-000000"
    )
    with (
        trio.fail_after(PATIENCE),
        pytest.RaisesGroup(
            pytest.RaisesExc(
                CredentialsRejectedError,
                match="^account DIFAKEDUOINTEGRATION, endpoint auth: GET "
                "/admin/v2/logs/authentication: Duo rejected the credentials",
            ),
            flatten_subgroups=True,
        ),
    ):
        await daemon.run(trio.sleep_forever)


async def test_dls_checkpoint_is_imported(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """A DLS checkpoint in the directory is where fetching resumes."""
    del autojump_clock
    app = make_app()
    endpoint = Endpoint.TELEPHONY
    records = app.held_records(endpoint)
    middle = records[len(records) // 2]
    state = tmp_path / "state"
    state.mkdir()
    # DLS saves "<last ms + 1>,<id>" of the last record it sent.
    (state / "telephony_checkpoint_data.txt").write_text(
        f'"{middle.ts_ms + 1},{middle.key}"'
    )
    daemon = Daemon(app, config_for(tmp_path, [endpoint]))
    expected = [
        k
        for k in held(app, [endpoint])
        if k[2] in {r.key for r in records if r.ts_ms >= middle.ts_ms}
    ]
    await daemon.run_until_complete(lambda: expected)
    assert_exactly_once(daemon.recorder.records, expected)


@pytest.mark.parametrize(
    "faults",
    [
        Faults(error_rate=0.3, seed=1),
        Faults(drop_rate=0.3, seed=2),
        Faults(malformed_rate=0.3, seed=3),
        Faults(delay=30.0, endpoints=frozenset({Endpoint.AUTH}), seed=4),
        Faults(rate_limit=2, rate_burst=1, seed=5),
    ],
    ids=["5xx", "dropped", "malformed", "slow", "429 storm"],
)
async def test_transient_faults_lose_nothing(
    faults: Faults, tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """5xx, dropped, malformed, slow answers and 429 storms are all survived."""
    del autojump_clock
    app = make_app(DatasetSpec(seed=8, span=DAY / 2, end_before=600), faults=faults)
    endpoints = [Endpoint.AUTH, Endpoint.ADMINACTION, Endpoint.TRUSTMONITOR]
    daemon = Daemon(app, config_for(tmp_path, endpoints))
    await daemon.run_until_complete(lambda: held(app, endpoints))
    assert_exactly_once(daemon.recorder.records, held(app, endpoints))


@pytest.mark.parametrize(
    ("per_minute", "burst", "records", "page_size"),
    [(2, None, 12_000, 1000), (10, 1, 10_000, 100), (60, 1, 10_000, 100)],
    ids=["duo-like 2/min", "10/min no burst", "60/min no burst"],
)
async def test_catch_up_is_as_fast_as_the_rate_limit_allows(
    per_minute: int,
    burst: int | None,
    records: int,
    page_size: int,
    tmp_path: Path,
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A backlog of N records takes at most 1.15 x N / (page x R) minutes.

    The fake refuses requests beyond R a minute with 429s; the fetcher must
    find that pace by itself, and be refused only now and then: while it
    halves its pace from the initial one (at most log2(MAX / INITIAL) times,
    9), then for at most one request in ten.
    """
    del autojump_clock
    endpoint = Endpoint.AUTH
    spec = DatasetSpec(
        seed=31,
        span=DAY / 2,
        end_before=600,
        counts={endpoint: records},
        hard_cases=False,
    )
    app = make_app(spec, faults=Faults(rate_limit=per_minute, rate_burst=burst))
    daemon = Daemon(
        app, config_for(tmp_path, [endpoint]), limits=Limits(page_size=page_size)
    )
    start = trio.current_time()
    await daemon.run_until_complete(lambda: held(app, [endpoint]))
    minutes = (trio.current_time() - start) / 60
    optimum = records / (page_size * per_minute)

    assert_exactly_once(daemon.recorder.records, held(app, [endpoint]))
    assert minutes <= 1.15 * optimum
    statuses = [status for _, status in daemon.outcomes]
    exploring = math.ceil(math.log2(MAX_INTERVAL / INITIAL_INTERVAL))
    assert statuses.count(429) <= exploring + 0.1 * len(statuses)


async def test_a_first_start_180_days_back_warns_of_nothing(
    tmp_path: Path,
    autojump_clock: trio.testing.MockClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """DLS's default offset (180 days) starts at Duo's limit, without a warning."""
    del autojump_clock
    app = make_app(DatasetSpec(seed=2, span=DAY, end_before=600, admin_burst=0))
    endpoints = list(Endpoint)
    daemon = Daemon(app, config_for(tmp_path, endpoints, offset=180))
    await daemon.run_until_complete(lambda: held(app, endpoints))
    assert [r.getMessage() for r in caplog.records if r.levelname == "WARNING"] == []


# Issue 8: DLS's default settings. ------------------------------------------------

HOUR = 3_600.0
RESTART = 60.0  # seconds from a stop to the restart's first request
# A backlog of several pages per endpoint (1000 a page, 500 for trust monitor)
# spread over four days: a first start 180 days back opens one window over
# all of it and pages through it while the retention floor moves on.
# The administrator log's second of more than 1000 events, which Duo cannot
# page through and the fetcher rightly warns of, is left out: no warning is due.
OVER_DAYS = DatasetSpec(
    seed=29,
    span=4 * DAY,
    end_before=600,
    admin_burst=0,
    counts={
        Endpoint.AUTH: 3600,
        Endpoint.ADMINACTION: 2600,
        Endpoint.TELEPHONY: 2300,
        Endpoint.ACTIVITY: 2800,
        Endpoint.TRUSTMONITOR: 1700,
    },
)
PAGE = {e: 500 if e is Endpoint.TRUSTMONITOR else 1000 for e in Endpoint}


def defaults_config(tmp_path: Path, endpoints: list[Endpoint]) -> Config:
    """A config with no ``api`` settings at all, so that DLS's defaults apply."""
    config = config_for(tmp_path, endpoints, offset=None, timeout=None)
    assert config.dls_settings.api.offset == 180.0
    assert config.dls_settings.api.timeout == 120.0
    return config


def warnings_in(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The messages logged at WARNING or above."""
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


def spread(app: FakeDuoApp, endpoint: Endpoint) -> float:
    """Seconds between the oldest and the newest record held for *endpoint*."""
    records = app.held_records(endpoint)
    return (records[-1].ts_ms - records[0].ts_ms) / 1000


@pytest.mark.parametrize("endpoint", list(Endpoint))
async def test_a_backlog_over_days_arrives_once_under_the_defaults(
    endpoint: Endpoint,
    tmp_path: Path,
    autojump_clock: trio.testing.MockClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """With offset 180 and timeout 120, pages of records over days arrive once."""
    del autojump_clock
    app = make_app(OVER_DAYS)
    daemon = Daemon(app, defaults_config(tmp_path, [endpoint]))
    await daemon.run_until_complete(lambda: held(app, [endpoint]), or_duplicate=True)
    assert len(held(app, [endpoint])) > 2 * PAGE[endpoint]
    assert spread(app, endpoint) > 3 * DAY
    assert_exactly_once(daemon.recorder.records, held(app, [endpoint]))
    assert warnings_in(caplog) == []


async def test_a_backlog_paged_for_hours_arrives_once_under_the_defaults(
    tmp_path: Path,
    autojump_clock: trio.testing.MockClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Paged under a rate limit for hours, as the floor moves on, it arrives once.

    Duo allows a request every two minutes here and pages hold 100 records,
    so the first window, opened at the retention floor, is paged for more
    than an hour while the floor moves on by as much.
    """
    del autojump_clock
    app = make_app(OVER_DAYS, faults=Faults(rate_limit=0.5, rate_burst=1, seed=6))
    endpoints = list(Endpoint)
    config = defaults_config(tmp_path, endpoints)
    daemon = Daemon(app, config, limits=Limits(page_size=100))
    # The data set is not live: what is held is known from the start.
    expected = held(app, endpoints)
    await daemon.run_until_complete(lambda: expected, or_duplicate=True)
    assert_exactly_once(daemon.recorder.records, expected)
    assert trio.current_time() > HOUR
    assert warnings_in(caplog) == []


@attrs.frozen
class Restarts:
    """How a test stops or kills the daemon mid-backlog and starts it again."""

    spec: DatasetSpec
    defaults: bool
    """The config's own defaults (offset 180, timeout 120), else offset 3 days."""
    stops: int
    kills: int
    gap: float
    """Seconds from a stop to the restart: the retention floor moves meanwhile."""
    seed: int

    def config(self, tmp_path: Path, endpoints: list[Endpoint]) -> Config:
        """The config of the daemon each run starts."""
        if self.defaults:
            return defaults_config(tmp_path, endpoints)
        return config_for(tmp_path, endpoints)


RESTARTS = {
    "offset 3 days": Restarts(BIG, defaults=False, stops=3, kills=6, gap=0, seed=5),
    "defaults": Restarts(
        OVER_DAYS, defaults=True, stops=2, kills=4, gap=RESTART, seed=8
    ),
}


@pytest.mark.parametrize("case", RESTARTS.values(), ids=RESTARTS.keys())
async def test_clean_stops_and_restarts_send_no_duplicate(
    case: Restarts,
    tmp_path: Path,
    autojump_clock: trio.testing.MockClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Stopped gracefully mid-backlog several times, restarts send nothing twice.

    With the defaults each restart takes a minute, so the retention floor has
    moved on past where the saved windows began.
    """
    del autojump_clock
    app = make_app(case.spec)
    endpoints = list(Endpoint)
    config = case.config(tmp_path, endpoints)
    recorder = Recorder()
    partial = []
    for _ in range(case.stops):

        async def stop_after_a_page() -> None:
            target = recorder.pages + 1
            while recorder.pages < target:
                await recorder.changed.wait()

        with trio.fail_after(PATIENCE):
            await Daemon(app, config, recorder).run(stop_after_a_page)
        partial.append(len(recorder.records))
        await trio.sleep(case.gap)
    assert partial == sorted(set(partial))  # each run sent more
    assert partial[-1] < len(held(app, endpoints))
    await Daemon(app, config, recorder).run_until_complete(
        lambda: held(app, endpoints), or_duplicate=True
    )
    assert_exactly_once(recorder.records, held(app, endpoints))
    if case.spec.admin_burst == 0:
        # Without the admin log's unfetchable burst, nothing is worth a warning.
        assert warnings_in(caplog) == []


def extra_copies(delivered: list[Key]) -> collections.Counter[Endpoint]:
    """How many copies beyond the first each endpoint's records arrived in."""
    return collections.Counter(
        key[1]
        for key, n in collections.Counter(delivered).items()
        for _ in range(n - 1)
    )


@pytest.mark.parametrize("case", RESTARTS.values(), ids=RESTARTS.keys())
async def test_abrupt_kills_lose_nothing(
    case: Restarts, tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """Killed without grace at random moments, restarts deliver everything.

    A kill cancels the whole tree at once, as SIGKILL would end the process:
    no delivery is finished and no cursor saved after it.  Duplicates are
    allowed, at most one page per endpoint per kill; the last run also ends
    once that bound is broken, so that a daemon re-sending pages fails at once.
    """
    del autojump_clock
    app = make_app(case.spec)
    endpoints = list(Endpoint)
    config = case.config(tmp_path, endpoints)
    recorder = Recorder()
    rng = random.Random(case.seed)
    kills = case.kills
    for _ in range(kills):
        with trio.CancelScope() as kill:
            recorder.kill = kill
            recorder.kill_at = recorder.pages + rng.randint(1, 3)
            recorder.kill_before_ack = rng.random() < 0.5
            await Daemon(app, config, recorder).run(trio.sleep_forever)
        assert kill.cancelled_caught
        await trio.sleep(case.gap)
    recorder.kill = None
    expected = held(app, endpoints)
    assert len(set(recorder.records)) < len(expected)  # killed mid-way

    def bound_broken() -> bool:
        extra = extra_copies(recorder.records)
        return any(extra[e] > kills * PAGE[e] for e in endpoints)

    async def complete_or_bound_broken() -> None:
        while not (set(expected) <= set(recorder.records) or bound_broken()):
            await recorder.changed.wait()

    with trio.fail_after(PATIENCE):
        await Daemon(app, config, recorder).run(complete_or_bound_broken)
    for endpoint, extra in extra_copies(recorder.records).items():
        assert extra <= kills * PAGE[endpoint], endpoint
    assert set(expected) == set(recorder.records)
