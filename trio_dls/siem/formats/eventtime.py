"""When a Duo record happened, in UTC epoch milliseconds.

Theory of operation: every endpoint names its event time differently (auth and
administrator logs carry ``timestamp`` in seconds and ``isotimestamp``;
telephony and activity logs ``ts`` in ISO 8601; Trust Monitor
``surfaced_timestamp`` in milliseconds). This module turns each into one
number: the CEF ``rt`` field and the syslog header timestamp both come from it.

It reads only the record; it never looks at a clock, and it never produces a
local time: an ISO string without a UTC offset is refused rather than guessed.
A record whose time is missing or malformed gets ``None``, not an exception,
so that one odd record cannot stop a whole stream of good ones. So does a
record whose time is impossible: a number or ISO time outside the years 1 to
9999 in UTC (the only ones a syslog header can write), ``NaN`` or an infinity.
That one is not merely absent, it would have made the headers raise, so
``read_event_time`` also says what was wrong, for the sender to log.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Mapping
from typing import TypeAlias

import attrs

from trio_dls.endpoints import Endpoint
from trio_dls.siem.formats.repair import describe_value

#: A Duo log record as decoded from JSON (and enriched by the fetcher).
Record: TypeAlias = Mapping[str, object]

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_ONE_MS = dt.timedelta(milliseconds=1)
#: The first and last millisecond a syslog header can write (datetime's range).
MIN_TIME_MS = (dt.datetime.min.replace(tzinfo=dt.UTC) - _EPOCH) // _ONE_MS
MAX_TIME_MS = (dt.datetime.max.replace(tzinfo=dt.UTC) - _EPOCH) // _ONE_MS


@attrs.frozen
class EventTime:
    """A record's event time in epoch ms (None if it has none) and any problem.

    ``problem`` says, log-safe, which impossible value was ignored; it is None
    when the time was found, or was simply missing or malformed.
    """

    ms: int | None
    problem: str | None = None


def iso_to_epoch_ms(text: str) -> int:
    """Return the epoch milliseconds of an ISO 8601 time with a UTC offset.

    Sub-millisecond digits (Duo's ``isotimestamp`` has microseconds) are
    dropped, rounding toward the past like Duo's own ``next_offset``.
    Raises ValueError for text that is not ISO 8601 or has no offset. The
    result may be outside the years 1 to 9999 in UTC, where an offset takes
    the first or last day of datetime's range.
    """
    moment = dt.datetime.fromisoformat(text)
    if moment.tzinfo is None:
        # A naive time would silently mean "local time" here: refuse it.
        raise ValueError(f"time {text!r} has no UTC offset")
    return (moment - _EPOCH) // _ONE_MS


def _impossible(name: str, value: object) -> EventTime:
    return EventTime(
        None,
        f"event time {name} ({describe_value(value)}) is no time in the years"
        " 1 to 9999 UTC; taken as missing",
    )


def _in_range(name: str, value: object, ms: int) -> EventTime:
    if MIN_TIME_MS <= ms <= MAX_TIME_MS:
        return EventTime(ms)
    return _impossible(name, value)


def _seconds_to_ms(name: str, value: object) -> EventTime:
    # bool is an int to Python, never a time to Duo.
    if isinstance(value, bool) or not isinstance(value, int | float):
        return EventTime(None)
    scaled = value * 1000
    # int() of NaN or an infinity raises; a huge float scales to infinity.
    if isinstance(scaled, float) and not math.isfinite(scaled):
        return _impossible(name, value)
    return _in_range(name, value, int(scaled))


def _ms(name: str, value: object) -> EventTime:
    if isinstance(value, bool) or not isinstance(value, int):
        return EventTime(None)
    return _in_range(name, value, value)


def _iso_ms(name: str, value: object) -> EventTime:
    if not isinstance(value, str):
        return EventTime(None)
    try:
        ms = iso_to_epoch_ms(value)
    except ValueError:
        return EventTime(None)
    return _in_range(name, value, ms)


_Converter: TypeAlias = Callable[[str, object], EventTime]

#: Per endpoint, the fields that may hold the event time, best first.
_TIME_FIELDS: Mapping[Endpoint, tuple[tuple[str, _Converter], ...]] = {
    Endpoint.AUTH: (("isotimestamp", _iso_ms), ("timestamp", _seconds_to_ms)),
    Endpoint.ADMINACTION: (("isotimestamp", _iso_ms), ("timestamp", _seconds_to_ms)),
    Endpoint.TELEPHONY: (("ts", _iso_ms), ("timestamp", _seconds_to_ms)),
    Endpoint.ACTIVITY: (("ts", _iso_ms), ("timestamp", _seconds_to_ms)),
    Endpoint.TRUSTMONITOR: (("surfaced_timestamp", _ms),),
}


def read_event_time(record: Record, endpoint: Endpoint) -> EventTime:
    """Return when ``record`` of ``endpoint`` happened, and what was impossible.

    Auth and administrator logs prefer ``isotimestamp`` (millisecond
    precision, as Duo pages by) over ``timestamp`` (whole seconds); telephony
    and activity logs use ``ts``, falling back to the seconds ``timestamp`` of
    telephony v1 records; Trust Monitor uses ``surfaced_timestamp``. A field
    that is malformed or impossible gives way to the next one; the problem
    reported, if none gives a time, is the first one's.
    """
    problem: str | None = None
    for name, convert in _TIME_FIELDS[endpoint]:
        found = convert(name, record.get(name))
        if found.ms is not None:
            return found
        problem = problem or found.problem
    return EventTime(None, problem)


def event_time_ms(record: Record, endpoint: Endpoint) -> int | None:
    """Return when ``record`` of ``endpoint`` happened, or None if it does not say.

    An impossible time is None too; ``read_event_time`` also says why.
    """
    return read_event_time(record, endpoint).ms
