"""Prometheus metrics and health, kept from the pipeline's events.

Theory of operation
-------------------
``Metrics`` is an observer: the daemon adds it to its ``Fanout`` when
``dls_settings.metrics.listen`` is set, and ``trio_dls.observe.metrics_http``
serves what it holds (``exposition()``, ``verdict()``).  It does no I/O.
Each event costs a dictionary update or two, never a task; the formatting
happens at a scrape.

Its metrics live in a ``CollectorRegistry`` of its own, never the global one
of ``prometheus_client``: tests run many daemons in one process, and one
daemon's totals must not leak into another's.  The registry also holds
``prometheus_client``'s process, platform and garbage-collector collectors.

What is kept, and how big it may grow:

* Counters by endpoint, by server, or by both: bounded by the config.  They
  carry no account label, so that an MSP parent's 1,000 children cost no
  more series than one account, and a removed child takes no count away
  (a counter that goes down reads as a reset).  Every (server, endpoint) of
  the config's mappings starts at zero, so that rates are defined from the
  first scrape.
* Gauges per (account, endpoint): lag and cursor age once its cursor is
  saved, pace once it has had a 429.  For 1,000 children fetching five
  endpoints that is 5,000 series each, read from a dictionary at scrape
  time; a removed child's entries, and so its series, go with
  ``AccountRemoved``.  (How long each has gone without progress is
  ``/healthz``'s to say, by name, not 5,000 more series.)
* Gauges per server: whether it is reachable.

Times are trio's clock (``clock``, read when an event is told and at a
scrape); ``trio_dls.observe.health`` holds the rules of ``/healthz``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final, TypeAlias

import attrs
import prometheus_client
import trio
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest

from trio_dls.observe.events import (
    AccountAdded,
    AccountListFailed,
    AccountRemoved,
    ApiFailed,
    Behind,
    ChildRefused,
    ConnectionReplaced,
    CursorLost,
    CursorRestored,
    CursorSaveFailed,
    DatagramCut,
    DatagramDropped,
    PageDelivered,
    PageWritten,
    RateLimited,
    RecordRepaired,
    RequestServed,
    ServerConnected,
    ServerFailed,
    ServerRecovered,
)
from trio_dls.observe.health import Health, Verdict

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from prometheus_client.metrics_core import Metric

    from trio_dls.config import Config
    from trio_dls.endpoints import Endpoint
    from trio_dls.observe.events import Event
    from trio_dls.supervisor import AccountRef

    Pair: TypeAlias = tuple[AccountRef, Endpoint]

__all__ = ["CONTENT_TYPE", "STALL_FLOOR", "STALL_POLLS", "Metrics", "stall_after"]

CONTENT_TYPE: Final = CONTENT_TYPE_PLAIN_0_0_4
"""The text format every Prometheus version reads."""

# The default health threshold: three polls missed, and never under ten
# minutes.  A caught-up fetcher shows progress once a poll (``api.timeout``)
# plus one call (at most 60 s), so three polls without any is no jitter; and
# a failing request backs off up to five minutes, so the floor lets two of
# the longest backoffs pass before a passing outage is called a stall.
STALL_POLLS: Final = 3
STALL_FLOOR: Final = 600.0

PREFIX: Final = "trio_dls_"


def stall_after(config: Config) -> float:
    """The health threshold of *config*: as set, or the default above."""
    configured = config.dls_settings.metrics.stall_after
    if configured is not None:
        return float(configured)
    return max(STALL_FLOOR, STALL_POLLS * float(config.dls_settings.api.timeout))


def _status(kind: str) -> str:
    """The HTTP status in a failure's kind (``TransientApiError 503``), or none."""
    status = kind.rpartition(" ")[2]
    return status if status.isdigit() else "none"


@attrs.define
class _PairState:
    lag: float | None = None
    saved_at: float | None = None
    pace: float | None = None


class Metrics:
    """The observer of the module docstring, with its registry."""

    def __init__(
        self,
        *,
        stall_after: float,
        endpoints: tuple[Endpoint, ...] = (),
        routes: tuple[tuple[str, Endpoint], ...] = (),
        clock: Callable[[], float] = trio.current_time,
        process: bool = True,
    ) -> None:
        """Keep metrics and health for a tree fetching *endpoints*.

        *routes* are the (server id, endpoint) pairs the config maps, started
        at zero; *stall_after* is the health threshold (seconds); *clock*
        is trio's, read at each event and scrape.  *process*: include the
        process, platform and garbage-collector metrics.
        """
        self.clock = clock
        self.health = Health(stall_after, endpoints)
        self.registry = registry = prometheus_client.CollectorRegistry()
        self._pairs: dict[Pair, _PairState] = {}
        self._up: dict[str, float] = {}
        self._accounts = 0

        def counter(name: str, text: str, *labels: str) -> prometheus_client.Counter:
            return prometheus_client.Counter(
                PREFIX + name, text, labels, registry=registry
            )

        # Fetchers, by endpoint.
        self.requests = counter(
            "api_requests",
            "Duo API requests answered, by endpoint and HTTP status "
            '("none": no answer, or one that could not be read).',
            "endpoint",
            "status",
        )
        self.errors = counter(
            "api_errors",
            "Failed Duo API requests (429 aside), by endpoint and kind of error.",
            "endpoint",
            "kind",
        )
        self.rate_limited = counter(
            "rate_limited",
            "Duo's 429 answers, by endpoint.",
            "endpoint",
        )
        self.pages_fetched = counter(
            "pages_fetched",
            "Pages fetched from Duo and written by every mapped server.",
            "endpoint",
        )
        self.records_fetched = counter(
            "records_fetched",
            "Records fetched from Duo and written by every mapped server.",
            "endpoint",
        )
        # Senders, by server.
        self.pages_sent = counter(
            "pages_sent",
            "Pages a server acknowledged (TCP, TLS) or was handed (UDP).",
            "server",
            "endpoint",
        )
        self.records_sent = counter(
            "records_sent",
            "Records a server acknowledged (TCP, TLS) or was handed (UDP).",
            "server",
            "endpoint",
        )
        self.bytes_sent = counter(
            "sent_bytes", "Bytes written to a server, framing included.", "server"
        )
        self.server_failures = counter(
            "server_failures", "Failed attempts to write to a server.", "server"
        )
        self.reconnects = counter(
            "server_reconnects",
            "Connections opened to a server after the first one.",
            "server",
        )
        self.replaced = counter(
            "server_connections_replaced",
            "Idle connections a server closed, reopened at once.",
            "server",
        )
        self.repaired = counter(
            "records_repaired",
            "Records sent repaired, as no format could write them as received.",
            "server",
            "endpoint",
        )
        self.cut = counter(
            "datagrams_cut",
            "UDP records cut to udp_max_size.",
            "server",
            "endpoint",
        )
        self.dropped = counter(
            "datagrams_dropped",
            "UDP records not sent: above udp_max_size, or refused by the system.",
            "server",
            "endpoint",
        )
        self.lost_bytes = counter(
            "datagram_lost_bytes",
            "Bytes of UDP records cut off or dropped.",
            "server",
        )
        # The cursor store and account discovery.
        self.save_failures = counter(
            "cursor_save_failures", "Cursors that could not be saved."
        )
        self.restored = counter(
            "cursors_restored",
            "Cursors resumed from their previous copy, the file being damaged.",
        )
        self.lost = counter(
            "cursors_lost",
            "Cursors restarted from the configured offset, no copy being usable.",
        )
        self.list_failures = counter(
            "account_list_failures", "Failed listings of an MSP parent's children."
        )
        for server, endpoint in routes:
            self.pages_sent.labels(server, endpoint)
            self.records_sent.labels(server, endpoint)
        for endpoint in {endpoint for _, endpoint in routes}:
            self.pages_fetched.labels(endpoint)
            self.records_fetched.labels(endpoint)
            self.requests.labels(endpoint, "200")
        # The gauges per (account, endpoint) and per server: read at a scrape.
        registry.register(self)
        if process:
            prometheus_client.ProcessCollector(registry=registry)
            prometheus_client.PlatformCollector(registry=registry)
            prometheus_client.GCCollector(registry=registry)

    @classmethod
    def from_config(cls, config: Config) -> Metrics:
        """Return the metrics of a daemon running *config*."""
        account = config.account
        routes = tuple(
            (server, endpoint)
            for endpoint in account.endpoints
            for server in account.servers_for(endpoint)
        )
        return cls(
            stall_after=stall_after(config), endpoints=account.endpoints, routes=routes
        )

    def __call__(self, event: Event, /) -> None:
        """Count *event*, and tell it to the health rules."""
        now = self.clock()
        self.health.note(event, now)
        self._count_fetching(event, now)
        self._count_sending(event)
        self._count_storing(event)

    def _count_fetching(self, event: Event, now: float) -> None:
        match event:
            case RequestServed():
                self.requests.labels(event.endpoint, "200").inc()
            case PageDelivered():
                self.pages_fetched.labels(event.endpoint).inc()
                self.records_fetched.labels(event.endpoint).inc(event.records)
            case Behind():
                state = self._pair(event.account, event.endpoint)
                state.lag = event.seconds
                # Told right after the cursor is saved.
                state.saved_at = now
            case RateLimited():
                self.requests.labels(event.endpoint, "429").inc()
                self.rate_limited.labels(event.endpoint).inc()
                self._pair(event.account, event.endpoint).pace = event.per_minute
            case ApiFailed() | ChildRefused():
                self.requests.labels(event.endpoint, _status(event.kind)).inc()
                self.errors.labels(event.endpoint, event.kind).inc()
            case AccountAdded():
                self._accounts += 1
            case AccountRemoved():
                self._accounts -= 1
                for pair in [p for p in self._pairs if p[0] == event.account]:
                    del self._pairs[pair]
            case _:
                pass

    def _count_sending(self, event: Event) -> None:
        match event:
            case PageWritten():
                server = event.server.id
                self.pages_sent.labels(server, event.endpoint).inc()
                self.records_sent.labels(server, event.endpoint).inc(event.records)
                self.bytes_sent.labels(server).inc(event.size)
            case ServerConnected():
                self._up[event.server.id] = 1
                if not event.first:
                    self.reconnects.labels(event.server.id).inc()
            case ServerFailed():
                self._up[event.server.id] = 0
                self.server_failures.labels(event.server.id).inc()
            case ServerRecovered():
                self._up[event.server.id] = 1
            case ConnectionReplaced():
                self.replaced.labels(event.server.id).inc()
            case RecordRepaired():
                self.repaired.labels(event.server.id, event.endpoint).inc()
            case DatagramCut():
                self.cut.labels(event.server.id, event.endpoint).inc()
                self.lost_bytes.labels(event.server.id).inc(event.lost)
            case DatagramDropped():
                self.dropped.labels(event.server.id, event.endpoint).inc()
                self.lost_bytes.labels(event.server.id).inc(event.size)
            case _:
                pass

    def _count_storing(self, event: Event) -> None:
        match event:
            case CursorSaveFailed():
                self.save_failures.inc()
            case CursorRestored():
                self.restored.inc()
            case CursorLost():
                self.lost.inc()
            case AccountListFailed():
                self.list_failures.inc()
            case _:
                pass

    def _pair(self, account: AccountRef, endpoint: Endpoint) -> _PairState:
        state = self._pairs.get((account, endpoint))
        if state is None:
            state = self._pairs[account, endpoint] = _PairState()
        return state

    def exposition(self) -> bytes:
        """Every metric, in Prometheus's text format (``CONTENT_TYPE``)."""
        return generate_latest(self.registry)

    def verdict(self) -> Verdict:
        """Whether the daemon is healthy now, and if not, why."""
        return self.health.verdict(self.clock())

    def series(self) -> int:
        """How many (account, endpoint) entries are kept (their gauges' series)."""
        return len(set(self._pairs) | set(self.health.pairs()))

    def collect(self) -> Iterator[Metric]:
        """Yield the gauges read at scrape time (the registry calls this)."""
        now = self.clock()
        labels = ["account", "account_id", "endpoint"]
        lag = GaugeMetricFamily(
            PREFIX + "lag_seconds",
            "How far the saved cursor stood behind now at its last save.",
            labels=labels,
        )
        age = GaugeMetricFamily(
            PREFIX + "cursor_age_seconds",
            "Seconds since the cursor was last saved.",
            labels=labels,
        )
        pace = GaugeMetricFamily(
            PREFIX + "pace_requests_per_minute",
            "The pace Duo's latest 429 taught (shared by an MSP parent's children).",
            labels=labels,
        )

        def of(pair: Pair) -> list[str]:
            account, endpoint = pair
            return [account.name, account.account_id or "", str(endpoint)]

        for pair, state in self._pairs.items():
            if state.lag is not None:
                lag.add_metric(of(pair), state.lag)
            if state.saved_at is not None:
                age.add_metric(of(pair), max(0.0, now - state.saved_at))
            if state.pace is not None:
                pace.add_metric(of(pair), state.pace)
        up = GaugeMetricFamily(
            PREFIX + "server_up",
            "1 while the latest write to a server went through, 0 once one failed.",
            labels=["server"],
        )
        for server, value in self._up.items():
            up.add_metric([server], value)
        accounts = GaugeMetricFamily(
            PREFIX + "accounts", "Accounts being fetched (an MSP parent's children)."
        )
        accounts.add_metric([], self._accounts)
        healthy = GaugeMetricFamily(
            PREFIX + "healthy", "1 while /healthz answers 200, 0 while it answers 503."
        )
        healthy.add_metric([], float(self.verdict().healthy))
        yield from (lag, age, pace, up, accounts, healthy)
