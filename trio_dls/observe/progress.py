"""Progress: how far each fetcher still has to go, at a steady interval.

Theory of operation
-------------------
A first start goes ``api.offset`` days back (180 by default) and catching up
takes hours; the log's "fetching a backlog" and "caught up" lines say when it
starts and ends, not how it goes.  This module says how it goes.

``Progress`` is an observer: from the fetchers' events it keeps, per
(account, endpoint), a few numbers (records sent, where the cursor stands,
the lag behind now, whether the fetcher is catching up or caught up), and
drops an account's when it is removed (``AccountRemoved``).  It formats and
writes nothing: observers are synchronous calls on the emitters' tasks.

What is said, and when, is decided by a trio task in the daemon's tree,
``serve_progress``, which wakes every *interval* seconds on trio's clock and
calls ``Progress.mark``: the interval just ended becomes a ``Report`` (a plain
value), and the rates of the next interval start from here.  Two pure
functions turn a report into output: ``report_lines`` into log lines,
``report_table`` into a ``rich`` table.  Each is tested on values, without a
clock or a terminal.

How much is said is bounded whatever the tree's size (an MSP parent with a
thousand children runs five thousand fetchers):

* while some fetchers are catching up, a line for each of the ``MAX_LINES``
  furthest behind, with its records sent (and sent in the interval), its
  cursor's time (UTC), its lag and an estimate of the time left, then one
  line for all the others ("and K more catching up");
* once none is, a single summary line per interval, and only if something
  happened in it (records were sent, a fetcher caught up): an idle daemon
  adds nothing to its log.

The cursor's time is how far the records sent reach (``Behind.reached``):
a first start pages one window opened 180 days back, whose saved position
stays there until the window is done, while its records move on.  The lag is
the fetcher's own (the earlier of this host's clock and Duo's, minus that
time), grown by the time since it was told: a fetcher waiting out a 429 falls
behind meanwhile.

The estimate of the time left comes from the recent past: the cursor
advanced *a* seconds of Duo's time in the last *t* seconds, so the lag shrinks
by ``a / t - 1`` seconds a second ("now" moves on as well), and what is left
is the lag divided by that.  *t* is between one and two ``RATE_WINDOW`` (five
minutes; two anchors per fetcher, moved on at the marks), so that a page
every few intervals, as under Duo's rate limit, gives a steady estimate, and
a pace that changes shows within minutes.  Before a second mark, or when the
cursor gained nothing over the window (waiting out a 429 for long, a failing
Duo), it is "unknown".

Two looks (``--progress``): ``lines``, through the ``trio_dls.progress``
logger, so that ``--log-format json`` makes JSON of them and a service's
journal gets them; and ``live``, a table redrawn in place on an interactive
terminal (``rich``), instead of the lines.  ``auto`` picks ``live`` only when
standard error is a terminal, the log is text, and no service manager started
trio-dls (systemd sets ``INVOCATION_ID``, ``JOURNAL_STREAM`` or
``NOTIFY_SOCKET``).  The live table is drawn from a report at most
``1 / LIVE_REFRESH`` times a second by the same task, never per event, and
with ``rich``'s own refresh thread off: that thread would read the state while
the fetchers change it.  While it is shown, the daemon's log lines to the
terminal are printed above it.
"""

from __future__ import annotations

import contextlib
import enum
import heapq
import logging
import sys
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final, TextIO

import attrs
import trio

from trio_dls.endpoints import ENDPOINT_INDEX
from trio_dls.observe.events import (
    AccountRemoved,
    Backlog,
    Behind,
    CaughtUp,
    PageDelivered,
)
from trio_dls.observe.logsetup import LogFormat

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from rich.console import RenderableType

    from trio_dls.endpoints import Endpoint
    from trio_dls.observe.events import Event
    from trio_dls.supervisor import AccountRef

__all__ = [
    "DEFAULT_INTERVAL",
    "MAX_LINES",
    "Line",
    "Progress",
    "ProgressMode",
    "Report",
    "Row",
    "choose_mode",
    "report_lines",
    "report_table",
    "serve_progress",
]

log = logging.getLogger("trio_dls.progress")

DEFAULT_INTERVAL: Final = 30.0
#: Catching-up fetchers named by one interval's lines; the others share one.
MAX_LINES: Final = 10
#: Rows of the live table; the others share its caption.
LIVE_ROWS: Final = 20
#: Seconds between two drawings of the live table.
LIVE_REFRESH: Final = 0.5
#: The least time the rate of a cursor is measured over (and at most twice it):
#: one page every few intervals under Duo's rate limit must not make the
#: estimate come and go.
RATE_WINDOW: Final = 300.0
#: Set by systemd for what it starts (a unit, its journal, Type=notify).
SERVICE_ENVIRON: Final = ("INVOCATION_ID", "JOURNAL_STREAM", "NOTIFY_SOCKET")


class ProgressMode(enum.StrEnum):
    """How progress is shown (``--progress``)."""

    AUTO = "auto"
    LINES = "lines"
    LIVE = "live"
    OFF = "off"


def choose_mode(
    mode: ProgressMode,
    *,
    stream: TextIO,
    log_format: LogFormat,
    environ: Mapping[str, str],
) -> ProgressMode:
    """Resolve ``auto``: live on an interactive terminal, lines otherwise."""
    if mode is not ProgressMode.AUTO:
        return mode
    if any(environ.get(name) for name in SERVICE_ENVIRON):
        return ProgressMode.LINES
    if log_format is not LogFormat.TEXT:
        return ProgressMode.LINES
    isatty = getattr(stream, "isatty", None)
    return ProgressMode.LIVE if callable(isatty) and isatty() else ProgressMode.LINES


# --------------------------------------------------------------------------
# The state, kept from events
# --------------------------------------------------------------------------


@attrs.define
class _Pair:
    """What is known of one (account, endpoint): a few numbers.

    Its name and log fields are made for the rows reported only: a thousand
    caught-up MSP children are counted, never named.
    """

    catching_up: bool | None = None
    """None until the fetcher said one way or the other."""
    sent: int = 0
    sent_mark: int = 0
    """``sent`` when the interval began."""
    position: float | None = None
    lag: float | None = None
    lag_at: float = 0.0
    """When ``lag`` was told (trio's clock): later, it is that much larger."""
    advance: float | None = None
    """Cursor seconds gained per second, over the rate window."""
    # Where the cursor stood at two marks, (trio's time, position): the rate
    # is measured from the older, between one and two windows back.  Only
    # while catching up: a fetcher caught up has no rate to tell.
    anchor: tuple[float, float] | None = None
    next_anchor: tuple[float, float] | None = None


def _name(account: AccountRef, endpoint: Endpoint) -> tuple[str, dict[str, str]]:
    # As the log observer names a fetcher: a child by its id too.
    who = account.name
    if account.account_id is not None and account.account_id != account.name:
        who = f"{account.name} ({account.account_id})"
    fields = {"account": account.name, "endpoint": str(endpoint)}
    if account.account_id is not None:
        fields["child_account_id"] = account.account_id
    return f"{who}/{endpoint}", fields


@attrs.frozen
class Row:
    """One catching-up fetcher, as an interval ends."""

    name: str
    sent: int
    recent: int
    """Records sent in the interval."""
    position: float | None
    lag: float | None
    left: float | None
    """Seconds until caught up, estimated; None when unknown."""
    fields: Mapping[str, str] = attrs.field(factory=dict, eq=False)


@attrs.frozen
class Report:
    """The state of every fetcher at the end of an interval (or now)."""

    interval: float
    rows: tuple[Row, ...]
    """The catching-up fetchers furthest behind, furthest first."""
    more: int
    """Catching-up fetchers beyond ``rows``."""
    caught_up: int
    sent: int
    """Records sent by every fetcher since the start."""
    recent: int
    """Records sent by every fetcher in the interval."""
    changed: bool
    """Whether records were sent, or a fetcher changed state, in the interval."""

    @property
    def catching_up(self) -> int:
        """How many fetchers are catching up."""
        return len(self.rows) + self.more


def time_left(lag: float | None, advance: float | None) -> float | None:
    """Seconds until a cursor *lag* seconds behind, gaining *advance*, is caught up.

    *advance* is cursor seconds per second; now moves on at one.
    """
    if lag is None or advance is None or advance <= 1:
        return None
    return max(0.0, lag) / (advance - 1)


class Progress:
    """The observer keeping each fetcher's progress (see the module docstring)."""

    def __init__(
        self,
        interval: float = DEFAULT_INTERVAL,
        clock: Callable[[], float] = trio.current_time,
    ) -> None:
        """Start knowing nothing; the first interval starts at the first mark.

        *clock* is trio's, which ``mark`` and ``report`` are given the time of.
        """
        self.interval = interval
        self.clock = clock
        # Per account, its endpoints' in ``ENDPOINT_INDEX`` order.
        self._pairs: dict[AccountRef, list[_Pair | None]] = {}
        self._changed = False
        self._handlers: dict[type[Any], Callable[[Any], None]] = {
            PageDelivered: self._page_delivered,
            Behind: self._behind,
            Backlog: self._backlog,
            CaughtUp: self._caught_up,
            AccountRemoved: self._account_removed,
        }

    def __call__(self, event: Event, /) -> None:
        """Take note of *event*, if it is about progress."""
        handler = self._handlers.get(type(event))
        if handler is not None:
            handler(event)

    def __len__(self) -> int:
        """How many (account, endpoint) are known."""
        return sum(1 for _ in self._all())

    def _pair(self, account: AccountRef, endpoint: Endpoint) -> _Pair:
        endpoints = self._pairs.get(account)
        if endpoints is None:
            endpoints = self._pairs[account] = [None] * len(ENDPOINT_INDEX)
        index = ENDPOINT_INDEX[endpoint]
        pair = endpoints[index]
        if pair is None:
            pair = endpoints[index] = _Pair()
        return pair

    def _page_delivered(self, event: PageDelivered) -> None:
        # Where the cursor stands comes with ``Behind``, told after the save,
        # with how far the records reach; ``cursor_time`` is only a position.
        pair = self._pair(event.account, event.endpoint)
        pair.sent += event.records
        if pair.position is None:
            pair.position = event.cursor_time
        self._changed = True

    def _behind(self, event: Behind) -> None:
        pair = self._pair(event.account, event.endpoint)
        pair.lag = event.seconds
        pair.lag_at = self.clock()
        if event.position is not None:
            reached = event.position if event.reached is None else event.reached
            # The lag of the records sent: a window being paged is nearer
            # now than its position.
            pair.lag -= reached - event.position
            pair.position = reached

    def _backlog(self, event: Backlog) -> None:
        self._state(event.account, event.endpoint, catching_up=True)

    def _caught_up(self, event: CaughtUp) -> None:
        self._state(event.account, event.endpoint, catching_up=False)

    def _state(
        self, account: AccountRef, endpoint: Endpoint, *, catching_up: bool
    ) -> None:
        pair = self._pair(account, endpoint)
        if pair.catching_up is not catching_up:
            pair.catching_up = catching_up
            self._changed = True
        if not catching_up:
            pair.anchor = pair.next_anchor = pair.advance = None

    def _account_removed(self, event: AccountRemoved) -> None:
        self._pairs.pop(event.account, None)

    def _all(self) -> Iterator[_Pair]:
        for _, _, pair in self._named():
            yield pair

    def _named(self) -> Iterator[tuple[AccountRef, Endpoint, _Pair]]:
        for account, pairs in self._pairs.items():
            for endpoint, pair in zip(ENDPOINT_INDEX, pairs, strict=True):
                if pair is not None:
                    yield account, endpoint, pair

    def report(self, now: float, limit: int = MAX_LINES) -> Report:
        """The state at *now* (trio's clock), within the interval, which goes on."""
        pairs = list(self._all())
        catching = [named for named in self._named() if named[2].catching_up]
        # The furthest behind first; one that has not said its lag yet, last.
        furthest = heapq.nlargest(
            limit,
            catching,
            key=lambda named: -1.0 if named[2].lag is None else named[2].lag,
        )
        rows = tuple(_row(*named, now) for named in furthest)
        return Report(
            interval=self.interval,
            rows=rows,
            more=len(catching) - len(rows),
            caught_up=sum(pair.catching_up is False for pair in pairs),
            sent=sum(pair.sent for pair in pairs),
            recent=sum(pair.sent - pair.sent_mark for pair in pairs),
            changed=self._changed,
        )

    def mark(self, now: float, limit: int = MAX_LINES) -> Report:
        """End the interval at *now* (trio's clock): its report; the next starts."""
        window = max(RATE_WINDOW, self.interval)
        for pair in self._all():
            if pair.catching_up:
                _measure(pair, now, window)
        report = self.report(now, limit)
        for pair in self._all():
            pair.sent_mark = pair.sent
        self._changed = False
        return report


def _row(account: AccountRef, endpoint: Endpoint, pair: _Pair, now: float) -> Row:
    # The lag behind now, not behind the moment it was told: a fetcher
    # waiting out a 429 falls further behind meanwhile.
    lag = None if pair.lag is None else pair.lag + max(0.0, now - pair.lag_at)
    name, fields = _name(account, endpoint)
    return Row(
        name=name,
        sent=pair.sent,
        recent=pair.sent - pair.sent_mark,
        position=pair.position,
        lag=lag,
        left=time_left(lag, pair.advance),
        fields=fields,
    )


def _measure(pair: _Pair, now: float, window: float) -> None:
    """Measure *pair*'s rate from its older anchor, and move the anchors on."""
    if pair.position is None:
        return
    if pair.anchor is None or pair.next_anchor is None:
        pair.anchor = pair.next_anchor = (now, pair.position)
        return
    since, position = pair.anchor
    if now > since:
        pair.advance = (pair.position - position) / (now - since)
    if now - pair.next_anchor[0] >= window:
        pair.anchor, pair.next_anchor = pair.next_anchor, (now, pair.position)


# --------------------------------------------------------------------------
# What is said of a report: pure functions
# --------------------------------------------------------------------------


@attrs.frozen
class Line:
    """A log line: its text, and its ``extra`` fields (the JSON log keeps them)."""

    text: str
    fields: Mapping[str, str] = attrs.field(factory=dict)


def span(seconds: float) -> str:
    """A duration as an operator reads it: ``45 s``, ``3 h 20 min``, ``180 d 2 h``."""
    seconds = max(0.0, seconds)
    if seconds < 120:  # noqa: PLR2004 - two minutes
        return f"{seconds:.0f} s"
    minutes = int(seconds // 60)
    if minutes < 120:  # noqa: PLR2004
        return f"{minutes} min"
    hours = minutes // 60
    if hours < 48:  # noqa: PLR2004
        return f"{hours} h {minutes % 60} min"
    return f"{hours // 24} d {hours % 24} h"


def utc(position: float | None) -> str:
    """A cursor's time, UTC ISO 8601; ``unknown`` when not known yet."""
    if position is None:
        return "unknown"
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(position))


def _left(row: Row) -> str:
    return "unknown" if row.left is None else f"about {span(row.left)}"


def _fetchers(count: int) -> str:
    return f"{count:,} fetcher{'' if count == 1 else 's'}"


def report_lines(report: Report) -> list[Line]:
    """The log lines of *report*: at most ``len(rows) + 1`` (module docstring)."""
    every = span(report.interval)
    if report.rows:
        lines = [
            Line(
                f"{row.name}: catching up, {row.sent:,} records sent "
                f"({row.recent:,} in the last {every}), cursor at {utc(row.position)}, "
                f"{'lag unknown' if row.lag is None else span(row.lag) + ' behind'}, "
                f"time left {_left(row)}",
                row.fields,
            )
            for row in report.rows
        ]
        if report.more:
            lines.append(
                Line(
                    f"and {report.more:,} more catching up, {report.caught_up:,} "
                    f"caught up; {report.recent:,} records sent in the last {every}"
                )
            )
        return lines
    if report.caught_up and report.changed:
        return [
            Line(
                f"caught up: {_fetchers(report.caught_up)}, {report.recent:,} "
                f"records sent in the last {every}, {report.sent:,} since the start"
            )
        ]
    return []


def report_table(report: Report) -> RenderableType:
    """The live table of *report*: a row per fetcher shown, the rest in the caption."""
    # rich is loaded only when a live display is shown.
    from rich.table import Table  # noqa: PLC0415
    from rich.text import Text  # noqa: PLC0415

    if not report.rows:
        return Text(
            f"caught up: {_fetchers(report.caught_up)}, {report.sent:,} records sent"
            if report.caught_up
            else "starting"
        )
    table = Table(
        title=f"catching up: {_fetchers(report.catching_up)}",
        title_justify="left",
        caption=(f"{report.more:,} more catching up, " if report.more else "")
        + f"{report.caught_up:,} caught up; {report.sent:,} records sent",
        caption_justify="left",
    )
    table.add_column("fetcher")
    table.add_column("records sent", justify="right")
    table.add_column("cursor (UTC)")
    table.add_column("behind", justify="right")
    table.add_column("left", justify="right")
    for row in report.rows:
        table.add_row(
            row.name,
            f"{row.sent:,}",
            utc(row.position),
            "unknown" if row.lag is None else span(row.lag),
            "unknown" if row.left is None else span(row.left),
        )
    return table


# --------------------------------------------------------------------------
# The task
# --------------------------------------------------------------------------


async def serve_progress(
    progress: Progress,
    mode: ProgressMode,
    *,
    stream: TextIO | None = None,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Say *progress* every interval in *mode* (lines or live), until cancelled."""
    if mode is ProgressMode.LIVE:
        await _live(progress, stream or sys.stderr, task_status)
        return
    progress.mark(trio.current_time())
    task_status.started()
    if mode is not ProgressMode.LINES:
        return
    while True:
        await trio.sleep(progress.interval)
        for line in report_lines(progress.mark(trio.current_time())):
            log.info("%s", line.text, extra=dict(line.fields))


async def _live(
    progress: Progress, stream: TextIO, task_status: trio.TaskStatus[None]
) -> None:
    from rich.console import Console  # noqa: PLC0415
    from rich.live import Live  # noqa: PLC0415

    console = Console(file=stream)
    now = trio.current_time()
    report = progress.mark(now, LIVE_ROWS)
    next_mark = now + progress.interval
    # No refresh thread: it would read the state while fetchers change it.
    with (
        Live(report_table(report), console=console, auto_refresh=False) as live,
        _printed_above(stream),
    ):
        task_status.started()
        while True:
            await trio.sleep(LIVE_REFRESH)
            now = trio.current_time()
            if now >= next_mark:
                report = progress.mark(now, LIVE_ROWS)
                next_mark = now + progress.interval
            else:
                report = progress.report(now, LIVE_ROWS)
            live.update(report_table(report), refresh=True)


@contextlib.contextmanager
def _printed_above(stream: TextIO) -> Iterator[None]:
    """Send the log's lines to *stream* through rich, above the live table.

    ``Live`` replaces ``sys.stderr`` with a proxy that prints above the table;
    the log's handler holds the stream it was given, so it is pointed at the
    proxy for as long as the table is shown.
    """
    handlers = [
        handler
        for handler in logging.getLogger("trio_dls").handlers
        if type(handler) is logging.StreamHandler and handler.stream is stream
    ]
    proxy = sys.stderr
    if proxy is stream:
        yield  # not a terminal: rich redirected nothing
        return
    for handler in handlers:
        handler.setStream(proxy)
    try:
        yield
    finally:
        for handler in handlers:
            handler.setStream(stream)
