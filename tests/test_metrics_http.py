"""The metrics endpoint: scraped over loopback while the real pipeline runs.

Rules for these tests: the endpoint listens on 127.0.0.1 with a port the
kernel picks and is asked by a small trio client over a real socket; the
pipeline is the real ``serve`` tree with the real fetchers against the fake
Duo API's handler in-process (``tests.test_fetching``) and the real
``SiemSender`` writing to a TCP receiver on loopback.  Time is trio's virtual
clock throughout (nothing here blocks in a thread), so minutes of stall and
recovery take milliseconds; every wait is bounded by ``fail_after``.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

import attrs
import pytest
import trio
import trio.testing
from prometheus_client.parser import text_string_to_metric_families

from tests.duo_inprocess import InProcessDuo
from tests.siem.test_senders import start_tcp_receiver
from tests.test_fetching import DAY, Daemon, config_for, held, make_app
from trio_dls.config.model import ListenAddress, Port
from trio_dls.daemon import run_daemon
from trio_dls.duo.discovery import AccountDiscovery
from trio_dls.endpoints import Endpoint
from trio_dls.errors import FatalError
from trio_dls.fakeduo import DatasetSpec, Faults
from trio_dls.observe import Fanout, LogObserver
from trio_dls.observe.metrics import CONTENT_TYPE, Metrics
from trio_dls.observe.metrics_http import (
    CONNECTION_TIMEOUT,
    MAX_CONNECTIONS,
    MAX_REQUEST_HEAD,
    answer,
    open_listeners,
    serve_metrics,
)
from trio_dls.siem.senders import SiemSender
from trio_dls.supervisor import serve

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

    from trio_dls.config import Config

AUTH = Endpoint.AUTH
LIMIT = 60.0  # seconds (virtual): the bound on one request to the endpoint


@attrs.frozen
class Reply:
    """What the endpoint answered."""

    status: int
    headers: dict[str, str]
    body: str


async def ask(port: int, request: bytes) -> Reply:
    """Send *request* as it is to the endpoint on *port*; read the whole answer."""
    with trio.fail_after(LIMIT):
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        async with stream:
            await stream.send_all(request)
            data = bytearray()
            while chunk := await stream.receive_some():
                data += chunk
    head, _, body = bytes(data).partition(b"\r\n\r\n")
    status_line, *lines = head.decode("ascii").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines)
    return Reply(int(status_line.split(" ")[1]), headers, body.decode())


async def get(port: int, path: str) -> Reply:
    """GET *path* from the endpoint on *port*."""
    return await ask(port, f"GET {path} HTTP/1.1\r\nHost: t\r\n\r\n".encode())


async def probe(port: int, until: Callable[[Reply], bool]) -> Reply:
    """Ask /healthz every 10 s, as a probe does, until a reply meets *until*."""
    with trio.fail_after(DAY):
        # Polling is the behaviour under test: an event would bypass the endpoint.
        while not until(reply := await get(port, "/healthz")):  # noqa: ASYNC110
            await trio.sleep(10)
    return reply


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """The exposition *text* parsed as Prometheus does: (name, labels) to value."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def sent(text: str) -> float:
    """Records sent to server ``siem`` for auth, as the exposition *text* says."""
    key = frozenset({("server", "siem"), ("endpoint", "auth")})
    return samples(text)[("trio_dls_records_sent_total", key)]


async def start_endpoint(nursery: trio.Nursery, metrics: Metrics) -> int:
    """Serve *metrics* on a loopback port; return the port."""
    listeners = await open_listeners("127.0.0.1:0")
    port: int = listeners[0].socket.getsockname()[1]
    await nursery.start(serve_metrics, metrics, listeners)
    return port


def with_receiver(config: Config, port: int) -> Config:
    """*config* with its one server on *port*."""
    return attrs.evolve(
        config, servers=(attrs.evolve(config.servers[0], port=Port(port)),)
    )


# --------------------------------------------------------------------------
# The protocol, pure
# --------------------------------------------------------------------------


def idle_metrics() -> Metrics:
    """Metrics of a daemon that has done nothing, at time 0."""
    return Metrics(stall_after=600.0, clock=lambda: 0.0, process=False)


@pytest.mark.parametrize(
    ("request_head", "status"),
    [
        (b"GET /metrics HTTP/1.1", 200),
        (b"GET /metrics?x=1 HTTP/1.0", 200),
        (b"GET /healthz HTTP/1.1\r\nHost: t", 200),
        (b"GET / HTTP/1.1", 404),
        (b"POST /metrics HTTP/1.1", 405),
        (b"GET /metrics", 400),
        (b"\x16\x03\x01 garbage", 400),
    ],
)
def test_each_request_gets_its_status(request_head: bytes, status: int) -> None:
    """Only GET (or HEAD) of /metrics and /healthz are served; the rest is refused."""
    response = answer(request_head, idle_metrics())

    assert f"HTTP/1.1 {status} ".encode() == response[: len(f"HTTP/1.1 {status} ")]


def test_head_gets_the_head_alone() -> None:
    """HEAD answers the headers of GET, with the same length, and no body."""
    metrics = idle_metrics()
    full = answer(b"GET /healthz HTTP/1.1", metrics)
    head = answer(b"HEAD /healthz HTTP/1.1", metrics)

    assert full.partition(b"\r\n\r\n")[0] + b"\r\n\r\n" == head


# --------------------------------------------------------------------------
# The endpoint on loopback
# --------------------------------------------------------------------------


async def test_metrics_are_served_in_prometheus_text_format(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    """/metrics is the registry's exposition, with its content type."""
    del autojump_clock  # pytest-trio runs the test on it
    metrics = Metrics(stall_after=600.0, endpoints=(AUTH,), routes=(("siem", AUTH),))
    port = await start_endpoint(nursery, metrics)

    reply = await get(port, "/metrics")

    assert (reply.status, reply.headers["Content-Type"]) == (200, CONTENT_TYPE)
    assert sent(reply.body) == 0
    assert ("process_open_fds", frozenset()) in samples(reply.body)


async def test_a_request_head_too_large_is_refused(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    """A head beyond MAX_REQUEST_HEAD gets 431, not a growing buffer."""
    del autojump_clock  # pytest-trio runs the test on it
    port = await start_endpoint(nursery, idle_metrics())
    request = b"GET /metrics HTTP/1.1\r\nX: " + b"a" * MAX_REQUEST_HEAD + b"\r\n\r\n"

    assert (await ask(port, request)).status == 431


async def test_a_silent_client_is_dropped_and_the_connections_are_bounded(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    """Clients that send nothing hold all places until the timeout, then lose them."""
    del autojump_clock  # pytest-trio runs the test on it
    port = await start_endpoint(nursery, idle_metrics())
    start = trio.current_time()
    silent = [
        await trio.open_tcp_stream("127.0.0.1", port) for _ in range(MAX_CONNECTIONS)
    ]

    reply = await get(port, "/healthz")
    waited = trio.current_time() - start
    with trio.fail_after(LIMIT):
        closed = [await stream.receive_some() for stream in silent]
    for stream in silent:
        await stream.aclose()

    assert reply.status == 200
    # The request waited in the backlog for a place until the silent ones
    # were dropped.
    assert waited >= CONNECTION_TIMEOUT
    assert closed == [b""] * MAX_CONNECTIONS


async def test_a_port_in_use_is_fatal_and_named() -> None:
    """Listening where another socket listens is a FatalError naming the address."""
    taken = await open_listeners("127.0.0.1:0")
    port = taken[0].socket.getsockname()[1]
    async with taken[0]:
        with pytest.raises(FatalError) as caught:
            await open_listeners(f"127.0.0.1:{port}")

    assert f"cannot listen on 127.0.0.1:{port}" in str(caught.value)


async def test_the_daemon_stops_at_start_when_its_metrics_port_is_taken(
    tmp_path: Path,
) -> None:
    """run_daemon with metrics.listen on a taken port fails before fetching."""
    taken = await open_listeners("127.0.0.1:0")
    port = taken[0].socket.getsockname()[1]
    config = config_for(tmp_path, [AUTH])
    settings = config.dls_settings
    config = attrs.evolve(
        config,
        dls_settings=attrs.evolve(
            settings,
            metrics=attrs.evolve(
                settings.metrics, listen=ListenAddress(f"127.0.0.1:{port}")
            ),
        ),
    )
    async with taken[0]:
        with (
            trio.fail_after(LIMIT),
            pytest.RaisesGroup(FatalError, flatten_subgroups=True) as caught,
        ):
            await run_daemon(config, shutdown_trigger=trio.sleep_forever)

    # However deep the tree nests it, the one error names the port.
    fatal = caught.value.split(FatalError)[0]
    assert fatal is not None
    leaves = list(_leaves(fatal))
    assert len(leaves) == 1
    assert f"127.0.0.1:{port}" in str(leaves[0])


def _leaves(group: BaseExceptionGroup[FatalError]) -> Iterator[FatalError]:
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            yield from _leaves(exc)
        else:
            yield exc


# --------------------------------------------------------------------------
# The real pipeline, scraped
# --------------------------------------------------------------------------


async def test_scraped_while_records_flow_and_health_follows_the_fake(
    tmp_path: Path, nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    """Counters match what the receiver got; /healthz flips with the fake and back."""
    del autojump_clock  # pytest-trio runs the test on it
    app = make_app(
        DatasetSpec(
            seed=21, span=2 * DAY, end_before=600, counts={AUTH: 4000}, admin_burst=0
        ),
        faults=Faults(rate_limit=6, rate_burst=1),
    )
    receiver, receiver_port = await start_tcp_receiver(nursery)
    config = with_receiver(config_for(tmp_path, [AUTH]), receiver_port)
    metrics = Metrics.from_config(config)
    observer = Fanout(LogObserver(), metrics)
    port = await start_endpoint(nursery, metrics)
    discovery = AccountDiscovery(InProcessDuo(app), observer=observer)
    stop = trio.Event()
    nursery.start_soon(
        functools.partial(
            serve,
            config,
            shutdown_trigger=stop.wait,
            grace=30,
            fetcher=Daemon(app, config, observer=observer).fetching(),
            sender=SiemSender(observer=observer),
            discover_accounts=discovery,
            observer=observer,
        )
    )
    expected = len(held(app, [AUTH]))

    def received() -> int:
        return receiver.data.count(b"\n")

    # Scrape every few seconds until every record is in.
    during: list[float] = []
    with trio.fail_after(DAY):
        while received() < expected:
            during.append(sent((await get(port, "/metrics")).body))
            await trio.sleep(5)
        await trio.sleep(5)
    final = samples((await get(port, "/metrics")).body)
    healthy = await get(port, "/healthz")

    assert any(0 < value < expected for value in during), during
    assert during == sorted(during)
    auth = frozenset({("endpoint", "auth")})
    siem_auth = frozenset({("server", "siem"), ("endpoint", "auth")})
    assert expected == received()
    assert received() == final["trio_dls_records_sent_total", siem_auth]
    assert received() == final["trio_dls_records_fetched_total", auth]
    assert final["trio_dls_api_requests_total", auth | {("status", "429")}] > 0
    assert (healthy.status, healthy.body) == (200, "ok\n")

    # Duo stops answering (every request fails): unhealthy once stall_after
    # has passed without progress, and saying why.
    app.faults = Faults(error_rate=1.0)
    broken_at = trio.current_time()
    reply = await probe(port, lambda reply: reply.status != 200)
    flipped_after = trio.current_time() - broken_at
    broken_metrics = samples((await get(port, "/metrics")).body)

    assert reply.status == 503
    assert reply.body.startswith("auth of account ")
    assert "no progress for" in reply.body
    assert "(last: TransientApiError 50" in reply.body
    # The last progress came at most one poll before the faults.
    assert 600 - 120 <= flipped_after <= 600 + 10
    assert broken_metrics["trio_dls_healthy", frozenset()] == 0

    # Duo answers again: healthy at the next served request.
    app.faults = Faults()
    reply = await probe(port, lambda reply: reply.status == 200)
    stop.set()

    assert reply.body == "ok\n"
