"""Whole messages: format plus header, chosen per server, as one call."""

from __future__ import annotations

import pytest

from trio_dls.endpoints import Endpoint
from trio_dls.siem.formats import (
    Facility,
    LogFormat,
    MessageSettings,
    SyslogHeader,
    format_message,
)

RECORD = {
    "context": "authentication",
    "credits": 1,
    "phone": "+15035550100",
    "telephony_id": "220f5ea7-8a07-4b56-9d0b-2c0b1f3b4e5a",
    "ts": "2026-11-27T14:06:40.250000+00:00",
    "type": "sms",
    "eventtype": "telephony",
}
CEF = (
    b"CEF:0|Duo Security|DuoLogSync|1.2.3|telephony|telephony|5|"
    b"cs1Label=context cs1=authentication cs2Label=credits cs2=1"
    b" cs3Label=event_type cs3=telephony cs4Label=phone cs4=+15035550100"
    b" rt=1795788400250 cs5Label=type cs5=sms"
)
JSON = (
    b'{"context": "authentication", "credits": 1, "phone": "+15035550100",'
    b' "telephony_id": "220f5ea7-8a07-4b56-9d0b-2c0b1f3b4e5a",'
    b' "ts": "2026-11-27T14:06:40.250000+00:00", "type": "sms",'
    b' "eventtype": "telephony"}'
)


def settings(log_format: LogFormat, header: SyslogHeader) -> MessageSettings:
    """Return settings for host relay-01 with a pinned CEF device version."""
    return MessageSettings(
        hostname="relay-01",
        log_format=log_format,
        syslog_header=header,
        device_version="1.2.3",
    )


@pytest.mark.parametrize(
    ("log_format", "header", "expected"),
    [
        (LogFormat.JSON, SyslogHeader.NONE, JSON),
        (LogFormat.CEF, SyslogHeader.NONE, b"Nov 27 14:06:40 relay-01 " + CEF),
        (
            LogFormat.JSON,
            SyslogHeader.RFC5424,
            b"<14>1 2026-11-27T14:06:40.250Z relay-01 trio-dls - telephony - " + JSON,
        ),
        (
            LogFormat.CEF,
            SyslogHeader.RFC5424,
            b"<14>1 2026-11-27T14:06:40.250Z relay-01 trio-dls - telephony - " + CEF,
        ),
        (
            LogFormat.JSON,
            SyslogHeader.RFC3164,
            b"<14>Nov 27 14:06:40 relay-01 trio-dls: " + JSON,
        ),
        (
            LogFormat.CEF,
            SyslogHeader.RFC3164,
            b"<14>Nov 27 14:06:40 relay-01 trio-dls: " + CEF,
        ),
    ],
)
def test_format_and_header(
    log_format: LogFormat, header: SyslogHeader, expected: bytes
) -> None:
    """JSON alone or CEF with DLS's prefix by default; a syslog header replaces it."""
    actual = format_message(
        RECORD, Endpoint.TELEPHONY, settings(log_format, header), fallback_time_ms=0
    )
    assert expected == actual


def test_header_time_is_the_event_time_not_the_fallback() -> None:
    """The header carries the record's time; the fallback is not used."""
    actual = format_message(
        RECORD,
        Endpoint.TELEPHONY,
        settings(LogFormat.JSON, SyslogHeader.RFC3164),
        fallback_time_ms=1_900_000_000_000,
    )
    assert actual.startswith(b"<14>Nov 27 14:06:40 ")


def test_fallback_time_for_a_record_without_one() -> None:
    """A record without a usable time is stamped with the fallback time."""
    record = {**RECORD, "ts": "not a time"}
    actual = format_message(
        record,
        Endpoint.TELEPHONY,
        settings(LogFormat.CEF, SyslogHeader.RFC5424),
        fallback_time_ms=1794121389000,
    )
    assert actual.startswith(b"<14>1 2026-11-08T07:03:09.000Z relay-01 ")
    assert b" rt=" not in actual


def test_facility_setting() -> None:
    """The configured facility reaches the PRI."""
    actual = format_message(
        RECORD,
        Endpoint.TELEPHONY,
        MessageSettings(
            hostname="relay-01",
            syslog_header=SyslogHeader.RFC3164,
            facility=Facility.LOCAL4,
        ),
        fallback_time_ms=0,
    )
    assert actual.startswith(b"<166>")


def test_settings_refuse_a_bad_hostname() -> None:
    """Settings with a hostname containing a space cannot be built."""
    with pytest.raises(ValueError, match="hostname"):
        MessageSettings(hostname="relay 01")


def test_enum_values_are_lower_case() -> None:
    """Config matches these names case-insensitively against lower-case values."""
    values = [*LogFormat, *SyslogHeader]
    assert [v.lower() for v in values] == [v.value for v in values]


# --------------------------------------------------------------------------
# Odd records: written repaired, never an exception (issue 8)
# --------------------------------------------------------------------------

AUTH_RECORD = {
    "txid": "340a23e3-23f3-4e3f-9a4c-f1a3c0d1b2e3",
    "isotimestamp": "2026-11-27T14:03:09.417823+00:00",
    "timestamp": 1795788189,
    "result": "success",
    "user": {"name": "narroway"},
    "eventtype": "authentication",
}
# 2026-11-08 07:03:09 UTC: the time of receipt in these tests.
RECEIVED_MS = 1794121389000


def test_a_lone_surrogate_in_a_user_name_is_sent_as_cef() -> None:
    """Issue 8's record: a lone surrogate in user.name no longer raises in CEF."""
    record = {**AUTH_RECORD, "user": {"name": "narr\ud83doway"}}
    actual = format_message(
        record,
        Endpoint.AUTH,
        settings(LogFormat.CEF, SyslogHeader.NONE),
        fallback_time_ms=RECEIVED_MS,
    )
    assert actual.decode().endswith(" duser=narr\ufffdoway")


@pytest.mark.parametrize(
    "time",
    [
        {"timestamp": float("nan")},
        {"timestamp": float("inf")},
        {"timestamp": 1e300},
        {"timestamp": 10**20},
        {"timestamp": -(10**15)},
        {"isotimestamp": "0001-01-01T00:00:00+14:00"},
    ],
    ids=["nan", "inf", "1e300", "1e20", "-1e15", "before-year-1"],
)
@pytest.mark.parametrize(
    ("log_format", "header", "start"),
    [
        (
            LogFormat.JSON,
            SyslogHeader.RFC5424,
            b"<14>1 2026-11-08T07:03:09.000Z relay-01 trio-dls - auth - {",
        ),
        (
            LogFormat.JSON,
            SyslogHeader.RFC3164,
            b"<14>Nov  8 07:03:09 relay-01 trio-dls: {",
        ),
        (LogFormat.CEF, SyslogHeader.NONE, b"Nov 08 07:03:09 relay-01 CEF:0|"),
        (
            LogFormat.CEF,
            SyslogHeader.RFC5424,
            b"<14>1 2026-11-08T07:03:09.000Z relay-01 trio-dls - auth - CEF:0|",
        ),
    ],
    ids=["json-rfc5424", "json-rfc3164", "cef-dls-prefix", "cef-rfc5424"],
)
def test_an_impossible_event_time_is_stamped_with_the_receive_time(
    time: dict[str, object], log_format: LogFormat, header: SyslogHeader, start: bytes
) -> None:
    """An event time no header can write gives way to the fallback (receive) time."""
    record = {
        k: v for k, v in AUTH_RECORD.items() if k not in {"isotimestamp", "timestamp"}
    }
    actual = format_message(
        {**record, **time},
        Endpoint.AUTH,
        settings(log_format, header),
        fallback_time_ms=RECEIVED_MS,
    )
    assert actual.startswith(start)
    assert b" rt=" not in actual
