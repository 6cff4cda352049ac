"""Paging rules: every record is shipped once, windows respect Duo's limits.

Rules for these tests: no I/O and no clock; ``now`` is always passed in.  Duo's log
endpoints are simulated by pure functions over generated records (`window_answer`,
`admin_answer`), and `drive` plays a fetcher against them: plan, answer, apply, until
caught up, then the next ``now``.  Admin log tests run against both readings of
mintime (inclusive and exclusive), because Duo's documentation gives both.
"""

from __future__ import annotations

import collections
import json
import os
import time
from typing import TYPE_CHECKING

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trio_dls.duo.cursors import (
    AdminCursor,
    Cursor,
    WindowCursor,
    decode_cursor,
    encode_cursor,
)
from trio_dls.duo.paging import (
    Limits,
    MalformedResponseError,
    Record,
    Request,
    Step,
    apply_response,
    plan_request,
    reached_time,
    record_identity,
)
from trio_dls.endpoints import Endpoint

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence

    Answer = Callable[[Request, float], object]

NOW = 1_700_000_000.25
NOW_MS = 1_700_000_000_250
HORIZON_MS = NOW_MS - 120_000 - 1
HORIZON_S = 1_700_000_000 - 121
DAY_MS = 86_400_000

WINDOWED = [Endpoint.AUTH, Endpoint.TELEPHONY, Endpoint.ACTIVITY, Endpoint.TRUSTMONITOR]


# The simulated Duo endpoints ----------------------------------------------------------


@attrs.frozen
class Event:
    """A record in a simulated log: when it happened, when Duo shows it, its body."""

    time: int
    """In the endpoint's unit."""
    visible_after: int
    """Duo returns it once ``now`` (in the endpoint's unit) reaches this."""
    body: Record = attrs.field(hash=False)


def window_answer(
    endpoint: Endpoint, events: Sequence[Event], request: Request, now: float
) -> object:
    """Answer ``request`` as Duo's v2 logs and trust monitor do: a window, in pages."""
    params = request.params_dict()
    mintime, maxtime = int(params.pop("mintime")), int(params.pop("maxtime"))
    limit = int(params.pop("limit"))
    assert maxtime > mintime
    assert 0 < limit <= (500 if endpoint is Endpoint.TRUSTMONITOR else 1000)
    if endpoint is Endpoint.TRUSTMONITOR:
        token = params.pop("offset", None)
    else:
        assert params.pop("sort") == "ts:asc"
        token = params.pop("next_offset", None)
    assert params == {}
    after = (-1, "") if token is None else _position(endpoint, token)
    visible = [
        e
        for e in events
        if mintime <= e.time <= maxtime
        and e.visible_after <= now * 1000
        and (e.time, e.body["id"]) > after
    ]
    page = visible[:limit]
    next_offset: object = None
    if len(visible) > limit:
        last_time, last_id = page[-1].time, page[-1].body["id"]
        next_offset = {
            Endpoint.AUTH: [str(last_time), last_id],
            Endpoint.TELEPHONY: f"{last_time},{last_id}",
            Endpoint.ACTIVITY: f"{last_time},{last_id}",
            Endpoint.TRUSTMONITOR: f"opaque:{last_time}:{last_id}",
        }[endpoint]
    key = {
        Endpoint.AUTH: "authlogs",
        Endpoint.TELEPHONY: "items",
        Endpoint.ACTIVITY: "items",
        Endpoint.TRUSTMONITOR: "events",
    }[endpoint]
    metadata = {"next_offset": next_offset, "total_objects": {"value": len(visible)}}
    return {key: [e.body for e in page], "metadata": metadata}


def _position(endpoint: Endpoint, token: str) -> tuple[int, str]:
    if endpoint is Endpoint.TRUSTMONITOR:
        prefix, ms, event_id = token.split(":")
        assert prefix == "opaque"
    else:
        ms, event_id = token.split(",")
    return int(ms), event_id


def admin_answer(
    events: Sequence[Event],
    request: Request,
    now: float,
    *,
    inclusive: bool,
    page_size: int,
) -> object:
    """Answer ``request`` as Duo's administrator log does: the earliest records."""
    (key, value), *rest = request.params
    assert (key, rest) == ("mintime", [])
    mintime = int(value)
    selected = [
        e.body
        for e in events
        if (e.time >= mintime if inclusive else e.time > mintime)
        and e.visible_after <= now
    ]
    return selected[:page_size]


@attrs.frozen
class Run:
    """What a simulated fetcher did."""

    shipped: list[Record]
    warnings: list[str]
    saved: list[tuple[Cursor, int, int]]
    """(cursor saved, records shipped so far, index of the ``now`` it was saved at)."""


def drive(
    endpoint: Endpoint,
    cursor: Cursor,
    answer: Answer,
    nows: Sequence[float],
    limits: Limits,
) -> Run:
    """Play a fetcher: at each ``now``, page until caught up, saving every cursor."""
    run = Run([], [], [])
    for index, now in enumerate(nows):
        for _ in range(100_000):
            request = plan_request(endpoint, cursor, now, limits)
            if request is None:
                break
            step = apply_response(request, answer(request, now))
            run.shipped.extend(step.records)
            run.warnings.extend(step.warnings)
            cursor = step.cursor
            run.saved.append((cursor, len(run.shipped), index))
            if step.caught_up:
                # Caught up means no request is left to make at this time.
                assert plan_request(endpoint, cursor, now, limits) is None
                break
        else:
            pytest.fail("paging never caught up")
    return run


# Generated logs -------------------------------------------------------------------


BASE_S = 1_699_000_000


@st.composite
def window_logs(draw: st.DrawFn) -> tuple[list[Event], list[float]]:
    """Events in bursts sharing a millisecond, seen up to 2 minutes late; poll times."""
    bursts = draw(
        st.lists(
            st.tuples(st.integers(0, 900_000), st.integers(1, 12)),
            max_size=12,
        )
    )
    events: list[Event] = []
    for offset, count in bursts:
        for _ in range(count):
            lag = draw(st.integers(0, 119_999))
            ms = BASE_S * 1000 + offset
            body = {"id": f"e{len(events):04d}", "ms": ms}
            events.append(Event(ms, ms + lag, body))
    events.sort(key=lambda e: (e.time, e.body["id"]))
    steps = draw(st.lists(st.floats(0.001, 400.0), max_size=8))
    nows = [BASE_S + 60.0]
    for step in steps:
        nows.append(nows[-1] + step)
    # Polls whose window ends exactly on an event's millisecond.
    edges = draw(st.lists(st.sampled_from(events), max_size=4)) if events else []
    nows.extend((e.time + 120_001) / 1000 for e in edges)
    # Long after the last event, everything must have been shipped.
    nows.append(BASE_S + 2000.5)
    return events, sorted(nows)


@st.composite
def admin_logs(draw: st.DrawFn) -> tuple[list[Event], list[float]]:
    """Admin events in same-second bursts, with repeated bodies, seen late; polls."""
    bursts = draw(
        st.lists(
            st.tuples(st.integers(-2, 600), st.integers(1, 12)),
            max_size=12,
        )
    )
    events = []
    for second, count in bursts:
        for _ in range(count):
            lag = draw(st.integers(0, 119))
            # Few distinct bodies, so identical records share a second.
            action = draw(st.sampled_from(["user_update", "admin_login"]))
            body = {"action": action, "timestamp": BASE_S + second, "object": "o"}
            events.append(Event(BASE_S + second, BASE_S + second + lag, body))
    # Duo's order within a second is fixed, whatever it is.
    events.sort(key=lambda e: e.time)
    steps = draw(st.lists(st.floats(0.001, 300.0), max_size=8))
    nows = [BASE_S + 30.5]
    for step in steps:
        nows.append(nows[-1] + step)
    # Polls whose horizon is exactly an event's second.
    edges = draw(st.lists(st.sampled_from(events), max_size=4)) if events else []
    nows.extend(e.time + 121 + draw(st.floats(0, 0.999)) for e in edges)
    nows.append(BASE_S + 1000.75)
    return events, sorted(nows)


def expected_admin(events: Sequence[Event], start: int, page_size: int) -> list[Record]:
    """Every admin record from ``start``, but only the first page of a huge second."""
    by_second: dict[int, list[Record]] = collections.defaultdict(list)
    for e in events:
        if e.time >= start:
            by_second[e.time].append(e.body)
    return [b for s in sorted(by_second) for b in by_second[s][:page_size]]


def canonical(records: Sequence[Record]) -> collections.Counter[str]:
    """Count records by content, since identical admin records are not told apart."""
    return collections.Counter(json.dumps(r, sort_keys=True) for r in records)


# Whole runs against simulated endpoints ------------------------------------------


@given(
    endpoint=st.sampled_from(WINDOWED),
    log=window_logs(),
    page_size=st.integers(1, 6),
)
@settings(max_examples=60, deadline=None)
def test_windows_ship_every_record_once_in_order(
    endpoint: Endpoint, log: tuple[list[Event], list[float]], page_size: int
) -> None:
    """A windowed endpoint ships every record exactly once, in order, across polls."""
    events, nows = log
    limits = Limits(page_size=page_size)

    def answer(request: Request, now: float) -> object:
        return window_answer(endpoint, events, request, now)

    run = drive(endpoint, WindowCursor(BASE_S * 1000), answer, nows, limits)

    assert [e.body for e in events] == run.shipped
    assert run.warnings == []


@given(
    endpoint=st.sampled_from(WINDOWED),
    log=window_logs(),
    page_size=st.integers(1, 6),
    data=st.data(),
)
@settings(max_examples=60, deadline=None)
def test_windows_resume_from_any_saved_cursor(
    endpoint: Endpoint,
    log: tuple[list[Event], list[float]],
    page_size: int,
    data: st.DataObject,
) -> None:
    """After a crash, the saved cursor, decoded, ships the rest exactly once."""
    events, nows = log
    limits = Limits(page_size=page_size)

    def answer(request: Request, now: float) -> object:
        return window_answer(endpoint, events, request, now)

    first = drive(endpoint, WindowCursor(BASE_S * 1000), answer, nows, limits)
    if not first.saved:
        return
    saved, shipped, at = data.draw(st.sampled_from(first.saved))
    restart = data.draw(st.integers(at, len(nows) - 1))
    cursor = decode_cursor(endpoint, encode_cursor(endpoint, saved))
    rest = drive(endpoint, cursor, answer, nows[restart:], limits)

    assert [e.body for e in events] == first.shipped[:shipped] + rest.shipped


@given(
    log=admin_logs(),
    page_size=st.integers(1, 8),
    inclusive=st.booleans(),
)
@settings(max_examples=100, deadline=None)
def test_admin_log_ships_every_fetchable_record_once(
    log: tuple[list[Event], list[float]], page_size: int, *, inclusive: bool
) -> None:
    """The admin log ships each record once; a second fuller than a page warns once."""
    events, nows = log
    limits = Limits(page_size=page_size)

    def answer(request: Request, now: float) -> object:
        return admin_answer(
            events, request, now, inclusive=inclusive, page_size=page_size
        )

    run = drive(Endpoint.ADMINACTION, AdminCursor(BASE_S), answer, nows, limits)

    expected = expected_admin(events, BASE_S, page_size)
    assert canonical(expected) == canonical(run.shipped)
    times = [r["timestamp"] for r in run.shipped]
    assert sorted(times) == times
    counts = collections.Counter(e.time for e in events if e.time >= BASE_S)
    crowded = sorted(s for s, n in counts.items() if n >= page_size)
    assert crowded == [_named_second(w) for w in run.warnings]


def _named_second(warning: str) -> int:
    """The second a same-second warning names."""
    return int(warning.split("all in second ")[1].split(" ", maxsplit=1)[0])


@given(
    log=admin_logs(),
    page_size=st.integers(1, 8),
    inclusive=st.booleans(),
    data=st.data(),
)
@settings(max_examples=100, deadline=None)
def test_admin_log_resumes_from_any_saved_cursor(
    log: tuple[list[Event], list[float]],
    page_size: int,
    data: st.DataObject,
    *,
    inclusive: bool,
) -> None:
    """After a crash, the saved admin cursor, decoded, ships the rest exactly once."""
    events, nows = log
    limits = Limits(page_size=page_size)

    def answer(request: Request, now: float) -> object:
        return admin_answer(
            events, request, now, inclusive=inclusive, page_size=page_size
        )

    first = drive(Endpoint.ADMINACTION, AdminCursor(BASE_S), answer, nows, limits)
    if not first.saved:
        return
    saved, shipped, at = data.draw(st.sampled_from(first.saved))
    restart = data.draw(st.integers(at, len(nows) - 1))
    cursor = decode_cursor(
        Endpoint.ADMINACTION, encode_cursor(Endpoint.ADMINACTION, saved)
    )
    rest = drive(Endpoint.ADMINACTION, cursor, answer, nows[restart:], limits)

    expected = expected_admin(events, BASE_S, page_size)
    assert canonical(expected) == canonical(first.shipped[:shipped] + rest.shipped)


@pytest.mark.parametrize("inclusive", [True, False])
def test_admin_burst_beyond_a_page_moves_on_with_a_warning(*, inclusive: bool) -> None:
    """2,500 events in one second, pages of 1,000: 1,000 are shipped, with a warning."""
    second = BASE_S + 100
    bodies: list[Record] = [
        {"action": "user_update", "timestamp": BASE_S + 99, "object": "before"},
        *({"action": "user_update", "timestamp": second, "object": f"u{i}"}
          for i in range(2500)),
        {"action": "user_update", "timestamp": BASE_S + 101, "object": "after"},
    ]  # fmt: skip
    events = [Event(b["timestamp"], b["timestamp"], b) for b in bodies]

    def answer(request: Request, now: float) -> object:
        return admin_answer(events, request, now, inclusive=inclusive, page_size=1000)

    run = drive(
        Endpoint.ADMINACTION, AdminCursor(BASE_S), answer, [BASE_S + 500.0], Limits()
    )

    assert bodies[:1001] + bodies[-1:] == run.shipped
    assert [
        f"adminaction: Duo returned a full page of 1000 records all in second "
        f"{second} (2023-11-03T08:28:20+00:00); any further records of that second "
        "cannot be fetched from Duo and are skipped"
    ] == run.warnings


@pytest.mark.parametrize("inclusive", [True, False])
def test_admin_burst_straddling_pages_is_neither_lost_nor_repeated(
    *, inclusive: bool
) -> None:
    """A second cut by the end of a 1,000-record page is finished by the next page."""
    bodies: list[Record] = [
        {"action": "a", "timestamp": BASE_S + 1 + i // 700, "object": f"o{i}"}
        for i in range(2100)
    ]
    events = [Event(b["timestamp"], b["timestamp"], b) for b in bodies]

    def answer(request: Request, now: float) -> object:
        return admin_answer(events, request, now, inclusive=inclusive, page_size=1000)

    run = drive(
        Endpoint.ADMINACTION, AdminCursor(BASE_S), answer, [BASE_S + 500.0], Limits()
    )

    assert bodies == run.shipped
    assert run.warnings == []


# plan_request --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("endpoint", "path", "limit"),
    [
        (Endpoint.AUTH, "/admin/v2/logs/authentication", "1000"),
        (Endpoint.TELEPHONY, "/admin/v2/logs/telephony", "1000"),
        (Endpoint.ACTIVITY, "/admin/v2/logs/activity", "1000"),
    ],
)
def test_v2_request_opens_a_window_up_to_two_minutes_ago(
    endpoint: Endpoint, path: str, limit: str
) -> None:
    """A v2 request asks ts:asc at the largest page, from the cursor to now - 2 min."""
    request = plan_request(endpoint, WindowCursor(1_699_999_000_000), NOW)

    assert request is not None
    assert path == request.path
    assert {
        "mintime": "1699999000000",
        "maxtime": str(HORIZON_MS),
        "limit": limit,
        "sort": "ts:asc",
    } == request.params_dict()
    assert WindowCursor(1_699_999_000_000, HORIZON_MS) == request.cursor


def test_trust_monitor_request_sends_its_token_as_offset() -> None:
    """Trust monitor pages 500 at a time and takes its token back as ``offset``."""
    cursor = WindowCursor(1_699_999_000_000, 1_699_999_500_000, "tok")

    request = plan_request(Endpoint.TRUSTMONITOR, cursor, NOW)

    assert request is not None
    assert request.path == "/admin/v1/trust_monitor/events"
    assert request.params_dict() == {
        "mintime": "1699999000000",
        "maxtime": "1699999500000",
        "limit": "500",
        "offset": "tok",
    }


@pytest.mark.parametrize("endpoint", [Endpoint.AUTH, Endpoint.ACTIVITY])
def test_mid_window_request_keeps_its_window_and_token(endpoint: Endpoint) -> None:
    """A window being paged keeps its maxtime and sends next_offset."""
    cursor = WindowCursor(1_699_999_000_000, 1_699_999_500_000, "1699999100000,x")

    request = plan_request(endpoint, cursor, NOW)

    assert request is not None
    assert request.params_dict()["maxtime"] == "1699999500000"
    assert request.params_dict()["next_offset"] == "1699999100000,x"
    assert cursor == request.cursor


@pytest.mark.parametrize(
    ("inclusive", "asked"), [(False, "1699999000"), (True, "1699999001")]
)
def test_admin_request_asks_the_boundary_or_the_second_before(
    *, inclusive: bool, asked: str
) -> None:
    """The admin log asks for the boundary once Duo proved inclusive, else one less."""
    cursor = AdminCursor(1_699_999_001, inclusive=inclusive)

    request = plan_request(Endpoint.ADMINACTION, cursor, NOW)

    assert request is not None
    assert request.path == "/admin/v1/logs/administrator"
    assert {"mintime": asked} == request.params_dict()
    assert request.horizon == HORIZON_S


@pytest.mark.parametrize(
    ("endpoint", "cursor"),
    [
        (Endpoint.AUTH, WindowCursor(HORIZON_MS)),
        (Endpoint.TELEPHONY, WindowCursor(HORIZON_MS + 5_000)),
        (Endpoint.TRUSTMONITOR, WindowCursor(HORIZON_MS - 10, HORIZON_MS + 1, "t")),
        (Endpoint.ADMINACTION, AdminCursor(HORIZON_S + 1)),
    ],
)
def test_caught_up_cursor_plans_no_request(endpoint: Endpoint, cursor: Cursor) -> None:
    """Nothing is asked when the cursor has reached now - 2 minutes."""
    assert plan_request(endpoint, cursor, NOW) is None


def test_admin_cursor_at_the_horizon_still_asks() -> None:
    """The last settled second is still fetched."""
    assert plan_request(Endpoint.ADMINACTION, AdminCursor(HORIZON_S), NOW) is not None


@pytest.mark.parametrize(
    ("endpoint", "cursor", "mintime", "start"),
    [
        (
            Endpoint.AUTH,
            WindowCursor(NOW_MS - 200 * DAY_MS, NOW_MS - 190 * DAY_MS, "1,x"),
            str(NOW_MS - 179 * DAY_MS),
            "2023-04-28T22:13:20.250+00:00",
        ),
        (
            Endpoint.ADMINACTION,
            AdminCursor(1_700_000_000 - 200 * 86_400, frozenset({"a.0"})),
            str(1_700_000_001 - 179 * 86_400 - 1),
            "2023-04-28T22:13:20+00:00",
        ),
    ],
)
def test_cursor_older_than_retention_is_clamped_with_a_warning(
    endpoint: Endpoint, cursor: Cursor, mintime: str, start: str
) -> None:
    """A cursor older than 179 days restarts 179 days ago, and says what was skipped."""
    request = plan_request(endpoint, cursor, NOW)

    assert request is not None
    assert mintime == request.params_dict()["mintime"]
    assert "next_offset" not in request.params_dict()
    [warning] = request.warnings
    assert warning.startswith(f"{endpoint.value}: records from {start} to before ")


def test_request_warnings_reach_the_step() -> None:
    """Planning warnings come out of apply_response, so the fetcher logs one place."""
    request = plan_request(Endpoint.AUTH, WindowCursor(0), NOW)
    assert request is not None

    step = apply_response(request, {"authlogs": [], "metadata": {}})

    assert request.warnings == step.warnings
    assert len(step.warnings) == 1


def test_dls_auth_offset_continues_in_a_new_window() -> None:
    """An imported DLS auth next_offset is sent in a window ending now - 2 minutes."""
    cursor = WindowCursor(1_699_999_000_000, next_offset="1699999000000,txid")

    request = plan_request(Endpoint.AUTH, cursor, NOW)

    assert request is not None
    assert request.params_dict()["next_offset"] == "1699999000000,txid"
    assert str(HORIZON_MS) == request.params_dict()["maxtime"]


def test_params_dict_is_new_each_call() -> None:
    """Each call gets its own params dict, as duo_client needs across threads."""
    request = plan_request(Endpoint.AUTH, WindowCursor(1_699_999_000_000), NOW)
    assert request is not None

    request.params_dict()["mintime"] = "0"

    assert request.params_dict()["mintime"] == "1699999000000"


def test_cursor_of_the_wrong_kind_is_refused() -> None:
    """An admin cursor for a windowed endpoint, or the reverse, is a programming bug."""
    with pytest.raises(TypeError):
        plan_request(Endpoint.AUTH, AdminCursor(1), NOW)
    with pytest.raises(TypeError):
        plan_request(Endpoint.ADMINACTION, WindowCursor(1), NOW)


def any_cursor(endpoint: Endpoint) -> st.SearchStrategy[Cursor]:
    """Cursors of any age, including ones from the future and mid-window ones."""
    if endpoint is Endpoint.ADMINACTION:
        return st.builds(AdminCursor, st.integers(0, 2_000_000_000))
    return st.integers(0, 2_000_000_000_000).flatmap(
        lambda mintime: st.builds(
            WindowCursor,
            st.just(mintime),
            st.none() | st.integers(mintime + 1, mintime + 400 * DAY_MS),
            st.none() | st.just("tok"),
        )
    )


def near_the_floor(endpoint: Endpoint, now: float) -> st.SearchStrategy[Cursor]:
    """Cursors between 178 and 181 days old, where the floors are."""
    if endpoint is Endpoint.ADMINACTION:
        return st.builds(
            AdminCursor, st.integers(int(now) - 181 * 86_400, int(now) - 178 * 86_400)
        )
    now_ms = int(now * 1000)
    return st.integers(now_ms - 181 * DAY_MS, now_ms - 178 * DAY_MS).flatmap(
        lambda mintime: st.builds(
            WindowCursor,
            st.just(mintime),
            st.none() | st.integers(mintime + 1, now_ms),
            st.none() | st.just("tok") | st.just(f"{mintime + 1000},x"),
        )
    )


@given(
    data=st.data(),
    endpoint=st.sampled_from(list(Endpoint)),
    now=st.floats(1_600_000_000, 1_900_000_000),
)
def test_requests_stay_between_retention_and_delay(
    data: st.DataObject, endpoint: Endpoint, now: float
) -> None:
    """No request reaches into the last 2 minutes, or further back than Duo serves.

    New windows start within 179 days; a window being paged (or the admin log's
    boundary) keeps its position until 10 minutes short of Duo's 180 days.
    """
    cursor = data.draw(any_cursor(endpoint) | near_the_floor(endpoint, now))

    request = plan_request(endpoint, cursor, now)

    if request is None:
        return
    params = request.params_dict()
    kept_s = 180 * 86_400 - 600
    if endpoint is Endpoint.ADMINACTION:
        # One second before the boundary, at most, when inclusivity is unproven.
        assert int(params["mintime"]) >= now - kept_s - 1
        assert request.cursor.mintime <= now - 121
    else:
        mintime, maxtime = int(params["mintime"]), int(params["maxtime"])
        assert now * 1000 - kept_s * 1000 <= mintime < maxtime
        if request.opened:
            assert now * 1000 - 179 * DAY_MS <= mintime
        assert maxtime <= now * 1000 - 120_000


# apply_response ------------------------------------------------------------------


def window_request(endpoint: Endpoint, cursor: WindowCursor | None = None) -> Request:
    """A request for a window ending at the horizon."""
    cursor = WindowCursor(1_699_999_000_000) if cursor is None else cursor
    request = plan_request(endpoint, cursor, NOW)
    assert request is not None
    return request


@pytest.mark.parametrize(
    ("endpoint", "response", "next_offset"),
    [
        (
            Endpoint.AUTH,
            {
                "authlogs": [{"txid": "a"}],
                "metadata": {
                    "next_offset": ["1699999000001", "a"],
                    "total_objects": {"relation": "gte", "value": 10000},
                },
            },
            "1699999000001,a",
        ),
        (
            Endpoint.AUTH,
            {
                "authlogs": [{"txid": "a"}],
                "metadata": {"next_offset": [1699999000001, "a"], "total_objects": 9},
            },
            "1699999000001,a",
        ),
        (
            Endpoint.TELEPHONY,
            {"items": [{"telephony_id": "t"}], "metadata": {"next_offset": "5,t"}},
            "5,t",
        ),
        (
            Endpoint.ACTIVITY,
            {"items": [{"activity_id": "a"}], "metadata": {"next_offset": "5,a"}},
            "5,a",
        ),
        (
            Endpoint.TRUSTMONITOR,
            {"events": [{"sekey": "s"}], "metadata": {"next_offset": "31229"}},
            "31229",
        ),
        (
            Endpoint.TRUSTMONITOR,
            {"events": [{"sekey": "s"}], "metadata": {"next_offset": 31229}},
            "31229",
        ),
    ],
)
def test_page_with_next_offset_continues_in_its_window(
    endpoint: Endpoint, response: dict[str, object], next_offset: str
) -> None:
    """A page with a next_offset ships its records and keeps paging the same window."""
    request = window_request(endpoint)

    step = apply_response(request, response)

    [records] = [v for k, v in response.items() if k != "metadata"]
    assert (
        Step(
            tuple(records),  # type: ignore[arg-type]
            WindowCursor(1_699_999_000_000, HORIZON_MS, next_offset),
            caught_up=False,
        )
        == step
    )


@pytest.mark.parametrize(
    "metadata",
    [{"next_offset": None}, {}, {"total_objects": 3}],
)
@pytest.mark.parametrize("endpoint", WINDOWED)
def test_last_page_starts_the_next_window_after_this_one(
    endpoint: Endpoint, metadata: dict[str, object]
) -> None:
    """Without a next_offset the window is done: the next starts 1 ms after it."""
    key = {"auth": "authlogs", "trustmonitor": "events"}.get(endpoint, "items")
    cursor = WindowCursor(1_699_999_000_000, HORIZON_MS, "7,x")

    step = apply_response(window_request(endpoint, cursor), {key: [], **metadata})

    assert Step((), WindowCursor(HORIZON_MS + 1), caught_up=True) == step


def test_last_page_of_an_old_window_is_not_caught_up() -> None:
    """A window resumed after a restart ends early; more can be asked at once."""
    cursor = WindowCursor(1_699_000_000_000, 1_699_000_100_000)

    step = apply_response(window_request(Endpoint.ACTIVITY, cursor), {"items": []})

    assert Step((), WindowCursor(1_699_000_100_001), caught_up=False) == step


def test_admin_page_is_shipped_in_time_order() -> None:
    """Admin records are shipped sorted by timestamp, keeping Duo's order within one."""
    records = [
        {"action": "b", "timestamp": 1_699_999_003},
        {"action": "a", "timestamp": 1_699_999_002},
        {"action": "c", "timestamp": 1_699_999_003},
    ]
    request = plan_request(Endpoint.ADMINACTION, AdminCursor(1_699_999_001), NOW)
    assert request is not None

    step = apply_response(request, records)

    assert (
        Step(
            (records[1], records[0], records[2]),
            AdminCursor(HORIZON_S + 1),
            caught_up=True,
        )
        == step
    )


def test_admin_records_past_the_horizon_wait_for_a_later_poll() -> None:
    """Records of the last 2 minutes wait: late events may still arrive before them."""
    records = [
        {"action": "a", "timestamp": HORIZON_S},
        {"action": "b", "timestamp": HORIZON_S + 1},
    ]
    request = plan_request(Endpoint.ADMINACTION, AdminCursor(HORIZON_S), NOW)
    assert request is not None

    step = apply_response(request, records)

    assert Step((records[0],), AdminCursor(HORIZON_S + 1), caught_up=True) == step


def test_identical_admin_records_in_one_second_are_two_records() -> None:
    """Two identical events in one second are both shipped, and both remembered."""
    record = {"action": "admin_login", "timestamp": 1_699_999_002}
    limits = Limits(page_size=3)
    request = plan_request(
        Endpoint.ADMINACTION, AdminCursor(1_699_999_001), NOW, limits
    )
    assert request is not None
    later = {"action": "x", "timestamp": 1_699_999_003}

    step = apply_response(request, [record, dict(record), later])

    assert (record, record, later) == step.records
    assert AdminCursor(1_699_999_003, frozenset({f"{record_identity(later)}.0"})) == (
        step.cursor
    )


def test_record_identity_ignores_key_order() -> None:
    """A record's identity depends on its content, not on how its keys were ordered."""
    assert record_identity({"a": 1, "b": [1, {"c": "é"}]}) == record_identity(
        {"b": [1, {"c": "é"}], "a": 1}
    )
    assert record_identity({"a": 1}) != record_identity({"a": 2})


@pytest.mark.parametrize(
    ("endpoint", "response"),
    [
        (Endpoint.AUTH, None),
        (Endpoint.AUTH, []),
        (Endpoint.AUTH, {"metadata": {}}),
        (Endpoint.AUTH, {"authlogs": {}}),
        (Endpoint.AUTH, {"authlogs": ["txid"]}),
        (Endpoint.AUTH, {"authlogs": [], "metadata": []}),
        (Endpoint.AUTH, {"authlogs": [], "metadata": {"next_offset": ["1"]}}),
        (Endpoint.AUTH, {"authlogs": [], "metadata": {"next_offset": ["x", "t"]}}),
        (Endpoint.AUTH, {"authlogs": [], "metadata": {"next_offset": ["1", ""]}}),
        (Endpoint.AUTH, {"authlogs": [], "metadata": {"next_offset": [True, "t"]}}),
        (Endpoint.AUTH, {"items": [], "metadata": {}}),
        (Endpoint.TELEPHONY, {"authlogs": []}),
        (Endpoint.TELEPHONY, {"items": [], "metadata": {"next_offset": ""}}),
        (Endpoint.TELEPHONY, {"items": [], "metadata": {"next_offset": 5}}),
        (Endpoint.ACTIVITY, {"items": [], "metadata": {"next_offset": ["1", "a"]}}),
        (Endpoint.TRUSTMONITOR, {"events": None}),
        (Endpoint.TRUSTMONITOR, {"events": [], "metadata": {"next_offset": 1.5}}),
        (Endpoint.TRUSTMONITOR, {"events": [], "metadata": {"next_offset": False}}),
        (Endpoint.TRUSTMONITOR, {"events": [], "metadata": {"next_offset": "7,x"}}),
        (Endpoint.ADMINACTION, {"items": []}),
        (Endpoint.ADMINACTION, [1]),
        (Endpoint.ADMINACTION, [{"timestamp": 1_699_998_000}]),
    ],
)
def test_malformed_response_raises_the_project_error(
    endpoint: Endpoint, response: object
) -> None:
    """A response without its documented shape raises MalformedResponseError."""
    if endpoint is Endpoint.ADMINACTION:
        request = plan_request(endpoint, AdminCursor(1_699_999_001), NOW)
    else:
        # A token equal to the one sent would never advance.
        cursor = WindowCursor(1_699_999_000_000, 1_699_999_500_000, "7,x")
        request = plan_request(endpoint, cursor, NOW)
    assert request is not None

    with pytest.raises(MalformedResponseError):
        apply_response(request, response)


@pytest.mark.parametrize(
    "record",
    [
        {"action": "a", "timestamp": "1699999002"},
        {"action": "a", "timestamp": 1_699_999_002.5},
        {"action": "a", "isotimestamp": "2023-11-14T21:56:42+00:00"},
        {"action": "a", "timestamp": True},
        {"action": "a", "timestamp": None, "isotimestamp": "soon"},
        {"action": "a"},
    ],
)
def test_an_admin_record_with_an_odd_time_is_shipped(record: Record) -> None:
    """A timestamp of another type, or none, does not stop the administrator log."""
    cursor = AdminCursor(1_699_999_001, inclusive=True)
    request = plan_request(Endpoint.ADMINACTION, cursor, NOW)
    assert request is not None
    later = {"action": "b", "timestamp": 1_699_999_003}

    step = apply_response(request, [record, later])

    assert [record, later] == list(step.records)
    assert step.caught_up


def test_a_record_too_odd_for_json_still_has_an_identity() -> None:
    """An integer of 5000 digits cannot be dumped as JSON; the record is told apart."""
    huge = 10**5000
    assert record_identity({"n": [huge]}) != record_identity({"n": [huge + 1]})


# Local time never leaks in -------------------------------------------------------


@pytest.fixture(params=["America/New_York", "Asia/Kolkata"])
def local_timezone(request: pytest.FixtureRequest) -> Iterator[str]:
    """The process's local time zone, set for the test and restored after it."""
    saved = os.environ.get("TZ")
    os.environ["TZ"] = request.param
    time.tzset()
    try:
        yield request.param
    finally:
        if saved is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = saved
        time.tzset()


@pytest.mark.usefixtures("local_timezone")
def test_rules_are_the_same_in_any_local_timezone() -> None:
    """Requests, steps and warnings are UTC epoch numbers whatever the local zone."""
    assert time.timezone != 0
    request = plan_request(Endpoint.AUTH, WindowCursor(0), NOW)
    assert request is not None
    admin = plan_request(
        Endpoint.ADMINACTION, AdminCursor(HORIZON_S - 1, inclusive=True), NOW
    )
    assert admin is not None
    burst = [{"timestamp": HORIZON_S - 1, "n": n} for n in range(1000)]

    step = apply_response(admin, burst)

    assert str(HORIZON_MS) == request.params_dict()["maxtime"]
    assert str(NOW_MS - 179 * DAY_MS) == request.params_dict()["mintime"]
    assert (
        "records from 1970-01-01T00:00:00.000+00:00 to before " in (request.warnings[0])
    )
    assert AdminCursor(HORIZON_S, inclusive=True) == step.cursor
    assert "(2023-11-14T22:11:18+00:00)" in step.warnings[0]


def test_how_far_the_records_shipped_reach() -> None:
    """A window being paged in time order reaches its token's time; others, mintime."""
    start, last, end = 1_700_000_000_000, 1_700_003_600_000, 1_700_086_400_000
    paged = WindowCursor(start, end, f"{last},txid-1")
    assert reached_time(Endpoint.AUTH, paged) == last
    assert reached_time(Endpoint.TELEPHONY, paged) == last
    # Trust monitor is asked in no order: its last record is anywhere.
    assert reached_time(Endpoint.TRUSTMONITOR, paged) == start
    # A token that names no time, or between windows: the position.
    assert reached_time(Endpoint.AUTH, WindowCursor(start, end, "opaque")) == start
    assert reached_time(Endpoint.AUTH, WindowCursor(start)) == start
    assert reached_time(Endpoint.ADMINACTION, AdminCursor(1_700_000_000)) == (
        1_700_000_000
    )
