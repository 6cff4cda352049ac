"""Running totals of what the pipeline did, kept from its events.

One ``Counters`` is owned by the daemon and given, with the log observer, to
every emitter; metrics (issue 11), health and status read it.  Nothing else
keeps counts: no module holds a global one.

Totals only grow, except that an account's entries are dropped when the
account is removed (``AccountRemoved``), so that the object stays as large as
the tree it observes.  Counting is a few dictionary updates per page or per
failure, never per record.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any, TypeAlias

from trio_dls.observe.events import (
    AccountListFailed,
    AccountRemoved,
    ApiFailed,
    Behind,
    ChildRefused,
    CursorLost,
    CursorRestored,
    CursorSaveFailed,
    DatagramCut,
    DatagramDropped,
    PageDelivered,
    PageWritten,
    PlanningWarning,
    RateLimited,
    RecordRepaired,
    ServerConnected,
    ServerFailed,
)
from trio_dls.siem.framing import DatagramCounters

if TYPE_CHECKING:
    from collections.abc import Callable

    from trio_dls.endpoints import Endpoint
    from trio_dls.observe.events import Event
    from trio_dls.supervisor import AccountRef

    Pair: TypeAlias = tuple[AccountRef, Endpoint]

__all__ = ["Counters"]


class Counters:
    """The pipeline's running totals, by (account, endpoint) and by server id."""

    def __init__(self) -> None:
        """Start at zero."""
        # Fetchers, by (account, endpoint).
        self.pages_delivered: Counter[Pair] = Counter()
        self.records_delivered: Counter[Pair] = Counter()
        self.behind: dict[Pair, float] = {}
        """The latest lag of each cursor behind now (seconds): a gauge."""
        self.api_failures: Counter[str] = Counter()
        """Failed Duo requests, by kind (error class and HTTP status)."""
        self.rate_limited = 0
        """Duo's 429 answers."""
        self.planning_warnings = 0
        self.account_list_failures = 0
        # Senders, by server id.
        self.pages_written: Counter[str] = Counter()
        self.records_written: Counter[str] = Counter()
        self.bytes_written: Counter[str] = Counter()
        self.server_failures: Counter[str] = Counter()
        self.reconnects: Counter[str] = Counter()
        """Connections opened after a sender's first."""
        self.repaired: Counter[str] = Counter()
        """Records sent repaired."""
        self.datagrams: dict[str, DatagramCounters] = {}
        """What each UDP server's datagrams became."""
        # The cursor store.
        self.cursor_save_failures = 0
        self.cursors_restored = 0
        """Pairs resumed from a previous copy of their damaged or missing cursor."""
        self.cursors_lost = 0
        """Pairs restarted from the configured offset, no copy being usable."""
        self._handlers: dict[type[Any], Callable[[Any], None]] = {
            PageDelivered: self._page_delivered,
            Behind: self._behind,
            ApiFailed: self._api_failed,
            ChildRefused: self._api_failed,
            RateLimited: self._rate_limited,
            PlanningWarning: self._planning_warning,
            AccountListFailed: self._account_list_failed,
            AccountRemoved: self._account_removed,
            PageWritten: self._page_written,
            ServerFailed: self._server_failed,
            ServerConnected: self._server_connected,
            RecordRepaired: self._record_repaired,
            DatagramCut: self._datagram_cut,
            DatagramDropped: self._datagram_dropped,
            CursorSaveFailed: self._cursor_save_failed,
            CursorRestored: self._cursor_restored,
            CursorLost: self._cursor_lost,
        }

    def __call__(self, event: Event, /) -> None:
        """Count *event*, if it is counted."""
        handler = self._handlers.get(type(event))
        if handler is not None:
            handler(event)

    def _datagrams(self, server: str) -> DatagramCounters:
        counters = self.datagrams.get(server)
        if counters is None:
            counters = self.datagrams[server] = DatagramCounters()
        return counters

    def _page_delivered(self, event: PageDelivered) -> None:
        pair = (event.account, event.endpoint)
        self.pages_delivered[pair] += 1
        self.records_delivered[pair] += event.records

    def _behind(self, event: Behind) -> None:
        self.behind[event.account, event.endpoint] = event.seconds

    def _api_failed(self, event: ApiFailed | ChildRefused) -> None:
        self.api_failures[event.kind] += 1

    def _rate_limited(self, event: RateLimited) -> None:
        del event
        self.rate_limited += 1

    def _planning_warning(self, event: PlanningWarning) -> None:
        del event
        self.planning_warnings += 1

    def _account_list_failed(self, event: AccountListFailed) -> None:
        del event
        self.account_list_failures += 1

    def _account_removed(self, event: AccountRemoved) -> None:
        for table in (self.pages_delivered, self.records_delivered, self.behind):
            for pair in [pair for pair in table if pair[0] == event.account]:
                del table[pair]

    def _page_written(self, event: PageWritten) -> None:
        server = event.server.id
        self.pages_written[server] += 1
        self.records_written[server] += event.records
        self.bytes_written[server] += event.size
        if event.datagrams is not None:
            self._datagrams(server).whole += event.datagrams

    def _server_failed(self, event: ServerFailed) -> None:
        self.server_failures[event.server.id] += 1

    def _server_connected(self, event: ServerConnected) -> None:
        if not event.first:
            self.reconnects[event.server.id] += 1

    def _record_repaired(self, event: RecordRepaired) -> None:
        self.repaired[event.server.id] += 1

    def _datagram_cut(self, event: DatagramCut) -> None:
        counters = self._datagrams(event.server.id)
        counters.truncated += 1
        counters.lost_bytes += event.lost

    def _datagram_dropped(self, event: DatagramDropped) -> None:
        counters = self._datagrams(event.server.id)
        counters.dropped += 1
        counters.lost_bytes += event.size

    def _cursor_save_failed(self, event: CursorSaveFailed) -> None:
        del event
        self.cursor_save_failures += 1

    def _cursor_restored(self, event: CursorRestored) -> None:
        del event
        self.cursors_restored += 1

    def _cursor_lost(self, event: CursorLost) -> None:
        del event
        self.cursors_lost += 1
