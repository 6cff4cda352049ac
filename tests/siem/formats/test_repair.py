"""Repairs: what a message says it had to change, and how records are named.

Rules for these tests: the records are the realistic ones of the CEF tests,
changed in one place each; the expected repairs are written out literally,
since they are what an operator reads in the log.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from tests.siem.formats.test_cef import (
    ACTIVITY,
    ADMINACTION,
    AUTH,
    TELEPHONY,
    TRUSTMONITOR,
)
from trio_dls.endpoints import Endpoint
from trio_dls.siem.formats import (
    LogFormat,
    MessageSettings,
    SyslogHeader,
    describe_record,
    format_message,
    render_message,
)
from trio_dls.siem.formats.cef import render_cef
from trio_dls.siem.formats.eventtime import read_event_time
from trio_dls.siem.formats.jsonlines import render_json
from trio_dls.siem.formats.repair import describe_value

RECORDS: list[tuple[dict[str, Any], Endpoint]] = [
    (AUTH, Endpoint.AUTH),
    (ADMINACTION, Endpoint.ADMINACTION),
    (TELEPHONY, Endpoint.TELEPHONY),
    (ACTIVITY, Endpoint.ACTIVITY),
    (TRUSTMONITOR, Endpoint.TRUSTMONITOR),
]
TIME_REPAIR = (
    "event time timestamp (1e+300) is no time in the years 1 to 9999 UTC;"
    " taken as missing"
)


def settings(log_format: LogFormat, header: SyslogHeader) -> MessageSettings:
    """Return settings for host relay-01."""
    return MessageSettings(
        hostname="relay-01", log_format=log_format, syslog_header=header
    )


def auth_without_time(**changes: object) -> dict[str, Any]:
    """Return the auth record without its times, with *changes*."""
    record = copy.deepcopy(AUTH)
    del record["isotimestamp"], record["timestamp"]
    record.update(changes)
    return record


@pytest.mark.parametrize("log_format", list(LogFormat))
@pytest.mark.parametrize("header", list(SyslogHeader))
def test_an_ordinary_record_needs_no_repair(
    log_format: LogFormat, header: SyslogHeader
) -> None:
    """Realistic records of every endpoint render with no repairs, as before."""
    for record, endpoint in RECORDS:
        rendered = render_message(
            record, endpoint, settings(log_format, header), fallback_time_ms=0
        )
        expected = format_message(
            record, endpoint, settings(log_format, header), fallback_time_ms=0
        )
        assert (expected, ()) == (rendered.data, rendered.repairs)


def test_a_cef_surrogate_repair_names_the_key() -> None:
    """A lone surrogate in user.name is reported as replaced in duser."""
    record = {**AUTH, "user": {"name": "narr\ud83doway"}}
    rendered = render_cef(record, Endpoint.AUTH)
    expected = ("lone surrogates in duser replaced by U+FFFD",)
    assert expected == rendered.repairs
    assert b" duser=narr\xef\xbf\xbdoway" in rendered.data


def test_json_repairs_name_each_place() -> None:
    """Each JSON value written as null is reported with its JSON path, in order."""
    record = {
        "txid": "t1",
        "score": float("nan"),
        "more": [1, {"odd key": float("-inf")}],
        "count": 10**5000,
    }
    expected = (
        "NaN at $.score written as null",
        "-Infinity at $.more[1]['odd key'] written as null",
        "an integer of about 5001 digits at $.count written as null",
    )
    assert expected == render_json(record).repairs


def test_cef_repairs_for_a_long_integer_and_a_json_value() -> None:
    """A too-long integer is left out; a NaN inside a JSON-valued field is null."""
    record = {**TELEPHONY, "credits": 10**5000}
    expected = ("an integer of about 5001 digits in cs2 left out",)
    assert expected == render_cef(record, Endpoint.TELEPHONY).repairs
    record = {**TRUSTMONITOR, "priority_reasons": [{"score": float("nan")}]}
    expected = ("NaN at cs4[0].score written as null",)
    assert expected == render_cef(record, Endpoint.TRUSTMONITOR).repairs


def test_deep_nesting_repair() -> None:
    """Nesting cut at 100 levels is reported where it was cut."""
    nested: list[object] = []
    innermost = nested
    for _ in range(200):
        innermost.append([])
        innermost = innermost[0]  # type: ignore[assignment]
    record = {"x": float("nan"), "deep": nested}
    expected = (
        "NaN at $.x written as null",
        "nesting deeper than 100 levels at $.deep" + "[0]" * 99 + " written as null",
    )
    assert expected == render_json(record).repairs


@pytest.mark.parametrize(
    ("log_format", "header"),
    [
        (LogFormat.JSON, SyslogHeader.RFC5424),
        (LogFormat.JSON, SyslogHeader.RFC3164),
        (LogFormat.CEF, SyslogHeader.NONE),
        (LogFormat.CEF, SyslogHeader.RFC5424),
    ],
)
def test_an_impossible_time_is_reported_once(
    log_format: LogFormat, header: SyslogHeader
) -> None:
    """Header and CEF rt both meet the impossible time; it is reported once."""
    rendered = render_message(
        auth_without_time(timestamp=1e300),
        Endpoint.AUTH,
        settings(log_format, header),
        fallback_time_ms=0,
    )
    expected = (TIME_REPAIR,)
    assert expected == rendered.repairs


def test_json_without_a_header_never_reads_the_time() -> None:
    """Bare JSON does not use the event time, so an impossible one needs no repair."""
    rendered = render_message(
        auth_without_time(timestamp=1e300),
        Endpoint.AUTH,
        settings(LogFormat.JSON, SyslogHeader.NONE),
        fallback_time_ms=0,
    )
    assert not rendered.repairs
    assert rendered.data.endswith(b'"timestamp": 1e+300}')


def test_a_missing_or_malformed_time_is_no_repair() -> None:
    """A time that is absent or not ISO falls back silently, as it always did."""
    for record in [auth_without_time(), auth_without_time(isotimestamp="yesterday")]:
        assert read_event_time(record, Endpoint.AUTH).problem is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("narroway", "'narroway'"),
        ("narr\ud83doway", "'narr\\ud83doway'"),
        pytest.param(
            "\u00fc" * 1_000_000,
            "'" + "\\xfc" * 40 + "'... (1000000 characters)",
            id="1M-characters",
        ),
        # pytest would name the case with str(), which refuses this integer.
        pytest.param(10**5000, "an integer of about 5001 digits", id="5001-digits"),
        (1795788189, "1795788189"),
        (float("nan"), "NaN"),
        (float("inf"), "Infinity"),
        (1e300, "1e+300"),
        (None, "null"),
        (True, "true"),
        ({"a": 1}, "an object"),
        ([1], "a list"),
    ],
)
def test_describe_value_is_short_ascii(value: object, expected: str) -> None:
    """Values are named in ASCII, excerpted, never written out when huge."""
    assert expected == describe_value(value)


def test_describe_record_names_each_endpoint_by_its_id() -> None:
    """txid, administrator time and action, telephony_id, activity_id, sekey."""
    expected = [
        "txid '340a23e3-23f3-4e3f-9a4c-f1a3c0d1b2e3'",
        "timestamp 1795788300, action 'user_update'",
        "telephony_id '220f5ea7-8a07-4b56-9d0b-2c0b1f3b4e5a'",
        "activity_id '9a6f2f6e-3c1d-4c55-8b0b-6f0d1e2a3b4c'",
        "sekey 'SEDOR9BP00L23C6YUH5'",
    ]
    assert expected == [describe_record(r, e) for r, e in RECORDS]


def test_describe_record_without_an_id() -> None:
    """A record that lacks its endpoint's id is named as such."""
    assert describe_record({}, Endpoint.AUTH) == "without an id"
