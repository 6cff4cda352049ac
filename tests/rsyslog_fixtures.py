"""Helpers for the sender suites: servers, configs, pages, certificates, receivers.

Used by ``test_transports``, ``test_senders`` and ``test_rsyslog`` (whose
rsyslog-specific helpers live at the end).  Everything listens on 127.0.0.1
with a port the kernel picks; nothing sleeps.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

import attrs
import trio
import trustme

from trio_dls.config import (
    Account,
    Config,
    DlsSettings,
    EndpointServerMapping,
    NonEmptyStr,
    Port,
    Protocol,
    Secret,
    Server,
)
from trio_dls.endpoints import Endpoint
from trio_dls.formats import LogFormat
from trio_dls.senders import SiemSender, Timing
from trio_dls.supervisor import (
    AccountRef,
    FetcherContext,
    Page,
    StopSignal,
    serve,
)

if TYPE_CHECKING:
    from collections.abc import Mapping

# Short waits, so that retries cost milliseconds of real time.
FAST: Timing = Timing(
    connect_timeout=5.0,
    write_timeout=10.0,
    close_timeout=1.0,
    reconnect_first=0.01,
    reconnect_cap=0.05,
    udp_resolve_interval=60.0,
)
ACCOUNT = AccountRef("acct")


def make_server(
    port: int,
    protocol: Protocol = Protocol.TCP,
    *,
    hostname: str = "127.0.0.1",
    **options: Any,  # noqa: ANN401 - any Server field
) -> Server:
    """A server named ``siem`` at *hostname*:*port*, with *options*."""
    return Server(
        id=NonEmptyStr("siem"),
        hostname=NonEmptyStr(hostname),
        port=Port(port),
        protocol=protocol,
        **options,
    )


def make_config(server: Server, log_format: LogFormat = LogFormat.JSON) -> Config:
    """A config whose auth endpoint is mapped to *server* alone."""
    return Config(
        version=NonEmptyStr("1.0.0"),
        servers=(server,),
        account=Account(
            ikey=NonEmptyStr("DIXXXXXXXXXXXXXXXXXX"),
            hostname=NonEmptyStr("api-test.duosecurity.com"),
            endpoint_server_mappings=(
                EndpointServerMapping((Endpoint.AUTH,), server.id),
            ),
            skey=Secret("s" * 40),
        ),
        dls_settings=DlsSettings(log_format=log_format),
    )


def auth_record(n: int, *, padding: int = 0) -> dict[str, Any]:
    """An auth record numbered *n*, with non-ASCII text and *padding* more bytes."""
    return {
        "txid": f"tx-{n:06d}",
        "isotimestamp": "2024-05-01T12:00:00.123456+00:00",
        "timestamp": 1714564800,
        "event_type": "authentication",
        "result": "success",
        "user": {"name": f"jos\u00e9.n\u00fa\u00f1ez{n}", "key": "DU123"},
        "reason": "user approved",
        "note": "x" * padding,
    }


def pages_of(count: int, size: int, *, padding: int = 0) -> list[Page]:
    """*count* auth pages of *size* records, numbered in order."""
    return [
        Page(
            ACCOUNT,
            Endpoint.AUTH,
            tuple(auth_record(p * size + i, padding=padding) for i in range(size)),
        )
        for p in range(count)
    ]


def txids(data: bytes | Sequence[bytes]) -> list[str]:
    """The txids found in *data*, in order (a record per ``tx-NNNNNN``)."""
    joined = data if isinstance(data, bytes) else b"\n".join(data)
    return [
        joined[i : i + 9].decode()
        for i in range(len(joined))
        if joined.startswith(b"tx-", i)
    ]


def sender(**options: Any) -> SiemSender:  # noqa: ANN401 - SiemSender fields
    """A ``SiemSender`` with a fixed hostname and fast retries."""
    options.setdefault("timing", FAST)
    options.setdefault("hostname", lambda: "dls-host")
    options.setdefault("clock_ms", lambda: 0)
    return SiemSender(**options)


async def one_account(config: Config, stop: StopSignal) -> list[AccountRef]:
    """The account discovery of these tests: one account."""
    del config, stop
    return [ACCOUNT]


@attrs.define
class PageFeeder:
    """A fetcher that delivers *pages* in order, then returns."""

    pages: Sequence[Page]
    delivered: int = 0
    between: Callable[[int], Any] | None = None

    async def __call__(self, context: FetcherContext) -> None:
        """Deliver every page, waiting for each acknowledgement."""
        for index, page in enumerate(self.pages):
            if self.between is not None:
                await self.between(index)
            await context.outputs.deliver(page)
            self.delivered += 1


async def deliver_all(
    server: Server,
    pages: Sequence[Page],
    siem_sender: SiemSender | None = None,
    *,
    log_format: LogFormat = LogFormat.JSON,
) -> PageFeeder:
    """Run the real ``serve`` until *pages* are all acknowledged by the sender."""
    feeder = PageFeeder(pages)
    await serve(
        make_config(server, log_format),
        shutdown_trigger=trio.sleep_forever,
        fetcher=feeder,
        sender=siem_sender or sender(),
        discover_accounts=one_account,
    )
    return feeder


# --------------------------------------------------------------------------
# Certificates
# --------------------------------------------------------------------------


@attrs.frozen
class Pki:
    """A test CA, a server certificate and a client certificate, as files."""

    ca: trustme.CA
    ca_file: Path
    server_cert: trustme.LeafCert
    client_cert_file: Path
    client_key_file: Path
    client_combined_file: Path
    server_cert_file: Path
    server_key_file: Path


def make_pki(directory: Path, server_names: Sequence[str]) -> Pki:
    """Issue a CA and certificates for *server_names* and a client into *directory*."""
    ca = trustme.CA()
    ca_file = directory / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    server_cert = ca.issue_cert(*server_names)
    server_cert_file = directory / "server.pem"
    server_key_file = directory / "server.key"
    for blob in server_cert.cert_chain_pems:
        blob.write_to_path(str(server_cert_file), append=True)
    server_cert.private_key_pem.write_to_path(str(server_key_file))
    client = ca.issue_cert("dls-client@example.com")
    client_cert_file = directory / "client.pem"
    client_key_file = directory / "client.key"
    client_combined_file = directory / "client-combined.pem"
    client.cert_chain_pems[0].write_to_path(str(client_cert_file))
    client.private_key_pem.write_to_path(str(client_key_file))
    client.private_key_and_cert_chain_pem.write_to_path(str(client_combined_file))
    return Pki(
        ca=ca,
        ca_file=ca_file,
        server_cert=server_cert,
        client_cert_file=client_cert_file,
        client_key_file=client_key_file,
        client_combined_file=client_combined_file,
        server_cert_file=server_cert_file,
        server_key_file=server_key_file,
    )


# --------------------------------------------------------------------------
# Receivers
# --------------------------------------------------------------------------


def free_port(kind: socket.SocketKind = socket.SOCK_STREAM) -> int:
    """A port on 127.0.0.1 that was free a moment ago (for rsyslog)."""
    with socket.socket(socket.AF_INET, kind) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@attrs.define
class StreamReceiver:
    """A TCP (or TLS) receiver on loopback that keeps every connection's bytes."""

    connections: list[bytearray] = attrs.Factory(list)
    changed: trio.Event = attrs.Factory(trio.Event)

    @property
    def data(self) -> bytes:
        """All bytes received, connection after connection."""
        return b"".join(self.connections)

    def _note(self) -> None:
        self.changed.set()
        self.changed = trio.Event()

    async def wait_for(self, predicate: Callable[[StreamReceiver], bool]) -> None:
        """Return once *predicate* holds (the caller bounds the wait)."""
        while not predicate(self):
            await self.changed.wait()

    async def handle(self, stream: trio.abc.Stream) -> None:
        """Keep what *stream* sends until it ends (a broken TLS handshake ends it)."""
        received = bytearray()
        self.connections.append(received)
        self._note()
        async with stream:
            try:
                while chunk := await stream.receive_some():
                    received += chunk
                    self._note()
            except trio.BrokenResourceError:
                pass
        self._note()


class LogWaiter(logging.Handler):
    """A log handler that counts matching records and wakes waiters."""

    def __init__(self, logger: str, text: str) -> None:
        """Count records of *logger* whose message contains *text*."""
        super().__init__(logging.DEBUG)
        self._logger = logging.getLogger(logger)
        self._text = text
        self.count = 0
        self._changed = trio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        """Count *record* if it matches."""
        if self._text in record.getMessage():
            self.count += 1
            self._changed.set()
            self._changed = trio.Event()

    async def wait_for(self, count: int) -> None:
        """Return once *count* matching records were seen."""
        while self.count < count:
            await self._changed.wait()

    def __enter__(self) -> Self:
        """Attach to the logger, at debug level."""
        self._level = self._logger.level
        self._logger.setLevel(logging.DEBUG)
        self._logger.addHandler(self)
        return self

    def __exit__(self, *exc: object) -> None:
        """Detach from the logger."""
        self._logger.removeHandler(self)
        self._logger.setLevel(self._level)


def records_by_txid(pages: Sequence[Page]) -> Mapping[str, Any]:
    """Every record of *pages* by txid."""
    return {record["txid"]: record for page in pages for record in page.records}
