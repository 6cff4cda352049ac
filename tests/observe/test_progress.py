"""Progress: what one ``Progress`` keeps from events, and what is said of it.

Rules for these tests: synthetic events go straight into a ``Progress`` and
the interval is ended by calling ``mark`` at chosen times, so the reports
and the lines are checked as values; ``serve_progress`` is run on trio's
virtual clock (``autojump_clock``).  That the real fetchers tell these events
and the lines appear during a real catch-up is ``tests/test_progress.py``.
"""

from __future__ import annotations

import io
import logging
import re

import pytest
import trio
import trio.testing
from rich.console import Console

from trio_dls.endpoints import Endpoint
from trio_dls.observe.events import (
    AccountRemoved,
    Backlog,
    Behind,
    CaughtUp,
    PageDelivered,
)
from trio_dls.observe.logsetup import LogFormat
from trio_dls.observe.progress import (
    MAX_LINES,
    Progress,
    ProgressMode,
    Report,
    Row,
    choose_mode,
    report_lines,
    report_table,
    serve_progress,
    span,
    time_left,
)
from trio_dls.supervisor import AccountRef

ACCOUNT = AccountRef("acme")
CHILD = AccountRef("child", "DA0000000000000000001")
AUTH = Endpoint.AUTH
DAY = 86_400.0
NOW = 1_790_000_000.0  # 2026-09-21T14:13:20Z
START = NOW - 180 * DAY  # the default offset


class Clock:
    """Trio's clock as a test sets it."""

    def __init__(self) -> None:
        """Start at 0."""
        self.now = 0.0

    def __call__(self) -> float:
        """The time set."""
        return self.now


def watching(interval: float = 30) -> tuple[Progress, Clock]:
    """A ``Progress`` whose clock the test sets, and that clock."""
    clock = Clock()
    return Progress(interval=interval, clock=clock), clock


def page(
    progress: Progress,
    position: float,
    records: int = 1000,
    account: AccountRef = ACCOUNT,
    endpoint: Endpoint = AUTH,
) -> None:
    """Tell *progress* what a fetcher tells of a page of a backlog, in order.

    The fetcher's now is ``NOW`` plus trio's time, as in the tree's tests.
    """
    now = NOW + progress.clock()
    progress(Backlog(account, endpoint))
    progress(PageDelivered(account, endpoint, records, position))
    progress(Behind(account, endpoint, now - position, position))


def test_a_catching_up_fetcher_reports_sent_cursor_lag_and_time_left() -> None:
    """The rate over the interval gives the time left: lag / (advance - 1)."""
    progress, clock = watching()
    progress.mark(0.0)
    clock.now = 10
    page(progress, START + 3600)
    first = progress.mark(30.0)
    # No advance measured yet: its first interval only saw where it stands.
    # The lag is behind now: 20 s more than when told.
    assert first.rows == (
        Row("acme/auth", 1000, 1000, START + 3600, 180 * DAY - 3600 + 30, None),
    )
    clock.now = 40
    page(progress, START + 2 * 3600)
    page(progress, START + 3 * 3600 + 60, records=500)
    second = progress.mark(60.0)
    (row,) = second.rows
    assert (row.sent, row.recent) == (2500, 1500)
    assert row.position == START + 3 * 3600 + 60
    assert row.lag == NOW + 60 - (START + 3 * 3600 + 60)
    # 2 h 1 min of Duo's time in 30 s: 242 cursor seconds a second.
    assert row.left == pytest.approx(row.lag / 241)
    assert (second.catching_up, second.caught_up) == (1, 0)
    assert (second.sent, second.recent) == (2500, 1500)


def test_the_time_left_is_unknown_without_a_gain() -> None:
    """A cursor that stood still (a 429, an outage) or lost ground gives no estimate."""
    assert time_left(3600.0, 1.0) is None
    assert time_left(3600.0, 0.0) is None
    assert time_left(None, 100.0) is None
    assert time_left(3600.0, None) is None
    assert time_left(3600.0, 13.0) == 300.0
    progress, _ = watching()
    progress.mark(0.0)
    page(progress, START + 3600)
    progress.mark(30.0)
    assert progress.mark(60.0).rows[0].left is None  # the cursor has not moved


def test_the_cursor_is_how_far_the_records_sent_reach() -> None:
    """A window paged from 180 days back: its records' time, not its start."""
    progress, _ = watching()
    progress(Backlog(ACCOUNT, AUTH))
    progress(PageDelivered(ACCOUNT, AUTH, 1000, START))
    progress(Behind(ACCOUNT, AUTH, NOW - START, START, reached=NOW - 3 * DAY))
    (row,) = progress.mark(0.0).rows
    assert (row.position, row.lag) == (NOW - 3 * DAY, 3 * DAY)


def test_lines_name_each_fetcher_with_its_numbers_in_utc() -> None:
    """A catching-up fetcher's line: records, cursor (UTC ISO), lag, time left."""
    progress, clock = watching()
    progress.mark(0.0)
    page(progress, START + 3600, account=CHILD)
    (first,) = report_lines(progress.mark(0.0))
    assert first.text == (
        "child (DA0000000000000000001)/auth: catching up, 1,000 records sent "
        "(1,000 in the last 30 s), cursor at 2026-03-25T15:13:20Z, "
        "179 d 23 h behind, time left unknown"
    )
    assert first.fields == {
        "account": "child",
        "endpoint": "auth",
        "child_account_id": "DA0000000000000000001",
    }
    clock.now = 30
    page(progress, START + 3 * 86_400 + 3600, account=CHILD)
    (second,) = report_lines(progress.mark(30.0))
    # 3 days in 30 s: 8640 a second; 177 days left at that pace is ~30 min.
    assert "cursor at 2026-03-28T15:13:20Z, 176 d 23 h behind" in second.text
    assert second.text.endswith("time left about 29 min")


def test_lines_are_capped_at_the_furthest_behind_and_one_for_the_rest() -> None:
    """1,000 children x 5 endpoints catching up: MAX_LINES lines, then one more."""
    progress, _ = watching()
    progress.mark(0.0)
    children = [AccountRef(f"c{n}", f"DA{n:019d}") for n in range(1000)]
    for n, child in enumerate(children):
        for endpoint in Endpoint:
            page(progress, START + n * 60, records=10, account=child, endpoint=endpoint)
    for endpoint in Endpoint:  # five caught up, to be counted
        progress(CaughtUp(ACCOUNT, endpoint, 0))
    lines = report_lines(progress.mark(30.0))
    assert len(lines) == MAX_LINES + 1
    # The furthest behind are the children whose cursors are the oldest.
    named = {line.text.split("/")[0] for line in lines[:-1]}
    assert named <= {f"c{n} (DA{n:019d})" for n in range(2)}
    assert lines[-1].text == (
        "and 4,990 more catching up, 5 caught up; 50,000 records sent in the last 30 s"
    )


def test_once_caught_up_one_summary_line_per_interval_and_none_when_idle() -> None:
    """A line when something was sent or changed in the interval, else none."""
    progress, _ = watching()
    progress.mark(0.0)
    for endpoint in Endpoint:
        page(progress, NOW - 300, records=100, endpoint=endpoint)
        progress(CaughtUp(ACCOUNT, endpoint, 100))
    assert [line.text for line in report_lines(progress.mark(30.0))] == [
        "caught up: 5 fetchers, 500 records sent in the last 30 s, 500 since the start"
    ]
    # A poll that finds nothing: nothing to say.
    progress(CaughtUp(ACCOUNT, AUTH, 100))
    assert report_lines(progress.mark(60.0)) == []
    assert report_lines(progress.mark(90.0)) == []
    # Many polls with records in one interval: still one line.
    for _ in range(7):
        progress(PageDelivered(ACCOUNT, AUTH, 3, NOW))
        progress(CaughtUp(ACCOUNT, AUTH, 3))
    assert [line.text for line in report_lines(progress.mark(120.0))] == [
        "caught up: 5 fetchers, 21 records sent in the last 30 s, 521 since the start"
    ]


def test_a_removed_account_is_forgotten() -> None:
    """``AccountRemoved`` drops the account's state; the others stay."""
    progress, _ = watching()
    for endpoint in Endpoint:
        page(progress, START, account=CHILD, endpoint=endpoint)
        page(progress, START, endpoint=endpoint)
    assert len(progress) == 10
    progress(AccountRemoved(CHILD))
    assert len(progress) == 5
    report = progress.mark(0.0)
    assert report.catching_up == 5
    assert all(row.name.startswith("acme/") for row in report.rows)


def test_the_live_table_shows_the_rows_and_the_rest_in_its_caption() -> None:
    """Rendered on a console, the table has each fetcher's numbers and the totals."""
    report = Report(
        interval=30,
        rows=(
            Row("acme/auth", 12_345, 1000, START + 3600, 179 * DAY, 2 * 3600 + 60),
            Row("acme/telephony", 10, 10, None, None, None),
        ),
        more=3,
        caught_up=2,
        sent=99_999,
        recent=1010,
        changed=True,
    )
    out = io.StringIO()
    Console(file=out, width=120).print(report_table(report))
    text = out.getvalue()
    assert "catching up: 5 fetchers" in text
    assert re.search(
        r"acme/auth\s.*12,345\s.*2026-03-25T15:13:20Z\s.*179 d 0 h\s.*2 h 1 min", text
    )
    assert re.search(r"acme/telephony\s.*10\s.*unknown\s.*unknown\s.*unknown", text)
    assert "3 more catching up, 2 caught up; 99,999 records sent" in text
    done = io.StringIO()
    caught_up = Report(30, (), 0, 5, 99_999, 0, changed=False)
    Console(file=done, width=120).print(report_table(caught_up))
    assert done.getvalue().strip() == "caught up: 5 fetchers, 99,999 records sent"


@pytest.mark.parametrize(
    ("tty", "log_format", "environ", "expected"),
    [
        (True, LogFormat.TEXT, {}, ProgressMode.LIVE),
        (False, LogFormat.TEXT, {}, ProgressMode.LINES),
        (True, LogFormat.JSON, {}, ProgressMode.LINES),
        (True, LogFormat.TEXT, {"JOURNAL_STREAM": "8:1234"}, ProgressMode.LINES),
        (True, LogFormat.TEXT, {"INVOCATION_ID": "ab12"}, ProgressMode.LINES),
        (True, LogFormat.TEXT, {"NOTIFY_SOCKET": "/run/x"}, ProgressMode.LINES),
    ],
)
def test_auto_is_live_only_on_an_interactive_terminal_outside_a_service(
    tty: bool,  # noqa: FBT001
    log_format: LogFormat,
    environ: dict[str, str],
    expected: ProgressMode,
) -> None:
    """``auto``: live on a terminal with text logs and no service manager."""

    class Stream(io.StringIO):
        def isatty(self) -> bool:
            return tty

    chosen = choose_mode(
        ProgressMode.AUTO, stream=Stream(), log_format=log_format, environ=environ
    )
    assert chosen is expected
    for mode in (ProgressMode.LINES, ProgressMode.LIVE, ProgressMode.OFF):
        assert (
            choose_mode(mode, stream=Stream(), log_format=log_format, environ=environ)
            is mode
        )


def test_spans_read_as_an_operator_reads_them() -> None:
    """Seconds, then minutes, then hours and minutes, then days and hours."""
    assert [span(s) for s in (0, 45, 119, 120, 7199, 7200, 172_799, 180 * DAY)] == [
        "0 s",
        "45 s",
        "119 s",
        "2 min",
        "119 min",
        "2 h 0 min",
        "47 h 59 min",
        "180 d 0 h",
    ]


class Said(logging.Handler):
    """A handler keeping each line with the time on trio's clock it was said."""

    def __init__(self) -> None:
        """Keep nothing yet."""
        super().__init__()
        self.lines: list[tuple[float, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        """Keep *record*'s message, at trio's time."""
        self.lines.append((trio.current_time(), record.getMessage()))


async def test_lines_are_logged_every_interval_on_trios_clock(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    """``serve_progress`` says a report at each interval's end, through the log."""
    del autojump_clock
    caplog.set_level(logging.INFO, logger="trio_dls")
    said = Said()
    logger = logging.getLogger("trio_dls.progress")
    logger.addHandler(said)
    try:
        progress = Progress(interval=30)
        async with trio.open_nursery() as nursery:
            await nursery.start(serve_progress, progress, ProgressMode.LINES)
            for minute in range(1, 4):
                await trio.sleep(20)
                page(progress, START + minute * DAY)
                await trio.sleep(40)
            await trio.sleep(5)
            progress(CaughtUp(ACCOUNT, AUTH, 3000))
            await trio.sleep(300)
            nursery.cancel_scope.cancel()
    finally:
        logger.removeHandler(said)
    # A line each interval while catching up, pages or not; once caught up,
    # one, and none after in intervals when nothing happened.
    times = [at for at, _ in said.lines]
    assert times == [30.0, 60.0, 90.0, 120.0, 150.0, 180.0, 210.0]
    lines = dict(said.lines)
    assert "1,000 records sent (1,000 in the last 30 s)" in lines[30.0]
    assert lines[30.0].endswith("time left unknown")
    # The rate is measured from the first mark that saw the cursor (30 s):
    # at 120 s, a day in 90 s, which an interval without a page keeps known.
    assert "2,000 records sent (0 in the last 30 s)" in lines[120.0]
    assert lines[120.0].endswith("178 d 0 h behind, time left about 4 h 27 min")
    assert "3,000 records sent" in lines[180.0]
    assert lines[210.0] == (
        "caught up: 1 fetcher, 0 records sent in the last 30 s, 3,000 since the start"
    )


async def test_the_live_display_redraws_from_the_state(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """``live`` draws the table on its stream, and the numbers as they change."""
    del autojump_clock

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    out = Terminal()
    progress = Progress(interval=30)
    async with trio.open_nursery() as nursery:
        await nursery.start(
            lambda task_status: serve_progress(
                progress, ProgressMode.LIVE, stream=out, task_status=task_status
            )
        )
        page(progress, START + DAY, records=4321)
        await trio.sleep(1)
        assert "4,321" in out.getvalue()
        page(progress, START + 2 * DAY, records=1000)
        await trio.sleep(1)
        nursery.cancel_scope.cancel()
    assert "5,321" in out.getvalue()
    assert "acme/auth" in out.getvalue()
