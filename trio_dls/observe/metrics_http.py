"""The metrics endpoint: ``/metrics`` and ``/healthz`` over HTTP/1.1, in the tree.

Theory of operation
-------------------
Prometheus (or ``curl``) asks ``GET /metrics`` and a load balancer or probe
``GET /healthz``; nothing else is served.  The protocol part is pure
(``answer``: the bytes of a request's head in, the bytes of the response
out); the I/O part is a trio task that the daemon starts in its nursery, so
the endpoint lives and ends with the tree.  ``prometheus_client``'s own
server is not used: it runs in a thread of its own, outside the tree.

Each connection carries one request and is closed after the answer
(``Connection: close``), which every scraper handles.  Everything is
bounded: at most ``MAX_CONNECTIONS`` at once (further ones wait in the
listen backlog until one ends), a request head of at most
``MAX_REQUEST_HEAD`` bytes (431 beyond), and ``CONNECTION_TIMEOUT`` seconds
per connection from accept to the last byte of the answer, so a client that
sends nothing, or reads nothing, holds its place no longer.  A request body
is never read: GET and HEAD have none, and other methods get 405.

The listening sockets are opened first, at start, by ``open_listeners``: a
port in use is a ``FatalError`` naming the address, before anything else
starts.
"""

from __future__ import annotations

import errno
import logging
from typing import TYPE_CHECKING, Final

import attrs
import trio

from trio_dls.config.model import split_listen_address
from trio_dls.errors import FatalError
from trio_dls.observe.metrics import CONTENT_TYPE

if TYPE_CHECKING:
    from trio_dls.observe.metrics import Metrics

__all__ = [
    "CONNECTION_TIMEOUT",
    "MAX_CONNECTIONS",
    "MAX_REQUEST_HEAD",
    "Response",
    "answer",
    "open_listeners",
    "serve_metrics",
]

log = logging.getLogger(__name__)

MAX_CONNECTIONS: Final = 8
MAX_REQUEST_HEAD: Final = 8192
CONNECTION_TIMEOUT: Final = 10.0
# After an accept fails for lack of file descriptors or memory, wait this
# long before the next: the condition passes as other connections end.
ACCEPT_RETRY: Final = 0.1
_ACCEPT_SHORTAGES: Final = frozenset(
    {errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS}
)

_REASONS: Final = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    431: "Request Header Fields Too Large",
    503: "Service Unavailable",
}
_TEXT: Final = "text/plain; charset=utf-8"


@attrs.frozen
class Response:
    """An answer: status, type and body."""

    status: int
    body: bytes
    content_type: str = _TEXT
    allow: str = ""

    def encode(self, *, head_only: bool = False) -> bytes:
        """The bytes on the wire; *head_only* for a HEAD request."""
        lines = [
            f"HTTP/1.1 {self.status} {_REASONS[self.status]}",
            f"Content-Type: {self.content_type}",
            f"Content-Length: {len(self.body)}",
            "Cache-Control: no-store",
            "Connection: close",
        ]
        if self.allow:
            lines.append(f"Allow: {self.allow}")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("ascii")
        return head if head_only else head + self.body


def _text(status: int, text: str) -> Response:
    return Response(status, text.encode())


def answer(head: bytes, metrics: Metrics) -> bytes:
    """Return the response to the request whose head (up to CRLF CRLF) is *head*."""
    line = head.partition(b"\r\n")[0]
    parts = line.split(b" ")
    if len(parts) != 3 or not parts[2].startswith(b"HTTP/1."):  # noqa: PLR2004
        return _text(400, "bad request\n").encode()
    method, target = parts[0], parts[1].partition(b"?")[0]
    if method not in {b"GET", b"HEAD"}:
        response = attrs.evolve(_text(405, "only GET and HEAD\n"), allow="GET, HEAD")
    elif target == b"/metrics":
        response = Response(200, metrics.exposition(), CONTENT_TYPE)
    elif target == b"/healthz":
        verdict = metrics.verdict()
        response = _text(200 if verdict.healthy else 503, verdict.text())
    else:
        response = _text(404, "not found: try /metrics or /healthz\n")
    return response.encode(head_only=method == b"HEAD")


async def open_listeners(listen: str) -> list[trio.SocketListener]:
    """Listen on *listen* (``HOST:PORT``); a FatalError naming it if that fails."""
    host, port = split_listen_address(listen)
    try:
        return await trio.open_tcp_listeners(port, host=host)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        msg = (
            f"dls_settings.metrics.listen: cannot listen on {listen}: {reason}; "
            "choose another address, or stop what holds it"
        )
        raise FatalError(msg) from None


async def serve_metrics(
    metrics: Metrics,
    listeners: list[trio.SocketListener],
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Answer on *listeners* until cancelled; they are closed at the end."""
    slots = trio.Semaphore(MAX_CONNECTIONS)
    async with trio.open_nursery() as nursery:
        for listener in listeners:
            nursery.start_soon(_accept, listener, metrics, slots, nursery)
        task_status.started()


async def _accept(
    listener: trio.SocketListener,
    metrics: Metrics,
    slots: trio.Semaphore,
    nursery: trio.Nursery,
) -> None:
    async with listener:
        while True:
            # A place is taken before the accept: beyond the bound, clients
            # wait in the kernel's backlog, costing nothing here.
            await slots.acquire()
            try:
                stream = await listener.accept()
            except OSError as exc:
                slots.release()
                if exc.errno not in _ACCEPT_SHORTAGES:
                    raise
                log.warning("metrics endpoint: cannot accept a connection: %s", exc)
                await trio.sleep(ACCEPT_RETRY)
                continue
            except BaseException:
                slots.release()
                raise
            nursery.start_soon(_serve_one, stream, metrics, slots)


async def _serve_one(
    stream: trio.SocketStream, metrics: Metrics, slots: trio.Semaphore
) -> None:
    try:
        async with stream:
            with trio.move_on_after(CONNECTION_TIMEOUT):
                head = await _read_head(stream)
                reply = (
                    _text(431, "request head too large\n").encode()
                    if head is None
                    else answer(head, metrics)
                )
                await stream.send_all(reply)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass  # the client went away: nothing to answer
    finally:
        slots.release()


async def _read_head(stream: trio.SocketStream) -> bytes | None:
    """Read up to the blank line ending a request's head; None if too large."""
    received = bytearray()
    while b"\r\n\r\n" not in received:
        if len(received) > MAX_REQUEST_HEAD:
            return None
        chunk = await stream.receive_some(4096)
        if not chunk:
            break  # the client stopped sending: answer what came
        received += chunk
    head = bytes(received).partition(b"\r\n\r\n")[0]
    return None if len(head) > MAX_REQUEST_HEAD else head
