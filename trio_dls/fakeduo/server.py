"""The fake Duo API as a real HTTPS (or HTTP) server on loopback, with trio.

This module owns the sockets: the listener on 127.0.0.1, TLS with a
``trustme`` certificate for ``localhost`` (duo_client checks DNS names only),
one task per connection reading requests with ``wire.RequestReader``, and the
delivery of each ``app.Plan`` (delay, then the bytes, or a cut connection).
Everything else is ``app.FakeDuoApp``'s business.

``FakeDuo.serve`` is a trio service: ``port = await nursery.start(fake.serve)``.
``serve_in_thread`` runs it under ``trio.run`` in a background thread for
synchronous callers (duo_client is synchronous).

A connection may open with ``CONNECT host:port``: the fake then acts as its own
HTTP proxy (answers 200 and, in TLS mode, starts TLS inside the tunnel), so
duo_client's ``set_proxy`` can be exercised without a separate proxy.
"""

from __future__ import annotations

import contextlib
import queue
import ssl
import tempfile
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio
import trustme

from trio_dls.fakeduo.app import Clock, FakeDuoApp, FakeDuoConfig, Plan, Stats
from trio_dls.fakeduo.faults import DropPoint, Faults
from trio_dls.fakeduo.wire import Request, RequestReader, WireError, render_response

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping

    from trio_dls.endpoints import Endpoint
    from trio_dls.fakeduo.data import ChildAccount, FakeRecord

__all__ = ["FakeDuo", "serve_in_thread"]

HOSTNAME = "localhost"
_TLS_HANDSHAKE = 0x16
_RECEIVE_SIZE = 65536


def _without_port(hostname: str) -> str:
    host, sep, port = hostname.rpartition(":")
    return host if sep and port.isdigit() else hostname


class _PrefixedStream(trio.abc.Stream):
    """A stream that first returns bytes already read from another stream."""

    def __init__(self, prefix: bytes, stream: trio.abc.Stream) -> None:
        self._prefix = prefix
        self._stream = stream

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        if self._prefix:
            size = len(self._prefix) if max_bytes is None else max_bytes
            data, self._prefix = self._prefix[:size], self._prefix[size:]
            return data
        return bytes(await self._stream.receive_some(max_bytes))

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self._stream.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self._stream.wait_send_all_might_not_block()

    async def send_eof(self) -> None:  # pragma: no cover - never half-closed
        if isinstance(self._stream, trio.abc.HalfCloseableStream):
            await self._stream.send_eof()

    async def aclose(self) -> None:
        await self._stream.aclose()


class FakeDuo:
    """A handle on one fake Duo deployment: configure, serve, inspect, misbehave.

    ``clock`` is the service's "now" (the two-minute delay, the 180-day limit,
    live records, rate limits); pass ``lambda: base + trio.current_time()`` to
    run on trio's virtual clock (then call the handle's methods from the trio
    thread). ``wall_clock`` judges ``Date`` headers; None turns the check off.
    """

    def __init__(
        self,
        config: FakeDuoConfig | None = None,
        *,
        clock: Clock = time.time,
        wall_clock: Clock | None = time.time,
    ) -> None:
        """Generate the data set and a certificate; nothing listens yet."""
        self.config = config or FakeDuoConfig()
        self.app = FakeDuoApp(self.config, clock=clock, wall_clock=wall_clock)
        self._ca = trustme.CA()
        # One deployment serves every child here, so its certificate also
        # names each child's api_hostname: a client may call a child on its
        # own host (through the fake's CONNECT, which needs no DNS for it).
        names = dict.fromkeys(
            [HOSTNAME, *(_without_port(c.api_hostname) for c in self.config.children)]
        )
        self._cert = self._ca.issue_cert(*names, "127.0.0.1")
        self._port: int | None = None
        self._ca_path: Path | None = None

    # -- what a client needs ----------------------------------------------

    @property
    def host(self) -> str:
        """The API hostname to give duo_client (it signs with it)."""
        return HOSTNAME

    @property
    def port(self) -> int:
        """The bound port; only while serving."""
        if self._port is None:
            raise RuntimeError("the fake Duo API is not serving")
        return self._port

    @property
    def ikey(self) -> str:
        """The integration key the fake accepts."""
        return self.config.ikey

    @property
    def skey(self) -> str:
        """The integration's secret key."""
        return self.config.skey

    @property
    def ca_certs(self) -> str:
        """duo_client's ``ca_certs=``: the CA bundle path, or ``'HTTP'``."""
        if not self.config.tls:
            return "HTTP"
        if self._ca_path is None:
            raise RuntimeError("the fake Duo API is not serving")
        return str(self._ca_path)

    @property
    def ca_pem(self) -> bytes:
        """The PEM of the CA that signed the server's certificate."""
        return self._ca.cert_pem.bytes()

    def client_kwargs(self) -> dict[str, Any]:
        """Return keyword arguments for ``duo_client.Admin(**...)``."""
        return {
            "ikey": self.ikey,
            "skey": self.skey,
            "host": self.host,
            "port": self.port,
            "ca_certs": self.ca_certs,
        }

    @property
    def account_id(self) -> str:
        """The parent's (direct account's) id."""
        return self.config.account_id

    @property
    def children(self) -> tuple[ChildAccount, ...]:
        """The MSP children listed by ``/accounts/v1/account/list``."""
        return self.config.children

    # -- inspection and misbehaviour (see FakeDuoApp) ----------------------

    @property
    def faults(self) -> Faults:
        """The faults in force; assign a new ``Faults`` to change them."""
        return self.app.faults

    @faults.setter
    def faults(self, faults: Faults) -> None:
        self.app.faults = faults

    def held_records(
        self, endpoint: Endpoint, account_id: str | None = None
    ) -> list[FakeRecord]:
        """Return every record held for ``endpoint`` (ascending) as of now."""
        return self.app.held_records(endpoint, account_id)

    def servable_records(
        self,
        endpoint: Endpoint,
        account_id: str | None = None,
        *,
        as_of: float | None = None,
    ) -> list[FakeRecord]:
        """Return what a correct client fetches by ``as_of`` (see the app's)."""
        return self.app.servable_records(endpoint, account_id, as_of=as_of)

    def add_record(
        self,
        endpoint: Endpoint,
        body: Mapping[str, Any],
        ts_ms: int,
        account_id: str | None = None,
    ) -> FakeRecord:
        """Hold one more hand-made record, sorted at ``ts_ms``."""
        return self.app.add_record(endpoint, body, ts_ms, account_id)

    def stats(self) -> Stats:
        """Return a snapshot of the request counters."""
        return self.app.stats()

    # -- serving -----------------------------------------------------------

    async def serve(
        self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Listen on 127.0.0.1 (port 0) and serve until cancelled.

        Reports the bound port through ``task_status.started``.
        """
        ssl_context = None
        if self.config.tls:
            ssl_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            self._cert.configure_cert(ssl_context)
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        with tempfile.TemporaryDirectory(prefix="fakeduo-") as ca_dir:
            ca_path = Path(ca_dir) / "fake-duo-ca.pem"
            self._ca.cert_pem.write_to_path(str(ca_path))
            self._ca_path = ca_path
            try:
                async with trio.open_nursery() as nursery:
                    for listener in listeners:
                        nursery.start_soon(self._accept_loop, listener, ssl_context)
                    sockname = listeners[0].socket.getsockname()
                    self._port = int(sockname[1])
                    task_status.started(self._port)
            finally:
                self._port = None
                self._ca_path = None

    async def _accept_loop(
        self, listener: trio.SocketListener, ssl_context: ssl.SSLContext | None
    ) -> None:
        async with listener, trio.open_nursery() as nursery:
            while True:
                stream = await listener.accept()
                nursery.start_soon(self._connection, stream, ssl_context)

    async def _connection(
        self, raw: trio.SocketStream, ssl_context: ssl.SSLContext | None
    ) -> None:
        # A client that goes away, or sends garbage, ends its own connection
        # only; the server keeps serving the others.
        with contextlib.suppress(
            trio.BrokenResourceError, trio.ClosedResourceError, WireError
        ):
            async with raw:
                await self._serve_connection(raw, ssl_context)

    async def _serve_connection(
        self, raw: trio.SocketStream, ssl_context: ssl.SSLContext | None
    ) -> None:
        first = bytes(await raw.receive_some(_RECEIVE_SIZE))
        if not first:
            return
        reader = RequestReader()
        stream: trio.abc.Stream = raw
        if ssl_context is not None and first[0] == _TLS_HANDSHAKE:
            stream = trio.SSLStream(
                _PrefixedStream(first, raw), ssl_context, server_side=True
            )
        else:
            reader.feed(first)
            if first.startswith(b"CONNECT "):
                request = await self._read_request(reader, raw)
                if request is None:
                    return
                await raw.send_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                leftover = reader.take_buffer()
                if ssl_context is not None:
                    stream = trio.SSLStream(
                        _PrefixedStream(leftover, raw), ssl_context, server_side=True
                    )
                else:
                    reader.feed(leftover)
        while True:
            request = await self._read_request(reader, stream)
            if request is None:
                return
            plan = self.app.handle(request)
            keep_alive = request.keep_alive and plan.drop is None
            if not await self._deliver(stream, raw, plan, keep_alive=keep_alive):
                return
            if not keep_alive:
                return

    @staticmethod
    async def _read_request(
        reader: RequestReader, stream: trio.abc.Stream
    ) -> Request | None:
        while (request := reader.next_request()) is None:
            data = await stream.receive_some(_RECEIVE_SIZE)
            if not data:
                return None
            reader.feed(bytes(data))
        return request

    @staticmethod
    async def _deliver(
        stream: trio.abc.Stream,
        raw: trio.SocketStream,
        plan: Plan,
        *,
        keep_alive: bool,
    ) -> bool:
        """Send the plan's response; False if the connection was cut."""
        if plan.delay > 0:
            await trio.sleep(plan.delay)
        data = render_response(plan.response, keep_alive=keep_alive)
        if plan.drop is DropPoint.MID_BODY:
            cut = len(data) - len(plan.response.body) // 2
            await stream.send_all(data[:cut])
        if plan.drop is not None:
            # Close the TCP socket under any TLS layer: a dropped connection
            # says no goodbye.
            await raw.aclose()
            return False
        await stream.send_all(data)
        return True


@contextlib.contextmanager
def serve_in_thread(fake: FakeDuo) -> Iterator[FakeDuo]:
    """Serve ``fake`` from a background thread for the duration of the block.

    For synchronous code (a demo, a test driving duo_client directly). The
    fake's clocks are called from that thread.
    """
    started: queue.Queue[tuple[trio.lowlevel.TrioToken, trio.Event] | BaseException] = (
        queue.Queue()
    )
    failure: list[BaseException] = []

    async def main() -> None:
        stop = trio.Event()
        async with trio.open_nursery() as nursery:
            await nursery.start(fake.serve)
            started.put((trio.lowlevel.current_trio_token(), stop))
            await stop.wait()
            nursery.cancel_scope.cancel()

    def run() -> None:
        try:
            trio.run(main)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller
            failure.append(exc)
            started.put(exc)

    thread = threading.Thread(target=run, name="fake-duo", daemon=True)
    thread.start()
    ready = started.get()
    if isinstance(ready, BaseException):
        thread.join()
        raise ready
    token, stop = ready
    try:
        yield fake
    finally:
        trio.from_thread.run_sync(stop.set, trio_token=token)
        thread.join()
        if failure:
            raise failure[0]
