"""What the pipeline tells its observers: one frozen value per kind of fact.

Theory of operation
-------------------
Fetchers, senders, the cursor store and account discovery call their observer
with one of these values whenever something worth knowing happens, and carry
on: emitting is a plain synchronous call, so an event costs one small object
and the observers' own work, never a task.  Events are facts, not messages:
names, counts, sizes, durations and the text of errors, never a formatted log
line.  What to say about them, and when, is each observer's business
(``trio_dls.observe.logs`` for the log, ``trio_dls.observe.counters`` for
running totals).

An emitter tells every occurrence (every failure, every 429, every caught-up
poll); it keeps only the facts it must count itself, such as how many times in
a row something failed.  The "say it only when it changes" and "at a falling
rate" decisions belong to the log observer.

There is at most one event per page and per Duo request, never one per record,
except for the records that are exceptional: one repaired, one datagram cut or
dropped.

Times named ``at`` and ``since`` are trio's clock (``trio.current_time()``,
monotonic seconds); ``position`` and ``cursor_time`` are UTC epoch seconds; any
other duration is in seconds.

This module imports nothing that imports it back: the supervisor emits
``AccountAdded`` and ``AccountRemoved``, so ``AccountRef`` is named here for
the type checker only.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import attrs

from trio_dls.endpoints import Endpoint

if TYPE_CHECKING:
    from trio_dls.config import Server

    # Events never resolve their annotations at run time, and the supervisor,
    # which defines AccountRef, imports this module.
    from trio_dls.supervisor import AccountRef  # noqa: TC004

__all__ = [
    "AccountAdded",
    "AccountListFailed",
    "AccountRemoved",
    "AccountsListed",
    "ApiFailed",
    "ApiRecovered",
    "Backlog",
    "Behind",
    "CaughtUp",
    "ChildRefused",
    "ChildrenChanged",
    "ClockSkew",
    "ClockState",
    "ConnectionReplaced",
    "CorruptFile",
    "CursorLost",
    "CursorRestored",
    "CursorSaveFailed",
    "CursorSaveRecovered",
    "DatagramCut",
    "DatagramDropped",
    "DlsCheckpointIgnored",
    "DlsCheckpointImported",
    "Event",
    "NoChildAccount",
    "PageDelivered",
    "PageWritten",
    "PlanningWarning",
    "RateLimited",
    "RecordRepaired",
    "RequestServed",
    "ResolveFailed",
    "ServerConnected",
    "ServerFailed",
    "ServerRecovered",
    "ServerRef",
    "ShardOwned",
]


# --------------------------------------------------------------------------
# What fetchers tell: trio_dls.fetcher.Fetching
# --------------------------------------------------------------------------


@attrs.frozen
class PageDelivered:
    """Every mapped sender wrote a page of *records*; its cursor is saved next.

    ``cursor_time`` is where the cursor that follows the page stands: every
    record before it has been delivered.
    """

    account: AccountRef
    endpoint: Endpoint
    records: int
    cursor_time: float


@attrs.frozen
class RequestServed:
    """Duo answered a request of (account, endpoint): HTTP 200, records or none.

    Told at each answer, before its records are delivered.  With
    ``RateLimited``, ``ApiFailed`` and ``ChildRefused`` it accounts for every
    request Duo answered (the metrics count requests by status from them).
    """

    account: AccountRef
    endpoint: Endpoint


@attrs.frozen
class Backlog:
    """Duo has more for (account, endpoint) than the answer just received.

    Told at each such answer: the fetcher asks again as soon as its rate
    budget allows, without waiting for the next poll.
    """

    account: AccountRef
    endpoint: Endpoint


@attrs.frozen
class CaughtUp:
    """Nothing more can be asked before the next poll; *sent* records so far.

    Told at each poll that finds nothing more, *sent* counting every record
    delivered since the fetcher started.
    """

    account: AccountRef
    endpoint: Endpoint
    sent: int


@attrs.frozen
class Behind:
    """After an answer, the saved cursor is *seconds* behind now.

    "Now" is the earlier of this host's clock and Duo's, as for planning.
    *position* is where the saved cursor stands, and *reached* how far the
    records sent reach: the time of the last one shipped from a window still
    being paged, else *position* (None when not told).  A first start pages
    one window opened 180 days back, whose position stays there until it is
    done: progress is told by *reached*.
    """

    account: AccountRef
    endpoint: Endpoint
    seconds: float
    position: float | None = None
    reached: float | None = None


@attrs.frozen
class RateLimited:
    """Duo answered 429; the fetcher now paces itself at *per_minute* requests.

    It asks again in *retry_in* seconds.  *shared*: the 429 was taken for a
    limit that all the MSP parent's children share, and *per_minute* is the
    pace of all of them together on this endpoint.
    """

    account: AccountRef
    endpoint: Endpoint
    per_minute: float
    retry_in: float
    shared: bool = False


@attrs.frozen
class ApiFailed:
    """A request failed (an HTTP error, no answer, a malformed one).

    *kind* is what makes two failures the same one (the error's class and
    HTTP status), *message* the error's text; this is failure number
    *failures* of that kind in a row, the first at *since*, this one at *at*.
    The fetcher asks again in *retry_in* seconds.
    """

    account: AccountRef
    endpoint: Endpoint
    kind: str
    message: str
    failures: int
    since: float
    at: float
    retry_in: float


@attrs.frozen
class ChildRefused:
    """Duo refused an MSP child's request (403/404: deleted, access revoked).

    As ``ApiFailed``, for that child alone: the fetcher asks again in
    *retry_in* seconds, a long backoff, while the other accounts go on.
    """

    account: AccountRef
    endpoint: Endpoint
    kind: str
    message: str
    failures: int
    since: float
    at: float
    retry_in: float


@attrs.frozen
class ApiRecovered:
    """A request succeeded after *failures* failed ones over *lasted* seconds."""

    account: AccountRef
    endpoint: Endpoint
    failures: int
    lasted: float
    at: float


@attrs.frozen
class PlanningWarning:
    """The paging rules decided something the operator must hear of.

    For example, records Duo cannot page through and that are skipped.  Told
    once, when the cursor carrying the decision is saved.
    """

    account: AccountRef
    endpoint: Endpoint
    message: str


class ClockState(enum.StrEnum):
    """How this host's clock stands against Duo's, with some hysteresis."""

    IN_STEP = "in step"
    AHEAD = "ahead"
    BEHIND = "behind"


@attrs.frozen
class ClockSkew:
    """This host's clock read *seconds* ahead of Duo's (negative: behind).

    Told at each plan once Duo's clock is known; *state* is how the fetchers
    take it (``trio_dls.fetcher.CLOCK_SKEW_WARNING`` and ``CLOCK_SKEW_AGREED``
    are its thresholds).
    """

    seconds: float
    state: ClockState


# --------------------------------------------------------------------------
# What MSP account discovery and the supervision tree tell:
# trio_dls.fetcher.AccountDiscovery, trio_dls.supervisor
# --------------------------------------------------------------------------


@attrs.frozen
class AccountsListed:
    """The MSP parent's list held *children* to fetch and *blocked* others.

    With a shard, *children* are those it owns (``ShardOwned`` says of how many).
    """

    children: int
    blocked: int


@attrs.frozen
class ShardOwned:
    """Shard *index* of *count* owns *owned* of the parent's *children* to fetch.

    Told once, at start, and only when ``--shard`` (or ``TRIO_DLS_SHARD``)
    splits the children between processes; *children* are those left by
    ``block_list``.
    """

    index: int
    count: int
    owned: int
    children: int


@attrs.frozen
class NoChildAccount:
    """The MSP parent has no child to fetch: *listed*, all *blocked*.

    Discovery looks again in *retry_in* seconds; this is the *failures*-th
    list in a row without one, the first at *since*.
    """

    listed: int
    blocked: int
    retry_in: float
    failures: int
    since: float
    at: float


@attrs.frozen
class ChildrenChanged:
    """A new listing of the MSP parent's children *added* some and *removed* others.

    Removed children were stopped cleanly, their cursors kept.
    """

    added: tuple[AccountRef, ...]
    removed: tuple[AccountRef, ...]


@attrs.frozen
class AccountListFailed:
    """Listing the MSP parent's child accounts failed; again in *retry_in* s."""

    kind: str
    message: str
    retry_in: float
    failures: int
    since: float
    at: float


@attrs.frozen
class AccountAdded:
    """The supervisor started the fetchers of *account*."""

    account: AccountRef


@attrs.frozen
class AccountRemoved:
    """The supervisor stopped the fetchers of *account*; observers forget it."""

    account: AccountRef


# --------------------------------------------------------------------------
# What senders tell: trio_dls.siem.senders.SiemSender
# --------------------------------------------------------------------------


@attrs.frozen
class ServerRef:
    """The server an event is about, as the log names it."""

    id: str
    hostname: str
    port: int
    protocol: str

    @classmethod
    def of(cls, server: Server) -> ServerRef:
        """Return the reference of *server*."""
        return cls(
            id=str(server.id),
            hostname=str(server.hostname),
            port=int(server.port),
            protocol=str(server.protocol),
        )


@attrs.frozen
class ServerConnected:
    """The sender opened a connection (TCP, TLS) or socket (UDP) to *server*.

    *first* tells the sender's first connection from a reconnection;
    *address* is the resolved address, when the sender knows it.
    """

    server: ServerRef
    first: bool
    address: str = ""


@attrs.frozen
class ConnectionReplaced:
    """*server* closed an idle connection; it is reopened at once (no failure)."""

    server: ServerRef


@attrs.frozen
class ServerFailed:
    """Writing to *server* failed for *reason*; it is tried again in *retry_in* s.

    This is attempt number *failures* in a row to fail; a page of *records*
    records of *endpoint* is waiting.
    """

    server: ServerRef
    reason: str
    retry_in: float
    failures: int
    endpoint: Endpoint
    records: int


@attrs.frozen
class ServerRecovered:
    """*server* took a write again, after *failures* failed attempts."""

    server: ServerRef
    failures: int


@attrs.frozen
class ResolveFailed:
    """Looking up a UDP server's name again failed; datagrams still go to *address*.

    *reason* is empty when the look-up only took too long.
    """

    server: ServerRef
    reason: str
    address: str


@attrs.frozen
class RecordRepaired:
    """A record of *endpoint* no format could write as received went repaired.

    *repairs* says what was changed; *record* is the record as received, for
    the observer to name (by its id) if it wants to.  Told once per page
    formatted, so a page written again after a reconnection tells nothing new.
    """

    server: ServerRef
    endpoint: Endpoint
    record: Mapping[str, object]
    repairs: tuple[str, ...]


@attrs.frozen
class DatagramCut:
    """A record of *size* bytes went truncated to *limit* (udp_max_size), *lost* cut."""

    server: ServerRef
    endpoint: Endpoint
    size: int
    limit: int
    lost: int


@attrs.frozen
class DatagramDropped:
    """A record of *size* bytes was not sent at all.

    Because it is above *limit* (udp_max_size) and the policy drops, or
    because the system refused it twice (*why*, its error; empty otherwise).
    """

    server: ServerRef
    endpoint: Endpoint
    size: int
    limit: int
    why: str


@attrs.frozen
class PageWritten:
    """A sender wrote a whole page of *records*, *size* bytes on the wire.

    On TCP and TLS the server acknowledged all of it; on UDP every datagram
    was handed to the kernel (or cut or dropped, each told on its own), and
    *datagrams* is how many went whole (None on a stream).
    """

    server: ServerRef
    account: AccountRef
    endpoint: Endpoint
    records: int
    size: int
    datagrams: int | None = None


# --------------------------------------------------------------------------
# What the cursor store tells: trio_dls.checkpoints.CheckpointStore
# --------------------------------------------------------------------------


@attrs.frozen
class CursorSaveFailed:
    """A cursor could not be saved in *directory* (*error*), failure *failures*.

    The failures are counted in a row over the whole store, whichever
    (account, endpoint) saved.
    """

    directory: Path
    error: str
    failures: int


@attrs.frozen
class CursorSaveRecovered:
    """Cursors are saved in *directory* again, after *failures* failed saves."""

    directory: Path
    failures: int


@attrs.frozen
class CorruptFile:
    """A cursor file that could not be decoded (*error*), and where it went.

    *moved_to* is the name it was renamed to, or None if the rename failed
    with *move_error*.  Part of ``CursorRestored`` and ``CursorLost``.
    """

    path: Path
    error: str
    moved_to: str | None
    move_error: str = ""


@attrs.frozen
class CursorRestored:
    """A pair resumes from the previous copy of its cursor, at *position*.

    The cursor file *path* was *corrupt* (or, when None, missing); the
    previous copy's position is *age* seconds old by this host's clock.
    """

    endpoint: Endpoint
    account_id: str | None
    path: Path
    corrupt: CorruptFile | None
    position: float
    age: float


@attrs.frozen
class CursorLost:
    """No copy of a pair's cursor is usable: it starts from the configured offset.

    *corrupt* and *previous_corrupt* are the damaged cursor file and previous
    copy (*previous*), None for one that is missing; both None means the file
    is missing because an earlier start set it aside.  *offset_days* is the
    configured offset when known; *dls_ignored*, a DLS checkpoint of the pair
    that is not used because it is older.
    """

    endpoint: Endpoint
    account_id: str | None
    path: Path
    previous: Path
    corrupt: CorruptFile | None
    previous_corrupt: CorruptFile | None
    offset_days: float | None
    dls_ignored: Path | None


@attrs.frozen
class DlsCheckpointImported:
    """A first start continues from duo_log_sync's checkpoint file *path*."""

    endpoint: Endpoint
    account_id: str | None
    path: Path


@attrs.frozen
class DlsCheckpointIgnored:
    """duo_log_sync's checkpoint file *path* cannot be read (*error*); unused."""

    endpoint: Endpoint
    account_id: str | None
    path: Path
    error: str


Event = (
    PageDelivered
    | RequestServed
    | Backlog
    | CaughtUp
    | Behind
    | RateLimited
    | ApiFailed
    | ChildRefused
    | ApiRecovered
    | PlanningWarning
    | ClockSkew
    | AccountsListed
    | ShardOwned
    | NoChildAccount
    | ChildrenChanged
    | AccountListFailed
    | AccountAdded
    | AccountRemoved
    | ServerConnected
    | ConnectionReplaced
    | ServerFailed
    | ServerRecovered
    | ResolveFailed
    | RecordRepaired
    | DatagramCut
    | DatagramDropped
    | PageWritten
    | CursorSaveFailed
    | CursorSaveRecovered
    | CursorRestored
    | CursorLost
    | DlsCheckpointImported
    | DlsCheckpointIgnored
)
"""Every kind of event an observer may be given."""
