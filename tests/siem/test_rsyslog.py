"""A real receiver: trio-dls sends to rsyslogd, which writes what it got to files.

Rules for this suite: one rsyslogd (Debian's package, with rsyslog-gnutls and
rsyslog-openssl) runs for the module, in the foreground, on loopback ports
picked free, with a plain TCP listener, a TLS listener on the GnuTLS driver, a
mutual-TLS listener on the OpenSSL driver, and a UDP listener.  Each listener
writes every message's raw bytes on a line of its own file; a test sends pages
through the real ``serve`` and compares that file, byte for byte, with what
the pure formatting functions produce.  Waits are bounded; rsyslog writes its
files on its own schedule, so the test looks at the file until it is complete
or the bound passes.

Without rsyslogd the suite skips, except in CI (``CI`` set), where it fails:
CI must run it.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import attrs
import pytest
import trio

from tests.siem.rsyslog_fixtures import (
    Rsyslog,
    deliver_all,
    find_rsyslogd,
    make_server,
    pages_of,
    running_rsyslog,
    sender,
)
from trio_dls.config import Port, Protocol, Server
from trio_dls.endpoints import Endpoint
from trio_dls.siem.formats import (
    LogFormat,
    MessageSettings,
    SyslogHeader,
    format_message,
)
from trio_dls.siem.framing import Framing
from trio_dls.siem.transports import TransportError, open_stream, tls_context

if TYPE_CHECKING:
    from collections.abc import Iterator

    from trio_dls.supervisor import Page

LIMIT = 30.0  # seconds: the bound on any wait for rsyslog


@pytest.fixture(scope="module")
def rsyslog(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rsyslog]:
    """A running rsyslogd with its four listeners."""
    rsyslogd = find_rsyslogd()
    if rsyslogd is None:
        if os.environ.get("CI"):
            pytest.fail(
                "rsyslogd is missing, and CI must run this suite: install the"
                " Debian packages rsyslog, rsyslog-gnutls and rsyslog-openssl"
            )
        pytest.skip("rsyslogd is not installed (apt-get install rsyslog ...)")
    with running_rsyslog(rsyslogd, tmp_path_factory.mktemp("rsyslog")) as running:
        yield running


def siem_for(rsyslog: Rsyslog, name: str, **options: Any) -> Server:
    """The server entry for listener *name* of *rsyslog*."""
    port = rsyslog.ports[name]
    pki = rsyslog.pki
    match name:
        case "tcp":
            return make_server(port, **options)
        case "gtls":
            return make_server(
                port,
                Protocol.TCPSSL,
                cert_filepath=str(pki.ca_file),
                tls_server_name="siem.example",
                **options,
            )
        case "ossl_mtls":
            return make_server(
                port,
                Protocol.TCPSSL,
                cert_filepath=str(pki.ca_file),
                tls_server_name="siem.example",
                client_cert_filepath=str(pki.client_cert_file),
                client_key_filepath=str(pki.client_key_file),
                **options,
            )
        case _:
            return make_server(port, Protocol.UDP, **options)


def messages(
    pages: list[Page],
    log_format: LogFormat,
    **settings: Any,
) -> bytes:
    """What rsyslog's file must hold: each message on a line."""
    message_settings = MessageSettings(
        hostname="dls-host",
        log_format=log_format,
        **settings,
    )
    return b"".join(
        format_message(record, Endpoint.AUTH, message_settings, fallback_time_ms=0)
        + b"\n"
        for page in pages
        for record in page.records
    )


async def written_by(rsyslog: Rsyslog, name: str, offset: int, size: int) -> bytes:
    """What listener *name* wrote after *offset*, once at least *size* bytes."""
    with trio.fail_after(LIMIT):
        # rsyslog writes a file: there is no event to wait on but its size.
        while len(data := rsyslog.read(name)[offset:]) < size:  # noqa: ASYNC110
            await trio.sleep(0.02)
    return data


@pytest.mark.parametrize("log_format", list(LogFormat))
@pytest.mark.parametrize("framing", list(Framing))
@pytest.mark.parametrize("name", ["tcp", "gtls", "ossl_mtls"])
async def test_rsyslog_receives_every_stream_record_intact(
    rsyslog: Rsyslog, name: str, framing: Framing, log_format: LogFormat
) -> None:
    """Over TCP, TLS and mutual TLS, in both framings, rsyslog gets every record."""
    # Small records and one of 20 kB, which spans many TCP segments.
    pages = [*pages_of(4, 25), *pages_of(1, 1, padding=20_000)]
    expected = messages(pages, log_format)
    offset = len(rsyslog.read(name))

    await deliver_all(
        siem_for(rsyslog, name, framing=framing), pages, log_format=log_format
    )

    assert expected == await written_by(rsyslog, name, offset, len(expected))


async def test_rsyslog_receives_syslog_headers_intact(rsyslog: Rsyslog) -> None:
    """An RFC 5424 header with octet counting reaches rsyslog as sent."""
    pages = pages_of(2, 10)
    expected = messages(pages, LogFormat.JSON, syslog_header=SyslogHeader.RFC5424)
    offset = len(rsyslog.read("tcp"))

    server = siem_for(
        rsyslog,
        "tcp",
        framing=Framing.OCTET_COUNTING,
        syslog_header=SyslogHeader.RFC5424,
    )
    await deliver_all(server, pages)

    assert expected == await written_by(rsyslog, "tcp", offset, len(expected))


@pytest.mark.parametrize("log_format", list(LogFormat))
async def test_rsyslog_receives_every_udp_record_intact(
    rsyslog: Rsyslog, log_format: LogFormat
) -> None:
    """Over UDP, each record is a datagram that rsyslog writes as sent."""
    pages = pages_of(4, 25)
    expected = messages(pages, log_format)
    offset = len(rsyslog.read("udp"))

    await deliver_all(siem_for(rsyslog, "udp"), pages, sender(), log_format=log_format)

    assert expected == await written_by(rsyslog, "udp", offset, len(expected))


async def test_rsyslog_mutual_tls_refuses_a_client_without_a_certificate(
    rsyslog: Rsyslog, nursery: trio.Nursery
) -> None:
    """Rsyslog's x509/certvalid listener refuses us without a client certificate."""
    server = siem_for(rsyslog, "gtls")
    server = attrs.evolve(server, port=Port(rsyslog.ports["ossl_mtls"]))

    with (
        pytest.raises(TransportError, match="CERTIFICATE_REQUIRED"),
        trio.fail_after(LIMIT),
    ):
        await open_stream(server, nursery, tls_context(server))
