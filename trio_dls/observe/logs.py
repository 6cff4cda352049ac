"""The log observer: events in, the daemon's log lines about its pipeline out.

Theory of operation
-------------------
Every line the pipeline's state is told in is written here, and nowhere
else: the emitters (fetchers, senders, the cursor store, account discovery)
tell every occurrence of a fact, and this observer decides what is worth a
line, keeping what it said last so that it can tell a change from a repeat:

* a fetcher's state (fetching a backlog, caught up, rate limited) is said
  when it changes, not at every poll or 429;
* a failing Duo request, or MSP child listing, is said at a falling rate
  (``trio_dls.observe.reporting.FailureReport``: its 1st, 10th and 100th occurrence,
  then hourly), and its end once;
* a server's failure is a warning when it starts or its reason changes, its
  further attempts are at debug level, its recovery is said once;
* a failing cursor save is an error at the first failure and its recovery an
  info line; the clocks' disagreement is said when it starts and ends;
* everything exceptional (a record repaired, a datagram cut or dropped, a
  cursor file found damaged, a planning warning) is said each time.

The lines go to the loggers of the modules that used to write them
(``trio_dls.fetcher``, ``trio_dls.siem.senders``, ``trio_dls.checkpoints``), with
the same text and levels, so operators' filters and the tests that read the
log see no difference.

Each warning and error names what it is about (the account and endpoint, the
server, the cursor file) and says what trio-dls does next; the account,
endpoint, child account id and server also go with the line as ``extra``
fields, which the JSON log (``trio_dls.observe.logsetup``) keeps as fields.

What it remembers is bounded: a few values per (account, endpoint), dropped
when the account is removed (``AccountRemoved``), and per server.  This
module does no I/O of its own beyond ``logging``;
``trio_dls.observe.logsetup`` says where the lines go.
"""

from __future__ import annotations

import enum
import logging
import time
from typing import TYPE_CHECKING, Any, Final

from trio_dls.endpoints import ENDPOINT_INDEX
from trio_dls.observe.events import (
    AccountListFailed,
    AccountRemoved,
    AccountsListed,
    ApiFailed,
    ApiRecovered,
    Backlog,
    CaughtUp,
    ChildRefused,
    ChildrenChanged,
    ClockSkew,
    ClockState,
    ConnectionReplaced,
    CursorLost,
    CursorRestored,
    CursorSaveFailed,
    CursorSaveRecovered,
    DatagramCut,
    DatagramDropped,
    DlsCheckpointIgnored,
    DlsCheckpointImported,
    NoChildAccount,
    PlanningWarning,
    RateLimited,
    RecordRepaired,
    ResolveFailed,
    ServerConnected,
    ServerFailed,
    ServerRecovered,
    ServerRef,
    ShardOwned,
)
from trio_dls.observe.reporting import FailureReport
from trio_dls.siem.formats import describe_record

if TYPE_CHECKING:
    from collections.abc import Callable

    from trio_dls.endpoints import Endpoint
    from trio_dls.observe.events import CorruptFile, Event
    from trio_dls.supervisor import AccountRef

__all__ = ["LogObserver"]

FETCHER_LOG: Final = logging.getLogger("trio_dls.fetcher")
SENDER_LOG: Final = logging.getLogger("trio_dls.senders")
CURSOR_LOG: Final = logging.getLogger("trio_dls.checkpoints")


def _server(server: ServerRef) -> str:
    # The same words as trio_dls.siem.transports.describe_server.
    return f"server {server.id!r} ({server.hostname}:{server.port} {server.protocol})"


def _fields(
    *,
    server: ServerRef | None = None,
    endpoint: Endpoint | None = None,
    account_id: str | None = None,
) -> dict[str, str]:
    """The ``extra`` fields of a line about *server*, *endpoint*, a child."""
    fields = {}
    if server is not None:
        fields["server"] = server.id
    if endpoint is not None:
        fields["endpoint"] = str(endpoint)
    if account_id is not None:
        fields["child_account_id"] = account_id
    return fields


def _utc(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def _how_long(seconds: float) -> str:
    """Say a duration as an operator reads it in a log line."""
    seconds = max(0.0, seconds)
    if seconds < 2 * 60:
        return f"{seconds:.0f} seconds"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.0f} minutes"
    if seconds < 2 * 86_400:
        return f"{round(seconds / 3600, 1):g} hours"
    return f"{round(seconds / 86_400, 1):g} days"


def _moved(corrupt: CorruptFile) -> str:
    if corrupt.moved_to is None:
        return f"could not move it aside: {corrupt.move_error}"
    return f"moved it to {corrupt.moved_to}"


class _Fetcher:
    """What was said about one (account, endpoint).

    An MSP parent has one per child and endpoint, so it keeps the least:
    the account and endpoint (shared with the fetcher), the state said last,
    and a failure report once something failed.  The line's name and fields
    are made when a line is written.  One caught up, with no run of
    failures being reported, is not kept at all: its place holds ``_IDLE``,
    all there is to remember of it.
    """

    __slots__ = ("_failures", "account", "endpoint", "state")

    def __init__(self, account: AccountRef, endpoint: Endpoint) -> None:
        self.account = account
        self.endpoint = endpoint
        self.state = ""
        self._failures: FailureReport | None = None

    @property
    def name(self) -> str:
        """The fetcher as a line names it."""
        # A child is named by id too: the id is what Duo's console shows.
        account = self.account
        who = account.name
        if account.account_id is not None and account.account_id != account.name:
            who = f"{account.name} ({account.account_id})"
        return f"{who}/{self.endpoint}"

    @property
    def fields(self) -> dict[str, str]:
        """The ``extra`` fields of its lines."""
        account = self.account
        return {"account": account.name} | _fields(
            endpoint=self.endpoint, account_id=account.account_id
        )

    @property
    def failing(self) -> bool:
        """Whether failures are being reported (a run of them not ended)."""
        return self._failures is not None and self._failures.failures > 0

    @property
    def failures(self) -> FailureReport:
        """The failing streak's report (made at the first failure)."""
        if self._failures is None:
            self._failures = FailureReport()
        return self._failures

    def enter(self, state: str, level: int, message: str) -> None:
        """Say *message* if *state* is not the one said last."""
        if state != self.state:
            FETCHER_LOG.log(level, "%s: %s", self.name, message, extra=self.fields)
        self.state = state


class _Idle(enum.Enum):
    """The mark of a fetcher caught up, said so, with no failure reported."""

    IDLE = "idle"


_IDLE: Final = _Idle.IDLE


class LogObserver:
    """The observer that writes today's log lines (see the module docstring)."""

    def __init__(self) -> None:
        """Start having said nothing."""
        # Per account, its endpoints' in ``ENDPOINT_INDEX`` order.
        self._fetchers: dict[AccountRef, list[_Fetcher | _Idle | None]] = {}
        self._server_reasons: dict[str, str] = {}
        self._clock: ClockState | None = None
        self._list_failures = FailureReport()
        self._no_child = FailureReport()
        # One dictionary look-up per event: the emitters call this for every
        # page and request.
        self._handlers: dict[type[Any], Callable[[Any], None]] = {
            Backlog: self._backlog,
            CaughtUp: self._caught_up,
            RateLimited: self._rate_limited,
            ApiFailed: self._api_failed,
            ChildRefused: self._child_refused,
            ApiRecovered: self._api_recovered,
            PlanningWarning: self._planning_warning,
            ClockSkew: self._clock_skew,
            AccountsListed: self._accounts_listed,
            ShardOwned: self._shard_owned,
            NoChildAccount: self._no_child_account,
            ChildrenChanged: self._children_changed,
            AccountListFailed: self._account_list_failed,
            AccountRemoved: self._account_removed,
            ServerConnected: self._server_connected,
            ConnectionReplaced: self._connection_replaced,
            ServerFailed: self._server_failed,
            ServerRecovered: self._server_recovered,
            ResolveFailed: self._resolve_failed,
            RecordRepaired: self._record_repaired,
            DatagramCut: self._datagram_cut,
            DatagramDropped: self._datagram_dropped,
            CursorSaveFailed: self._cursor_save_failed,
            CursorSaveRecovered: self._cursor_save_recovered,
            CursorRestored: self._cursor_restored,
            CursorLost: self._cursor_lost,
            DlsCheckpointImported: self._dls_imported,
            DlsCheckpointIgnored: self._dls_ignored,
        }

    def __call__(self, event: Event, /) -> None:
        """Write what *event* calls for, if anything."""
        handler = self._handlers.get(type(event))
        if handler is not None:
            handler(event)

    def _fetcher(self, account: AccountRef, endpoint: Endpoint) -> _Fetcher:
        endpoints = self._fetchers.get(account)
        if endpoints is None:
            endpoints = self._fetchers[account] = [None] * len(ENDPOINT_INDEX)
        index = ENDPOINT_INDEX[endpoint]
        said = endpoints[index]
        if isinstance(said, _Fetcher):
            return said
        made = endpoints[index] = _Fetcher(account, endpoint)
        if said is _IDLE:
            made.state = "idle"
        return made

    # Fetchers ---------------------------------------------------------------

    def _backlog(self, event: Backlog) -> None:
        # Only more pages to come make a backlog: the one page of new records
        # a poll brings is not worth two log lines.
        said = self._fetcher(event.account, event.endpoint)
        said.enter("busy", logging.INFO, "fetching a backlog")

    def _caught_up(self, event: CaughtUp) -> None:
        account, endpoint = event.account, event.endpoint
        said = self._fetcher(account, endpoint)
        said.enter("idle", logging.INFO, f"caught up ({event.sent} records sent)")
        if not said.failing:
            # Idle, and no failure being reported: nothing else to remember.
            self._fetchers[account][ENDPOINT_INDEX[endpoint]] = _IDLE

    def _rate_limited(self, event: RateLimited) -> None:
        said = self._fetcher(event.account, event.endpoint)
        if event.shared:
            said.enter(
                "limited",
                logging.INFO,
                "Duo's rate limit, shared by the MSP children, reached; pacing "
                f"all children at {event.per_minute:.1f} {event.endpoint} "
                "requests a minute",
            )
        else:
            said.enter(
                "limited",
                logging.INFO,
                "Duo's rate limit reached; pacing at "
                f"{event.per_minute:.1f} requests a minute",
            )

    def _api_failed(self, event: ApiFailed) -> None:
        said = self._fetcher(event.account, event.endpoint)
        # Failing is a state of its own, said at a falling rate below: once it
        # ends, being caught up (or in a backlog) is worth saying again.
        said.state = "failing"
        report = said.failures.failed(event.kind, event.message, event.at)
        if report is not None:
            FETCHER_LOG.warning(
                "%s: %s; retrying (next in %.0f s, backing off)",
                said.name,
                report,
                event.retry_in,
                extra=said.fields,
            )

    def _child_refused(self, event: ChildRefused) -> None:
        said = self._fetcher(event.account, event.endpoint)
        said.state = "failing"
        # The same report as other failures, so that its end is said by
        # ``ApiRecovered``; the line names the child by id as well as by name,
        # since an operator looks the id up in Duo's console.
        report = said.failures.failed(event.kind, event.message, event.at)
        if report is not None:
            FETCHER_LOG.warning(
                "%s: child account refused: %s; other accounts go on, "
                "this one retries in %.0f s",
                said.name,
                report,
                event.retry_in,
                extra=said.fields,
            )

    def _api_recovered(self, event: ApiRecovered) -> None:
        said = self._fetcher(event.account, event.endpoint)
        recovered = said.failures.succeeded(event.at)
        if recovered is not None:
            FETCHER_LOG.info("%s: %s", said.name, recovered, extra=said.fields)

    def _planning_warning(self, event: PlanningWarning) -> None:
        said = self._fetcher(event.account, event.endpoint)
        FETCHER_LOG.warning("%s: %s", said.name, event.message, extra=said.fields)

    def _clock_skew(self, event: ClockSkew) -> None:
        state, said = event.state, self._clock
        self._clock = state
        # Clocks in step from the start are not news.
        if state is said or (said is None and state is ClockState.IN_STEP):
            return
        if state is ClockState.AHEAD:
            FETCHER_LOG.warning(
                "this host's clock is %.0f s ahead of Duo's; windows end by Duo's"
                " clock (fix NTP: logs are stamped with this host's time)",
                event.seconds,
            )
        elif state is ClockState.BEHIND:
            FETCHER_LOG.info(
                "this host's clock is %.0f s behind Duo's; windows end by this"
                " host's clock, a little later than they could",
                -event.seconds,
            )
        else:
            FETCHER_LOG.info("this host's clock and Duo's agree again")

    # Account discovery and the tree -----------------------------------------

    def _accounts_listed(self, event: AccountsListed) -> None:
        FETCHER_LOG.info(
            "MSP parent: %d child accounts, %d skipped by block_list",
            event.children,
            event.blocked,
        )
        # A listing that succeeded ends any run of failed ones.
        self._list_failures = FailureReport()
        if event.children:
            if self._no_child.failures:
                FETCHER_LOG.info("MSP parent: child accounts found")
            self._no_child = FailureReport()

    def _shard_owned(self, event: ShardOwned) -> None:
        FETCHER_LOG.info(
            "shard %d/%d: owning %d of %d child accounts",
            event.index,
            event.count,
            event.owned,
            event.children,
        )

    def _no_child_account(self, event: NoChildAccount) -> None:
        said = self._no_child.failed(
            "no child",
            f"MSP parent: no child account to fetch ({event.listed} listed, "
            f"{event.blocked} in block_list); looking again in {event.retry_in:.0f} s",
            event.at,
        )
        if said is not None:
            FETCHER_LOG.warning("%s", said)

    def _children_changed(self, event: ChildrenChanged) -> None:
        for verb, accounts in (("added", event.added), ("removed", event.removed)):
            if accounts:
                FETCHER_LOG.info(
                    "MSP parent: child account(s) %s: %s",
                    verb,
                    ", ".join(f"{a.name} ({a.account_id})" for a in accounts),
                )

    def _account_list_failed(self, event: AccountListFailed) -> None:
        said = self._list_failures.failed(
            event.kind, f"listing MSP child accounts: {event.message}", event.at
        )
        if said is not None:
            FETCHER_LOG.warning("%s; retrying in %.0f s", said, event.retry_in)

    def _account_removed(self, event: AccountRemoved) -> None:
        self._fetchers.pop(event.account, None)

    # Senders ----------------------------------------------------------------

    def _server_connected(self, event: ServerConnected) -> None:
        where = f" at {event.address}" if event.address else ""
        if event.first:
            SENDER_LOG.info(
                "%s: connected%s",
                _server(event.server),
                where,
                extra=_fields(server=event.server),
            )
        else:
            SENDER_LOG.debug(
                "%s: connected again%s",
                _server(event.server),
                where,
                extra=_fields(server=event.server),
            )

    def _connection_replaced(self, event: ConnectionReplaced) -> None:
        SENDER_LOG.debug(
            "%s: the connection was closed; reopening",
            _server(event.server),
            extra=_fields(server=event.server),
        )

    def _server_failed(self, event: ServerFailed) -> None:
        reasons = self._server_reasons
        key = event.server.id
        if event.failures == 1 or event.reason != reasons.get(key):
            SENDER_LOG.warning(
                "%s: cannot deliver: %s; retrying in %.1f s, %s waiting"
                " (until it works, further attempts are logged at debug level)",
                _server(event.server),
                event.reason,
                event.retry_in,
                f"a page of {event.records} {event.endpoint} record(s)",
                extra=_fields(server=event.server, endpoint=event.endpoint),
            )
        else:
            SENDER_LOG.debug(
                "%s: attempt %d failed: %s; retrying in %.1f s",
                _server(event.server),
                event.failures,
                event.reason,
                event.retry_in,
                extra=_fields(server=event.server),
            )
        reasons[key] = event.reason

    def _server_recovered(self, event: ServerRecovered) -> None:
        self._server_reasons.pop(event.server.id, None)
        SENDER_LOG.info(
            "%s: delivering again, after %d failed attempt(s)",
            _server(event.server),
            event.failures,
            extra=_fields(server=event.server),
        )

    def _resolve_failed(self, event: ResolveFailed) -> None:
        SENDER_LOG.warning(
            "%s: %s; still sending to %s",
            _server(event.server),
            event.reason or "the hostname did not resolve in time",
            event.address,
            extra=_fields(server=event.server),
        )

    def _record_repaired(self, event: RecordRepaired) -> None:
        SENDER_LOG.warning(
            "%s: %s record (%s) cannot be written as received; sent repaired: %s",
            _server(event.server),
            event.endpoint,
            describe_record(event.record, event.endpoint),
            "; ".join(event.repairs),
            extra=_fields(server=event.server, endpoint=event.endpoint),
        )

    def _datagram_cut(self, event: DatagramCut) -> None:
        SENDER_LOG.warning(
            "%s: a %s record of %d bytes is above udp_max_size (%d): %s",
            _server(event.server),
            event.endpoint,
            event.size,
            event.limit,
            f"truncated, {event.lost} bytes cut",
            extra=_fields(server=event.server, endpoint=event.endpoint),
        )

    def _datagram_dropped(self, event: DatagramDropped) -> None:
        limit, why = event.limit, event.why
        if event.size > limit:
            size = f"is above udp_max_size ({limit})"
            if why:
                size += f" and the system refuses it ({why})"
        else:
            # Within udp_max_size, but refused twice: the path's limit is lower.
            size = f"is refused by the system ({why}), though within udp_max_size"
            size += f" ({limit}): lower udp_max_size"
        SENDER_LOG.warning(
            "%s: a %s record of %d bytes %s: dropped",
            _server(event.server),
            event.endpoint,
            event.size,
            size,
            extra=_fields(server=event.server, endpoint=event.endpoint),
        )

    # The cursor store -------------------------------------------------------

    def _cursor_save_failed(self, event: CursorSaveFailed) -> None:
        # One line per state change: the store counts failures in a row.
        if event.failures == 1:
            CURSOR_LOG.error(
                "cannot save cursors in %s: %s; delivering on and saving again "
                "with the next page (a restart before then re-sends the records "
                "since the last saved cursor)",
                event.directory,
                event.error,
            )

    def _cursor_save_recovered(self, event: CursorSaveRecovered) -> None:
        CURSOR_LOG.info("cursors are saved again in %s", event.directory)

    def _cursor_restored(self, event: CursorRestored) -> None:
        when = f"{_utc(event.position)}, {_how_long(event.age)} ago"
        corrupt = event.corrupt
        if corrupt is None:
            CURSOR_LOG.warning(
                "the cursor file %s is missing but its previous copy is there; "
                "resuming from its position (%s): at most one page is sent again",
                event.path,
                when,
                extra=_fields(endpoint=event.endpoint, account_id=event.account_id),
            )
            return
        CURSOR_LOG.error(
            "the cursor file %s is corrupt (%s); %s; resuming from the previous "
            "saved position (%s): at most one page is sent again",
            event.path,
            corrupt.error,
            _moved(corrupt),
            when,
            extra=_fields(endpoint=event.endpoint, account_id=event.account_id),
        )

    def _cursor_lost(self, event: CursorLost) -> None:
        problems = []
        main, previous = event.corrupt, event.previous_corrupt
        if main is not None:
            problems.append(
                f"the cursor file {event.path} is corrupt ({main.error}); "
                f"{_moved(main)}"
            )
        if previous is not None:
            problems.append(
                f"its previous copy is corrupt too ({previous.error}); "
                f"{_moved(previous)}"
                if main is not None
                else f"the cursor file {event.path} is missing and its previous "
                f"copy {event.previous.name} is corrupt ({previous.error}); "
                f"{_moved(previous)}"
            )
        elif main is not None:
            problems.append("there is no previous copy")
        else:
            problems.append(
                f"the cursor file {event.path} is missing (set aside as corrupt)"
            )
        how_far = (
            f", up to {event.offset_days:g} days back"
            if event.offset_days is not None
            else ""
        )
        ignored = (
            f"; the DLS checkpoint {event.dls_ignored.name} is older and is not used"
            if event.dls_ignored is not None
            else ""
        )
        CURSOR_LOG.error(
            "%s; starting from the configured offset%s (dls_settings.api.offset)%s",
            "; ".join(problems),
            how_far,
            ignored,
            extra=_fields(endpoint=event.endpoint, account_id=event.account_id),
        )

    def _dls_imported(self, event: DlsCheckpointImported) -> None:
        CURSOR_LOG.info(
            "continuing from the DLS checkpoint %s",
            event.path,
            extra=_fields(endpoint=event.endpoint, account_id=event.account_id),
        )

    def _dls_ignored(self, event: DlsCheckpointIgnored) -> None:
        CURSOR_LOG.warning(
            "ignoring the DLS checkpoint %s: %s; starting from the configured "
            "offset (dls_settings.api.offset)",
            event.path,
            event.error,
            extra=_fields(endpoint=event.endpoint, account_id=event.account_id),
        )
