"""The contracts of Duo's five log endpoints, as plain functions.

This module owns what each log endpoint accepts and answers: its path, its
time unit, its required parameters and their limits, its sort orders, its
cursor form, the key its records travel under and its metadata, plus the
two-minute availability delay and the 180-day window. Given the decoded
parameters, the held records (ascending) and the time, ``answer_log_query``
returns the ``response`` value of the envelope or a ``DuoError``. It does no
I/O and reads no clock.

The rules, per DUO_API.md:

- auth (``/admin/v2/logs/authentication``, ms): ``limit`` ≤ 1000 (default 100),
  ``sort`` ``ts:asc``/``ts:desc`` (default desc), cursor
  ``metadata.next_offset = [ms_str, txid]`` sent back as ``next_offset=ms,txid``
  or as two repeated ``next_offset`` values; records under ``authlogs``.
- telephony and activity (``/admin/v2/logs/…``, ms): as auth, but the cursor is
  the string ``"ms,id"``; records under ``items``.
- trust monitor (``/admin/v1/trust_monitor/events``, ms on
  ``surfaced_timestamp``): ``limit`` ≤ 500 (default 100), cursor sent back as
  ``offset=``; records under ``events``; the last page has no ``next_offset``.
- administrator log (``/admin/v1/logs/administrator``, seconds): the 1000
  earliest events with ``timestamp >= mintime`` as a bare list; no cursor.
"""

from __future__ import annotations

import bisect
from typing import TYPE_CHECKING, Any

import attrs

from trio_dls.endpoints import Endpoint
from trio_dls.fakeduo.envelope import DuoError, invalid_param, missing_param

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from trio_dls.fakeduo.data import FakeRecord

JsonDict = dict[str, Any]

__all__ = [
    "ADMIN_PAGE",
    "AVAILABILITY_DELAY",
    "PATHS",
    "RETENTION",
    "LogRules",
    "answer_log_query",
    "endpoint_for_path",
]

# Duo: querying for results more recent than two minutes returns nothing.
AVAILABILITY_DELAY = 120.0
RETENTION = 180 * 86_400.0
ADMIN_PAGE = 1000

PATHS: Mapping[Endpoint, str] = {
    Endpoint.AUTH: "/admin/v2/logs/authentication",
    Endpoint.ADMINACTION: "/admin/v1/logs/administrator",
    Endpoint.TELEPHONY: "/admin/v2/logs/telephony",
    Endpoint.ACTIVITY: "/admin/v2/logs/activity",
    Endpoint.TRUSTMONITOR: "/admin/v1/trust_monitor/events",
}
_BY_PATH = {path: endpoint for endpoint, path in PATHS.items()}

_RECORDS_UNDER = {
    Endpoint.AUTH: "authlogs",
    Endpoint.TELEPHONY: "items",
    Endpoint.ACTIVITY: "items",
    Endpoint.TRUSTMONITOR: "events",
}
_MAX_LIMIT = {
    Endpoint.AUTH: 1000,
    Endpoint.TELEPHONY: 1000,
    Endpoint.ACTIVITY: 1000,
    Endpoint.TRUSTMONITOR: 500,
}
_DEFAULT_LIMIT = 100
_CURSOR_PARTS = 2


@attrs.frozen
class LogRules:
    """The tunable parts of the contracts, for the points Duo leaves unclear.

    ``retention_grace`` forgives a ``mintime`` that is only just older than 180
    days: duo_client's helpers default ``mintime`` to exactly 180 days before
    the client's clock. ``admin_mintime_inclusive`` picks between the two
    readings of the administrator log's ``mintime``.
    """

    availability_delay: float = AVAILABILITY_DELAY
    retention: float = RETENTION
    retention_grace: float = 60.0
    admin_mintime_inclusive: bool = True


def endpoint_for_path(path: str) -> Endpoint | None:
    """Return the log endpoint served at ``path``, if any."""
    return _BY_PATH.get(path)


def _one(params: Mapping[str, Sequence[str]], name: str) -> str | None:
    values = params.get(name)
    if not values:
        return None
    return values[-1]


def _int_param(
    params: Mapping[str, Sequence[str]], name: str, *, required: bool
) -> int | DuoError | None:
    raw = _one(params, name)
    if raw is None:
        return missing_param(name) if required else None
    try:
        return int(raw)
    except ValueError:
        return invalid_param(name)


def _window(
    params: Mapping[str, Sequence[str]], now: float, rules: LogRules
) -> tuple[int, int] | DuoError:
    mintime = _int_param(params, "mintime", required=True)
    if not isinstance(mintime, int):
        return mintime if isinstance(mintime, DuoError) else missing_param("mintime")
    maxtime = _int_param(params, "maxtime", required=True)
    if not isinstance(maxtime, int):
        return maxtime if isinstance(maxtime, DuoError) else missing_param("maxtime")
    if maxtime <= mintime:
        return invalid_param("maxtime")
    oldest_ms = (now - rules.retention - rules.retention_grace) * 1000
    if mintime < oldest_ms:
        return invalid_param("mintime")
    if maxtime - mintime > (rules.retention + rules.retention_grace) * 1000:
        return invalid_param("maxtime")
    return mintime, maxtime


def _limit(params: Mapping[str, Sequence[str]], endpoint: Endpoint) -> int | DuoError:
    limit = _int_param(params, "limit", required=False)
    if isinstance(limit, DuoError):
        return limit
    if limit is None:
        return _DEFAULT_LIMIT
    if not 1 <= limit <= _MAX_LIMIT[endpoint]:
        return invalid_param("limit")
    return limit


def _descending(params: Mapping[str, Sequence[str]]) -> bool | DuoError:
    sort = _one(params, "sort")
    if sort is None or sort == "ts:desc":
        return True
    if sort == "ts:asc":
        return False
    return invalid_param("sort")


def _cursor(
    params: Mapping[str, Sequence[str]], endpoint: Endpoint
) -> tuple[int, str] | DuoError | None:
    name = "offset" if endpoint is Endpoint.TRUSTMONITOR else "next_offset"
    values = list(params.get(name, ()))
    if not values:
        return None
    # auth's list cursor comes back either as one "ms,txid" string or as two
    # repeated values (what duo_client does with a list); duo_client sorts
    # nothing on the wire, but be lenient about which part comes first.
    parts = values[0].split(",", 1) if len(values) == 1 else values
    if len(parts) != _CURSOR_PARTS:
        return invalid_param(name)
    first, second = (p.strip() for p in parts)
    if not first.isdigit() and second.isdigit():
        first, second = second, first
    if not first.isdigit():
        return invalid_param(name)
    return int(first), second


def _visible(
    records: Sequence[FakeRecord], low_ms: int, high_ms: int
) -> Sequence[FakeRecord]:
    start = bisect.bisect_left(records, low_ms, key=lambda r: r.ts_ms)
    stop = bisect.bisect_right(records, high_ms, key=lambda r: r.ts_ms)
    return records[start:stop]


def _cutoff_ms(now: float, rules: LogRules) -> int:
    return int((now - rules.availability_delay) * 1000)


def _answer_admin(
    params: Mapping[str, Sequence[str]],
    records: Sequence[FakeRecord],
    now: float,
    rules: LogRules,
) -> list[JsonDict] | DuoError:
    mintime = _int_param(params, "mintime", required=False)
    if isinstance(mintime, DuoError):
        return mintime
    low_s = mintime or 0
    if not rules.admin_mintime_inclusive:
        low_s += 1
    window = _visible(records, low_s * 1000, _cutoff_ms(now, rules))
    return [dict(r.body) for r in window[:ADMIN_PAGE]]


def _metadata(
    endpoint: Endpoint, last: FakeRecord | None, total: int
) -> dict[str, Any]:
    metadata: dict[str, Any] = {}
    if endpoint is Endpoint.AUTH:
        metadata["next_offset"] = None if last is None else [str(last.ts_ms), last.key]
        metadata["total_objects"] = total
    elif endpoint is Endpoint.TRUSTMONITOR:
        # The last trust monitor page leaves next_offset out altogether.
        if last is not None:
            metadata["next_offset"] = f"{last.ts_ms},{last.key}"
    else:
        metadata["next_offset"] = None if last is None else f"{last.ts_ms},{last.key}"
        metadata["total_objects"] = {"relation": "eq", "value": total}
    return metadata


def answer_log_query(
    endpoint: Endpoint,
    params: Mapping[str, Sequence[str]],
    records: Sequence[FakeRecord],
    now: float,
    rules: LogRules | None = None,
) -> JsonDict | list[JsonDict] | DuoError:
    """Answer one GET on a log endpoint.

    ``records`` are the account's held records for ``endpoint`` in ascending
    order; ``now`` is the server's time in epoch seconds. Returns the value
    for the envelope's ``response`` key, or the error Duo would give.
    """
    rules = rules or LogRules()
    if endpoint is Endpoint.ADMINACTION:
        return _answer_admin(params, records, now, rules)
    window = _window(params, now, rules)
    limit = _limit(params, endpoint)
    descending = _descending(params)
    cursor = _cursor(params, endpoint)
    for checked in (window, limit, descending, cursor):
        if isinstance(checked, DuoError):
            return checked
    assert isinstance(window, tuple)
    assert isinstance(limit, int)
    assert isinstance(descending, bool)
    assert not isinstance(cursor, DuoError)
    mintime, maxtime = window
    visible = _visible(records, mintime, min(maxtime, _cutoff_ms(now, rules)))
    if descending:
        stop = len(visible)
        if cursor is not None:
            stop = bisect.bisect_left(visible, cursor, key=lambda r: r.sort_key)
        start = max(0, stop - limit)
        page = list(reversed(visible[start:stop]))
        more = start > 0
    else:
        start = 0
        if cursor is not None:
            start = bisect.bisect_right(visible, cursor, key=lambda r: r.sort_key)
        page = list(visible[start : start + limit])
        more = start + limit < len(visible)
    last = page[-1] if more and page else None
    return {
        _RECORDS_UNDER[endpoint]: [dict(r.body) for r in page],
        "metadata": _metadata(endpoint, last, len(visible)),
    }
