"""Transports: TCP, TLS and UDP connections through real sockets.

Rules for these tests: every socket is on 127.0.0.1 with a port the kernel
picks; certificates come from ``trustme``; time is real but every wait is
bounded by ``fail_after``, and no test sleeps.
"""

from __future__ import annotations

import errno
import functools
import os
import socket
import ssl
import struct
from typing import TYPE_CHECKING, Any, NoReturn

import pytest
import trio
import trio.testing
import trustme

from tests.siem.rsyslog_fixtures import Pki, StreamReceiver, make_pki, make_server
from trio_dls.config import Protocol, Server
from trio_dls.errors import FatalError
from trio_dls.siem.transports import (
    DatagramConnection,
    DatagramTooLargeError,
    StreamConnection,
    TransportError,
    open_datagram,
    open_stream,
    tls_context,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

    from typing_extensions import Buffer

LIMIT = 10.0  # seconds: the bound on any wait for the network


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    """A CA, a server certificate for siem.example and a client certificate."""
    return make_pki(tmp_path, ["siem.example"])


def server_context(pki: Pki, *, require_client: bool = False) -> ssl.SSLContext:
    """A TLS server context with *pki*'s server certificate."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    pki.server_cert.configure_cert(context)
    if require_client:
        context.verify_mode = ssl.CERT_REQUIRED
        pki.ca.configure_trust(context)
    return context


async def start_tls_receiver(
    nursery: trio.Nursery, context: ssl.SSLContext
) -> tuple[StreamReceiver, int]:
    """Serve a TLS receiver; return it and its port."""
    receiver = StreamReceiver()
    listeners = await nursery.start(
        functools.partial(trio.serve_ssl_over_tcp, host="127.0.0.1"),
        receiver.handle,
        0,
        context,
    )
    return receiver, listeners[0].transport_listener.socket.getsockname()[1]


async def start_tcp_receiver(nursery: trio.Nursery) -> tuple[StreamReceiver, int]:
    """Serve a plain TCP receiver; return it and its port."""
    receiver = StreamReceiver()
    listeners = await nursery.start(
        functools.partial(trio.serve_tcp, host="127.0.0.1"), receiver.handle, 0
    )
    return receiver, listeners[0].socket.getsockname()[1]


def tls_server(pki: Pki, port: int, **options: Any) -> Server:
    """A TLS server entry trusting *pki*'s CA, named siem.example."""
    settings: dict[str, Any] = {
        "cert_filepath": str(pki.ca_file),
        "tls_server_name": "siem.example",
    }
    settings.update(options)
    return make_server(port, Protocol.TCPSSL, **settings)


async def round_trip(
    server: Server, receiver: StreamReceiver, nursery: trio.Nursery
) -> bytes:
    """Connect to *server*, write a line, and return what the receiver got."""
    context = tls_context(server) if server.protocol is Protocol.TCPSSL else None
    with trio.fail_after(LIMIT):
        connection = await open_stream(server, nursery, context)
        await connection.send_all(b"hello\n")
        await connection.wait_acknowledged()
        await connection.aclose()
        await receiver.wait_for(lambda r: bool(r.connections) and b"\n" in r.data)
    return receiver.data


# --------------------------------------------------------------------------
# TCP
# --------------------------------------------------------------------------


async def test_tcp_round_trip(nursery: trio.Nursery) -> None:
    """Bytes written over TCP and acknowledged reach the receiver intact."""
    receiver, port = await start_tcp_receiver(nursery)

    assert await round_trip(make_server(port), receiver, nursery) == b"hello\n"


async def test_unreachable_server_is_a_transport_error(nursery: trio.Nursery) -> None:
    """A port nobody listens on gives TransportError: connection refused."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))  # bound, not listening: refuses
        port = holder.getsockname()[1]
        with pytest.raises(TransportError, match="refused"), trio.fail_after(LIMIT):
            await open_stream(make_server(port), nursery)


class NoSuchHost(trio.abc.HostnameResolver):
    """A resolver that knows no name, so no test query leaves the machine.

    The machine's resolver would send a DNS query for ``siem.invalid`` to a
    name server that is not on loopback; this answers as it would, at once.
    """

    async def getaddrinfo(
        self, host: object, *args: object, **kwargs: object
    ) -> NoReturn:
        """Fail as getaddrinfo does for an unknown name."""
        del host, args, kwargs
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    async def getnameinfo(self, *args: object) -> NoReturn:
        """Not used."""
        raise NotImplementedError


@pytest.fixture
async def no_dns() -> AsyncIterator[None]:
    """Answer every name lookup with "unknown name", locally."""
    previous = trio.socket.set_custom_hostname_resolver(NoSuchHost())
    try:
        yield
    finally:
        trio.socket.set_custom_hostname_resolver(previous)


async def test_unresolvable_hostname_is_a_transport_error(
    nursery: trio.Nursery, no_dns: None
) -> None:
    """A hostname that does not resolve gives TransportError, not a crash."""
    del no_dns  # pytest-trio runs async fixtures only when passed, not by mark
    with pytest.raises(TransportError, match="resolve"), trio.fail_after(LIMIT):
        await open_stream(make_server(514, hostname="siem.invalid"), nursery)


async def connected_pair(
    nursery: trio.Nursery, rcvbuf: int
) -> tuple[StreamConnection, trio.socket.SocketType]:
    """A connection to a raw listener with a small receive buffer, and its peer."""
    listener = trio.socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    await listener.bind(("127.0.0.1", 0))
    listener.listen()
    with listener:
        connection = await open_stream(make_server(listener.getsockname()[1]), nursery)
        peer, _ = await listener.accept()
    return connection, peer


async def test_acknowledged_means_the_peer_received_every_byte(
    nursery: trio.Nursery,
) -> None:
    """wait_acknowledged returns only once the peer's TCP took every byte."""
    size = 1 << 20
    connection, peer = await connected_pair(nursery, rcvbuf=4096)
    acknowledged = trio.Event()

    async def write() -> None:
        await connection.send_all(b"x" * size)
        await connection.wait_acknowledged()
        acknowledged.set()

    with peer:
        nursery.start_soon(write)
        await trio.testing.wait_all_tasks_blocked()
        # The peer reads nothing: most of the megabyte is still queued here.
        assert not acknowledged.is_set()
        assert connection.unacknowledged_bytes() > 0
        received = 0
        with trio.fail_after(LIMIT):
            while received < size:
                received += len(await peer.recv(1 << 16))
            await acknowledged.wait()
    assert connection.unacknowledged_bytes() == 0
    await connection.aclose()


async def test_reset_with_unacknowledged_bytes_is_a_transport_error(
    nursery: trio.Nursery,
) -> None:
    """A reset discards the send queue; that is a failure, not an acknowledgement."""
    connection, peer = await connected_pair(nursery, rcvbuf=4096)
    failures: list[str] = []

    async def write() -> None:
        try:
            await connection.send_all(b"x" * (1 << 20))
            await connection.wait_acknowledged()
        except TransportError as exc:
            failures.append(str(exc))

    async with trio.open_nursery() as writers:
        writers.start_soon(write)
        await trio.testing.wait_all_tasks_blocked()
        # Linger 0: close with a reset, as a crashing receiver does.
        peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        peer.close()
        writers.cancel_scope.deadline = trio.current_time() + LIMIT
    assert len(failures) == 1
    await connection.aclose()


async def test_server_closing_an_idle_connection_is_noticed(
    nursery: trio.Nursery,
) -> None:
    """When the server closes an idle connection, check_open says so."""
    connection, peer = await connected_pair(nursery, rcvbuf=65536)
    peer.close()
    with trio.fail_after(LIMIT):
        await connection.wait_closed()
    with pytest.raises(TransportError, match="closed"):
        connection.check_open()
    await connection.aclose()


# --------------------------------------------------------------------------
# TLS
# --------------------------------------------------------------------------


def test_tls_context_defaults_verify_the_server_with_tls_1_2_or_later(
    pki: Pki,
) -> None:
    """The CA file verifies the server, hostnames are checked, TLS 1.2 is the floor."""
    context = tls_context(tls_server(pki, 6514))

    assert (ssl.CERT_REQUIRED, True, ssl.TLSVersion.TLSv1_2) == (
        context.verify_mode,
        context.check_hostname,
        context.minimum_version,
    )
    assert context.cert_store_stats()["x509_ca"] == 1


def test_tls_context_system_uses_the_operating_systems_cas() -> None:
    """cert_filepath 'system' verifies against the default CA store, not a file."""
    server = make_server(6514, Protocol.TCPSSL, cert_filepath="system")

    context = tls_context(server)

    assert context.verify_mode == ssl.CERT_REQUIRED
    assert ssl.TLSVersion.TLSv1_2 == context.minimum_version


def test_tls_context_hostname_check_can_be_turned_off(pki: Pki) -> None:
    """tls_verify_hostname false keeps the chain check but not the name check."""
    context = tls_context(tls_server(pki, 6514, tls_verify_hostname=False))

    assert (context.verify_mode, context.check_hostname) == (ssl.CERT_REQUIRED, False)


@pytest.mark.parametrize("field", ["cert_filepath", "client_cert_filepath"])
def test_tls_context_unusable_files_are_fatal(
    pki: Pki, tmp_path: Path, field: str
) -> None:
    """A CA or client certificate that is not PEM stops the program with its path."""
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")

    with pytest.raises(FatalError, match=r"junk\.pem"):
        tls_context(tls_server(pki, 6514, **{field: str(junk)}))


async def test_tls_round_trip_with_a_verified_server_and_sni_override(
    pki: Pki, nursery: trio.Nursery
) -> None:
    """Over TLS to 127.0.0.1, the name siem.example is sent as SNI and verified."""
    names: list[str | None] = []
    context = server_context(pki)
    context.sni_callback = lambda _sock, name, _ctx: names.append(name)
    receiver, port = await start_tls_receiver(nursery, context)

    data = await round_trip(tls_server(pki, port), receiver, nursery)

    assert (data, names) == (b"hello\n", ["siem.example"])


async def test_tls_wrong_hostname_is_refused(pki: Pki, nursery: trio.Nursery) -> None:
    """A certificate for another name is refused while hostnames are checked."""
    _, port = await start_tls_receiver(nursery, server_context(pki))
    server = tls_server(pki, port, tls_server_name="other.example")

    with pytest.raises(TransportError, match="Hostname mismatch"):
        await round_trip(server, StreamReceiver(), nursery)


async def test_tls_wrong_hostname_is_accepted_when_not_checked(
    pki: Pki, nursery: trio.Nursery
) -> None:
    """With tls_verify_hostname false, a certificate for another name is accepted."""
    receiver, port = await start_tls_receiver(nursery, server_context(pki))
    server = tls_server(
        pki, port, tls_server_name="other.example", tls_verify_hostname=False
    )

    assert await round_trip(server, receiver, nursery) == b"hello\n"


async def test_tls_unknown_ca_is_refused(
    pki: Pki, tmp_path: Path, nursery: trio.Nursery
) -> None:
    """A server whose certificate another CA signed is refused."""
    _, port = await start_tls_receiver(nursery, server_context(pki))
    other_ca = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other_ca))
    server = tls_server(pki, port, cert_filepath=str(other_ca))

    with pytest.raises(TransportError, match="certificate was refused"):
        await round_trip(server, StreamReceiver(), nursery)


@pytest.mark.parametrize("key_apart", [True, False], ids=["key-file", "combined"])
async def test_mutual_tls_is_accepted(
    pki: Pki, nursery: trio.Nursery, *, key_apart: bool
) -> None:
    """A server that requires a client certificate accepts ours (key apart or not)."""
    receiver, port = await start_tls_receiver(
        nursery, server_context(pki, require_client=True)
    )
    if key_apart:
        server = tls_server(
            pki,
            port,
            client_cert_filepath=str(pki.client_cert_file),
            client_key_filepath=str(pki.client_key_file),
        )
    else:
        server = tls_server(
            pki, port, client_cert_filepath=str(pki.client_combined_file)
        )

    assert await round_trip(server, receiver, nursery) == b"hello\n"


async def test_mutual_tls_without_a_client_certificate_is_refused(
    pki: Pki, nursery: trio.Nursery
) -> None:
    """A server requiring a client certificate refuses us when we have none."""
    receiver, port = await start_tls_receiver(
        nursery, server_context(pki, require_client=True)
    )

    with pytest.raises(TransportError, match="client certificate"):
        await round_trip(tls_server(pki, port), receiver, nursery)
    assert receiver.data == b""


async def test_mutual_tls_with_an_untrusted_client_certificate_is_refused(
    pki: Pki, tmp_path: Path, nursery: trio.Nursery
) -> None:
    """A server refuses a client certificate from a CA it does not trust."""
    receiver, port = await start_tls_receiver(
        nursery, server_context(pki, require_client=True)
    )
    stranger = trustme.CA().issue_cert("stranger@example.com")
    combined = tmp_path / "stranger.pem"
    stranger.private_key_and_cert_chain_pem.write_to_path(str(combined))
    server = tls_server(pki, port, client_cert_filepath=str(combined))

    with pytest.raises(TransportError):
        await round_trip(server, receiver, nursery)
    assert receiver.data == b""


# --------------------------------------------------------------------------
# UDP
# --------------------------------------------------------------------------


async def test_udp_round_trip() -> None:
    """A datagram sent reaches the receiver whole."""
    with trio.socket.socket(type=socket.SOCK_DGRAM) as receiver:
        await receiver.bind(("127.0.0.1", 0))
        port = receiver.getsockname()[1]
        connection = await open_datagram(make_server(port, Protocol.UDP))
        try:
            await connection.send(b"hello")
            with trio.fail_after(LIMIT):
                assert await receiver.recv(65536) == b"hello"
        finally:
            connection.close()
    assert connection.address == "127.0.0.1"


async def test_udp_oversize_datagram_is_its_own_error() -> None:
    """A datagram above what IP carries raises DatagramTooLargeError."""
    with trio.socket.socket(type=socket.SOCK_DGRAM) as receiver:
        await receiver.bind(("127.0.0.1", 0))
        connection = await open_datagram(
            make_server(receiver.getsockname()[1], Protocol.UDP)
        )
        try:
            with pytest.raises(DatagramTooLargeError):
                await connection.send(b"x" * 70_000)
        finally:
            connection.close()


async def test_udp_port_unreachable_is_a_transport_error() -> None:
    """After "port unreachable", a later send raises TransportError."""
    with socket.socket(type=socket.SOCK_DGRAM) as holder:
        holder.bind(("127.0.0.1", 0))
        port = holder.getsockname()[1]
    connection = await open_datagram(make_server(port, Protocol.UDP))

    async def send_until_refused() -> None:
        with trio.fail_after(LIMIT):
            while True:
                await connection.send(b"anyone?")
                await trio.lowlevel.checkpoint()

    try:
        with pytest.raises(TransportError, match="refused"):
            await send_until_refused()
    finally:
        connection.close()


async def test_udp_unresolvable_hostname_is_a_transport_error(no_dns: None) -> None:
    """A UDP server whose hostname does not resolve gives TransportError."""
    del no_dns
    with pytest.raises(TransportError, match="resolve"), trio.fail_after(LIMIT):
        await open_datagram(make_server(514, Protocol.UDP, hostname="siem.invalid"))


# --------------------------------------------------------------------------
# Issue 8: progress of a slow peer, delayed EMSGSIZE
# --------------------------------------------------------------------------


async def test_acknowledged_bytes_grow_while_send_all_is_blocked(
    nursery: trio.Nursery,
) -> None:
    """The acknowledged count moves as the peer reads, before send_all returns."""
    connection, peer = await connected_pair(nursery, rcvbuf=4096)
    written = trio.Event()

    async def write() -> None:
        await connection.send_all(b"x" * (1 << 22))
        written.set()

    with peer:
        async with trio.open_nursery() as writers:
            writers.start_soon(write)
            await trio.testing.wait_all_tasks_blocked()
            before = connection.acknowledged_bytes()
            with trio.fail_after(LIMIT):
                for _ in range(8):
                    await peer.recv(1 << 16)
            await trio.testing.wait_all_tasks_blocked()
            # Four megabytes do not fit in the buffers: the writer still waits.
            assert not written.is_set()
            assert connection.acknowledged_bytes() > before
            writers.cancel_scope.cancel()
    await connection.aclose()


class RefusingSocket(trio.socket.SocketType):
    """A UDP socket whose sends numbered in *refusals* fail with EMSGSIZE.

    As on Linux when an ICMP "fragmentation needed" came back for an earlier
    datagram: the next send fails, whatever its size.
    """

    def __init__(self, sock: trio.socket.SocketType, refusals: set[int]) -> None:
        """Wrap the connected *sock*; count sends from 0."""
        super().__init__()
        self._socket = sock
        self._refusals = refusals
        self.sends = 0

    async def send(self, data: Buffer, flags: int = 0, /) -> int:
        """Send *data*, unless this send is one to refuse."""
        number = self.sends
        self.sends += 1
        if number in self._refusals:
            await trio.lowlevel.checkpoint()
            raise OSError(errno.EMSGSIZE, os.strerror(errno.EMSGSIZE))
        return await self._socket.send(data, flags)

    def close(self) -> None:
        """Close the socket."""
        self._socket.close()


async def refusing_connection(
    port: int, refusals: set[int]
) -> tuple[DatagramConnection, RefusingSocket]:
    """A datagram connection to 127.0.0.1:*port* that refuses the sends given."""
    sock = trio.socket.socket(type=socket.SOCK_DGRAM)
    await sock.connect(("127.0.0.1", port))
    refusing = RefusingSocket(sock, refusals)
    return DatagramConnection(refusing, "127.0.0.1"), refusing


async def test_udp_a_delayed_emsgsize_is_retried() -> None:
    """EMSGSIZE once (an earlier datagram's) costs a retry; the datagram arrives."""
    with trio.socket.socket(type=socket.SOCK_DGRAM) as receiver:
        await receiver.bind(("127.0.0.1", 0))
        connection, refusing = await refusing_connection(receiver.getsockname()[1], {0})
        try:
            await connection.send(b"innocent")
            with trio.fail_after(LIMIT):
                assert await receiver.recv(65536) == b"innocent"
        finally:
            connection.close()
    assert refusing.sends == 2


async def test_udp_emsgsize_twice_is_the_datagrams_own() -> None:
    """EMSGSIZE on the retry too makes the datagram DatagramTooLargeError."""
    with trio.socket.socket(type=socket.SOCK_DGRAM) as receiver:
        await receiver.bind(("127.0.0.1", 0))
        connection, refusing = await refusing_connection(
            receiver.getsockname()[1], {0, 1}
        )
        try:
            with pytest.raises(DatagramTooLargeError):
                await connection.send(b"too large")
        finally:
            connection.close()
    assert refusing.sends == 2
