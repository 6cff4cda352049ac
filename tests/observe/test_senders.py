"""What the real sender tells its observer, over real sockets.

Rules for these tests: as in ``tests.siem.test_senders`` (receivers on 127.0.0.1
with a port the kernel picks, the sender inside the real ``serve`` fed by a
fetcher of fixed pages, every wait bounded, retries of milliseconds, nothing
sleeping in real time), with a ``RecordingObserver`` given to the sender.  One
test per kind of event a sender tells, each comparing the events with what
the receiver got.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

import trio
import trio.testing

from tests.observing import RecordingObserver
from tests.siem.rsyslog_fixtures import (
    ACCOUNT,
    PageFeeder,
    StreamReceiver,
    deliver_all,
    make_config,
    make_server,
    one_account,
    pages_of,
    sender,
    txids,
)
from tests.siem.test_senders import (
    LIMIT,
    bound_not_listening,
    expected_stream,
    page_with_a_lone_surrogate,
    receive_datagrams,
    start_tcp_receiver,
    udp_receiver,
    udp_server,
)
from tests.siem.test_transports import refusing_connection
from trio_dls.config import DatagramSize, Protocol, Server
from trio_dls.endpoints import Endpoint
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
from trio_dls.siem import senders
from trio_dls.siem.formats import LogFormat, MessageSettings, format_message
from trio_dls.siem.framing import OversizePolicy, frame_datagram
from trio_dls.siem.senders import Timing
from trio_dls.siem.transports import DatagramConnection, TransportError, open_datagram
from trio_dls.supervisor import Page, serve

if TYPE_CHECKING:
    import pytest


def ref(port: int, protocol: Protocol = Protocol.TCP) -> ServerRef:
    """The reference events give the test server at *port*."""
    return ServerRef("siem", "127.0.0.1", port, str(protocol))


async def test_a_first_connection_and_every_page_written_are_told(
    nursery: trio.Nursery,
) -> None:
    """One ServerConnected, then a PageWritten per page with its records and bytes."""
    receiver, port = await start_tcp_receiver(nursery)
    pages = pages_of(3, 5)
    seen = RecordingObserver()
    with trio.fail_after(LIMIT):
        await deliver_all(make_server(port), pages, sender(observer=seen))
        await receiver.wait_for(lambda r: len(r.data) >= len(expected_stream(pages)))

    server = ref(port)
    assert seen.events == [
        ServerConnected(server, first=True),
        *(
            PageWritten(
                server,
                ACCOUNT,
                Endpoint.AUTH,
                records=5,
                size=len(expected_stream([page])),
            )
            for page in pages
        ),
    ]
    assert len(receiver.data) == sum(e.size for e in seen.of(PageWritten))


async def test_every_failed_attempt_is_told_counted_and_the_recovery_once() -> None:
    """A server down at start: ServerFailed 1, 2, 3...; once up, ServerRecovered."""
    held = await bound_not_listening()
    port = held.getsockname()[1]
    pages = pages_of(2, 5)
    receiver = StreamReceiver()
    seen = RecordingObserver()
    with trio.fail_after(LIMIT), held:
        async with trio.open_nursery() as inner:
            inner.start_soon(
                deliver_all, make_server(port), pages, sender(observer=seen)
            )
            await seen.wait_for(ServerFailed, 3)
            held.listen()
            inner.start_soon(
                trio.serve_listeners, receiver.handle, [trio.SocketListener(held)]
            )
            await seen.wait_for(PageWritten, 2)
            await receiver.wait_for(
                lambda r: len(r.data) >= len(expected_stream(pages))
            )
            inner.cancel_scope.cancel()

    failed = seen.of(ServerFailed)
    assert list(range(1, len(failed) + 1)) == [e.failures for e in failed]
    assert {(Endpoint.AUTH, 5)} == {(e.endpoint, e.records) for e in failed}
    assert all(e.reason and e.retry_in > 0 for e in failed)
    assert [ServerRecovered(ref(port), len(failed))] == seen.of(ServerRecovered)
    # Told after the failures and before the page counts as written.
    kinds = seen.kinds()
    assert kinds.index(ServerRecovered) < kinds.index(PageWritten)
    assert kinds.index(ServerRecovered) > max(
        i for i, kind in enumerate(kinds) if kind is ServerFailed
    )
    assert expected_stream(pages) == receiver.data


async def test_an_idle_connection_closed_is_told_replaced_not_failed(
    nursery: trio.Nursery,
) -> None:
    """A receiver closing an idle connection: ConnectionReplaced, a reconnection."""
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
        functools.partial(trio.serve_tcp, host="127.0.0.1"), close_after_one_page, 0
    )
    port = listeners[0].socket.getsockname()[1]

    async def wait_for_close(index: int) -> None:
        if index == 1:
            await trio.testing.wait_all_tasks_blocked()

    feeder = PageFeeder(pages, between=wait_for_close)
    seen = RecordingObserver()
    with trio.fail_after(LIMIT):
        await serve(
            make_config(make_server(port)),
            shutdown_trigger=feeder.finished.wait,
            fetcher=feeder,
            sender=sender(observer=seen),
            discover_accounts=one_account,
        )

    assert [
        ServerConnected,
        PageWritten,
        ConnectionReplaced,
        ServerConnected,
        PageWritten,
    ] == seen.kinds()
    assert [e.first for e in seen.of(ServerConnected)] == [True, False]
    assert expected_stream(pages) == receiver.data


async def test_a_repaired_record_is_told_once_though_written_again() -> None:
    """A page retried until the server is up tells its one repair once."""
    held = await bound_not_listening()
    port = held.getsockname()[1]
    receiver = StreamReceiver()
    page = page_with_a_lone_surrogate()
    seen = RecordingObserver()
    with trio.fail_after(LIMIT), held:
        async with trio.open_nursery() as inner:
            inner.start_soon(
                functools.partial(
                    deliver_all,
                    make_server(port),
                    [page],
                    sender(observer=seen),
                    log_format=LogFormat.CEF,
                )
            )
            await seen.wait_for(ServerFailed, 3)
            held.listen()
            inner.start_soon(
                trio.serve_listeners, receiver.handle, [trio.SocketListener(held)]
            )
            await seen.wait_for(PageWritten)
            await receiver.wait_for(lambda r: r.data.count(b"\n") == 3)
            inner.cancel_scope.cancel()

    [repaired] = seen.of(RecordRepaired)
    assert (ref(port), Endpoint.AUTH) == (repaired.server, repaired.endpoint)
    assert page.records[1] is repaired.record
    assert [r for r in repaired.repairs if "duser" in r] == [
        "lone surrogates in duser replaced by U+FFFD"
    ]
    assert receiver.data.count(b"\n") == 3


async def test_udp_pages_tell_the_datagrams_sent_whole() -> None:
    """Over UDP each page's PageWritten counts its datagrams; the socket's address."""
    sock, port = await udp_receiver()
    pages = pages_of(2, 4)
    seen = RecordingObserver()
    with sock, trio.fail_after(LIMIT):
        await deliver_all(udp_server(port), pages, sender(observer=seen))
        got = await receive_datagrams(sock, 8)

    server = ref(port, Protocol.UDP)
    assert [ServerConnected(server, first=True, address="127.0.0.1")] == seen.of(
        ServerConnected
    )
    written = seen.of(PageWritten)
    assert [e.datagrams for e in written] == [4, 4]
    assert sum(len(d) for d in got) == sum(e.size for e in written)


def oversize_page() -> tuple[Page, bytes]:
    """An auth page of one record above 480 bytes, and the record's message."""
    big = Page(ACCOUNT, Endpoint.AUTH, (pages_of(1, 1, padding=2000)[0].records[0],))
    settings = MessageSettings(hostname="dls-host")
    message = format_message(
        big.records[0], Endpoint.AUTH, settings, fallback_time_ms=0
    )
    return big, message


async def test_a_datagram_cut_is_told_with_its_sizes() -> None:
    """Truncating an oversize record tells its size, the limit and what was cut."""
    sock, port = await udp_receiver()
    big, message = oversize_page()
    seen = RecordingObserver()
    server = udp_server(
        port, udp_max_size=DatagramSize(480), udp_oversize=OversizePolicy.TRUNCATE
    )
    with sock, trio.fail_after(LIMIT):
        await deliver_all(server, [big, *pages_of(1, 2)], sender(observer=seen))
        got = await receive_datagrams(sock, 3)

    framed = frame_datagram(message, max_size=480, policy=OversizePolicy.TRUNCATE)
    assert framed.payload == got[0]
    udp = ref(port, Protocol.UDP)
    assert [DatagramCut(udp, Endpoint.AUTH, len(message), 480, framed.lost_bytes)] == (
        seen.of(DatagramCut)
    )
    assert [e.datagrams for e in seen.of(PageWritten)] == [0, 2]


async def test_a_datagram_dropped_by_the_policy_is_told() -> None:
    """Dropping an oversize record tells its size and the limit, and no why."""
    sock, port = await udp_receiver()
    big, message = oversize_page()
    seen = RecordingObserver()
    server = udp_server(
        port, udp_max_size=DatagramSize(480), udp_oversize=OversizePolicy.DROP
    )
    with sock, trio.fail_after(LIMIT):
        await deliver_all(server, [big, *pages_of(1, 2)], sender(observer=seen))
        got = await receive_datagrams(sock, 2)

    assert txids(got) == ["tx-000000", "tx-000001"]
    udp = ref(port, Protocol.UDP)
    assert [DatagramDropped(udp, Endpoint.AUTH, len(message), 480, "")] == seen.of(
        DatagramDropped
    )
    assert [e.datagrams for e in seen.of(PageWritten)] == [0, 2]
    assert seen.of(PageWritten)[0].size == 0


async def test_a_datagram_the_system_refuses_twice_is_told_dropped_with_why(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A record refused twice (EMSGSIZE) is told dropped, with the system's error."""
    sock, port = await udp_receiver()

    async def open_refusing(server: Server) -> DatagramConnection:
        connection, _ = await refusing_connection(server.port, {1, 2})
        return connection

    monkeypatch.setattr(senders, "open_datagram", open_refusing)
    seen = RecordingObserver()
    pages = pages_of(1, 3)
    with sock, trio.fail_after(LIMIT):
        await deliver_all(udp_server(port), pages, sender(observer=seen))
        got = await receive_datagrams(sock, 2)

    assert txids(got) == ["tx-000000", "tx-000002"]
    [dropped] = seen.of(DatagramDropped)
    settings = MessageSettings(hostname="dls-host")
    second = format_message(
        pages[0].records[1], Endpoint.AUTH, settings, fallback_time_ms=0
    )
    assert (len(second), 2048) == (dropped.size, dropped.limit)
    assert dropped.why
    assert [e.datagrams for e in seen.of(PageWritten)] == [2]


async def test_a_failed_look_up_again_is_told_and_sending_goes_on(
    autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The name not resolving after the interval: ResolveFailed, the old address."""
    del autojump_clock
    sock, port = await udp_receiver()
    opened = 0

    async def resolves_once(server: Server) -> DatagramConnection:
        nonlocal opened
        opened += 1
        if opened > 1:
            raise TransportError("the name does not resolve")
        return await open_datagram(server)

    monkeypatch.setattr(senders, "open_datagram", resolves_once)

    async def pause_before_last(index: int) -> None:
        if index == 1:
            await trio.sleep(61)

    feeder = PageFeeder(pages_of(2, 3), between=pause_before_last)
    seen = RecordingObserver()
    with sock:
        await serve(
            make_config(udp_server(port)),
            shutdown_trigger=feeder.finished.wait,
            fetcher=feeder,
            sender=sender(observer=seen, timing=Timing(udp_resolve_interval=60)),
            discover_accounts=one_account,
        )
        got = await receive_datagrams(sock, 6)

    udp = ref(port, Protocol.UDP)
    assert [ResolveFailed(udp, "the name does not resolve", "127.0.0.1")] == seen.of(
        ResolveFailed
    )
    assert len(txids(got)) == 6
    assert seen.of(ServerFailed) == []
