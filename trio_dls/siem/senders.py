"""The sender task of each server: pages in, bytes on the wire, acknowledgements out.

Theory of operation
-------------------
``SiemSender`` is the ``sender`` that ``serve`` runs once per server.  It
reads ``Delivery`` items from the server's channel, one at a time, and sets a
delivery's ``done`` only once every record of its page is written:

* **TCP and TLS.**  A page becomes one *batch*, the bytes of all its records,
  formatted (``trio_dls.siem.formats``) and framed (``trio_dls.siem.framing``).  The
  connection is opened lazily, for the first batch.  A batch counts as written
  once the server's TCP has acknowledged all of it
  (``StreamConnection.wait_acknowledged``).  If the connection cannot be made
  or breaks, the sender waits (``Backoff``: capped, exponential, jittered),
  reconnects and writes the *whole* batch again, for ever: a record may arrive
  twice, none is lost.  A connection the server closed while idle is replaced
  at once, without waiting.
* **UDP.**  Each record is one datagram, cut or dropped by the server's
  ``udp_oversize`` policy when above ``udp_max_size``; each such record is
  told to the observer (``DatagramCut``, ``DatagramDropped``) with its
  endpoint and sizes.  The hostname is resolved when the socket is opened,
  then again only every ``udp_resolve_interval`` seconds or after an error,
  never per record, and in a thread (trio's ``getaddrinfo``).  UDP cannot
  confirm delivery; a datagram counts as written once the kernel took it.  A
  send error other than the datagram's size (e.g. the host answered "port
  unreachable") is retried like a broken stream.  A datagram is taken to be
  too large only when the system refuses it twice (``EMSGSIZE``): the first
  refusal may be an earlier datagram's path-MTU error, reported on the next
  send (``DatagramConnection.send`` tries again), and must not cost an
  innocent record.

A record no format can write as received (a lone surrogate in a name, an
impossible event time: ``trio_dls.siem.formats.repair``) is sent repaired, never
refused: a sender that raised would meet the same page again after the
restart.  Each such record is told once (``RecordRepaired``); a page is
formatted once per delivery, so writing it again after a reconnection tells
nothing new.

Waiting is bounded.  Connecting, by ``connect_timeout``.  Writing, by
``write_timeout``: how long a server may go without acknowledging one byte
more (``StreamConnection.acknowledged_bytes``), not how long the whole batch
may take.  A slow server (a thin link, a SIEM under backpressure) is given as
long as it needs and gets the batch once; a server that acknowledged nothing
for ``write_timeout`` is *stalled*: the connection is dropped and the whole
batch written again on a new one (what it had acknowledged then comes twice;
nothing is lost).  Closing, every time, by ``close_timeout``: a TLS close
writes ``close_notify``, which a server that reads nothing never lets through,
so a close that takes longer is cut short and the socket closed at once.
A server that never reads therefore holds its fetchers (backpressure: the
channels have no buffer, so nothing piles up in memory) but never a shutdown:
the supervisor's grace deadline cancels the sender wherever it waits, and a
cancelled batch is never acknowledged.

The sender writes no log line and keeps no counter: it tells its observer
(``trio_dls.observe``) every connection (``ServerConnected``), every failed
attempt with how many in a row (``ServerFailed``), the recovery
(``ServerRecovered``) and every page written (``PageWritten``, one per page,
never one per record).  The log observer turns these into a warning at the
first failure or a change of reason, debug lines for further attempts and one
line at recovery; ``Counters`` keeps the totals.
"""

from __future__ import annotations

import random
import socket
import time
import typing
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Final

import attrs
import trio

from trio_dls.config import Protocol, Server, TcpSettings, TlsSettings, UdpSettings
from trio_dls.duo.pacing import Backoff
from trio_dls.errors import FatalError
from trio_dls.observe import LogObserver, Observer
from trio_dls.observe.events import (
    ConnectionReplaced,
    DatagramCut,
    DatagramDropped,
    PageWritten,
    RecordRepaired,
    ResolveFailed,
    ServerConnected,
    ServerFailed,
    ServerRecovered,
    ServerRef,
)
from trio_dls.siem.formats import MessageSettings, render_message, render_page
from trio_dls.siem.framing import (
    DatagramOutcome,
    Framing,
    frame_batch,
    frame_datagram,
)
from trio_dls.siem.transports import (
    DatagramConnection,
    DatagramTooLargeError,
    StreamConnection,
    TransportError,
    describe_server,
    open_datagram,
    protocol_opener,
)

if TYPE_CHECKING:
    from collections.abc import Awaitable

    from trio_dls.supervisor import Delivery, Page, SenderContext

CONNECT_TIMEOUT: Final = 30.0
# A slow server acknowledges something every few seconds, however large the
# page; one that acknowledges nothing for a minute is stalled, not slow.
WRITE_TIMEOUT: Final = 60.0
CLOSE_TIMEOUT: Final = 5.0
RECONNECT_FIRST: Final = 1.0
RECONNECT_CAP: Final = 60.0
# A SIEM's DNS name may move (a fail-over); a UDP sender cannot notice, so it
# looks the name up again this often.
UDP_RESOLVE_INTERVAL: Final = 60.0


@attrs.frozen(kw_only=True)
class Timing:
    """How long a sender waits for what (seconds).

    ``write_timeout`` is how long a server may acknowledge nothing while a
    batch is written (see the module docstring); ``close_timeout`` bounds
    every close of a connection.
    """

    connect_timeout: float = CONNECT_TIMEOUT
    write_timeout: float = WRITE_TIMEOUT
    close_timeout: float = CLOSE_TIMEOUT
    reconnect_first: float = RECONNECT_FIRST
    reconnect_cap: float = RECONNECT_CAP
    udp_resolve_interval: float = UDP_RESOLVE_INTERVAL


def server_timing(timing: Timing, server: Server) -> Timing:
    """*timing* with *server*'s ``connect_timeout`` and ``write_timeout``, if set.

    A config file may set them per server (extensions); ``Timing`` holds the
    defaults, and the faster values tests pass.
    """
    return attrs.evolve(
        timing,
        connect_timeout=server.connect_timeout or timing.connect_timeout,
        write_timeout=server.write_timeout or timing.write_timeout,
    )


def _wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


#: Told of each record sent repaired: its page, the record and the repairs.
RepairReport = Callable[["Page", Mapping[str, object], tuple[str, ...]], None]


def stream_batch(
    page: Page,
    settings: MessageSettings,
    framing: Framing,
    *,
    fallback_time_ms: int,
    report: RepairReport | None = None,
) -> bytes:
    """Return every record of *page*, formatted and framed, as one batch.

    Each record that had to be repaired is passed to *report*, if given.  The
    page is formatted and framed as a whole (``render_page``, ``frame_batch``):
    no call per record beyond its encoding.
    """
    records = page.records
    messages, repaired = render_page(
        records, page.endpoint, settings, fallback_time_ms=fallback_time_ms
    )
    if report is not None:
        for index, repairs in repaired:
            report(page, records[index], repairs)
    return frame_batch(messages, framing)


class _Health:
    """A server's connections and failures in a row, told as they happen."""

    def __init__(self, server: ServerRef, observer: Observer) -> None:
        self.server = server
        self.observer = observer
        self.failures = 0
        self.ever_connected = False

    def connected(self, address: str = "") -> None:
        self.observer(
            ServerConnected(self.server, first=not self.ever_connected, address=address)
        )
        self.ever_connected = True

    def failed(self, reason: str, delay: float, page: Page) -> None:
        self.failures += 1
        self.observer(
            ServerFailed(
                self.server,
                reason=reason,
                retry_in=delay,
                failures=self.failures,
                endpoint=page.endpoint,
                records=len(page.records),
            )
        )

    def delivered(self) -> None:
        if self.failures:
            self.observer(ServerRecovered(self.server, self.failures))
        self.failures = 0

    def repaired(
        self, page: Page, record: Mapping[str, object], repairs: tuple[str, ...]
    ) -> None:
        self.observer(RecordRepaired(self.server, page.endpoint, record, repairs))


@attrs.frozen
class SiemSender:
    """The sender task ``serve`` runs for each server (``sender=SiemSender()``).

    ``hostname`` is how this host's name is found, once per sender, for the
    syslog header and CEF prefix; ``timing``, ``rng`` and ``clock_ms`` (the
    wall clock, for records without an event time) are there for tests.
    ``observer`` is told what every server's sender does (see the module
    docstring).
    """

    hostname: Callable[[], str] = socket.gethostname
    timing: Timing = Timing()
    rng: random.Random = attrs.field(factory=random.Random)
    clock_ms: Callable[[], int] = _wall_clock_ms
    observer: Observer = attrs.Factory(LogObserver)

    def _settings(self, context: SenderContext) -> MessageSettings:
        name = self.hostname()
        server = context.server
        try:
            return MessageSettings(
                hostname=name,
                log_format=context.log_format,
                json_style=context.json_style,
                syslog_header=server.syslog_header,
                facility=server.syslog_facility,
            )
        except ValueError as exc:
            raise FatalError(
                f"{describe_server(server)}: this host's name cannot be sent: {exc}"
            ) from None

    async def __call__(self, context: SenderContext) -> None:
        """Ship every page of *context*'s channel until the channel ends."""
        settings = self._settings(context)
        backoff = Backoff(
            rng=self.rng,
            first=self.timing.reconnect_first,
            cap=self.timing.reconnect_cap,
        )
        server = context.server
        make = SENDER_FACTORIES[server.protocol]
        await make(self, server, settings, backoff).run(context.deliveries)


class ServerSender(typing.Protocol):
    """One server's sender, as a factory in ``SENDER_FACTORIES`` makes it."""

    async def run(self, deliveries: trio.MemoryReceiveChannel[Delivery]) -> None:
        """Ship every page of *deliveries* until the channel ends."""


SenderFactory = Callable[["SiemSender", Server, MessageSettings, Backoff], ServerSender]


def _stream_sender(
    owner: SiemSender, server: Server, settings: MessageSettings, backoff: Backoff
) -> ServerSender:
    match server.transport:
        case TcpSettings(framing=framing) | TlsSettings(framing=framing):
            opener = protocol_opener(server)
            return _StreamSender(
                owner, server, settings, backoff, opener, framing=framing
            )
        case _:
            raise TypeError(f"{describe_server(server)} is not a stream server")


def _datagram_sender(
    owner: SiemSender, server: Server, settings: MessageSettings, backoff: Backoff
) -> ServerSender:
    match server.transport:
        case UdpSettings() as datagrams:
            return _DatagramSender(owner, server, settings, backoff, datagrams)
        case _:
            raise TypeError(f"{describe_server(server)} is not a UDP server")


class _StreamSender:
    """One TCP or TLS server's sender."""

    def __init__(
        self,
        owner: SiemSender,
        server: Server,
        settings: MessageSettings,
        backoff: Backoff,
        opener: Callable[[trio.Nursery], Awaitable[StreamConnection]],
        *,
        framing: Framing,
    ) -> None:
        self._owner = owner
        self._timing = server_timing(owner.timing, server)
        self._server = server
        self._framing = framing
        self._settings = settings
        self._backoff = backoff
        self._open = opener
        self._observer = owner.observer
        self._ref = ServerRef.of(server)
        self._health = _Health(self._ref, owner.observer)
        self._connection: StreamConnection | None = None

    async def run(self, deliveries: trio.MemoryReceiveChannel[Delivery]) -> None:
        async with deliveries, trio.open_nursery() as nursery:
            try:
                async for delivery in deliveries:
                    page = delivery.page
                    batch = stream_batch(
                        page,
                        self._settings,
                        self._framing,
                        fallback_time_ms=self._owner.clock_ms(),
                        report=self._health.repaired,
                    )
                    if batch:
                        await self._write(batch, page, nursery)
                    self._observer(
                        PageWritten(
                            self._ref,
                            page.account,
                            page.endpoint,
                            records=len(page.records),
                            size=len(batch),
                        )
                    )
                    delivery.done.set()
            finally:
                await self._discard()

    async def _discard(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            # A TLS close can wait for ever (see the module docstring); a
            # cancelled aclose closes at once, which is what
            # trio.aclose_forcefully is, so the bound is the forceful close.
            with trio.move_on_after(self._timing.close_timeout):
                await connection.aclose()

    async def _connect(self, nursery: trio.Nursery) -> StreamConnection:
        if self._connection is not None and not self._connection.is_open:
            # Receivers close idle connections (and restart); that is no
            # failure: replace it at once.
            self._observer(ConnectionReplaced(self._ref))
            await self._discard()
        if self._connection is None:
            try:
                with trio.fail_after(self._timing.connect_timeout):
                    self._connection = await self._open(nursery)
            except trio.TooSlowError:
                raise TransportError(
                    f"no connection within {self._timing.connect_timeout:g} s"
                ) from None
            self._health.connected()
        return self._connection

    async def _write(self, batch: bytes, page: Page, nursery: trio.Nursery) -> None:
        while True:
            try:
                connection = await self._connect(nursery)
                await self._write_on(connection, batch, nursery)
            except TransportError as exc:
                await self._discard()
                delay = self._backoff.failed()
                self._health.failed(str(exc), delay, page)
                await trio.sleep(delay)
            else:
                self._backoff.succeeded()
                self._health.delivered()
                return

    async def _write_on(
        self, connection: StreamConnection, batch: bytes, nursery: trio.Nursery
    ) -> None:
        """Write *batch* on *connection*; return once all of it is acknowledged.

        Raise ``TransportError`` if the connection breaks, or if the server
        acknowledged nothing for ``write_timeout`` (it is stalled).
        """
        timeout = self._timing.write_timeout
        with trio.CancelScope(deadline=trio.current_time() + timeout) as stall:
            # The watch runs in the sender's nursery, not one of its own, so
            # that this write's TransportError stays a plain exception.
            watch = trio.CancelScope()
            nursery.start_soon(self._postpone_on_progress, connection, stall, watch)
            try:
                await connection.send_all(batch)
                await connection.wait_acknowledged()
            finally:
                watch.cancel()
        if stall.cancelled_caught:
            raise TransportError(
                f"nothing acknowledged for {timeout:g} s, {len(batch)} bytes being"
                " written: the server is not reading"
            )

    async def _postpone_on_progress(
        self,
        connection: StreamConnection,
        stall: trio.CancelScope,
        watch: trio.CancelScope,
    ) -> None:
        """Move *stall*'s deadline on whenever the server acknowledged more.

        Checks a tenth of ``write_timeout`` apart, so a server is taken for
        stalled at most a tenth late, never early.  Ends when *watch* is
        cancelled.
        """
        timeout = self._timing.write_timeout
        with watch:
            try:
                acknowledged = connection.acknowledged_bytes()
                while True:
                    await trio.sleep(timeout / 10)
                    now = connection.acknowledged_bytes()
                    if now > acknowledged:
                        acknowledged = now
                        stall.deadline = trio.current_time() + timeout
            except TransportError:
                # The write meets the same broken socket and says so.
                return


class _DatagramSender:
    """One UDP server's sender."""

    def __init__(
        self,
        owner: SiemSender,
        server: Server,
        settings: MessageSettings,
        backoff: Backoff,
        datagrams: UdpSettings,
    ) -> None:
        self._owner = owner
        self._timing = server_timing(owner.timing, server)
        self._server = server
        self._datagrams = datagrams
        self._settings = settings
        self._backoff = backoff
        self._observer = owner.observer
        self._ref = ServerRef.of(server)
        self._health = _Health(self._ref, owner.observer)
        self._connection: DatagramConnection | None = None
        self._resolve_at = float("-inf")

    async def run(self, deliveries: trio.MemoryReceiveChannel[Delivery]) -> None:
        async with deliveries:
            try:
                async for delivery in deliveries:
                    await self._send_page(delivery.page)
                    delivery.done.set()
            finally:
                if self._connection is not None:
                    self._connection.close()

    async def _send_page(self, page: Page) -> None:
        fallback_time_ms = self._owner.clock_ms()
        health, observer, endpoint = self._health, self._observer, page.endpoint
        limit = self._datagrams.udp_max_size
        # Counted here and told once for the page: the only events of one
        # record are for a record cut or dropped.
        whole = size = 0
        for record in page.records:
            rendered = render_message(
                record, endpoint, self._settings, fallback_time_ms=fallback_time_ms
            )
            if rendered.repairs:
                health.repaired(page, record, rendered.repairs)
            message = rendered.data
            datagram = frame_datagram(
                message, max_size=limit, policy=self._datagrams.udp_oversize
            )
            if datagram.payload is not None:
                try:
                    await self._send(datagram.payload, page)
                except DatagramTooLargeError as exc:
                    observer(
                        DatagramDropped(
                            self._ref, endpoint, len(message), limit, str(exc)
                        )
                    )
                    continue
                size += len(datagram.payload)
            match datagram.outcome:
                case DatagramOutcome.WHOLE:
                    whole += 1
                case DatagramOutcome.TRUNCATED:
                    observer(
                        DatagramCut(
                            self._ref,
                            endpoint,
                            datagram.message_size,
                            limit,
                            datagram.lost_bytes,
                        )
                    )
                case DatagramOutcome.DROPPED:
                    observer(
                        DatagramDropped(
                            self._ref, endpoint, datagram.message_size, limit, ""
                        )
                    )
        observer(
            PageWritten(
                self._ref,
                page.account,
                endpoint,
                records=len(page.records),
                size=size,
                datagrams=whole,
            )
        )

    async def _reopen(self) -> DatagramConnection:
        self._resolve_at = trio.current_time() + self._timing.udp_resolve_interval
        try:
            with trio.fail_after(self._timing.connect_timeout):
                connection = await open_datagram(self._server)
        except (TransportError, trio.TooSlowError) as exc:
            current = self._connection
            if current is None:
                if isinstance(exc, trio.TooSlowError):
                    raise TransportError(
                        "the hostname did not resolve within"
                        f" {self._timing.connect_timeout:g} s"
                    ) from None
                raise
            # A DNS hiccup need not stop datagrams to an address that worked.
            self._observer(ResolveFailed(self._ref, str(exc), current.address))
            return current
        if self._connection is not None:
            self._connection.close()
        self._connection = connection
        self._health.connected(connection.address)
        return connection

    async def _send(self, payload: bytes, page: Page) -> None:
        while True:
            try:
                connection = self._connection
                if connection is None or trio.current_time() >= self._resolve_at:
                    connection = await self._reopen()
                await connection.send(payload)
            except DatagramTooLargeError:
                raise
            except TransportError as exc:
                if self._connection is not None:
                    self._connection.close()
                    self._connection = None
                delay = self._backoff.failed()
                self._health.failed(str(exc), delay, page)
                await trio.sleep(delay)
            else:
                if self._health.failures:
                    self._backoff.succeeded()
                    self._health.delivered()
                return


#: How each protocol's servers are served: a new protocol (RELP, FILE) is a
#: new row, and a test checks that every protocol the config accepts has one.
SENDER_FACTORIES: Final[Mapping[Protocol, SenderFactory]] = {
    Protocol.TCP: _stream_sender,
    Protocol.TCPSSL: _stream_sender,
    Protocol.UDP: _datagram_sender,
}
