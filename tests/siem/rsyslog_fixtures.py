"""Helpers for the sender suites: servers, configs, pages, certificates, receivers.

And a real rsyslogd: ``running_rsyslog`` starts one on loopback.

Used by ``test_transports``, ``test_senders`` and ``test_rsyslog`` (whose
rsyslog-specific helpers live at the end).  Everything listens on 127.0.0.1
with a port the kernel picks; nothing sleeps.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Self

import attrs
import trio
import trustme

from trio_dls.config import (
    TRANSPORT_SETTINGS,
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
from trio_dls.siem.formats import JsonStyle, LogFormat
from trio_dls.siem.senders import SiemSender, Timing
from trio_dls.supervisor import (
    AccountRef,
    FetcherContext,
    Page,
    StopSignal,
    serve,
)

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
    **options: Any,
) -> Server:
    """A server named ``siem`` at *hostname*:*port*, with *options*.

    *options* are DLS's flat keys, as in a file: those of the server itself go
    to ``Server``, the others to *protocol*'s settings class.
    """
    settings_class = TRANSPORT_SETTINGS[protocol]
    own = {field.name for field in attrs.fields(Server)}
    transport = settings_class(
        **{name: value for name, value in options.items() if name not in own}
    )
    return Server(
        id=NonEmptyStr("siem"),
        hostname=NonEmptyStr(hostname),
        port=Port(port),
        protocol=protocol,
        transport=transport,
        **{name: value for name, value in options.items() if name in own},
    )


def make_config(
    server: Server,
    log_format: LogFormat = LogFormat.JSON,
    json_style: JsonStyle = JsonStyle.DLS,
) -> Config:
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
        dls_settings=DlsSettings(log_format=log_format, json_style=json_style),
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


def sender(**options: Any) -> SiemSender:
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
    """A fetcher that delivers *pages* in order, then returns.

    ``finished`` is set once every page was acknowledged: a shutdown trigger
    for the tree, which otherwise lives on for accounts yet to come.
    """

    pages: Sequence[Page]
    delivered: int = 0
    between: Callable[[int], Any] | None = None
    finished: trio.Event = attrs.Factory(trio.Event)

    async def __call__(self, context: FetcherContext) -> None:
        """Deliver every page, waiting for each acknowledgement."""
        for index, page in enumerate(self.pages):
            if self.between is not None:
                await self.between(index)
            await context.outputs.deliver(page)
            self.delivered += 1
        self.finished.set()


async def deliver_all(
    server: Server,
    pages: Sequence[Page],
    siem_sender: SiemSender | None = None,
    *,
    log_format: LogFormat = LogFormat.JSON,
    json_style: JsonStyle = JsonStyle.DLS,
) -> PageFeeder:
    """Run the real ``serve`` until *pages* are all acknowledged by the sender."""
    feeder = PageFeeder(pages)
    await serve(
        make_config(server, log_format, json_style),
        shutdown_trigger=feeder.finished.wait,
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


# --------------------------------------------------------------------------
# rsyslog
# --------------------------------------------------------------------------

RSYSLOG_INPUTS = ("tcp", "gtls", "ossl_mtls", "udp")


def find_rsyslogd() -> str | None:
    """The path of rsyslogd (Debian puts it in /usr/sbin), or None."""
    return shutil.which(
        "rsyslogd", path=os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin"])
    )


def rsyslog_config(directory: Path, pki: Pki, ports: Mapping[str, int]) -> str:
    """An rsyslog config with one listener per *ports* key, each to its own file.

    Every input writes each message's raw bytes, as received, on a line of
    ``<input>.log``: the test compares them with what trio-dls formatted.
    """
    inputs = {
        "tcp": 'type="imtcp"',
        "gtls": (
            'type="imtcp" streamDriver.name="gtls" streamDriver.mode="1"'
            ' streamDriver.authMode="anon"'
        ),
        "ossl_mtls": (
            'type="imtcp" streamDriver.name="ossl" streamDriver.mode="1"'
            ' streamDriver.authMode="x509/certvalid"'
        ),
        "udp": 'type="imudp"',
    }
    lines = [
        # Before any input: the largest message any input accepts.
        'global(maxMessageSize="256k"',
        f'       workDirectory="{directory}"',
        f'       defaultNetstreamDriverCAFile="{pki.ca_file}"',
        f'       defaultNetstreamDriverCertFile="{pki.server_cert_file}"',
        f'       defaultNetstreamDriverKeyFile="{pki.server_key_file}")',
        'module(load="imtcp")',
        'module(load="imudp")',
        'template(name="raw" type="string" string="%rawmsg%\\n")',
    ]
    for name, port in ports.items():
        lines += [
            f'input({inputs[name]} address="127.0.0.1" port="{port}" ruleset="{name}")',
            f'ruleset(name="{name}") {{',
            f'  action(type="omfile" file="{directory / name}.log" template="raw")',
            "}",
        ]
    return "\n".join(lines) + "\n"


def _listening(port: int, kind: str) -> bool:
    """Whether something on 127.0.0.1 listens on *port* (``tcp`` or ``udp``)."""
    wanted = f"0100007F:{port:04X}"
    with Path(f"/proc/net/{kind}").open(encoding="ascii") as table:
        next(table)
        for row in table:
            fields = row.split()
            # TCP state 0A is LISTEN; a bound UDP socket has state 07.
            if fields[1] == wanted and fields[3] in {"0A", "07"}:
                return True
    return False


@attrs.frozen
class Rsyslog:
    """A running rsyslogd, its ports and where each input writes."""

    process: subprocess.Popen[bytes]
    directory: Path
    ports: Mapping[str, int]
    pki: Pki

    def output(self, name: str) -> Path:
        """The file input *name* writes to."""
        return self.directory / f"{name}.log"

    def read(self, name: str) -> bytes:
        """What input *name* wrote so far."""
        path = self.output(name)
        return path.read_bytes() if path.exists() else b""


@contextlib.contextmanager
def running_rsyslog(rsyslogd: str, directory: Path) -> Iterator[Rsyslog]:
    """Start rsyslogd in the foreground on loopback; stop it at the end."""
    pki = make_pki(directory, ["siem.example"])
    ports = {
        name: free_port(socket.SOCK_DGRAM if name == "udp" else socket.SOCK_STREAM)
        for name in RSYSLOG_INPUTS
    }
    config = directory / "rsyslog.conf"
    config.write_text(rsyslog_config(directory, pki, ports), encoding="utf-8")
    with (directory / "rsyslogd.stderr").open("wb") as stderr:
        process = subprocess.Popen(
            [rsyslogd, "-n", "-f", str(config), "-i", str(directory / "rsyslog.pid")],
            stdin=subprocess.DEVNULL,
            stdout=stderr,
            stderr=stderr,
        )
    try:
        deadline = time.monotonic() + 20
        while not all(
            _listening(port, "udp" if name == "udp" else "tcp")
            for name, port in ports.items()
        ):
            if process.poll() is not None or time.monotonic() > deadline:
                log = (directory / "rsyslogd.stderr").read_text(errors="replace")
                raise RuntimeError(f"rsyslogd did not start listening:\n{log}")
            time.sleep(0.05)
        yield Rsyslog(process, directory, ports, pki)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
