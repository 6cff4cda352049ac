"""Duo's clock as learnt from its answers' Date, and the falling-rate failure report."""

from __future__ import annotations

import pytest

from trio_dls.duo.clock import DuoClock, parse_http_date
from trio_dls.observe.reporting import FailureReport


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Sat, 28 Nov 2026 01:29:16 GMT", 1_795_829_356.0),
        ("Sat, 28 Nov 2026 01:29:16 -0000", 1_795_829_356.0),
        ("Sat, 28 Nov 2026 02:29:16 +0100", 1_795_829_356.0),
        (None, None),
        ("", None),
        ("yesterday", None),
        ("Sat, 99 Nov 2026 01:29:16 GMT", None),
    ],
)
def test_http_dates_are_read_as_utc_or_not_at_all(
    text: str | None, expected: float | None
) -> None:
    """A Date header is UTC epoch seconds; an unreadable one is None, never an error."""
    assert expected == parse_http_date(text)


def test_duos_clock_is_unknown_until_an_answer_came() -> None:
    """Before any answer, nothing is assumed about Duo's clock."""
    assert DuoClock().now(5.0) is None


def test_duos_clock_runs_on_from_the_last_answer_in_whole_seconds() -> None:
    """Duo's time is the last Date plus the monotonic time since, rounded down."""
    clock = DuoClock()
    clock.observe(1_000.0, seen_at=50.0)

    assert [clock.now(at) for at in (50.0, 50.9, 51.0, 140.5)] == [
        1_000.0,
        1_000.0,
        1_001.0,
        1_090.0,
    ]


def test_duos_clock_follows_its_latest_answer_even_back() -> None:
    """A later answer with an earlier Date (Duo's clock set back) is believed."""
    clock = DuoClock()
    clock.observe(1_000.0, seen_at=0.0)
    clock.observe(900.0, seen_at=10.0)

    assert clock.now(10.0) == 900.0


def test_a_persisting_failure_is_reported_at_a_falling_rate() -> None:
    """Failure 1, 10 and 100 are reported, then one an hour, each with the count."""
    report = FailureReport()
    said = [
        (n, text)
        for n in range(1, 1001)
        if (text := report.failed("TransientApiError 400", "HTTP 400", n * 60.0))
    ]

    assert [n for n, _ in said][:5] == [1, 10, 100, 160, 220]
    assert said[0][1] == "HTTP 400"
    assert said[1][1] == "HTTP 400 (failed 10 times in a row over 9 min)"
    assert said[-1][1].startswith("HTTP 400 (failed 1000 times in a row over 16.")
    assert len(said) == 3 + (1000 - 100) // 60


def test_another_kind_of_failure_is_reported_at_once() -> None:
    """A new kind of failure starts its own count; detail changes do not."""
    report = FailureReport()
    assert report.failed("malformed", "cut at byte 5", 0.0) == "cut at byte 5"
    assert report.failed("malformed", "cut at byte 9", 1.0) is None
    assert report.failed("timeout", "no answer", 2.0) == "no answer"


def test_the_end_of_a_failure_is_reported_once() -> None:
    """A success after failures says how long they lasted; one without says nothing."""
    report = FailureReport()
    report.failed("x", "boom", 0.0)
    report.failed("x", "boom", 30.0)

    assert report.succeeded(300.0) == "working again after 2 failure(s) over 5 min"
    assert report.succeeded(301.0) is None
