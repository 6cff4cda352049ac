"""Syslog headers and duo_log_sync's prefix: exact text, always UTC.

Rules for these tests: times are epoch milliseconds written out literally;
1795788189417 is 2026-11-27 14:03:09.417 UTC and 1794121389000 is
2026-11-08 07:03:09 UTC (a one-digit day, for the padding rules).
"""

from __future__ import annotations

import pytest

from trio_dls.siem.formats.syslog import (
    Facility,
    Severity,
    dls_prefix,
    priority,
    rfc3164_header,
    rfc5424_header,
)


def test_rfc5424_header() -> None:
    """RFC 5424: <PRI>1, UTC timestamp with ms and Z, app trio-dls, MSGID."""
    expected = "<14>1 2026-11-27T14:03:09.417Z relay-01 trio-dls - auth - "
    actual = rfc5424_header(time_ms=1795788189417, hostname="relay-01", msgid="auth")
    assert expected == actual


def test_rfc5424_facility_and_severity() -> None:
    """The configured facility and severity make the PRI."""
    expected = "<133>1 2026-11-08T07:03:09.000Z relay-01 trio-dls - telephony - "
    actual = rfc5424_header(
        time_ms=1794121389000,
        hostname="relay-01",
        msgid="telephony",
        facility=Facility.LOCAL0,
        severity=Severity.NOTICE,
    )
    assert expected == actual


def test_rfc3164_header_pads_the_day_with_a_space() -> None:
    """RFC 3164: <PRI>Mmm dd HH:MM:SS HOSTNAME TAG:, a one-digit day space-padded."""
    expected = "<14>Nov  8 07:03:09 relay-01 trio-dls: "
    assert expected == rfc3164_header(time_ms=1794121389000, hostname="relay-01")


def test_dls_prefix_pads_the_day_with_a_zero() -> None:
    """DLS's prefix keeps strftime's zero-padded day, but in UTC."""
    assert (
        dls_prefix(time_ms=1794121389000, hostname="relay-01")
        == "Nov 08 07:03:09 relay-01 "
    )


def test_priority() -> None:
    """PRI is facility times eight plus severity."""
    assert [
        priority(Facility.USER, Severity.INFORMATIONAL),
        priority(Facility.LOCAL0, Severity.INFORMATIONAL),
        priority(Facility.LOCAL7, Severity.DEBUG),
    ] == [14, 134, 191]


@pytest.mark.parametrize("hostname", ["", "two words", "tab\there", "ünï", "x" * 256])
def test_bad_hostnames_are_refused(hostname: str) -> None:
    """A hostname that would shift the header's fields raises ValueError."""
    with pytest.raises(ValueError, match="hostname"):
        rfc3164_header(time_ms=0, hostname=hostname)


def test_bad_msgid_is_refused() -> None:
    """An RFC 5424 MSGID over 32 characters raises ValueError."""
    with pytest.raises(ValueError, match="MSGID"):
        rfc5424_header(time_ms=0, hostname="relay-01", msgid="m" * 33)


def test_rfc5424_year_before_1000_has_four_digits() -> None:
    """RFC 5424's FULLDATE has four year digits, also for year 5 (strftime: "5")."""
    expected = "<14>1 0005-04-19T09:46:40.000Z relay-01 trio-dls - auth - "
    actual = rfc5424_header(time_ms=-62000000000000, hostname="relay-01", msgid="auth")
    assert expected == actual
