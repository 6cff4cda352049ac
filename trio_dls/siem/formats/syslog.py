"""Syslog headers put in front of each formatted record.

Theory of operation: a server may ask for no header (what duo_log_sync does),
an RFC 5424 header or an RFC 3164 (BSD) header. With no header, CEF output
still starts with duo_log_sync's own ``Mmm dd HH:MM:SS <hostname> `` prefix,
because SIEM parsers written for duo_log_sync expect it; JSON output gets
nothing. A configured RFC 5424 or 3164 header replaces that prefix.

Every header here is stamped with the *event* time of the record, in UTC, not
the time it is sent. That keeps formatting a pure function of the record, so a
page re-sent after a crash is byte-for-byte what was sent before (a SIEM can
de-duplicate it), and a backlog fetched hours late still lands at the right
time in the SIEM. duo_log_sync stamped its prefix with the local send time;
this is one of the documented fixes.

The module knows nothing of sockets or clocks: the hostname and the time are
parameters. It returns ASCII text; the caller encodes and frames it.
"""

from __future__ import annotations

import datetime as dt
import enum
import re

#: APP-NAME (RFC 5424) and TAG (RFC 3164) of every message trio-dls sends.
APP_NAME = "trio-dls"

# Month abbreviations are fixed English, as both RFCs require: strftime("%b")
# would follow the process locale.
_MONTHS = (
    "Jan",
    "Feb",
    "Mar",
    "Apr",
    "May",
    "Jun",
    "Jul",
    "Aug",
    "Sep",
    "Oct",
    "Nov",
    "Dec",
)

# RFC 5424 HOSTNAME is 1*255PRINTUSASCII (no space); RFC 3164 and the
# duo_log_sync prefix split on spaces, so the same rule suits all three.
_HOSTNAME = re.compile(r"[\x21-\x7e]{1,255}")
# RFC 5424 MSGID is 1*32PRINTUSASCII.
_MSGID = re.compile(r"[\x21-\x7e]{1,32}")


class SyslogHeader(enum.StrEnum):
    """Which syslog header a server gets in front of each record."""

    NONE = "none"
    RFC5424 = "rfc5424"
    RFC3164 = "rfc3164"


class Facility(enum.IntEnum):
    """Syslog facility codes (RFC 5424, table 1); config names are lower-case."""

    KERN = 0
    USER = 1
    MAIL = 2
    DAEMON = 3
    AUTH = 4
    SYSLOG = 5
    LPR = 6
    NEWS = 7
    UUCP = 8
    CRON = 9
    AUTHPRIV = 10
    FTP = 11
    NTP = 12
    SECURITY = 13
    CONSOLE = 14
    SOLARIS_CRON = 15
    LOCAL0 = 16
    LOCAL1 = 17
    LOCAL2 = 18
    LOCAL3 = 19
    LOCAL4 = 20
    LOCAL5 = 21
    LOCAL6 = 22
    LOCAL7 = 23


class Severity(enum.IntEnum):
    """Syslog severity codes (RFC 5424, table 2); config names are lower-case."""

    EMERGENCY = 0
    ALERT = 1
    CRITICAL = 2
    ERROR = 3
    WARNING = 4
    NOTICE = 5
    INFORMATIONAL = 6
    DEBUG = 7


#: ``user``: the facility RFC 5424 names for generic user-level messages. The
#: local0..local7 facilities are reserved for each site's own routing, so a
#: default that took one could collide with rules a site already has.
DEFAULT_FACILITY = Facility.USER
#: ``informational``: Duo logs are an audit trail, not alarms; how serious an
#: event is travels inside the record (and as the CEF severity).
DEFAULT_SEVERITY = Severity.INFORMATIONAL


def check_hostname(hostname: str) -> str:
    """Return ``hostname`` if it can stand in a syslog header, else raise ValueError.

    It must be 1 to 255 printable ASCII characters without spaces (RFC 5424
    HOSTNAME); anything else would shift every later header field.
    """
    if _HOSTNAME.fullmatch(hostname) is None:
        raise ValueError(
            f"hostname {hostname!r} must be 1-255 printable ASCII characters"
            " without spaces"
        )
    return hostname


def priority(facility: Facility, severity: Severity) -> int:
    """Return the PRI value: facility times 8 plus severity."""
    return facility * 8 + severity


_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def _utc(time_ms: int) -> dt.datetime:
    # Integer arithmetic: a float of seconds could round 59.9995 up a second.
    # A time outside datetime's years 1 to 9999 raises OverflowError: the
    # formats never pass one from a record (see trio_dls.siem.formats.eventtime).
    return _EPOCH + dt.timedelta(milliseconds=time_ms)


def rfc5424_header(
    *,
    time_ms: int,
    hostname: str,
    msgid: str,
    facility: Facility = DEFAULT_FACILITY,
    severity: Severity = DEFAULT_SEVERITY,
    app_name: str = APP_NAME,
) -> str:
    """Return ``<PRI>1 TIMESTAMP HOSTNAME APP-NAME - MSGID - `` for a message.

    TIMESTAMP is UTC with milliseconds and ``Z``; PROCID and STRUCTURED-DATA
    are the NILVALUE ``-``. No BOM is written before the MSG: RFC 5424 makes
    it optional, and CEF and JSON parsers would take it for data.
    """
    check_hostname(hostname)
    if _MSGID.fullmatch(msgid) is None:
        raise ValueError(f"MSGID {msgid!r} must be 1-32 printable ASCII characters")
    moment = _utc(time_ms)
    # RFC 5424 FULLDATE has four year digits; strftime's %Y has no padding on
    # glibc, so a year before 1000 would come out short.
    stamp = f"{moment.year:04d}-{moment:%m-%dT%H:%M:%S}.{time_ms % 1000:03d}Z"
    pri = priority(facility, severity)
    return f"<{pri}>1 {stamp} {hostname} {app_name} - {msgid} - "


def rfc3164_header(
    *,
    time_ms: int,
    hostname: str,
    facility: Facility = DEFAULT_FACILITY,
    severity: Severity = DEFAULT_SEVERITY,
    tag: str = APP_NAME,
) -> str:
    """Return ``<PRI>Mmm dd HH:MM:SS HOSTNAME TAG: `` for a message.

    The day is padded with a space (``Jan  2``) as RFC 3164 requires, and the
    time is UTC: RFC 3164 carries no zone, so UTC is the only reading a
    receiver anywhere can share.
    """
    check_hostname(hostname)
    moment = _utc(time_ms)
    stamp = f"{_MONTHS[moment.month - 1]} {moment.day:2d} {moment:%H:%M:%S}"
    return f"<{priority(facility, severity)}>{stamp} {hostname} {tag}: "


def dls_prefix(*, time_ms: int, hostname: str) -> str:
    """Return duo_log_sync's CEF prefix, ``Mmm dd HH:MM:SS <hostname> ``, in UTC.

    duo_log_sync wrote ``strftime("%b %d %H:%M:%S")`` of the local time: the
    day is zero-padded (``Jan 02``), unlike RFC 3164, and that is kept so
    parsers written against duo_log_sync keep matching; only the zone (UTC)
    and the locale (always English month names) differ.
    """
    check_hostname(hostname)
    moment = _utc(time_ms)
    stamp = f"{_MONTHS[moment.month - 1]} {moment.day:02d} {moment:%H:%M:%S}"
    return f"{stamp} {hostname} "
