"""Connections to a SIEM: TCP and TLS streams, UDP sockets, and their errors.

Theory of operation
-------------------
This module owns the sockets and nothing above them: it knows neither pages
nor formats, keeps no retry policy and sets no timeouts (the sender, its only
caller, wraps every call in ``trio.fail_after``).  Whatever goes wrong on the
wire (``OSError``, ``ssl`` errors, trio's ``BrokenResourceError``) leaves it
as one ``TransportError`` whose message says why, in words an operator can
act on; the sender retries those.  A TLS setup that no retry can mend (a CA
file that is not a certificate) is a ``FatalError``.

"Written" means acknowledged by the server's TCP.  ``send_all`` returning only
says the kernel took the bytes; a server that dies then loses them while the
sender believes them delivered.  So ``StreamConnection.wait_acknowledged``
waits, on Linux, until the socket's send queue is empty (``SIOCOUTQ`` counts
bytes the peer has not acknowledged) and the connection is still up (a reset
also empties the queue, by discarding it).  What TCP cannot tell is whether
the server *application* read what its kernel acknowledged: a receiver killed
with unread bytes in its socket buffer loses them.  Only an application-level
acknowledgement (RELP) closes that gap; syslog over TCP has none.

A slow server is not a stalled one, so ``acknowledged_bytes`` tells how far
the server's TCP has come.  On Linux it is ``TCP_INFO``'s count of bytes
acknowledged, TLS records included, which moves even while ``send_all`` is
blocked: the kernel wakes a blocked writer only once a third of its send
buffer is free, which a slow server may take minutes to allow.  Elsewhere it
is the bytes the kernel took, which ``send_all`` hands it a piece at a time so
that the count moves during a large batch.  Only its growth means anything;
how long it may stand still is the sender's to say.

Closing a TLS connection sends ``close_notify``, which waits for room in the
send buffer: against a server that reads nothing, for ever.  ``aclose``
therefore needs a bound from its caller; cancelled, it closes at once, as
every trio stream does.

A syslog receiver never talks back, so each stream connection has a small
watcher task that reads from it: anything it sees (the server closing the
connection, a reset, a TLS alert) marks the connection closed with a reason,
which ``check_open`` and ``wait_acknowledged`` report.  This is also how a
TLS 1.3 server refusing the client certificate is noticed: in TLS 1.3 the
client's handshake completes before the server has checked the certificate,
and the refusal arrives afterwards as an alert, so ``open_stream`` waits
briefly for it (see ``settle_after_handshake``) before calling the connection
usable.

UDP sockets are connected (``connect`` on a datagram socket), so that an ICMP
"port unreachable" from a host with no receiver surfaces as
``ConnectionRefusedError`` on a later send instead of vanishing.  The same
goes for an ICMP "fragmentation needed" (path MTU): ``EMSGSIZE`` on a send may
be about an earlier datagram, and the failed send consumed it.  So a datagram
met by ``EMSGSIZE`` is sent once more, and only a second ``EMSGSIZE`` makes it
``DatagramTooLargeError``: the size is then its own.
"""

from __future__ import annotations

import errno
import socket
import ssl
import struct
import sys
from typing import TYPE_CHECKING, Any, Final

import trio

from trio_dls.config import SYSTEM_CAS, Server, TlsSettings
from trio_dls.errors import FatalError

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX (Windows)
    fcntl = None  # type: ignore[assignment]

# Linux only: SIOCOUTQ (equal to TIOCOUTQ) and TCP_INFO's first byte, the
# connection state.  Elsewhere (and wherever fcntl is missing) "written" falls
# back to "taken by the kernel".
_CAN_QUERY_QUEUE: Final = sys.platform == "linux" and fcntl is not None
_SIOCOUTQ: Final = 0x5411
_TCP_ESTABLISHED: Final = 1
_TCP_CLOSE_WAIT: Final = 8
# TCP_INFO's tcpi_bytes_acked: a u64 at this offset of a struct that only
# grows at its end (Linux 4.1 and later; older kernels return less of it).
_TCP_INFO_BYTES_ACKED: Final = 120
_TCP_INFO_SIZE: Final = _TCP_INFO_BYTES_ACKED + 8
# send_all gives the kernel this much at a time (see the module docstring).
_SEND_PIECE: Final = 1 << 16
# How often the send queue is looked at while it drains: soon at first (on a
# LAN the acknowledgement takes well under a millisecond), then less often.
_FIRST_POLL: Final = 0.001
_MAX_POLL: Final = 0.05
# The shortest wait for a TLS 1.3 server's refusal of the client certificate;
# the wait is twice the handshake's duration when that is longer.
MIN_SETTLE: Final = 0.25


class TransportError(Exception):
    """A connection that could not be made or broke; retrying may mend it."""


class DatagramTooLargeError(TransportError):
    """One datagram the system refuses to send (EMSGSIZE); retrying won't help."""


def describe_server(server: Server) -> str:
    """Name *server* in logs: its id, address and protocol."""
    return f"server {server.id!r} ({server.hostname}:{server.port} {server.protocol})"


def _reason(exc: BaseException) -> str:
    """Say in words what *exc*, met on a socket, means."""
    # trio wraps the socket or ssl error it met as the cause, and the errors
    # of every address it tried as a group.
    cause = exc.__cause__ if exc.__cause__ is not None else exc
    if isinstance(cause, BaseExceptionGroup):
        return "; ".join(dict.fromkeys(_reason(e) for e in cause.exceptions))
    if isinstance(cause, ssl.SSLCertVerificationError):
        return f"the server's certificate was refused: {cause.verify_message}"
    if (
        isinstance(cause, ssl.SSLError)
        and cause.reason == "UNEXPECTED_EOF_WHILE_READING"
    ):
        return (
            "the server closed the connection during the TLS handshake (does it"
            " require a client certificate, or refuse ours?)"
        )
    if isinstance(cause, ssl.SSLError):
        return f"TLS failed: {cause.reason or cause}"
    if isinstance(cause, socket.gaierror):
        return f"cannot resolve the hostname: {cause.strerror}"
    if isinstance(cause, OSError) and cause.strerror:
        return cause.strerror
    if isinstance(cause, trio.ClosedResourceError):
        return "the connection was closed"
    return str(cause) or type(cause).__name__


# --------------------------------------------------------------------------
# TLS
# --------------------------------------------------------------------------


def tls_context(server: Server) -> ssl.SSLContext:
    """Build the client TLS context *server* asks for.

    ``cert_filepath`` is the CA bundle that verifies the server (as in
    duo_log_sync), or ``system`` for the operating system's CAs.  Hostname
    checking follows ``tls_verify_hostname``; TLS 1.2 is the oldest version
    offered; ``client_cert_filepath`` (with ``client_key_filepath``, or the key
    in the same file) is presented to servers that ask for one.  Raise
    ``FatalError`` for files that cannot be used.
    """
    what = describe_server(server)
    tls = server.transport
    if not isinstance(tls, TlsSettings):
        raise TypeError(f"{what} is not a TCPSSL server")
    if not tls.cert_filepath:
        raise FatalError(
            f"{what}: TLS needs cert_filepath: a CA bundle, or 'system' for the"
            " operating system's CAs"
        )
    try:
        if tls.cert_filepath == SYSTEM_CAS:
            context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
        else:
            context = ssl.create_default_context(
                ssl.Purpose.SERVER_AUTH, cafile=tls.cert_filepath
            )
    except (OSError, ValueError) as exc:
        raise FatalError(
            f"{what}: cannot load the CA bundle {tls.cert_filepath}: {exc}"
        ) from None
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.check_hostname = tls.tls_verify_hostname
    if tls.client_cert_filepath:
        try:
            context.load_cert_chain(
                tls.client_cert_filepath, tls.client_key_filepath or None
            )
        except (OSError, ValueError) as exc:
            raise FatalError(
                f"{what}: cannot load the client certificate"
                f" {tls.client_cert_filepath}: {exc}"
            ) from None
    return context


def tls_server_name(server: Server) -> str:
    """The name the server's certificate must carry, also sent as SNI."""
    match server.transport:
        case TlsSettings(tls_server_name=name) if name:
            return name
        case _:
            return server.hostname


# --------------------------------------------------------------------------
# Streams
# --------------------------------------------------------------------------


class StreamConnection:
    """An open TCP or TLS connection, watched for the server closing it."""

    def __init__(self, stream: trio.abc.Stream, sock: trio.socket.SocketType) -> None:
        """Wrap *stream*, whose bytes travel over *sock*."""
        self._stream = stream
        self._socket = sock
        self._closed = trio.Event()
        self._closed_reason = ""
        self._watcher = trio.CancelScope()
        self._taken = 0

    @property
    def is_open(self) -> bool:
        """Whether neither side has closed or broken the connection."""
        return not self._closed.is_set()

    def _close(self, reason: str) -> None:
        if not self._closed.is_set():
            self._closed_reason = reason
            self._closed.set()

    async def watch(self, *, task_status: trio.TaskStatus[None]) -> None:
        """Read from the server until it closes the connection; note why."""
        with self._watcher:
            task_status.started()
            try:
                while await self._stream.receive_some(4096):
                    pass  # a syslog receiver has nothing to say; ignore it
                self._close("the server closed the connection")
            except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                self._close(_reason(exc))

    def peer_certificate(self) -> dict[str, Any] | None:
        """The server's certificate as ``ssl`` decodes it; None over plain TCP."""
        if isinstance(self._stream, trio.SSLStream):
            certificate: dict[str, Any] | None = self._stream.getpeercert()
            return certificate
        return None

    def check_open(self) -> None:
        """Raise ``TransportError`` if the connection was closed or broke."""
        if self._closed.is_set():
            raise TransportError(self._closed_reason)

    async def wait_closed(self) -> None:
        """Return once the connection was closed or broke."""
        await self._closed.wait()

    async def send_all(self, data: bytes) -> None:
        """Give all of *data* to the kernel, or raise ``TransportError``."""
        self.check_open()
        view = memoryview(data)
        try:
            # range() is never empty, so an empty write is still a checkpoint.
            for start in range(0, len(view) or 1, _SEND_PIECE):
                piece = view[start : start + _SEND_PIECE]
                await self._stream.send_all(piece)
                self._taken += len(piece)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            self._close(_reason(exc))
            raise TransportError(self._closed_reason) from None

    def unacknowledged_bytes(self) -> int:
        """Bytes written that the server's TCP has not acknowledged yet.

        Only where the send queue can be queried (``_CAN_QUERY_QUEUE``).
        """
        try:
            raw = fcntl.ioctl(self._socket.fileno(), _SIOCOUTQ, struct.pack("i", 0))
        except OSError as exc:
            self._close(_reason(exc))
            raise TransportError(self._closed_reason) from None
        count: int = struct.unpack("i", raw)[0]
        return count

    def acknowledged_bytes(self) -> int:
        """A count that grows as the server's TCP acknowledges what was written.

        Only its growth means anything (see the module docstring).  Raise
        ``TransportError`` if the socket cannot be asked.
        """
        if _CAN_QUERY_QUEUE:
            try:
                info = self._socket.getsockopt(
                    socket.IPPROTO_TCP, socket.TCP_INFO, _TCP_INFO_SIZE
                )
            except OSError as exc:
                self._close(_reason(exc))
                raise TransportError(self._closed_reason) from None
            if len(info) >= _TCP_INFO_SIZE:
                acknowledged: int = struct.unpack_from(
                    "Q", info, _TCP_INFO_BYTES_ACKED
                )[0]
                return acknowledged
        return self._taken

    def _check_still_connected(self) -> None:
        # A reset empties the send queue by discarding it: an empty queue is
        # an acknowledgement only on a connection that is still up.
        error = self._socket.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        state = self._socket.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)[0]
        if error:
            self._close(errno.errorcode.get(error, str(error)))
        elif state not in {_TCP_ESTABLISHED, _TCP_CLOSE_WAIT}:
            self._close("the connection was reset")
        self.check_open()

    async def wait_acknowledged(self) -> None:
        """Return once the server's TCP acknowledged every byte written.

        Raise ``TransportError`` if the connection breaks first.  Where the
        send queue cannot be queried (not Linux), return at once.
        """
        self.check_open()
        if not _CAN_QUERY_QUEUE:
            return
        poll = _FIRST_POLL
        while self.unacknowledged_bytes():
            with trio.move_on_after(poll):
                await self._closed.wait()
            self.check_open()
            poll = min(poll * 2, _MAX_POLL)
        self._check_still_connected()

    async def aclose(self) -> None:
        """Stop watching and close the connection (at once if cancelled).

        Over TLS this waits until ``close_notify`` is written, which a server
        that reads nothing never allows: the caller bounds it.
        """
        self._watcher.cancel()
        self._close("the connection was closed")
        await self._stream.aclose()


async def _settle_after_handshake(
    connection: StreamConnection, stream: trio.SSLStream[trio.SocketStream], took: float
) -> None:
    # See the module docstring: in TLS 1.3 a refused client certificate (or
    # a missing one the server requires) arrives after the handshake.
    if stream.version() != "TLSv1.3":
        return
    with trio.move_on_after(max(MIN_SETTLE, 2 * took)):
        await connection.wait_closed()
    connection.check_open()


async def open_stream(
    server: Server,
    nursery: trio.Nursery,
    ssl_context: ssl.SSLContext | None = None,
) -> StreamConnection:
    """Connect to *server* over TCP, or TLS when *ssl_context* is given.

    The connection's watcher runs in *nursery*.  Raise ``TransportError`` if
    the server cannot be reached, its certificate is refused, or it refuses
    ours.
    """
    try:
        tcp = await trio.open_tcp_stream(server.hostname, server.port)
    except OSError as exc:
        raise TransportError(_reason(exc)) from None
    stream: trio.abc.Stream = tcp
    took = 0.0
    try:
        tcp.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        if ssl_context is not None:
            stream = trio.SSLStream(
                tcp, ssl_context, server_hostname=tls_server_name(server)
            )
            started = trio.current_time()
            await stream.do_handshake()
            took = trio.current_time() - started
        connection = StreamConnection(stream, tcp.socket)
        await nursery.start(connection.watch)
        if isinstance(stream, trio.SSLStream):
            await _settle_after_handshake(connection, stream, took)
    except BaseException as exc:
        await trio.aclose_forcefully(stream)
        if isinstance(exc, (trio.BrokenResourceError, OSError)):
            raise TransportError(_reason(exc)) from None
        raise
    return connection


# --------------------------------------------------------------------------
# Datagrams
# --------------------------------------------------------------------------


class DatagramConnection:
    """A UDP socket connected to one resolved address of a server."""

    def __init__(self, sock: trio.socket.SocketType, address: str) -> None:
        """Wrap *sock*, connected to *address* (kept for logs)."""
        self._socket = sock
        self.address = address

    async def send(self, payload: bytes) -> None:
        """Send *payload* as one datagram.

        Raise ``DatagramTooLargeError`` if the system refuses its size twice
        (once may be an earlier datagram's error: see the module docstring),
        and ``TransportError`` for anything else (an earlier datagram was
        answered "port unreachable", the network is down).
        """
        # The first EMSGSIZE may be an earlier datagram's, which that send
        # consumed; the second is about this one.
        for attempt in range(2):
            try:
                await self._socket.send(payload)
            except OSError as exc:
                if exc.errno != errno.EMSGSIZE:
                    raise TransportError(_reason(exc)) from None
                if attempt:
                    raise DatagramTooLargeError(_reason(exc)) from None
            else:
                return

    def close(self) -> None:
        """Close the socket."""
        self._socket.close()


async def open_datagram(server: Server) -> DatagramConnection:
    """Resolve *server*'s hostname (in a thread) and connect a UDP socket to it.

    Raise ``TransportError`` if the name does not resolve or no socket can be
    made.
    """
    try:
        found = await trio.socket.getaddrinfo(
            server.hostname, server.port, type=socket.SOCK_DGRAM
        )
    except OSError as exc:
        raise TransportError(_reason(exc)) from None
    if not found:
        raise TransportError("the hostname resolves to no address")
    family, kind, proto, _, address = found[0]
    sock = trio.socket.socket(family, kind, proto)
    try:
        await sock.connect(address)
    except OSError as exc:
        sock.close()
        raise TransportError(_reason(exc)) from None
    return DatagramConnection(sock, str(address[0]))


def protocol_opener(
    server: Server,
) -> Callable[[trio.Nursery], Awaitable[StreamConnection]]:
    """Return how to open a stream connection to a TCP or TLS *server*.

    The TLS context is built here, once, so that unusable files stop the
    program at start-up rather than at each reconnection.
    """
    context = tls_context(server) if isinstance(server.transport, TlsSettings) else None

    async def opener(nursery: trio.Nursery) -> StreamConnection:
        return await open_stream(server, nursery, context)

    return opener
