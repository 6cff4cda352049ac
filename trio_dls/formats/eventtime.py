"""When a Duo record happened, in UTC epoch milliseconds.

Theory of operation: every endpoint names its event time differently (auth and
administrator logs carry ``timestamp`` in seconds and ``isotimestamp``;
telephony and activity logs ``ts`` in ISO 8601; Trust Monitor
``surfaced_timestamp`` in milliseconds). This module turns each into one
number: the CEF ``rt`` field and the syslog header timestamp both come from it.

It reads only the record; it never looks at a clock, and it never produces a
local time: an ISO string without a UTC offset is refused rather than guessed.
A record whose time is missing or malformed gets ``None``, not an exception,
so that one odd record cannot stop a whole stream of good ones.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import TypeAlias

from trio_dls.endpoints import Endpoint

#: A Duo log record as decoded from JSON (and enriched by the fetcher).
Record: TypeAlias = Mapping[str, object]

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_ONE_MS = dt.timedelta(milliseconds=1)


def iso_to_epoch_ms(text: str) -> int:
    """Return the epoch milliseconds of an ISO 8601 time with a UTC offset.

    Sub-millisecond digits (Duo's ``isotimestamp`` has microseconds) are
    dropped, rounding toward the past like Duo's own ``next_offset``.
    Raises ValueError for text that is not ISO 8601 or has no offset.
    """
    moment = dt.datetime.fromisoformat(text)
    if moment.tzinfo is None:
        # A naive time would silently mean "local time" here: refuse it.
        raise ValueError(f"time {text!r} has no UTC offset")
    return (moment - _EPOCH) // _ONE_MS


def _seconds_to_ms(value: object) -> int | None:
    # bool is an int to Python, never a time to Duo.
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return int(value * 1000)


def _ms(value: object) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return value


def _iso_ms(value: object) -> int | None:
    if not isinstance(value, str):
        return None
    try:
        return iso_to_epoch_ms(value)
    except ValueError:
        return None


def event_time_ms(record: Record, endpoint: Endpoint) -> int | None:
    """Return when ``record`` of ``endpoint`` happened, or None if it does not say.

    Auth and administrator logs prefer ``isotimestamp`` (millisecond
    precision, as Duo pages by) over ``timestamp`` (whole seconds); telephony
    and activity logs use ``ts``, falling back to the seconds ``timestamp`` of
    telephony v1 records; Trust Monitor uses ``surfaced_timestamp``.
    """
    match endpoint:
        case Endpoint.AUTH | Endpoint.ADMINACTION:
            found = _iso_ms(record.get("isotimestamp"))
            if found is None:
                found = _seconds_to_ms(record.get("timestamp"))
            return found
        case Endpoint.TELEPHONY | Endpoint.ACTIVITY:
            found = _iso_ms(record.get("ts"))
            if found is None:
                found = _seconds_to_ms(record.get("timestamp"))
            return found
        case Endpoint.TRUSTMONITOR:
            return _ms(record.get("surfaced_timestamp"))
