"""Event times: each endpoint's own time field, as UTC epoch milliseconds."""

from __future__ import annotations

import datetime as dt

import hypothesis
import pytest
from hypothesis import strategies as st

from trio_dls.endpoints import Endpoint
from trio_dls.siem.formats.eventtime import event_time_ms, iso_to_epoch_ms


def test_auth_prefers_isotimestamp_milliseconds() -> None:
    """Auth takes the ms of isotimestamp, dropping microseconds, over timestamp."""
    record = {
        "timestamp": 1795788189,
        "isotimestamp": "2026-11-27T14:03:09.417823+00:00",
    }
    assert event_time_ms(record, Endpoint.AUTH) == 1795788189417


def test_adminaction_falls_back_to_seconds() -> None:
    """An administrator record without isotimestamp uses timestamp seconds."""
    assert (
        event_time_ms({"timestamp": 1795788300}, Endpoint.ADMINACTION) == 1795788300000
    )


def test_telephony_and_activity_use_ts() -> None:
    """Telephony and activity read the ISO ts field."""
    record = {"ts": "2026-11-27T14:06:40.25+00:00"}
    assert event_time_ms(record, Endpoint.TELEPHONY) == 1795788400250
    assert event_time_ms(record, Endpoint.ACTIVITY) == 1795788400250


def test_telephony_v1_timestamp() -> None:
    """A v1 telephony record, with timestamp seconds and no ts, still has a time."""
    assert event_time_ms({"timestamp": 1795788400}, Endpoint.TELEPHONY) == 1795788400000


def test_trustmonitor_uses_surfaced_timestamp() -> None:
    """Trust Monitor's surfaced_timestamp is already milliseconds."""
    record = {"surfaced_timestamp": 1795788600123}
    assert event_time_ms(record, Endpoint.TRUSTMONITOR) == 1795788600123


def test_offsets_are_converted_to_utc() -> None:
    """An ISO time with a non-UTC offset or Z is converted, never taken as local."""
    assert iso_to_epoch_ms("2026-11-27T15:06:40+01:00") == 1795788400000
    assert iso_to_epoch_ms("2026-11-27T14:06:40Z") == 1795788400000


def test_missing_or_malformed_times_are_none() -> None:
    """A naive, malformed, boolean or absent time gives None, not a guess."""
    cases: list[tuple[dict[str, object], Endpoint]] = [
        ({"ts": "2026-11-27T14:06:40"}, Endpoint.ACTIVITY),
        ({"ts": "yesterday"}, Endpoint.ACTIVITY),
        ({"timestamp": True}, Endpoint.AUTH),
        ({"surfaced_timestamp": "1795788600123"}, Endpoint.TRUSTMONITOR),
        ({}, Endpoint.TELEPHONY),
    ]
    assert [None] * len(cases) == [event_time_ms(r, e) for r, e in cases]


@hypothesis.given(st.integers(min_value=0, max_value=253402300799999))
def test_iso_round_trip(time_ms: int) -> None:
    """The ISO text of any epoch millisecond reads back as the same number."""
    seconds, ms = divmod(time_ms, 1000)
    moment = dt.datetime.fromtimestamp(seconds, tz=dt.UTC)
    text = f"{moment:%Y-%m-%dT%H:%M:%S}.{ms:03d}000+00:00"
    assert time_ms == iso_to_epoch_ms(text)


@pytest.mark.parametrize(
    ("record", "endpoint"),
    [
        ({"timestamp": float("nan")}, Endpoint.AUTH),
        ({"timestamp": float("inf")}, Endpoint.ADMINACTION),
        ({"timestamp": float("-inf")}, Endpoint.TELEPHONY),
        ({"timestamp": 1e300}, Endpoint.AUTH),
        ({"timestamp": 10**20}, Endpoint.ACTIVITY),
        ({"timestamp": -(10**15)}, Endpoint.AUTH),
        ({"timestamp": 10**5000}, Endpoint.ADMINACTION),
        ({"surfaced_timestamp": 10**30}, Endpoint.TRUSTMONITOR),
        ({"surfaced_timestamp": -62135596800001}, Endpoint.TRUSTMONITOR),
        ({"isotimestamp": "0001-01-01T00:00:00+14:00"}, Endpoint.AUTH),
        ({"ts": "9999-12-31T23:59:59-14:00"}, Endpoint.ACTIVITY),
    ],
)
def test_impossible_times_are_none(
    record: dict[str, object], endpoint: Endpoint
) -> None:
    """A time outside the years 1-9999 UTC, NaN or infinite is None, not an error."""
    assert event_time_ms(record, endpoint) is None


def test_the_first_and_last_possible_milliseconds_are_times() -> None:
    """0001-01-01 00:00:00.000 and 9999-12-31 23:59:59.999 UTC are kept."""
    first, last = -62135596800000, 253402300799999
    assert [first, last] == [
        event_time_ms({"surfaced_timestamp": t}, Endpoint.TRUSTMONITOR)
        for t in (first, last)
    ]


def test_an_impossible_isotimestamp_gives_way_to_timestamp() -> None:
    """An isotimestamp whose offset leaves the years 1-9999 falls back to timestamp."""
    record = {"isotimestamp": "0001-01-01T00:00:00+14:00", "timestamp": 1795788189}
    assert event_time_ms(record, Endpoint.AUTH) == 1795788189000
