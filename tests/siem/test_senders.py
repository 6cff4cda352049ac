"""Senders: pages through the real ``serve`` to real receivers, acknowledged.

Rules for these tests: every receiver is on 127.0.0.1 with a port the kernel
picks; the sender runs inside the real ``serve``, fed by a small fetcher that
delivers fixed pages, so acknowledgements and the closing of channels are the
real ones.  Tests with socket I/O run on the real clock with retries of a few
milliseconds and every wait bounded by ``fail_after``; tests where only timers
matter (a stalled receiver, the UDP re-resolution interval) run on the virtual
clock.  Nothing sleeps in real time.
"""

from __future__ import annotations

import functools
import json
import logging
import socket
import ssl
from typing import TYPE_CHECKING, Any, Literal

import pytest
import trio
import trio.testing

from tests.siem.rsyslog_fixtures import (
    ACCOUNT,
    LogWaiter,
    PageFeeder,
    StreamReceiver,
    deliver_all,
    make_config,
    make_pki,
    make_server,
    one_account,
    pages_of,
    sender,
    txids,
)
from tests.siem.test_transports import refusing_connection
from trio_dls.config import DatagramSize, Protocol, Server
from trio_dls.endpoints import Endpoint
from trio_dls.errors import FatalError
from trio_dls.observe import Counters, Fanout, LogObserver
from trio_dls.siem import senders, transports
from trio_dls.siem.formats import (
    JsonStyle,
    LogFormat,
    MessageSettings,
    format_message,
)
from trio_dls.siem.framing import (
    DatagramCounters,
    Framing,
    OversizePolicy,
    frame_datagram,
)
from trio_dls.siem.senders import SiemSender, Timing, stream_batch
from trio_dls.siem.transports import MIN_SETTLE, DatagramConnection, StreamConnection
from trio_dls.supervisor import FetcherContext, Page, serve

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable
    from pathlib import Path


LIMIT = 20.0  # seconds: the bound on any wait for the network
SETTINGS = MessageSettings(hostname="dls-host")


def expected_stream(
    pages: list[Page],
    framing: Framing = Framing.NEWLINE,
    **settings: Any,
) -> bytes:
    """The bytes a receiver must get for *pages*, computed by the pure functions."""
    message_settings = MessageSettings(hostname="dls-host", **settings)
    return b"".join(
        stream_batch(page, message_settings, framing, fallback_time_ms=0)
        for page in pages
    )


def counted_sender(**options: Any) -> tuple[SiemSender, Counters]:
    """A test sender that logs as the daemon's does, and the totals it keeps."""
    counters = Counters()
    return sender(observer=Fanout(LogObserver(), counters), **options), counters


async def start_tcp_receiver(nursery: trio.Nursery) -> tuple[StreamReceiver, int]:
    """Serve a TCP receiver; return it and its port."""
    receiver = StreamReceiver()
    listeners = await nursery.start(
        functools.partial(trio.serve_tcp, host="127.0.0.1"), receiver.handle, 0
    )
    return receiver, listeners[0].socket.getsockname()[1]


async def bound_not_listening() -> trio.socket.SocketType:
    """A TCP socket holding a port that refuses connections until it listens."""
    sock = trio.socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    await sock.bind(("127.0.0.1", 0))
    return sock


# --------------------------------------------------------------------------
# Batches: pure functions
# --------------------------------------------------------------------------


def test_a_batch_is_every_record_formatted_and_framed() -> None:
    """A page's batch is its records' messages, each framed, in order."""
    page = pages_of(1, 3)[0]
    messages = [
        format_message(r, Endpoint.AUTH, SETTINGS, fallback_time_ms=0)
        for r in page.records
    ]

    newline = stream_batch(page, SETTINGS, Framing.NEWLINE, fallback_time_ms=0)
    counted = stream_batch(page, SETTINGS, Framing.OCTET_COUNTING, fallback_time_ms=0)

    assert b"".join(m + b"\n" for m in messages) == newline
    assert b"".join(b"%d %b" % (len(m), m) for m in messages) == counted


# --------------------------------------------------------------------------
# TCP and TLS
# --------------------------------------------------------------------------


@pytest.fixture(params=["queried", "written"])
def send_queue(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Acknowledged as on Linux (the send queue emptied), then as elsewhere.

    Where the send queue cannot be queried (no fcntl, not Linux), a page
    counts as delivered once fully written (``trio_dls.siem.transports``).
    """
    if request.param == "written":
        monkeypatch.setattr(transports, "_CAN_QUERY_QUEUE", False)
    return str(request.param)


@pytest.mark.parametrize("framing", list(Framing))
@pytest.mark.usefixtures("send_queue")
async def test_tcp_pages_arrive_whole_and_in_order(
    nursery: trio.Nursery, framing: Framing
) -> None:
    """Every record of every page reaches a TCP receiver, in order, intact."""
    receiver, port = await start_tcp_receiver(nursery)
    pages = pages_of(5, 20)

    with trio.fail_after(LIMIT):
        feeder = await deliver_all(make_server(port, framing=framing), pages)
        await receiver.wait_for(lambda r: len(r.data) >= len(expected_stream(pages)))

    assert feeder.delivered == 5
    assert expected_stream(pages, framing) == receiver.data
    assert len(receiver.connections) == 1


async def test_tcp_pages_arrive_as_compact_json_with_json_style_compact(
    nursery: trio.Nursery,
) -> None:
    """``json_style: compact`` reaches the receiver: fewer bytes, the same records."""
    receiver, port = await start_tcp_receiver(nursery)
    pages = pages_of(3, 20)
    compact = expected_stream(pages, json_style=JsonStyle.COMPACT)
    with trio.fail_after(LIMIT):
        await deliver_all(make_server(port), pages, json_style=JsonStyle.COMPACT)
        await receiver.wait_for(lambda r: len(r.data) >= len(compact))

    assert compact == receiver.data
    assert len(compact) < len(expected_stream(pages))
    lines = receiver.data.splitlines()
    assert [json.loads(line) for line in lines] == [
        json.loads(line) for line in expected_stream(pages).splitlines()
    ]
    assert b", " not in lines[0]


@pytest.mark.usefixtures("send_queue")
async def test_tls_pages_arrive_over_mutual_tls_as_cef(
    tmp_path: Path, nursery: trio.Nursery
) -> None:
    """Over mutual TLS with octet counting, CEF records arrive intact."""
    pki = make_pki(tmp_path, ["siem.example"])
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    pki.server_cert.configure_cert(context)
    context.verify_mode = ssl.CERT_REQUIRED
    pki.ca.configure_trust(context)
    receiver = StreamReceiver()
    listeners = await nursery.start(
        functools.partial(trio.serve_ssl_over_tcp, host="127.0.0.1"),
        receiver.handle,
        0,
        context,
    )
    server = make_server(
        listeners[0].transport_listener.socket.getsockname()[1],
        Protocol.TCPSSL,
        cert_filepath=str(pki.ca_file),
        tls_server_name="siem.example",
        client_cert_filepath=str(pki.client_cert_file),
        client_key_filepath=str(pki.client_key_file),
        framing=Framing.OCTET_COUNTING,
    )
    pages = pages_of(3, 10)
    expected = expected_stream(pages, Framing.OCTET_COUNTING, log_format=LogFormat.CEF)

    with trio.fail_after(LIMIT):
        await deliver_all(server, pages, log_format=LogFormat.CEF)
        await receiver.wait_for(lambda r: len(r.data) >= len(expected))

    assert expected == receiver.data


async def test_server_down_at_start_is_retried_and_logged_once() -> None:
    """A server down at start-up is retried until up; one warning, one recovery."""
    held = await bound_not_listening()
    port = held.getsockname()[1]
    pages = pages_of(2, 5)
    receiver = StreamReceiver()
    with (
        LogWaiter("trio_dls.senders", "cannot deliver") as warnings,
        LogWaiter("trio_dls.senders", "attempt") as retries,
        LogWaiter("trio_dls.senders", "delivering again") as recoveries,
        trio.fail_after(LIMIT),
        held,
    ):
        async with trio.open_nursery() as inner:
            inner.start_soon(deliver_all, make_server(port), pages)
            await retries.wait_for(3)
            held.listen()
            inner.start_soon(
                trio.serve_listeners, receiver.handle, [trio.SocketListener(held)]
            )
            await receiver.wait_for(
                lambda r: len(r.data) >= len(expected_stream(pages))
            )
            inner.cancel_scope.cancel()

    assert expected_stream(pages) == receiver.data
    assert (warnings.count, recoveries.count) == (1, 1)


@pytest.mark.usefixtures("send_queue")
async def test_receiver_that_goes_away_and_comes_back_loses_no_record() -> None:
    """A receiver leaving mid-stream and returning later gets every record."""
    held = await bound_not_listening()
    port = held.getsockname()[1]
    held.listen()
    pages = pages_of(10, 50)
    first = StreamReceiver()
    second = StreamReceiver()
    gone = trio.Event()

    async def leave_mid_stream(stream: trio.SocketStream) -> None:
        # Keep everything this connection carries (what the sender's TCP saw
        # acknowledged was read), but say goodbye after a few pages' worth.
        received = bytearray()
        first.connections.append(received)
        async with stream:
            while chunk := await stream.receive_some():
                received += chunk
                if len(received) > 3 * len(expected_stream(pages[:1])):
                    break
            await stream.send_eof()
            while chunk := await stream.receive_some():
                received += chunk
        gone.set()

    with (
        LogWaiter("trio_dls.senders", "attempt") as retries,
        trio.fail_after(LIMIT),
    ):
        async with trio.open_nursery() as inner:
            inner.start_soon(deliver_all, make_server(port), pages)
            listener = trio.SocketListener(held)
            stream = await listener.accept()
            await leave_mid_stream(stream)
            await listener.aclose()
            # Away for a while: the sender meets refused connections.
            await retries.wait_for(3)
            with await bound_again(port) as back:
                inner.start_soon(
                    trio.serve_listeners, second.handle, [trio.SocketListener(back)]
                )
                await second.wait_for(lambda r: "tx-000499" in txids(r.data))
                inner.cancel_scope.cancel()

    expected = [r["txid"] for page in pages for r in page.records]
    got = txids(first.data) + txids(second.data)
    assert set(expected) == set(got)
    # Only the page in flight when the receiver left may come twice.
    assert len(got) - len(expected) <= 50
    assert gone.is_set()


async def bound_again(port: int) -> trio.socket.SocketType:
    """A listening socket on *port* again."""
    sock = trio.socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    await sock.bind(("127.0.0.1", port))
    sock.listen()
    return sock


async def test_connection_closed_while_idle_is_replaced_without_a_warning(
    nursery: trio.Nursery,
) -> None:
    """A receiver closing an idle connection costs a reconnection, not an alarm."""
    receiver = StreamReceiver()
    pages = pages_of(2, 5)
    one_page = len(expected_stream(pages[:1]))

    async def close_after_one_page(stream: trio.SocketStream) -> None:
        received = bytearray()
        receiver.connections.append(received)
        async with stream:
            while len(received) < one_page and (chunk := await stream.receive_some()):
                received += chunk
        receiver.changed.set()

    listeners = await nursery.start(
        functools.partial(trio.serve_tcp, host="127.0.0.1"),
        close_after_one_page,
        0,
    )
    port = listeners[0].socket.getsockname()[1]

    async def wait_for_close(index: int) -> None:
        if index == 1:
            await trio.testing.wait_all_tasks_blocked()

    feeder = PageFeeder(pages, between=wait_for_close)
    with (
        LogWaiter("trio_dls.senders", "cannot deliver") as warnings,
        trio.fail_after(LIMIT),
    ):
        await serve(
            make_config(make_server(port)),
            shutdown_trigger=feeder.finished.wait,
            fetcher=feeder,
            sender=sender(),
            discover_accounts=one_account,
        )
        await receiver.wait_for(lambda r: len(r.connections) == 2)

    assert warnings.count == 0
    assert expected_stream(pages) == receiver.data


async def test_a_receiver_that_stops_reading_stops_the_fetcher(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A receiver that never reads blocks the fetcher; shutdown still ends."""
    del autojump_clock
    stalled: list[trio.SocketStream] = []

    async def never_read(stream: trio.SocketStream) -> None:
        stalled.append(stream)
        await trio.sleep_forever()

    offered = 0
    delivered = 0

    async def endless(context: FetcherContext) -> None:
        nonlocal offered, delivered
        page = pages_of(1, 100, padding=1000)[0]
        while True:
            offered += 1
            await context.outputs.deliver(page)
            delivered += 1

    stop = trio.Event()
    timing = Timing(connect_timeout=60, write_timeout=3600)
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(
            functools.partial(trio.serve_tcp, host="127.0.0.1"), never_read, 0
        )
        config = make_config(make_server(listeners[0].socket.getsockname()[1]))
        with trio.fail_after(1000):
            async with trio.open_nursery() as tree:
                tree.start_soon(
                    functools.partial(
                        serve,
                        config,
                        shutdown_trigger=stop.wait,
                        fetcher=endless,
                        sender=sender(timing=timing),
                        discover_accounts=one_account,
                    )
                )
                await trio.sleep(300)
                then = delivered
                await trio.sleep(300)
                assert (then, then + 1) == (delivered, offered)
                stop.set()
        nursery.cancel_scope.cancel()
    # The kernel's buffers hold some pages; nothing else does.
    assert delivered * 100 * 1100 < 64 << 20
    for stream in stalled:
        await trio.aclose_forcefully(stream)


# --------------------------------------------------------------------------
# Slow receivers, bounded closes, delayed EMSGSIZE (issue 8: 5, 13, 9)
# --------------------------------------------------------------------------
#
# A slow receiver is a real loopback socket with a small receive buffer whose
# reader moves the virtual clock on by STEP after each read: virtual time then
# measures how much it read, however long the kernel takes in real time.  The
# clock also jumps by itself, but only after IDLE real seconds with nothing to
# do (a backoff, a poll), far longer than loopback needs to deliver anything.

STEP = 0.05  # virtual seconds per read of the slow receiver (about 4 KB)
IDLE = 0.1  # real seconds of idleness before the virtual clock jumps
SLOW = Timing(
    connect_timeout=5.0,
    write_timeout=5.0,
    close_timeout=1.0,
    reconnect_first=0.01,
    reconnect_cap=0.05,
)


async def slow_listener() -> trio.socket.SocketType:
    """A listening socket whose connections have a 4 KB receive buffer."""
    listener = trio.socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    await listener.bind(("127.0.0.1", 0))
    listener.listen()
    return listener


# For receivers that read nothing: a stall is noticed, and a close cut short,
# long after anything loopback takes.
STUCK = Timing(
    write_timeout=10.0, close_timeout=5.0, reconnect_first=0.01, reconnect_cap=0.05
)


def two_megabytes() -> list[Page]:
    """One page of about 2 MB."""
    return pages_of(1, 2000, padding=700)


async def test_a_slow_receiver_gets_a_large_page_once(
    mock_clock: trio.testing.MockClock,
) -> None:
    """A receiver too slow to take a page within write_timeout gets it, once."""
    mock_clock.autojump_threshold = IDLE
    pages = two_megabytes()
    expected = expected_stream(pages)
    received = bytearray()
    with trio.fail_after(600):
        async with trio.open_nursery() as nursery:
            with await slow_listener() as listener:
                nursery.start_soon(
                    deliver_all,
                    make_server(listener.getsockname()[1]),
                    pages,
                    sender(timing=SLOW),
                )
                peer, _ = await listener.accept()
            started = trio.current_time()
            with peer:
                while chunk := await peer.recv(1 << 16):
                    received += chunk
                    mock_clock.jump(STEP)
            took = trio.current_time() - started
            # The sender closes once the page is acknowledged; a sender that
            # gave up earlier would be retrying still.
            nursery.cancel_scope.cancel()

    assert expected == bytes(received)
    assert took > 3 * SLOW.write_timeout


async def test_a_receiver_that_stops_mid_page_is_left_after_write_timeout(
    mock_clock: trio.testing.MockClock,
) -> None:
    """Stalled means write_timeout since the last progress; the page goes again."""
    mock_clock.autojump_threshold = IDLE
    pages = two_megabytes()
    expected = expected_stream(pages)
    first = bytearray()
    second = bytearray()
    with trio.fail_after(600):
        async with trio.open_nursery() as nursery:
            with await slow_listener() as listener:
                nursery.start_soon(
                    deliver_all,
                    make_server(listener.getsockname()[1]),
                    pages,
                    sender(timing=SLOW),
                )
                peer, _ = await listener.accept()
                with peer:
                    # Twice write_timeout of reading, then nothing: the clock
                    # is not moved on after the last read.
                    for _ in range(round(2 * SLOW.write_timeout / STEP)):
                        mock_clock.jump(STEP)
                        first += await peer.recv(1 << 16)
                    stopped = trio.current_time()
                    again, _ = await listener.accept()
                    left_after = trio.current_time() - stopped
            with again:
                while chunk := await again.recv(1 << 16):
                    second += chunk
            nursery.cancel_scope.cancel()

    # Late by at most a check (a tenth), and by what the receiver's delayed
    # acknowledgement of the last bytes costs in jumps of the clock.
    timeout = SLOW.write_timeout
    assert timeout <= left_after <= 1.5 * timeout
    assert 0 < len(first) < len(expected)
    assert expected == bytes(second)


class GoodbyeStream(trio.abc.Stream):
    """A TCP stream whose close writes a goodbye first, as TLS writes close_notify.

    ``closes`` holds when each close began and ended.
    """

    def __init__(
        self, tcp: trio.SocketStream, closes: list[tuple[float, float]]
    ) -> None:
        """Wrap *tcp*; note each close in *closes*."""
        self._tcp = tcp
        self._closes = closes

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        """Send *data*."""
        await self._tcp.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        """Wait until sending might not block."""
        await self._tcp.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        """Receive what the peer sent."""
        return await self._tcp.receive_some(max_bytes)

    async def aclose(self) -> None:
        """Write the goodbye, then close (at once if cancelled)."""
        began = trio.current_time()
        try:
            await self._tcp.send_all(b"goodbye\n")
        finally:
            self._closes.append((began, trio.current_time()))
            await trio.aclose_forcefully(self._tcp)


class FirstNeverRead:
    """A handler that never reads its first connection and keeps what others send.

    The first connection is left on the virtual clock's autojump; once data
    flows, the clock jumps only after IDLE real seconds of idleness, so that
    a kernel's delayed acknowledgement is not taken for a stall.
    """

    def __init__(self, clock: trio.testing.MockClock) -> None:
        """Start with no connection; *clock* jumps at once until the second."""
        self.came: list[float] = []
        self.receiver = StreamReceiver()
        self._clock = clock
        clock.autojump_threshold = 0

    async def handle(self, stream: trio.abc.Stream) -> None:
        """Note when *stream* came; read it unless it is the first."""
        self.came.append(trio.current_time())
        if len(self.came) > 1:
            self._clock.autojump_threshold = IDLE
            await self.receiver.handle(stream)
            return
        async with stream:
            if isinstance(stream, trio.SSLStream):
                await stream.do_handshake()
            await trio.sleep_forever()


async def test_a_close_that_cannot_finish_is_cut_short_after_close_timeout(
    mock_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A close stuck behind a server that reads nothing ends after close_timeout."""
    closes: list[tuple[float, float]] = []

    def goodbye_opener(
        server: Server,
    ) -> Callable[[trio.Nursery], Awaitable[StreamConnection]]:
        async def opener(nursery: trio.Nursery) -> StreamConnection:
            tcp = await trio.open_tcp_stream(server.hostname, server.port)
            connection = StreamConnection(GoodbyeStream(tcp, closes), tcp.socket)
            await nursery.start(connection.watch)
            return connection

        return opener

    monkeypatch.setattr(senders, "protocol_opener", goodbye_opener)
    pages = pages_of(1, 1000, padding=700)
    # The second connection reads all, and the goodbye of the last close.
    expected = expected_stream(pages) + b"goodbye\n"
    handler = FirstNeverRead(mock_clock)
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(
            functools.partial(trio.serve_tcp, host="127.0.0.1"), handler.handle, 0
        )
        server = make_server(listeners[0].socket.getsockname()[1])
        with trio.fail_after(100):
            await deliver_all(server, pages, sender(timing=STUCK))
            await handler.receiver.wait_for(lambda r: len(r.data) >= len(expected))
        nursery.cancel_scope.cancel()

    [first, second] = handler.came
    [(began, ended), _] = closes
    assert STUCK.close_timeout <= ended - began < STUCK.close_timeout + 0.01
    assert STUCK.write_timeout <= began - first
    assert ended <= second <= ended + 2 * STUCK.reconnect_cap
    assert expected == handler.receiver.data


async def test_tls_receiver_that_never_reads_is_left_and_the_page_written_again(
    tmp_path: Path, mock_clock: trio.testing.MockClock
) -> None:
    """A TLS receiver that never reads is left in bounded time; all goes again."""
    pki = make_pki(tmp_path, ["siem.example"])
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    pki.server_cert.configure_cert(context)
    pages = pages_of(1, 1000, padding=700)
    expected = expected_stream(pages)
    handler = FirstNeverRead(mock_clock)
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(
            functools.partial(trio.serve_ssl_over_tcp, host="127.0.0.1"),
            handler.handle,
            0,
            context,
        )
        server = make_server(
            listeners[0].transport_listener.socket.getsockname()[1],
            Protocol.TCPSSL,
            cert_filepath=str(pki.ca_file),
            tls_server_name="siem.example",
        )
        with trio.fail_after(100):
            await deliver_all(server, pages, sender(timing=STUCK))
            await handler.receiver.wait_for(lambda r: len(r.data) >= len(expected))
        nursery.cancel_scope.cancel()

    [first, second] = handler.came
    most = 2 * STUCK.write_timeout + STUCK.close_timeout + MIN_SETTLE
    assert STUCK.write_timeout <= second - first <= most
    assert expected == handler.receiver.data


@pytest.mark.parametrize(
    ("refusals", "arrive"),
    [
        ({1}, ["tx-000000", "tx-000001", "tx-000002"]),
        ({1, 2}, ["tx-000000", "tx-000002"]),
    ],
    ids=["delayed", "its-own"],
)
async def test_udp_emsgsize_drops_only_a_record_refused_twice(
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    refusals: set[int],
    arrive: list[str],
) -> None:
    """A delayed EMSGSIZE costs a retry; only a record refused twice is dropped."""
    sock, port = await udp_receiver()

    async def open_refusing(server: Server) -> DatagramConnection:
        connection, _ = await refusing_connection(server.port, refusals)
        return connection

    monkeypatch.setattr(senders, "open_datagram", open_refusing)
    siem, counters = counted_sender()
    pages = pages_of(1, 3)
    with sock, trio.fail_after(LIMIT):
        await deliver_all(udp_server(port), pages, siem)
        got = await receive_datagrams(sock, len(arrive))

    dropped = 3 - len(arrive)
    assert arrive == txids(got)
    assert (len(arrive), dropped) == (
        counters.datagrams["siem"].whole,
        counters.datagrams["siem"].dropped,
    )
    said = [
        r.getMessage()
        for r in caplog.records
        if "refused by the system" in r.getMessage()
    ]
    assert len(said) == dropped
    assert all("though within udp_max_size" in line for line in said)


# --------------------------------------------------------------------------
# The sender's set-up
# --------------------------------------------------------------------------


async def test_hostname_is_looked_up_once_per_sender(nursery: trio.Nursery) -> None:
    """The host's name is asked once when the sender starts, not per page."""
    receiver, port = await start_tcp_receiver(nursery)
    calls = []

    def hostname() -> str:
        calls.append(1)
        return "dls-host"

    with trio.fail_after(LIMIT):
        await deliver_all(make_server(port), pages_of(3, 2), sender(hostname=hostname))
    assert len(calls) == 1
    del receiver


async def test_a_hostname_unfit_for_syslog_is_fatal() -> None:
    """A host name with a space stops the program with a message, at once."""
    with pytest.RaisesGroup(
        pytest.RaisesExc(FatalError, match="host.s name"), flatten_subgroups=True
    ):
        await deliver_all(
            make_server(9), pages_of(1, 1), sender(hostname=lambda: "my host")
        )


# --------------------------------------------------------------------------
# UDP
# --------------------------------------------------------------------------


async def udp_receiver() -> tuple[trio.socket.SocketType, int]:
    """A UDP socket on loopback and its port."""
    sock = trio.socket.socket(type=socket.SOCK_DGRAM)
    await sock.bind(("127.0.0.1", 0))
    return sock, sock.getsockname()[1]


async def receive_datagrams(sock: trio.socket.SocketType, count: int) -> list[bytes]:
    """The next *count* datagrams (the caller bounds the wait)."""
    return [await sock.recv(1 << 17) for _ in range(count)]


def udp_server(port: int, **options: Any) -> Server:
    """A UDP server entry on loopback."""
    return make_server(port, Protocol.UDP, **options)


async def test_udp_each_record_is_one_datagram() -> None:
    """Every record goes as one datagram holding exactly its message."""
    sock, port = await udp_receiver()
    pages = pages_of(3, 5)
    with sock, trio.fail_after(LIMIT):
        await deliver_all(udp_server(port), pages)
        got = await receive_datagrams(sock, 15)

    expected = [
        format_message(r, Endpoint.AUTH, SETTINGS, fallback_time_ms=0)
        for page in pages
        for r in page.records
    ]
    assert expected == got


@pytest.mark.parametrize("policy", list(OversizePolicy))
async def test_udp_oversize_record_follows_the_policy_and_is_counted(
    policy: OversizePolicy, caplog: pytest.LogCaptureFixture
) -> None:
    """An oversize record is cut or dropped as configured, logged and counted."""
    sock, port = await udp_receiver()
    big = Page(ACCOUNT, Endpoint.AUTH, (pages_of(1, 1, padding=2000)[0].records[0],))
    small = pages_of(1, 2)
    siem, counters = counted_sender()
    with sock, trio.fail_after(LIMIT):
        await deliver_all(
            udp_server(port, udp_max_size=DatagramSize(480), udp_oversize=policy),
            [big, *small],
            siem,
        )
        got = await receive_datagrams(
            sock, 3 if policy is OversizePolicy.TRUNCATE else 2
        )

    message = format_message(
        big.records[0], Endpoint.AUTH, SETTINGS, fallback_time_ms=0
    )
    framed = frame_datagram(message, max_size=480, policy=policy)
    if policy is OversizePolicy.TRUNCATE:
        assert framed.payload == got[0]
        expected = DatagramCounters(whole=2, truncated=1, lost_bytes=framed.lost_bytes)
    else:
        expected = DatagramCounters(whole=2, dropped=1, lost_bytes=len(message))
    assert expected == counters.datagrams["siem"]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert (
        f"auth record of {len(message)} bytes is above udp_max_size (480)"
        in warnings[0]
    )


async def test_udp_datagram_the_system_refuses_is_dropped_and_counted() -> None:
    """A datagram too large for IP (EMSGSIZE) is dropped and counted; the rest go."""
    sock, port = await udp_receiver()
    huge = Page(ACCOUNT, Endpoint.AUTH, (pages_of(1, 1, padding=70_000)[0].records[0],))
    small = pages_of(1, 2)
    siem, counters = counted_sender()
    # Above what the config accepts, so that the datagram reaches the socket.
    server = udp_server(port, udp_max_size=DatagramSize(100_000))
    with sock, trio.fail_after(LIMIT):
        await deliver_all(server, [huge, *small], siem)
        got = await receive_datagrams(sock, 2)

    assert txids(got) == ["tx-000000", "tx-000001"]
    datagrams = counters.datagrams["siem"]
    assert (datagrams.whole, datagrams.dropped) == (2, 1)


AddressInfo = (
    tuple[
        Literal[socket.AddressFamily.AF_INET],
        socket.SocketKind,
        int,
        str,
        tuple[str, int],
    ]
    | tuple[
        Literal[socket.AddressFamily.AF_INET6],
        socket.SocketKind,
        int,
        str,
        tuple[str, int, int, int] | tuple[int, bytes],
    ]
)


class CountingResolver(trio.abc.HostnameResolver):
    """Resolves siem.test to 127.0.0.1, counting the look-ups."""

    def __init__(self) -> None:
        """Start with no look-ups."""
        self.lookups = 0

    async def getaddrinfo(
        self,
        host: bytes | None,
        port: bytes | str | int | None,
        family: int = 0,
        type: int = 0,  # noqa: A002 - the interface's name
        proto: int = 0,
        flags: int = 0,
    ) -> list[AddressInfo]:
        """Answer 127.0.0.1 for siem.test."""
        del family, proto, flags
        assert host == b"siem.test"
        self.lookups += 1
        return [
            (
                socket.AddressFamily.AF_INET,
                socket.SocketKind(type or socket.SOCK_DGRAM),
                socket.IPPROTO_UDP,
                "",
                ("127.0.0.1", int(port or 0)),
            )
        ]

    async def getnameinfo(
        self, sockaddr: tuple[str, int] | tuple[str, int, int, int], flags: int
    ) -> tuple[str, str]:
        """Not used."""
        raise NotImplementedError


async def test_udp_resolves_once_per_interval_not_per_record(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The UDP hostname is looked up at the start and again after the interval."""
    del autojump_clock
    resolver = CountingResolver()
    trio.socket.set_custom_hostname_resolver(resolver)
    sock, port = await udp_receiver()
    pages = pages_of(3, 10)

    async def pause_before_last(index: int) -> None:
        if index == 2:
            await trio.sleep(61)

    feeder = PageFeeder(pages, between=pause_before_last)
    with sock:
        await serve(
            make_config(udp_server(port, hostname="siem.test")),
            shutdown_trigger=feeder.finished.wait,
            fetcher=feeder,
            sender=sender(timing=Timing(udp_resolve_interval=60)),
            discover_accounts=one_account,
        )
        got = await receive_datagrams(sock, 30)

    assert resolver.lookups == 2
    assert len(txids(got)) == 30


async def test_sender_ends_when_the_channel_ends(nursery: trio.Nursery) -> None:
    """With no pages and no fetchers left, the sender returns without connecting."""
    receiver, port = await start_tcp_receiver(nursery)
    with trio.fail_after(LIMIT):
        await deliver_all(make_server(port), [])
    assert receiver.connections == []


# --------------------------------------------------------------------------
# Records no format can write as received (issue 8)
# --------------------------------------------------------------------------


def page_with_a_lone_surrogate() -> Page:
    """An auth page of three whose middle user name holds a lone surrogate."""
    records = list(pages_of(1, 3)[0].records)
    records[1] = {**records[1], "user": {"name": "narr\ud83doway", "key": "DU123"}}
    return Page(ACCOUNT, Endpoint.AUTH, tuple(records))


def repair_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The sender's warnings about repaired records."""
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.WARNING and "sent repaired" in r.getMessage()
    ]


async def test_tcp_record_that_cannot_be_written_is_sent_repaired_and_counted(
    nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    """A lone surrogate in CEF arrives as U+FFFD, the page intact, logged once."""
    receiver, port = await start_tcp_receiver(nursery)
    page = page_with_a_lone_surrogate()
    siem, counters = counted_sender()
    with trio.fail_after(LIMIT):
        await deliver_all(make_server(port), [page], siem, log_format=LogFormat.CEF)
        await receiver.wait_for(lambda r: r.data.count(b"\n") == 3)

    lines = receiver.data.decode().splitlines()
    cef = MessageSettings(hostname="dls-host", log_format=LogFormat.CEF)
    intact = [
        format_message(page.records[i], Endpoint.AUTH, cef, fallback_time_ms=0)
        for i in (0, 2)
    ]
    assert [m.decode() for m in intact] == [lines[0], lines[2]]
    assert lines[1].endswith(" duser=narr\ufffdoway")
    [warning] = repair_warnings(caplog)
    assert "auth record (txid 'tx-000001')" in warning
    assert "lone surrogates in duser replaced by U+FFFD" in warning
    assert counters.repaired["siem"] == 1


async def test_a_page_written_again_reports_its_repair_once() -> None:
    """A page retried until the server is up logs and counts its repair once."""
    held = await bound_not_listening()
    port = held.getsockname()[1]
    receiver = StreamReceiver()
    siem, counters = counted_sender()
    with (
        LogWaiter("trio_dls.senders", "sent repaired") as repairs,
        LogWaiter("trio_dls.senders", "attempt") as retries,
        trio.fail_after(LIMIT),
        held,
    ):
        async with trio.open_nursery() as inner:
            inner.start_soon(
                functools.partial(
                    deliver_all,
                    make_server(port),
                    [page_with_a_lone_surrogate()],
                    siem,
                    log_format=LogFormat.CEF,
                )
            )
            await retries.wait_for(3)
            held.listen()
            inner.start_soon(
                trio.serve_listeners, receiver.handle, [trio.SocketListener(held)]
            )
            await receiver.wait_for(lambda r: r.data.count(b"\n") == 3)
            inner.cancel_scope.cancel()

    assert (repairs.count, counters.repaired["siem"]) == (1, 1)


async def test_udp_record_that_cannot_be_written_is_sent_repaired_and_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Over UDP the repaired record is one datagram among the others, counted."""
    sock, port = await udp_receiver()
    siem, counters = counted_sender()
    with sock, trio.fail_after(LIMIT):
        await deliver_all(
            udp_server(port),
            [page_with_a_lone_surrogate()],
            siem,
            log_format=LogFormat.CEF,
        )
        got = await receive_datagrams(sock, 3)

    # CEF carries no txid: the user names show the order.
    assert [m.decode().rsplit(" duser=", 1)[1] for m in got] == [
        "jos\u00e9.n\u00fa\u00f1ez0",
        "narr\ufffdoway",
        "jos\u00e9.n\u00fa\u00f1ez2",
    ]
    assert len(repair_warnings(caplog)) == 1
    assert (counters.repaired["siem"], counters.datagrams["siem"].whole) == (1, 3)


def test_every_protocol_the_config_accepts_has_a_sender() -> None:
    """The protocol table covers every protocol: a new one cannot go unserved."""
    assert set(Protocol) == set(senders.SENDER_FACTORIES)
