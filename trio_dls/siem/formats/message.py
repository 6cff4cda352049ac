"""One record in, one message out: format plus optional syslog header.

Theory of operation: a server's output settings (``MessageSettings``) say
which format (JSON or CEF) and which syslog header it wants; ``format_message``
applies them to one record and returns the bytes of one message, ready for
``trio_dls.siem.framing``. It is a pure function: the hostname comes from the
settings (the I/O side resolves it once at start-up), and the only time it
uses is the record's own event time, or the caller's ``fallback_time_ms`` for
a record that has none.

``render_message`` never raises for a record decoded from JSON, whatever its
values: what cannot be written as received is repaired, and the result says
what was (``trio_dls.siem.formats.repair``), for the sender to log and count. An
ordinary record's bytes are the same as if no repair existed.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING

import attrs

from trio_dls.siem.formats.cef import DEVICE_VERSION, render_cef
from trio_dls.siem.formats.eventtime import EventTime, Record, read_event_time
from trio_dls.siem.formats.jsonlines import (
    UNWRITABLE,
    render_compact_json,
    render_json,
    write_compact_json,
    write_dls_json,
)
from trio_dls.siem.formats.repair import Rendered
from trio_dls.siem.formats.syslog import (
    DEFAULT_FACILITY,
    DEFAULT_SEVERITY,
    Facility,
    Severity,
    SyslogHeader,
    check_hostname,
    dls_prefix,
    rfc3164_header,
    rfc5424_header,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

    from trio_dls.endpoints import Endpoint


class LogFormat(enum.StrEnum):
    """How a server wants each record written."""

    JSON = "json"
    CEF = "cef"


class JsonStyle(enum.StrEnum):
    """How JSON is written (``dls_settings.json_style``, an extension)."""

    DLS = "dls"
    """Byte for byte as duo_log_sync: ASCII, ``", "`` and ``": "``."""
    COMPACT = "compact"
    """No spaces, UTF-8: the same values in fewer bytes."""


def _valid_hostname(_instance: object, _attribute: object, value: str) -> None:
    check_hostname(value)


@attrs.frozen(kw_only=True)
class MessageSettings:
    """What one server wants each message to look like.

    ``hostname`` is the sending host's name as it appears in the duo_log_sync
    prefix and in syslog headers; the I/O side looks it up once
    (``socket.gethostname()``) or takes it from the config.
    """

    hostname: str = attrs.field(validator=_valid_hostname)
    log_format: LogFormat = LogFormat.JSON
    json_style: JsonStyle = JsonStyle.DLS
    syslog_header: SyslogHeader = SyslogHeader.NONE
    facility: Facility = DEFAULT_FACILITY
    severity: Severity = DEFAULT_SEVERITY
    device_version: str = DEVICE_VERSION


def render_message(
    record: Record,
    endpoint: Endpoint,
    settings: MessageSettings,
    *,
    fallback_time_ms: int,
) -> Rendered:
    """Return ``record`` of ``endpoint`` as one message (no framing), and repairs.

    The header time is the record's event time (see ``trio_dls.siem.formats.syslog``
    for why); ``fallback_time_ms``, normally the time of sending, is used only
    for a record whose event time is missing, malformed or impossible. With no
    syslog header, CEF keeps duo_log_sync's ``Mmm dd HH:MM:SS <hostname>``
    prefix and JSON has none, as in duo_log_sync. An RFC 5424 header's MSGID
    is the endpoint name, so a receiver can route on it. The message is UTF-8
    and never contains a raw LF. The repairs are empty for an ordinary record.
    """
    cef = settings.log_format is LogFormat.CEF
    plain = settings.syslog_header is SyslogHeader.NONE and not cef
    # JSON without a header never reads the time, so nothing is repaired there.
    event_time = _NO_TIME if plain else read_event_time(record, endpoint)
    if cef:
        body = render_cef(
            record,
            endpoint,
            device_version=settings.device_version,
            event_time=event_time,
        )
    elif settings.json_style is JsonStyle.COMPACT:
        body = render_compact_json(record)
    else:
        body = render_json(record)
    if plain:
        if body.repairs:
            return Rendered(body.data, tuple(dict.fromkeys(body.repairs)))
        return body
    repairs = list(body.repairs)
    time_ms = fallback_time_ms if event_time.ms is None else event_time.ms
    match settings.syslog_header:
        case SyslogHeader.NONE:  # CEF: duo_log_sync's prefix
            header = dls_prefix(time_ms=time_ms, hostname=settings.hostname)
        case SyslogHeader.RFC5424:
            header = rfc5424_header(
                time_ms=time_ms,
                hostname=settings.hostname,
                msgid=endpoint.value,
                facility=settings.facility,
                severity=settings.severity,
            )
        case SyslogHeader.RFC3164:
            header = rfc3164_header(
                time_ms=time_ms,
                hostname=settings.hostname,
                facility=settings.facility,
                severity=settings.severity,
            )
    if event_time.problem is not None:
        repairs.append(event_time.problem)
    return Rendered(header.encode("ascii") + body.data, tuple(dict.fromkeys(repairs)))


_NO_TIME = EventTime(None)


def render_page(
    records: Sequence[Record],
    endpoint: Endpoint,
    settings: MessageSettings,
    *,
    fallback_time_ms: int,
) -> tuple[list[bytes], list[tuple[int, tuple[str, ...]]]]:
    """Return each of ``records`` as ``render_message`` writes it, and the repairs.

    The messages are in the order of ``records``; the repairs are
    ``(index, repairs)`` of each record that needed some, in order. See the
    module docstring for the way a page of JSON without a header takes.
    """
    if settings.log_format is LogFormat.JSON and (
        settings.syslog_header is SyslogHeader.NONE
    ):
        write = (
            write_compact_json
            if settings.json_style is JsonStyle.COMPACT
            else write_dls_json
        )
        try:
            return [write(record) for record in records], []
        except UNWRITABLE:
            pass  # some record needs a repair: record by record
    messages: list[bytes] = []
    repaired: list[tuple[int, tuple[str, ...]]] = []
    for index, record in enumerate(records):
        rendered = render_message(
            record, endpoint, settings, fallback_time_ms=fallback_time_ms
        )
        messages.append(rendered.data)
        if rendered.repairs:
            repaired.append((index, rendered.repairs))
    return messages, repaired


def format_message(
    record: Record,
    endpoint: Endpoint,
    settings: MessageSettings,
    *,
    fallback_time_ms: int,
) -> bytes:
    """Return ``record`` of ``endpoint`` as one message (no framing) per ``settings``.

    This is ``render_message`` without the repairs; see there.
    """
    return render_message(
        record, endpoint, settings, fallback_time_ms=fallback_time_ms
    ).data
