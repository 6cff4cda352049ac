"""Progress through the real tree: lines while a first start catches up.

Rules for these tests: as in ``tests.test_fetching``, the fake Duo API runs
in-process on trio's virtual clock and the real ``serve`` tree runs the real
fetchers, under the config's defaults (180 days back, a poll every 120 s).
``serve_progress`` runs beside the tree, as ``run_daemon`` starts it, and
its lines are kept with the virtual time they were said at.
"""

from __future__ import annotations

import calendar
import logging
import re
import time
from typing import TYPE_CHECKING

import attrs
import trio
import trio.testing

from tests.observe.test_progress import Said
from tests.test_fetching import (
    BASE,
    DAY,
    OVER_DAYS,
    PATIENCE,
    Daemon,
    assert_exactly_once,
    defaults_config,
    held,
    make_app,
)
from trio_dls.duo.paging import Limits
from trio_dls.endpoints import Endpoint
from trio_dls.fakeduo import Faults
from trio_dls.observe import Fanout, LogObserver
from trio_dls.observe.progress import (
    DEFAULT_INTERVAL,
    Progress,
    ProgressMode,
    serve_progress,
)

if TYPE_CHECKING:
    from pathlib import Path

    import pytest

AUTH = Endpoint.AUTH
LINE = re.compile(
    r"^DIFAKEDUOINTEGRATION/auth: catching up, (?P<sent>[\d,]+) records sent "
    r"\((?P<recent>[\d,]+) in the last 30 s\), cursor at (?P<cursor>\S+), "
    r"(?P<lag>.+) behind, time left (?P<left>.+)$"
)
# Once caught up the tree runs on for this long: 30 intervals, 7 polls.
AFTER = 15 * 60.0


def seconds(text: str) -> float:
    """Read back a span: ``45 s``, ``3 min``, ``2 h 5 min``, ``179 d 3 h``."""
    units = {"d": DAY, "h": 3600.0, "min": 60.0, "s": 1.0}
    parts = text.split()
    return sum(
        float(n) * units[u] for n, u in zip(parts[::2], parts[1::2], strict=True)
    )


@attrs.frozen
class CatchUp:
    """What a catch-up said: progress lines and the fetcher's, with their times."""

    progress: list[tuple[float, str]]
    fetcher: list[tuple[float, str]]
    done: float
    """When the last record arrived."""
    records: int


async def catch_up(tmp_path: Path) -> CatchUp:
    """Run a 180-day first start of auth, paged for an hour, then 15 min more.

    Duo allows a request every two minutes and pages hold 100 records, so the
    backlog (36 pages over four days) takes more than an hour.
    """
    app = make_app(OVER_DAYS, faults=Faults(rate_limit=0.5, rate_burst=1, seed=6))
    progress = Progress()
    daemon = Daemon(
        app,
        defaults_config(tmp_path, [AUTH]),
        observer=Fanout(LogObserver(), progress),
        limits=Limits(page_size=100),
    )
    # Each line with the time it was said: the progress, and the fetcher's.
    said, fetcher = Said(), Said()
    logging.getLogger("trio_dls.progress").addHandler(said)
    logging.getLogger("trio_dls.fetcher").addHandler(fetcher)
    done_at: list[float] = []

    async def caught_up_then_a_while() -> None:
        expected = set(held(app, [AUTH]))
        while not expected <= set(daemon.recorder.records):
            await daemon.recorder.changed.wait()
        done_at.append(trio.current_time())
        await trio.sleep(AFTER)

    try:
        with trio.fail_after(PATIENCE):
            async with trio.open_nursery() as nursery:
                await nursery.start(serve_progress, progress, ProgressMode.LINES)
                await daemon.run(caught_up_then_a_while)
                nursery.cancel_scope.cancel()
    finally:
        logging.getLogger("trio_dls.progress").removeHandler(said)
        logging.getLogger("trio_dls.fetcher").removeHandler(fetcher)
    assert_exactly_once(daemon.recorder.records, held(app, [AUTH]))
    (done,) = done_at
    return CatchUp(said.lines, fetcher.lines, done, len(daemon.recorder.records))


def number(text: str) -> int:
    """Read back a count said with thousands separators."""
    return int(text.replace(",", ""))


def utc(text: str) -> float:
    """Read back a cursor's time, UTC ISO 8601."""
    return calendar.timegm(time.strptime(text, "%Y-%m-%dT%H:%M:%SZ"))


async def test_progress_lines_appear_during_a_catch_up_on_the_virtual_clock(
    tmp_path: Path,
    autojump_clock: trio.testing.MockClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Under the defaults, a line every 30 s with sent, cursor, lag and time left."""
    del autojump_clock
    caplog.set_level("INFO", logger="trio_dls")
    assert DEFAULT_INTERVAL == 30
    run = await catch_up(tmp_path)
    assert run.done > 3600  # an hour of catching up
    catching = [(at, text) for at, text in run.progress if "catching" in text]
    # One line per interval, at each interval's end, while catching up.
    times = [at for at, _ in catching]
    assert times == [30.0 * n for n in range(1, len(times) + 1)]
    assert times[-1] > run.done - 120
    matches = [LINE.match(text) for _, text in catching]
    said = [match.groupdict() for match in matches if match]
    assert len(said) == len(catching)
    sent = [number(line["sent"]) for line in said]
    assert sent == sorted(sent)
    assert sent[-1] == run.records
    assert sum(number(line["recent"]) for line in said) == sent[-1]
    # The cursor (how far the records sent reach) moves forward from four
    # days back; the lag shrinks with it.
    cursors = [utc(line["cursor"]) for line in said]
    assert cursors == sorted(cursors)
    lags = [seconds(line["lag"]) for line in said]
    assert lags[0] > 3 * DAY
    assert lags[-1] < lags[0] / 10
    # Each lag is the cursor's distance from the fetcher's now when said
    # (to the hour, as a lag of days is said).
    for at, cursor, lag in zip(times, cursors, lags, strict=True):
        assert 0 <= BASE + at - cursor - lag < 3600 + 1
    # The first interval cannot know the rate; later ones can, and a
    # half-way estimate is within a factor of two of what it took.
    assert said[0]["left"] == "unknown"
    half = len(said) // 2
    assert said[half]["left"].startswith("about ")
    estimate = seconds(said[half]["left"].removeprefix("about "))
    taken = run.done - times[half]
    assert taken / 2 < estimate < taken * 2


async def test_once_caught_up_one_summary_line_then_none_while_idle(
    tmp_path: Path,
    autojump_clock: trio.testing.MockClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """After the catch-up, one summary line; 15 idle minutes (7 polls) add none."""
    del autojump_clock
    caplog.set_level("INFO", logger="trio_dls")
    run = await catch_up(tmp_path)
    # The fetcher is caught up once a request finds nothing more.
    (caught_up,) = [at for at, text in run.fetcher if "caught up" in text]
    catching = [at for at, text in run.progress if "catching" in text]
    summaries = [(at, text) for at, text in run.progress if "catching" not in text]
    assert catching[-1] <= caught_up
    assert len(summaries) == 1
    ((at, text),) = summaries
    assert caught_up <= at <= caught_up + 30
    assert text == (
        f"caught up: 1 fetcher, 0 records sent in the last 30 s, "
        f"{run.records:,} since the start"
    )
    assert at < run.done + AFTER - 10 * 30  # there were intervals after it
