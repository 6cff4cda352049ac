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
epoch, in the endpoint's own unit (`trio_dls.duo.cursors.units_per_second`).

Time limits.  Duo's logs become complete two minutes late ("querying for results more
recent than two minutes will return as empty"), so the *horizon* of a request is the
last whole second (or millisecond) that ended at least ``Limits.delay`` before ``now``,
and no window reaches past it: a late event is then fetched by the next window instead
of being skipped for ever.  ``now`` is the *earlier* of this host's clock and Duo's
(the ``Date`` of its answers, see `trio_dls.duo.clock`): a local clock that runs fast
must not close a window over records Duo does not serve yet.  And since the clocks may
disagree by more than the fetcher knows when it plans, `apply_response` checks the
window once more against the ``Date`` of the answer itself (``duo_now``): a window that
reaches past what Duo could have served is not closed; it is asked again once settled.

Duo refuses, with HTTP 400, a mintime older than 180 days.  New windows start no
earlier than ``Limits.retention_days`` (179) days before ``latest`` (the *later* of the
two clocks), the margin Duo's staff advise, which also absorbs clock skew and duo_client
resending a request about a minute later after a 429.  That floor moves on with the
clock, but a window already being paged keeps its ``mintime`` and ``next_offset`` while
they are within Duo's own 180 days (less ``Limits.keep_margin``): the floor's movement
alone never discards a paging position, or a first start 179 days back would re-read
its first page for ever.  Only a cursor whose records Duo really no longer serves is
moved up, with a warning saying what was skipped; a window is then re-read from the
time of its paging position when that is known, so nothing still served is lost.

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

from trio_dls.duo.cursors import (
    SECONDS_PER_DAY,
    AdminCursor,
    Cursor,
    WindowCursor,
    initial_cursor,
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
    "first_cursor",
    "plan_request",
    "reached_time",
    "record_identity",
]

Record: TypeAlias = dict[str, Any]
"""One log record, as Duo's JSON has it."""

DUO_DELAY_SECONDS: Final = 120
RETENTION_DAYS: Final = 179
DUO_RETENTION_DAYS: Final = 180
# How close to Duo's 180 days a window being paged may go: covers the latency of a
# request and a clock estimate that is a second or two off.
KEEP_MARGIN_SECONDS: Final = 600

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

# Enough digits for any epoch millisecond until the year 3000.
_MAX_TIME_DIGITS: Final = 14

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
    duo_retention_days: int = attrs.field(
        default=DUO_RETENTION_DAYS, validator=_positive
    )
    """Days back beyond which Duo refuses a mintime (HTTP 400)."""
    keep_margin: int = attrs.field(default=KEEP_MARGIN_SECONDS, validator=_positive)
    """Seconds short of ``duo_retention_days`` that a window being paged may reach."""
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
    delay: int = DUO_DELAY_SECONDS
    """Seconds before Duo's logs are complete (``Limits.delay``)."""
    opened: bool = False
    """Whether this request opened its window (no page of it was read before)."""

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
    settled: bool = True
    """False when the request reached past what Duo had settled by its own clock:
    nothing was learnt, and ``cursor`` asks again."""


@attrs.frozen
class _Bounds:
    """The time limits of one request, in the endpoint's unit."""

    horizon: int
    """The latest settled time: no window ends later."""
    oldest: int
    """No new window starts earlier."""
    kept: int
    """A window being paged keeps its position while its mintime is no earlier."""


def _horizon(now: float, unit: int, delay: int) -> int:
    return math.floor(now * unit) - delay * unit - 1


def _bounds(unit: int, now: float, latest: float, limits: Limits) -> _Bounds:
    # Rounded up, so that no request starts more than the retention before ``latest``.
    latest_units = math.ceil(latest * unit)
    kept_seconds = limits.duo_retention_days * SECONDS_PER_DAY - limits.keep_margin
    return _Bounds(
        horizon=_horizon(now, unit, limits.delay),
        oldest=latest_units - limits.retention_days * SECONDS_PER_DAY * unit,
        kept=latest_units - kept_seconds * unit,
    )


def first_cursor(
    endpoint: Endpoint,
    now: float,
    offset_days: float,
    limits: Limits | None = None,
    *,
    latest: float | None = None,
) -> Cursor:
    """Return the cursor of a first start: ``offset_days`` back, within retention.

    A first start asks for no more than Duo serves: the oldest a new window may start
    (``Limits.retention_days``) is where DLS's default offset of 180 days begins,
    without a warning about the day that cannot be had.  Pass the same ``now`` and
    ``latest`` as to `plan_request`, so that the cursor is not older than its floor.
    """
    limits = Limits() if limits is None else limits
    latest = now if latest is None else max(now, latest)
    unit = units_per_second(endpoint)
    oldest = _bounds(unit, now, latest, limits).oldest
    cursor = initial_cursor(endpoint, now, offset_days)
    if cursor.mintime >= oldest:
        return cursor
    if isinstance(cursor, AdminCursor):
        return AdminCursor(oldest)
    return WindowCursor(oldest)


def plan_request(
    endpoint: Endpoint,
    cursor: Cursor,
    now: float,
    limits: Limits | None = None,
    *,
    latest: float | None = None,
) -> Request | None:
    """Return the request that continues from ``cursor`` at ``now`` (UTC epoch seconds).

    ``now`` bounds the end of windows (Duo's delay): pass the earlier of this host's
    clock and Duo's.  ``latest`` (default ``now``) bounds their start (Duo's
    retention): pass the later of the two.  Return None when there is nothing to ask
    yet (the cursor has reached the horizon); the fetcher then polls again later.
    """
    limits = Limits() if limits is None else limits
    latest = now if latest is None else max(now, latest)
    bounds = _bounds(units_per_second(endpoint), now, latest, limits)
    if isinstance(cursor, AdminCursor):
        if endpoint is not Endpoint.ADMINACTION:
            msg = f"{endpoint.value} takes a WindowCursor, not {cursor!r}"
            raise TypeError(msg)
        return _plan_admin(cursor, bounds, limits)
    if endpoint is Endpoint.ADMINACTION:
        msg = f"{endpoint.value} takes an AdminCursor, not {cursor!r}"
        raise TypeError(msg)
    return _plan_window(endpoint, cursor, bounds, limits)


def apply_response(
    request: Request, response: object, *, duo_now: float | None = None
) -> Step:
    """Return the records to ship and the cursor after them, from Duo's answer.

    ``response`` is what ``json_api_call`` returned for ``request``; ``duo_now`` is
    the time of Duo's answer (its ``Date``, UTC epoch seconds) when known.  A request
    planned with a clock ahead of Duo's asked for more than Duo could serve: its window
    is not closed, and the step says to ask again (no records, a cursor that re-asks).
    Raises `MalformedResponseError` when the response does not have the endpoint's
    documented shape.
    """
    horizon = request.horizon
    if duo_now is not None:
        unit = units_per_second(request.endpoint)
        horizon = min(horizon, _horizon(duo_now, unit, request.delay))
    if isinstance(request.cursor, AdminCursor):
        return _apply_admin(request, request.cursor, response, horizon)
    return _apply_window(request, request.cursor, response, horizon)


def record_identity(record: Record) -> str:
    """Return a stable digest of a record's content (for records Duo gives no id)."""
    try:
        canonical = json.dumps(
            record, sort_keys=True, separators=(",", ":"), ensure_ascii=True
        )
    except ValueError:
        # An integer too long for decimal (Python's int/str conversion limit):
        # written in hex, which has no such limit, it still names the content.
        canonical = json.dumps(
            _hex_ints(record), sort_keys=True, separators=(",", ":"), ensure_ascii=True
        )
    return hashlib.sha256(canonical.encode("utf-8", "backslashreplace")).hexdigest()[
        :32
    ]


def _hex_ints(value: object) -> object:
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return {"int": hex(value)}
    if isinstance(value, dict):
        return {key: _hex_ints(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_hex_ints(item) for item in value]
    return value


# Windows: auth, telephony, activity, trust monitor ----------------------------------


def _plan_window(
    endpoint: Endpoint, cursor: WindowCursor, bounds: _Bounds, limits: Limits
) -> Request | None:
    warnings: list[str] = []
    oldest, horizon = bounds.oldest, bounds.horizon
    if cursor.maxtime is None:
        if cursor.mintime < oldest:
            warnings.append(_skipped_warning(endpoint, cursor.mintime, oldest))
            cursor = WindowCursor(oldest)
    elif cursor.mintime < bounds.kept:
        cursor, warning = _restart_window(endpoint, cursor, cursor.maxtime, oldest)
        warnings.append(warning)
    opened = cursor.maxtime is None
    if cursor.maxtime is None:
        if cursor.mintime >= horizon:
            return None
        cursor = attrs.evolve(cursor, maxtime=horizon)
    elif cursor.maxtime > horizon:
        # A window saved before the clock went back (or planned by a clock ahead of
        # Duo's): finishing it now would reach into Duo's delay, so wait until the
        # clock has passed it again.
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
        delay=limits.delay,
        opened=opened,
    )


def _restart_window(
    endpoint: Endpoint, cursor: WindowCursor, maxtime: int, oldest: int
) -> tuple[WindowCursor, str]:
    """Move a window being paged whose mintime Duo no longer serves.

    Its ``next_offset`` belongs to the old mintime, so the rest of the window is read
    again as a new one, from the time of the last record shipped when the token tells
    it (a few records of that very millisecond may be sent twice), else from the
    retention floor.
    """
    position = _position_time(cursor)
    if maxtime < oldest:
        return WindowCursor(oldest), _skipped_warning(endpoint, cursor.mintime, oldest)
    if position is not None and position >= oldest:
        unit = units_per_second(endpoint)
        warning = (
            f"{endpoint.value}: a window open since {_iso(cursor.mintime, unit)} "
            f"reached Duo's retention; reading it again from {_iso(position, unit)}"
        )
        return _window_from(position, maxtime), warning
    skipped_from = cursor.mintime if position is None else position
    warning = _skipped_warning(endpoint, skipped_from, oldest)
    return _window_from(oldest, maxtime), warning


def _window_from(start: int, maxtime: int) -> WindowCursor:
    """Return the window ``[start, maxtime]``, or one opening at ``start`` if empty."""
    return WindowCursor(start, maxtime) if maxtime > start else WindowCursor(start)


def reached_time(endpoint: Endpoint, cursor: Cursor) -> int:
    """Return how far the records shipped under *cursor* reach, in its units.

    The time of the last record shipped from a window still being paged (its
    token says it), else the cursor's ``mintime``: a first start pages one
    window opened 180 days back, whose ``mintime`` stays there until the
    window is done.  Trust monitor is asked in no order (it takes no
    ``sort``), so its last record says nothing of how far it got: there,
    ``mintime``.  Progress reports say this; planning never reads it.
    """
    if isinstance(cursor, WindowCursor) and endpoint is not Endpoint.TRUSTMONITOR:
        position = _position_time(cursor)
        if position is not None:
            return position
    return cursor.mintime


def _position_time(cursor: WindowCursor) -> int | None:
    """Return the time of the last record shipped from a window, if its token says.

    Duo's tokens start with the time of the last record sent ("ms,id"); anything else
    is taken as unknown.
    """
    if cursor.next_offset is None or cursor.maxtime is None:
        return None
    head = cursor.next_offset.partition(",")[0]
    if not (head.isascii() and head.isdigit() and len(head) <= _MAX_TIME_DIGITS):
        return None
    position = int(head)
    return position if cursor.mintime <= position <= cursor.maxtime else None


def _apply_window(
    request: Request, cursor: WindowCursor, response: object, horizon: int
) -> Step:
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
    if cursor.maxtime > horizon:
        # Planned by a clock ahead of Duo's: Duo may not hold every record of this
        # window yet.  Ship nothing; a window just opened is planned again (it will
        # end earlier), one being paged is asked again once Duo's clock passed it.
        retry = attrs.evolve(cursor, maxtime=None) if request.opened else cursor
        return Step(
            (),
            retry,
            caught_up=not request.opened,
            warnings=request.warnings,
            settled=False,
        )
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


def _plan_admin(cursor: AdminCursor, bounds: _Bounds, limits: Limits) -> Request | None:
    warnings: list[str] = []
    # The boundary second is the administrator log's only paging position: it is
    # kept while Duo serves it, not moved with the floor of new windows.
    if cursor.mintime < bounds.kept:
        oldest = bounds.oldest
        warnings.append(_skipped_warning(Endpoint.ADMINACTION, cursor.mintime, oldest))
        cursor = AdminCursor(oldest, inclusive=cursor.inclusive)
    if cursor.mintime > bounds.horizon:
        return None
    return Request(
        endpoint=Endpoint.ADMINACTION,
        path=PATHS[Endpoint.ADMINACTION],
        params=(("mintime", str(_asked_mintime(cursor))),),
        cursor=cursor,
        horizon=bounds.horizon,
        limit=limits.limit(Endpoint.ADMINACTION),
        warnings=tuple(warnings),
        delay=limits.delay,
    )


def _apply_admin(
    request: Request, cursor: AdminCursor, response: object, horizon: int
) -> Step:
    asked = _asked_mintime(cursor)
    page = _admin_page(response, asked)
    boundary = cursor.mintime
    if boundary > horizon:
        # Planned by a clock ahead of Duo's, past what Duo has settled: ask again
        # later rather than move the boundary back.
        return Step(
            (), cursor, caught_up=True, warnings=request.warnings, settled=False
        )
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


def _admin_page(response: object, asked: int) -> list[tuple[int, str, Record]]:
    """Return (second, identity, record) of each record, ordered by second.

    A record whose ``timestamp`` is not the documented integer is still shipped
    (one odd record must not stop the log for ever): a number or numeric string
    is rounded down, else its ``isotimestamp`` is read, else it takes the second
    of the record before it in Duo's order (the asked mintime for the first).
    """
    if not isinstance(response, list):
        msg = f"adminaction: expected a JSON array, got {_kind(response)}"
        raise MalformedResponseError(msg)
    timed: list[tuple[int, Record]] = []
    previous = asked
    for record in response:
        if not isinstance(record, dict):
            msg = f"adminaction: a record is {_kind(record)}, not an object"
            raise MalformedResponseError(msg)
        second = _admin_second(record)
        previous = previous if second is None else second
        timed.append((previous, record))
    # A stable sort keeps Duo's order within a second, which ranks identical records.
    timed.sort(key=lambda pair: pair[0])
    ranks: dict[tuple[int, str], int] = {}
    page = []
    for second, record in timed:
        digest = record_identity(record)
        rank = ranks[second, digest] = ranks.get((second, digest), -1) + 1
        page.append((second, f"{digest}.{rank}", record))
    return page


def _admin_second(record: Record) -> int | None:
    """Return the epoch second of an administrator log record, if it tells one."""
    value = record.get("timestamp")
    if isinstance(value, str) and value.isascii() and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, float) and math.isfinite(value):
        value = math.floor(value)
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    text = record.get("isotimestamp")
    if isinstance(text, str):
        try:
            moment = dt.datetime.fromisoformat(text)
        except ValueError:
            return None
        if moment.tzinfo is not None:
            return math.floor(moment.timestamp())
    return None


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
        f"{_iso(oldest, unit)} are older than Duo serves and were not fetched; "
        f"fetching on from {_iso(oldest, unit)}"
    )


def _iso(time: int, unit: int) -> str:
    moment = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    moment += dt.timedelta(milliseconds=time * 1000 // unit)
    return moment.isoformat(timespec="seconds" if unit == 1 else "milliseconds")


def _kind(value: object) -> str:
    return type(value).__name__
