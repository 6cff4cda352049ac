"""Paging rules per endpoint: from a cursor and a response, the records and what next.

Theory of operation
-------------------
This module is the sans-IO engine of a fetcher.  `plan_request` turns a cursor and the
current time into the request to send (or None: caught up, nothing to ask yet);
`apply_response` turns that request and Duo's answer into a `Step`: the records to
ship, in order, the cursor that is valid once they are delivered, and whether the
backlog is exhausted.  It never reads a clock (``now`` is a UTC epoch number passed in),
a file, the network or the local time zone, and it knows nothing of trio, retries or
rate limits.  Everything in it is an integer count of seconds or milliseconds since the
epoch, in the endpoint's own unit (`trio_dls.cursors.units_per_second`).

Time limits.  Duo's logs become complete two minutes late ("querying for results more
recent than two minutes will return as empty"), so the *horizon* of a request is the
last whole second (or millisecond) that ended at least ``Limits.delay`` before ``now``,
and no window reaches past it: a late event is then fetched by the next window instead
of being skipped for ever.  Duo refuses, with HTTP 400, a mintime older than 180 days;
requests start no earlier than ``Limits.retention_days`` (179) days before ``now``,
the margin Duo's staff advise.  The day of margin also absorbs clock skew between us and
Duo and duo_client resending the very same request about a minute later after a 429.
A cursor older than that is moved up with a warning: those records are gone from Duo.

Windows (auth, telephony, activity, trust monitor).  Duo documents both ends of
``[mintime, maxtime]`` as inclusive ("mintime or later", "maxtime or earlier") and pages
a window with ``next_offset`` until it returns none.  So a window is opened at the
cursor's mintime and ends at the horizon; its maxtime stays fixed in the cursor while it
is paged (a ``next_offset`` means nothing in another window); once exhausted, the next
window starts at ``maxtime + 1``.  Integer windows ``[a, b]``, ``[b + 1, c]``, ... tile
time with no gap and no overlap, so no record is lost or repeated at a window edge, and
this holds whatever order Duo returns records in (trust monitor takes no ``sort``):
a window is always read to its end before the next one begins.

Administrator log.  It has no paging token: Duo returns the 1000 earliest records at or
after ``mintime`` (its documentation also says *after*; both are handled), and many
events can share one second.  The cursor holds a *boundary second* ``b``: every record
before ``b`` has been shipped, and the identities (`record_identity`) of those shipped
from second ``b`` are kept.  We ask for ``mintime = b`` once Duo has been seen returning
records at exactly the asked mintime (``AdminCursor.inclusive``), and ``b - 1`` until
then: if mintime is exclusive, ``b - 1`` returns second ``b`` onwards; if inclusive, it
returns second ``b - 1`` as well, already shipped and dropped, and proves inclusivity.
From a page sorted by timestamp whose last record is in second ``L``:

* A page shorter than the page size holds everything up to the horizon (so does a full
  one reaching past it): ship what is new, move ``b`` to ``horizon + 1``.  Caught up.
* A full page in one single second ``L >= b`` holds the first 1000 records of ``L``,
  which is all of ``L`` that any client can fetch (asking again returns the same page
  for ever): ship what is new, move on to ``L + 1``, and warn naming the second.
* A full page with ``L > b``: every second before ``L`` is complete, ``L`` may not be.
  Ship what is new, move ``b`` to ``L`` and keep the identities of ``L``'s records.
* Otherwise the page starts before ``b``, so Duo returned records at the asked
  ``b - 1``: mintime is inclusive.  Ship what is new and ask for ``b`` from now on.

Each step either catches up, moves ``b`` forward, ships a new record of second ``b`` or
learns inclusivity (once), so paging always ends.  Records are identified by their
content plus their rank among identical records of that second, because Duo gives them
no id and two identical events in one second are still two events.

A crash between a page's delivery and the saving of its cursor re-sends that page;
nothing else is ever repeated (the delivery contract in DESIGN.md).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
from typing import Any, Final, TypeAlias

import attrs

from trio_dls.cursors import (
    SECONDS_PER_DAY,
    AdminCursor,
    Cursor,
    WindowCursor,
    units_per_second,
)
from trio_dls.endpoints import Endpoint

__all__ = [
    "Limits",
    "MalformedResponseError",
    "Record",
    "Request",
    "Step",
    "apply_response",
    "plan_request",
    "record_identity",
]

Record: TypeAlias = dict[str, Any]
"""One log record, as Duo's JSON has it."""

DUO_DELAY_SECONDS: Final = 120
RETENTION_DAYS: Final = 179

PATHS: Final = {
    Endpoint.AUTH: "/admin/v2/logs/authentication",
    Endpoint.ADMINACTION: "/admin/v1/logs/administrator",
    Endpoint.TELEPHONY: "/admin/v2/logs/telephony",
    Endpoint.ACTIVITY: "/admin/v2/logs/activity",
    Endpoint.TRUSTMONITOR: "/admin/v1/trust_monitor/events",
}

# The largest page each endpoint returns.  The administrator log takes no limit and
# always returns up to 1000.
MAX_PAGE_SIZES: Final = {
    Endpoint.AUTH: 1000,
    Endpoint.ADMINACTION: 1000,
    Endpoint.TELEPHONY: 1000,
    Endpoint.ACTIVITY: 1000,
    Endpoint.TRUSTMONITOR: 500,
}

_RECORDS_KEYS: Final = {
    Endpoint.AUTH: "authlogs",
    Endpoint.TELEPHONY: "items",
    Endpoint.ACTIVITY: "items",
    Endpoint.TRUSTMONITOR: "events",
}


class MalformedResponseError(ValueError):
    """A Duo response that does not have the shape its endpoint documents.

    The fetcher treats it as transient: it retries the same request later.
    """


def _positive(instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    del instance
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        msg = f"{attribute.name} must be a positive integer, not {value!r}"
        raise ValueError(msg)


def _page_size(instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if value is not None:
        _positive(instance, attribute, value)


@attrs.frozen
class Limits:
    """The time limits of Duo's log endpoints, and the page size to ask for."""

    delay: int = attrs.field(default=DUO_DELAY_SECONDS, validator=_positive)
    """Seconds before Duo's logs are complete: no window ends later than now - delay."""
    retention_days: int = attrs.field(default=RETENTION_DAYS, validator=_positive)
    """Days back that Duo still serves, margin included: no window starts earlier."""
    page_size: int | None = attrs.field(default=None, validator=_page_size)
    """Records per page; None, or anything larger, means the endpoint's maximum.

    For the administrator log, which takes no limit, this is the size of the pages Duo
    returns (1000); a smaller one is only for tests and fakes.
    """

    def limit(self, endpoint: Endpoint) -> int:
        """Return the page size for ``endpoint``."""
        largest = MAX_PAGE_SIZES[endpoint]
        return largest if self.page_size is None else min(self.page_size, largest)


@attrs.frozen
class Request:
    """A request to send to Duo, and what `apply_response` needs to read the answer."""

    endpoint: Endpoint
    path: str
    params: tuple[tuple[str, str], ...]
    """Query parameters, all strings, exactly as Duo expects them."""
    cursor: Cursor
    """The cursor this request continues from, after clamping and opening a window."""
    horizon: int
    """The latest settled time, in the endpoint's unit, when the request was planned."""
    limit: int
    """The page size: a page this long may have more behind it."""
    warnings: tuple[str, ...] = ()
    """What planning had to give up (e.g. records past Duo's retention)."""

    def params_dict(self) -> dict[str, str]:
        """Return a new params dict for ``json_api_call('GET', path, params)``.

        A new dict each time, because duo_client's client may be shared by threads only
        if no params dict is shared between calls.
        """
        return dict(self.params)


@attrs.frozen
class Step:
    """What one response amounts to."""

    records: tuple[Record, ...]
    """The records to ship, in order, without duplicates."""
    cursor: Cursor
    """The cursor to save once every mapped server has accepted ``records``."""
    caught_up: bool
    """True when nothing more can be asked before the next poll."""
    warnings: tuple[str, ...] = ()
    """Problems to log, including the request's own warnings."""


def plan_request(
    endpoint: Endpoint, cursor: Cursor, now: float, limits: Limits | None = None
) -> Request | None:
    """Return the request that continues from ``cursor`` at ``now`` (UTC epoch seconds).

    Return None when there is nothing to ask yet (the cursor has reached the horizon);
    the fetcher then polls again later.
    """
    limits = Limits() if limits is None else limits
    unit = units_per_second(endpoint)
    now_units = math.floor(now * unit)
    horizon = now_units - limits.delay * unit - 1
    # Rounded up, so that no request starts more than the retention before ``now``.
    oldest = math.ceil(now * unit) - limits.retention_days * SECONDS_PER_DAY * unit
    if isinstance(cursor, AdminCursor):
        if endpoint is not Endpoint.ADMINACTION:
            msg = f"{endpoint.value} takes a WindowCursor, not {cursor!r}"
            raise TypeError(msg)
        return _plan_admin(cursor, horizon, oldest, limits)
    if endpoint is Endpoint.ADMINACTION:
        msg = f"{endpoint.value} takes an AdminCursor, not {cursor!r}"
        raise TypeError(msg)
    return _plan_window(endpoint, cursor, horizon, oldest, limits)


def apply_response(request: Request, response: object) -> Step:
    """Return the records to ship and the cursor after them, from Duo's answer.

    ``response`` is what ``json_api_call`` returned for ``request``.  Raises
    `MalformedResponseError` when it does not have the endpoint's documented shape.
    """
    if isinstance(request.cursor, AdminCursor):
        return _apply_admin(request, request.cursor, response)
    return _apply_window(request, request.cursor, response)


def record_identity(record: Record) -> str:
    """Return a stable digest of a record's content (for records Duo gives no id)."""
    canonical = json.dumps(
        record, sort_keys=True, separators=(",", ":"), ensure_ascii=True
    )
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]


# Windows: auth, telephony, activity, trust monitor ----------------------------------


def _plan_window(
    endpoint: Endpoint,
    cursor: WindowCursor,
    horizon: int,
    oldest: int,
    limits: Limits,
) -> Request | None:
    warnings: list[str] = []
    if cursor.mintime < oldest:
        warnings.append(_skipped_warning(endpoint, cursor.mintime, oldest))
        cursor = WindowCursor(oldest)
    if cursor.maxtime is None:
        if cursor.mintime >= horizon:
            return None
        cursor = attrs.evolve(cursor, maxtime=horizon)
    elif cursor.maxtime > horizon:
        # A window saved before the clock went back: finishing it now would reach into
        # Duo's delay, so wait until the clock has passed it again.
        return None
    limit = limits.limit(endpoint)
    params = {
        "mintime": str(cursor.mintime),
        "maxtime": str(cursor.maxtime),
        "limit": str(limit),
    }
    if endpoint is Endpoint.TRUSTMONITOR:
        # Trust monitor takes no sort and calls its token "offset"; the order does not
        # matter since a window is read to its end before the next begins.
        if cursor.next_offset is not None:
            params["offset"] = cursor.next_offset
    else:
        params["sort"] = "ts:asc"
        if cursor.next_offset is not None:
            params["next_offset"] = cursor.next_offset
    return Request(
        endpoint=endpoint,
        path=PATHS[endpoint],
        params=tuple(sorted(params.items())),
        cursor=cursor,
        horizon=horizon,
        limit=limit,
        warnings=tuple(warnings),
    )


def _apply_window(request: Request, cursor: WindowCursor, response: object) -> Step:
    endpoint = request.endpoint
    if not isinstance(response, dict):
        msg = f"{endpoint.value}: expected a JSON object, got {_kind(response)}"
        raise MalformedResponseError(msg)
    records = response.get(_RECORDS_KEYS[endpoint])
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        msg = f"{endpoint.value}: {_RECORDS_KEYS[endpoint]!r} is not a list of objects"
        raise MalformedResponseError(msg)
    metadata = response.get("metadata", {})
    if not isinstance(metadata, dict):
        msg = f"{endpoint.value}: metadata is {_kind(metadata)}, not an object"
        raise MalformedResponseError(msg)
    next_offset = _next_offset(endpoint, metadata.get("next_offset"))
    if cursor.maxtime is None:
        msg = "apply_response takes a request made by plan_request"
        raise TypeError(msg)
    if next_offset is None:
        after = WindowCursor(cursor.maxtime + 1)
        caught_up = cursor.maxtime >= request.horizon
    elif next_offset == cursor.next_offset:
        # Asking with it again would return the same page for ever.
        msg = f"{endpoint.value}: next_offset {next_offset!r} did not advance"
        raise MalformedResponseError(msg)
    else:
        after = attrs.evolve(cursor, next_offset=next_offset)
        caught_up = False
    return Step(tuple(records), after, caught_up, request.warnings)


def _next_offset(endpoint: Endpoint, value: object) -> str | None:
    """Return Duo's next_offset as the string to send back, or None on a last page."""
    match value:
        case None:
            return None
        # Auth gives [ms, txid] and takes it back as "ms,txid".
        case [str() | int() as ms, str() as txid] if endpoint is Endpoint.AUTH and (
            str(ms).isascii() and str(ms).isdigit() and txid
        ):
            return f"{ms},{txid}"
        case str() as text if text:
            return text
        case int() as number if endpoint is Endpoint.TRUSTMONITOR and not isinstance(
            number, bool
        ):
            return str(number)
        case _:
            msg = f"{endpoint.value}: unexpected next_offset {value!r}"
            raise MalformedResponseError(msg)


# The administrator log ---------------------------------------------------------------


def _asked_mintime(cursor: AdminCursor) -> int:
    return cursor.mintime if cursor.inclusive else max(0, cursor.mintime - 1)


def _plan_admin(
    cursor: AdminCursor, horizon: int, oldest: int, limits: Limits
) -> Request | None:
    warnings: list[str] = []
    if cursor.mintime < oldest:
        warnings.append(_skipped_warning(Endpoint.ADMINACTION, cursor.mintime, oldest))
        cursor = AdminCursor(oldest, inclusive=cursor.inclusive)
    if cursor.mintime > horizon:
        return None
    return Request(
        endpoint=Endpoint.ADMINACTION,
        path=PATHS[Endpoint.ADMINACTION],
        params=(("mintime", str(_asked_mintime(cursor))),),
        cursor=cursor,
        horizon=horizon,
        limit=limits.limit(Endpoint.ADMINACTION),
        warnings=tuple(warnings),
    )


def _apply_admin(request: Request, cursor: AdminCursor, response: object) -> Step:
    page = _admin_page(response)
    asked = _asked_mintime(cursor)
    boundary, horizon = cursor.mintime, request.horizon
    if page and page[0][0] < asked:
        msg = f"adminaction: record of second {page[0][0]} before mintime {asked}"
        raise MalformedResponseError(msg)
    inclusive = cursor.inclusive or any(second == asked for second, _, _ in page)
    fresh = [
        (second, identity, record)
        for second, identity, record in page
        if boundary <= second <= horizon
        and not (second == boundary and identity in cursor.sent)
    ]
    records = tuple(record for _, _, record in fresh)
    warnings = request.warnings
    first = page[0][0] if page else None
    last = page[-1][0] if page else None
    if first is None or last is None or len(page) < request.limit or last > horizon:
        # Everything up to the horizon is in this page.
        after = AdminCursor(horizon + 1, inclusive=inclusive)
        return Step(records, after, caught_up=True, warnings=warnings)
    if first == last >= boundary:
        warnings += (_burst_warning(last, len(page)),)
        after = AdminCursor(last + 1, inclusive=inclusive)
    elif last > boundary:
        sent = frozenset(identity for second, identity, _ in fresh if second == last)
        after = AdminCursor(last, sent, inclusive=inclusive)
    else:
        # The page starts before the boundary, so it holds records of the asked
        # boundary - 1: mintime is inclusive, and the next request asks for the
        # boundary itself.
        sent = cursor.sent | {identity for _, identity, _ in fresh}
        after = AdminCursor(boundary, sent, inclusive=True)
    return Step(records, after, caught_up=False, warnings=warnings)


def _admin_page(response: object) -> list[tuple[int, str, Record]]:
    """Return (second, identity, record) of each record, ordered by second."""
    if not isinstance(response, list):
        msg = f"adminaction: expected a JSON array, got {_kind(response)}"
        raise MalformedResponseError(msg)
    timed: list[tuple[int, Record]] = []
    for record in response:
        second = record.get("timestamp") if isinstance(record, dict) else None
        if not isinstance(second, int) or isinstance(second, bool):
            msg = f"adminaction: record without an integer timestamp: {record!r}"
            raise MalformedResponseError(msg)
        timed.append((second, record))
    # A stable sort keeps Duo's order within a second, which ranks identical records.
    timed.sort(key=lambda pair: pair[0])
    ranks: dict[tuple[int, str], int] = {}
    page = []
    for second, record in timed:
        digest = record_identity(record)
        rank = ranks[second, digest] = ranks.get((second, digest), -1) + 1
        page.append((second, f"{digest}.{rank}", record))
    return page


def _burst_warning(second: int, count: int) -> str:
    return (
        f"adminaction: Duo returned a full page of {count} records all in second "
        f"{second} ({_iso(second, 1)}); any further records of that second cannot be "
        "fetched from Duo and are skipped"
    )


# Shared ------------------------------------------------------------------------------


def _skipped_warning(endpoint: Endpoint, mintime: int, oldest: int) -> str:
    unit = units_per_second(endpoint)
    return (
        f"{endpoint.value}: records from {_iso(mintime, unit)} to before "
        f"{_iso(oldest, unit)} are older than Duo serves and were not fetched"
    )


def _iso(time: int, unit: int) -> str:
    moment = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    moment += dt.timedelta(milliseconds=time * 1000 // unit)
    return moment.isoformat(timespec="seconds" if unit == 1 else "milliseconds")


def _kind(value: object) -> str:
    return type(value).__name__
