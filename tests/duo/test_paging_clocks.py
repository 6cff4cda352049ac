"""Paging against moving clocks: Duo's retention floor, and a local clock that is off.

Rules for these tests: no I/O and no clock; times are passed in.  Duo's endpoints are
the pure simulations of ``tests.duo.test_paging`` (``window_answer``, ``admin_answer``),
which serve a record only once Duo's *own* time has passed its ``visible_after``.
The fetcher's view of time is simulated as the daemon has it: its local clock (which
may be off Duo's by any amount, and jump) and Duo's ``Date`` from each answer.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.duo.test_paging import (
    DAY_MS,
    NOW,
    NOW_MS,
    WINDOWED,
    Event,
    admin_answer,
    admin_logs,
    canonical,
    expected_admin,
    window_answer,
    window_logs,
)
from trio_dls.duo.clock import DuoClock
from trio_dls.duo.cursors import AdminCursor, Cursor, WindowCursor
from trio_dls.duo.paging import (
    Limits,
    Record,
    Request,
    apply_response,
    first_cursor,
    plan_request,
)
from trio_dls.endpoints import Endpoint

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

DAY = 86_400


def skipped(warnings: list[str]) -> list[str]:
    """The warnings that say records were not fetched."""
    return [w for w in warnings if "were not fetched" in w]


# The retention floor --------------------------------------------------------------


@pytest.mark.parametrize("endpoint", WINDOWED)
def test_a_first_start_180_days_back_pages_its_whole_window(endpoint: Endpoint) -> None:
    """DLS's default offset: a window of many pages is read to its end, each page once.

    Each request is made 30 s after the previous one, so the 179-day floor moves past
    the window's mintime while the window is being paged.
    """
    start = NOW - 179 * DAY
    events = [
        Event(ms, ms, {"id": f"e{i:05d}", "ms": ms})
        for i, ms in enumerate(
            int(start * 1000) + 3_600_000 + n * 250_000 for n in range(2_600)
        )
    ]
    now = NOW
    cursor: Cursor = first_cursor(endpoint, now, 180)
    shipped: list[Record] = []
    warnings: list[str] = []
    for _ in range(200):
        request = plan_request(endpoint, cursor, now)
        if request is None:
            break
        step = apply_response(request, window_answer(endpoint, events, request, now))
        shipped += step.records
        warnings += step.warnings
        cursor = step.cursor
        now += 30
    assert [e.body for e in events] == shipped
    assert warnings == []


def test_a_first_start_is_at_the_floor_of_its_first_request() -> None:
    """An offset of 180 days starts 179 days back: no day is asked that Duo refuses."""
    cursor = first_cursor(Endpoint.AUTH, NOW, 180)
    request = plan_request(Endpoint.AUTH, cursor, NOW)

    assert request is not None
    assert request.warnings == ()
    assert math.ceil(NOW * 1000) - 179 * DAY_MS == int(request.params_dict()["mintime"])


@pytest.mark.parametrize("days", [0, 1.5, 4.0, 178.5])
def test_a_first_start_goes_back_its_offset(days: float) -> None:
    """A shorter offset, fractions included, is where a first start begins."""
    cursor = first_cursor(Endpoint.AUTH, NOW, days)

    assert NOW_MS - round(days * DAY_MS) == cursor.mintime


@pytest.mark.parametrize("endpoint", WINDOWED)
def test_a_window_being_paged_keeps_its_token_while_duo_serves_it(
    endpoint: Endpoint,
) -> None:
    """Half a day past the 179-day floor, a window keeps its mintime and token."""
    mintime = NOW_MS - int(179.5 * DAY_MS)
    token = f"{mintime + 5_000},x"
    cursor = WindowCursor(mintime, NOW_MS - DAY_MS, token)

    request = plan_request(endpoint, cursor, NOW)

    assert request is not None
    assert cursor == request.cursor
    assert request.warnings == ()
    name = "offset" if endpoint is Endpoint.TRUSTMONITOR else "next_offset"
    assert token == request.params_dict()[name]
    assert str(mintime) == request.params_dict()["mintime"]


def test_a_window_past_duos_limit_is_read_again_from_its_position() -> None:
    """Beyond Duo's 180 days, the window restarts at its last record's time."""
    position = NOW_MS - 178 * DAY_MS
    cursor = WindowCursor(NOW_MS - 181 * DAY_MS, NOW_MS - DAY_MS, f"{position},x")

    request = plan_request(Endpoint.AUTH, cursor, NOW)

    assert request is not None
    assert WindowCursor(position, NOW_MS - DAY_MS) == request.cursor
    [warning] = request.warnings
    assert "reading it again from" in warning


def test_a_window_past_duos_limit_with_an_old_position_skips_what_is_gone() -> None:
    """A position older than the floor: what lies before the floor is reported lost."""
    position = NOW_MS - 180 * DAY_MS - 5_000
    cursor = WindowCursor(NOW_MS - 181 * DAY_MS, NOW_MS - DAY_MS, f"{position},x")

    request = plan_request(Endpoint.TELEPHONY, cursor, NOW)

    assert request is not None
    oldest = math.ceil(NOW * 1000) - 179 * DAY_MS
    assert WindowCursor(oldest, NOW_MS - DAY_MS) == request.cursor
    assert len(skipped(list(request.warnings))) == 1


def test_an_admin_boundary_below_the_floor_is_kept_while_duo_serves_it() -> None:
    """The admin log's boundary second and its sent set survive the floor moving."""
    cursor = AdminCursor(
        int(NOW) - 179 * DAY - 3600, frozenset({"a.0"}), inclusive=True
    )

    request = plan_request(Endpoint.ADMINACTION, cursor, NOW)

    assert request is not None
    assert cursor == request.cursor
    assert request.warnings == ()


# A local clock off Duo's --------------------------------------------------------


def test_a_window_opened_by_a_fast_clock_is_not_closed() -> None:
    """Planned 90 s ahead of Duo, a window is opened again to end by Duo's clock."""
    cursor = WindowCursor(NOW_MS - 3_600_000)
    request = plan_request(Endpoint.AUTH, cursor, NOW + 90)
    assert request is not None

    step = apply_response(
        request, {"authlogs": [], "metadata": {}}, duo_now=math.floor(NOW)
    )

    assert step.settled is False
    assert step.records == ()
    assert cursor == step.cursor
    again = plan_request(Endpoint.AUTH, step.cursor, math.floor(NOW))
    assert again is not None
    assert isinstance(again.cursor, WindowCursor)
    assert again.cursor.maxtime is not None
    assert again.cursor.maxtime <= math.floor(NOW) * 1000 - 120_000


def test_a_window_being_paged_past_duos_clock_waits_for_it() -> None:
    """A window reaching past Duo's settled time keeps its token and waits."""
    maxtime = NOW_MS - 60_000
    cursor = WindowCursor(NOW_MS - 3_600_000, maxtime, f"{NOW_MS - 3_000_000},x")
    request = plan_request(Endpoint.AUTH, cursor, NOW + 90)
    assert request is not None

    step = apply_response(
        request, {"authlogs": [], "metadata": {}}, duo_now=math.floor(NOW)
    )

    assert (step.settled, step.caught_up, step.records) == (False, True, ())
    assert cursor == step.cursor
    assert plan_request(Endpoint.AUTH, step.cursor, math.floor(NOW)) is None
    assert plan_request(Endpoint.AUTH, step.cursor, NOW + 91) is not None


def test_the_admin_log_moves_on_only_to_duos_settled_second() -> None:
    """An admin answer dated by Duo sets the boundary no later than Duo's horizon."""
    boundary = int(NOW) - 3600
    records = [{"action": "a", "timestamp": boundary + n} for n in range(3)]
    request = plan_request(Endpoint.ADMINACTION, AdminCursor(boundary), NOW + 90)
    assert request is not None

    step = apply_response(request, records, duo_now=math.floor(NOW))

    assert tuple(records) == step.records
    assert AdminCursor(math.floor(NOW) - 120) == step.cursor


Skews = list[int]


def play(
    endpoint: Endpoint,
    cursor: Cursor,
    answer: Callable[[Request, float], object],
    nows: Sequence[float],
    skews: Skews,
    limits: Limits,
) -> tuple[list[Record], list[str]]:
    """Play a fetcher whose clock is ``skew`` off Duo's at each poll, as the daemon.

    Windows end by the earlier of the local clock and what the last answer's Date
    showed of Duo's; each answer is dated by Duo's true time, rounded down.
    """
    shipped: list[Record] = []
    warnings: list[str] = []
    clock = DuoClock()
    for index, now in enumerate(nows):
        # Duo's time is the true time; the monotonic clock keeps step with it.
        local = now + skews[index % len(skews)]
        for _ in range(10_000):
            duo = clock.now(now)
            plan_now = local if duo is None else min(local, duo)
            latest = local if duo is None else max(local, duo)
            request = plan_request(endpoint, cursor, plan_now, limits, latest=latest)
            if request is None:
                break
            date = math.floor(now)
            clock.observe(date, now)
            step = apply_response(request, answer(request, now), duo_now=date)
            shipped += step.records
            warnings += step.warnings
            cursor = step.cursor
            if step.caught_up:
                break
        else:
            pytest.fail("paging never caught up")
    return shipped, warnings


SKEWS = st.lists(
    st.sampled_from([0, 1, 30, 90, 119, 121, 600, 3600, -90, -3600]),
    min_size=1,
    max_size=5,
)


@given(
    endpoint=st.sampled_from(WINDOWED),
    log=window_logs(),
    page_size=st.integers(1, 6),
    skews=SKEWS,
)
@settings(max_examples=80, deadline=None)
def test_windows_lose_nothing_whatever_the_local_clock_says(
    endpoint: Endpoint,
    log: tuple[list[Event], list[float]],
    page_size: int,
    skews: Skews,
) -> None:
    """Ahead, behind or jumping by an hour, the local clock loses or repeats nothing."""
    events, nows = log
    limits = Limits(page_size=page_size)

    def answer(request: Request, now: float) -> object:
        return window_answer(endpoint, events, request, now)

    start = WindowCursor(events[0].time if events else int(nows[0] * 1000) - 60_000)
    # After the last poll, a last one with the clocks in step: everything is settled.
    shipped, warnings = play(
        endpoint, start, answer, [*nows, nows[-1] + 4000], [*skews, 0], limits
    )

    assert [e.body for e in events] == shipped
    assert warnings == []


@given(
    log=admin_logs(), page_size=st.integers(1, 8), inclusive=st.booleans(), skews=SKEWS
)
@settings(max_examples=80, deadline=None)
def test_the_admin_log_loses_nothing_whatever_the_local_clock_says(
    log: tuple[list[Event], list[float]],
    page_size: int,
    skews: Skews,
    *,
    inclusive: bool,
) -> None:
    """The admin log, with the local clock off Duo's, ships each record once."""
    events, nows = log
    limits = Limits(page_size=page_size)

    def answer(request: Request, now: float) -> object:
        return admin_answer(
            events, request, now, inclusive=inclusive, page_size=page_size
        )

    start = min((e.time for e in events), default=int(nows[0]) - 60)
    cursor = AdminCursor(start)
    shipped, _ = play(
        Endpoint.ADMINACTION,
        cursor,
        answer,
        [*nows, nows[-1] + 4000],
        [*skews, 0],
        limits,
    )

    assert canonical(expected_admin(events, start, page_size)) == canonical(shipped)
