"""The configured timeouts are the ones used: Duo calls, SIEM connects and writes.

Rules for these tests: everything runs on trio's virtual clock, against real
loopback sockets (port 0) that never answer: the fake Duo API with a delay
longer than any timeout, a TLS "SIEM" that never completes the handshake, a
TCP "SIEM" that never reads.  Each test sets a timeout unlike every default
and checks that the wait ended at that value, as the error says and as the
virtual clock shows.
"""

from __future__ import annotations

import functools
import math
from typing import TYPE_CHECKING

import attrs
import pytest
import trio
import trio.testing

from tests.duo.test_client import AUTH, account_for, window
from tests.fakeduo.fixtures import IGNORE_DUO_CLIENT_SSL_WARNING, small_config
from tests.siem.rsyslog_fixtures import (
    FAST,
    PageFeeder,
    make_config,
    make_pki,
    make_server,
    one_account,
    pages_of,
    sender,
)
from trio_dls.config import PositiveSeconds, Protocol, Server
from trio_dls.daemon import duo_api_for
from trio_dls.duo.client import CALL_TIMEOUT, TransientApiError
from trio_dls.fakeduo import FakeDuo, Faults
from trio_dls.observe.events import ServerFailed
from trio_dls.siem.senders import CONNECT_TIMEOUT, WRITE_TIMEOUT
from trio_dls.supervisor import AccountRef, serve

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.filterwarnings(IGNORE_DUO_CLIENT_SSL_WARNING)

# Unlike every default (60, 30 and 60 s).
CONFIGURED = 7.0
assert CONFIGURED not in {CALL_TIMEOUT, CONNECT_TIMEOUT, WRITE_TIMEOUT}
# Real seconds of idleness before the virtual clock jumps: far longer than
# loopback takes to carry a request.
IDLE = 0.1
# Real seconds a worker thread may take to read an answer and end.
WORKER_IDLE = 10.0
# The sender's own waits are the defaults, so that a server's value shows;
# its retries are fast.
DEFAULT_WAITS = attrs.evolve(
    FAST, connect_timeout=CONNECT_TIMEOUT, write_timeout=WRITE_TIMEOUT
)


async def test_a_stalled_duo_call_ends_at_the_configured_request_timeout(
    tmp_path: Path, mock_clock: trio.testing.MockClock
) -> None:
    """dls_settings.api.request_timeout bounds a call Duo never answers."""
    # The request reaches the fake in real time; the clock jumps only once
    # everything waits on it (the fake on its delay, the call on its deadline).
    mock_clock.autojump_threshold = IDLE
    fake = FakeDuo(small_config(faults=Faults(delay=3600)))
    async with trio.open_nursery() as nursery:
        await nursery.start(fake.serve)
        config = account_for(fake, tmp_path)
        api_settings = attrs.evolve(
            config.dls_settings.api, request_timeout=PositiveSeconds(CONFIGURED)
        )
        config = attrs.evolve(
            config, dls_settings=attrs.evolve(config.dls_settings, api=api_settings)
        )
        limiter = trio.CapacityLimiter(1)
        client = duo_api_for(config, AccountRef(config.account.ikey), limiter)
        began = trio.current_time()
        with pytest.raises(TransientApiError) as caught:
            await client.get(AUTH, window(fake))
        took = trio.current_time() - began
        # The abandoned thread ends, and gives its token back, once the fake
        # answers (its delay passes on the virtual clock); duo_client closes
        # its connection then, rather than leaving it to the next test's GC.
        # The delay is jumped over by hand; the thread then reads the answer
        # in real time, which on a loaded machine takes longer than IDLE:
        # the clock jumps to the bound only after WORKER_IDLE real seconds.
        mock_clock.autojump_threshold = math.inf
        mock_clock.jump(3600)
        mock_clock.autojump_threshold = WORKER_IDLE
        with trio.fail_after(2 * 3600):
            async with limiter:
                pass
        nursery.cancel_scope.cancel()
    assert f"no answer within {CONFIGURED:g} s" in str(caught.value)
    assert took == CONFIGURED


async def first_failure(server: Server) -> tuple[ServerFailed, float]:
    """Run the tree towards *server* until its sender fails once; when it did."""
    failures: list[tuple[ServerFailed, float]] = []
    failed = trio.Event()

    def observe(event: object) -> None:
        if isinstance(event, ServerFailed):
            failures.append((event, trio.current_time()))
            failed.set()

    began = trio.current_time()
    with trio.fail_after(1000):
        await serve(
            make_config(server),
            shutdown_trigger=failed.wait,
            grace=1.0,
            fetcher=PageFeeder(pages_of(1, 2000, padding=700)),
            sender=sender(observer=observe, timing=DEFAULT_WAITS),
            discover_accounts=one_account,
        )
    event, at = failures[0]
    return event, at - began


async def test_a_handshake_that_never_ends_fails_at_the_configured_connect_timeout(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """A server's connect_timeout bounds connecting, TLS handshake included."""
    del autojump_clock
    pki = make_pki(tmp_path, ["siem.example"])

    async def silent(stream: trio.SocketStream) -> None:
        async with stream:
            await trio.sleep_forever()

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(
            functools.partial(trio.serve_tcp, host="127.0.0.1"), silent, 0
        )
        server = make_server(
            listeners[0].socket.getsockname()[1],
            Protocol.TCPSSL,
            cert_filepath=str(pki.ca_file),
            tls_server_name="siem.example",
            connect_timeout=CONFIGURED,
        )
        event, at = await first_failure(server)
        nursery.cancel_scope.cancel()
    assert f"no connection within {CONFIGURED:g} s" in event.reason
    assert at == CONFIGURED


async def test_a_server_that_never_reads_fails_at_the_configured_write_timeout(
    mock_clock: trio.testing.MockClock,
) -> None:
    """A server's write_timeout is how long it may acknowledge nothing."""
    # Loopback's buffers fill in real time; the clock jumps only once idle.
    mock_clock.autojump_threshold = IDLE

    async def never_read(stream: trio.SocketStream) -> None:
        async with stream:
            await trio.sleep_forever()

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(
            functools.partial(trio.serve_tcp, host="127.0.0.1"), never_read, 0
        )
        server = make_server(
            listeners[0].socket.getsockname()[1], write_timeout=CONFIGURED
        )
        event, at = await first_failure(server)
        nursery.cancel_scope.cancel()
    assert f"nothing acknowledged for {CONFIGURED:g} s" in event.reason
    # Never early; later by as long as the kernel's buffers took to fill.
    assert CONFIGURED <= at < WRITE_TIMEOUT
