"""Output formats: a Duo record in, the bytes of one message out.

One module per concern: ``jsonlines`` (JSON as duo_log_sync writes it),
``cef`` (CEF with duo_log_sync's field names, escaped), ``syslog`` (the
optional RFC 5424 / RFC 3164 header and duo_log_sync's CEF prefix),
``eventtime`` (each endpoint's event time as UTC epoch milliseconds),
``repair`` (what is written instead of a value no format can write as
received) and ``message`` (the composition a sender calls). Everything here
is pure: no I/O, no clock, no trio. Framing the messages for a stream or a
datagram is ``trio_dls.siem.framing``.
"""

from __future__ import annotations

from trio_dls.siem.formats.message import (
    JsonStyle,
    LogFormat,
    MessageSettings,
    format_message,
    render_message,
    render_page,
)
from trio_dls.siem.formats.repair import Rendered, describe_record
from trio_dls.siem.formats.syslog import Facility, Severity, SyslogHeader

__all__ = [
    "Facility",
    "JsonStyle",
    "LogFormat",
    "MessageSettings",
    "Rendered",
    "Severity",
    "SyslogHeader",
    "describe_record",
    "format_message",
    "render_message",
    "render_page",
]
