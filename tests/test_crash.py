"""The real daemon process, killed with SIGKILL mid-catch-up, loses nothing.

Rules for these tests: ``python -m trio_dls`` runs as its own process against
the fake Duo API (real HTTPS, in a thread of the test) and a loopback TCP
listener standing in for the SIEM.  Kills happen when the listener has seen a
random number of records, not after a sleep; every wait is bounded.  What
arrived is compared with what the fake holds.  Every test runs twice: with
``offset: 2`` over a day of records, and with DLS's defaults (no ``api`` keys:
offset 180 days, timeout 120 s) over four days, where the first window opens
at Duo's retention floor, which moves on while it is paged.
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import random
import signal
import socketserver
import subprocess
import threading
import time
from typing import TYPE_CHECKING

import attrs
import pytest

from tests.portable import LAUNCHERS, LINUX
from tests.test_cli import Lines
from trio_dls.config import load_config
from trio_dls.endpoints import Endpoint
from trio_dls.fakeduo import (
    DatasetSpec,
    FakeDuo,
    FakeDuoConfig,
    Faults,
    serve_in_thread,
)
from trio_dls.fakeduo.data import record_key

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

WAIT = 120.0  # seconds; a bound on each wait, never a sleep
DAY = 86_400.0
PAGE = {e: 500 if e is Endpoint.TRUSTMONITOR else 1000 for e in Endpoint}
EVENTTYPES = {
    "authentication": Endpoint.AUTH,
    "administrator": Endpoint.ADMINACTION,
    "telephony": Endpoint.TELEPHONY,
    "activity": Endpoint.ACTIVITY,
}
Key = tuple[Endpoint, str]


def key_of(line: bytes) -> Key:
    """The endpoint and identity of one received JSON line."""
    record = json.loads(line)
    endpoint = EVENTTYPES.get(record.get("eventtype", ""), Endpoint.TRUSTMONITOR)
    return endpoint, record_key(endpoint, record)


class Siem(socketserver.ThreadingTCPServer):
    """A loopback TCP listener keeping every complete line it receives."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        """Listen on a free loopback port."""
        super().__init__(("127.0.0.1", 0), _Handler)
        self.received: list[Key] = []
        self.copies: collections.Counter[Key] = collections.Counter()
        # Copies beyond the first, per endpoint.
        self.extra: collections.Counter[Endpoint] = collections.Counter()
        self.changed = threading.Condition()

    def add(self, key: Key) -> None:
        """Keep one received record and wake the waiters."""
        with self.changed:
            self.received.append(key)
            self.copies[key] += 1
            if self.copies[key] > 1:
                self.extra[key[0]] += 1
            self.changed.notify_all()

    def holds(self, want: list[Key]) -> bool:
        """Whether every record of *want* has arrived (call under ``changed``)."""
        return len(self.copies) >= len(set(want)) and all(
            key in self.copies for key in want
        )

    def wait_for(self, predicate: Callable[[], bool]) -> None:
        """Block until *predicate()* holds; fail after WAIT seconds."""
        assert self.wait_until(predicate, WAIT)

    def wait_until(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Block until *predicate()* holds or *timeout* seconds passed; say which."""
        with self.changed:
            return self.changed.wait_for(predicate, timeout=timeout)

    def wait_for_records(self, count: int) -> None:
        """Block until *count* records (copies included) have arrived."""
        self.wait_for(lambda: len(self.received) >= count)


class _Handler(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        server = self.server
        assert isinstance(server, Siem)
        for line in self.rfile:
            if not line.endswith(b"\n"):
                return  # cut by a kill: not a record
            server.add(key_of(line))


@attrs.frozen
class Backlog:
    """How long a backlog spreads over, and the config's ``api`` settings."""

    span: float
    api: str | None
    """The ``api`` mapping as YAML; None leaves the key out (the defaults)."""


BACKLOGS = {
    "offset 2 days": Backlog(span=DAY, api="{offset: 2, timeout: 120}"),
    "defaults": Backlog(span=4 * DAY, api=None),
}


@pytest.fixture(params=list(BACKLOGS))
def backlog(request: pytest.FixtureRequest) -> Backlog:
    """Each way of running the tests, in turn."""
    return BACKLOGS[request.param]


@pytest.fixture
def fake(backlog: Backlog) -> Iterator[FakeDuo]:
    """A fake Duo with a few pages per endpoint, answering slowly enough."""
    with slow_fake(backlog) as server:
        yield server


@contextlib.contextmanager
def slow_fake(backlog: Backlog) -> Iterator[FakeDuo]:
    """Serve a fake Duo with a few pages per endpoint over *backlog*'s span.

    Each answer takes 0.3 s, so catching up takes a few seconds and kills
    land in the middle of it.
    """
    spec = DatasetSpec(
        seed=77,
        span=backlog.span,
        counts={
            Endpoint.AUTH: 3500,
            Endpoint.ADMINACTION: 2200,
            Endpoint.TELEPHONY: 2100,
            Endpoint.ACTIVITY: 2600,
            Endpoint.TRUSTMONITOR: 1300,
        },
    )
    with serve_in_thread(
        FakeDuo(FakeDuoConfig(dataset=spec, faults=Faults(delay=0.3)))
    ) as server:
        yield server


@contextlib.contextmanager
def serving_siem() -> Iterator[Siem]:
    """Run a listener in a thread for the body; shut it down after."""
    server = Siem()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def siem() -> Iterator[Siem]:
    """The listener, serving in a thread."""
    with serving_siem() as server:
        yield server


def expected(fake: FakeDuo) -> list[Key]:
    """Every record Duo would serve a few seconds from now."""
    # A little ahead, so that records becoming available while the daemon
    # runs do not count: the daemon polls again only after api.timeout.
    as_of = time.time() - 5
    return [
        (endpoint, record.key)
        for endpoint in Endpoint
        for record in fake.servable_records(endpoint, as_of=as_of)
    ]


def write_config(tmp_path: Path, fake: FakeDuo, siem: Siem, backlog: Backlog) -> Path:
    """A config sending every endpoint to the listener, cursors in tmp_path."""
    path = tmp_path / "config.yml"
    api = "" if backlog.api is None else f"  api: {backlog.api}\n"
    path.write_text(
        f"""\
version: '1.0.0'
dls_settings:
  log_filepath: {tmp_path / "trio-dls.log"}
{api}  checkpointing: {{directory: {tmp_path / "state"}}}
servers:
  - {{id: siem, hostname: 127.0.0.1, port: {siem.server_address[1]}, protocol: TCP}}
account:
  ikey: {fake.ikey}
  skey: {fake.skey}
  hostname: localhost:{fake.port}
  ca_certs: {fake.ca_certs}
  endpoint_server_mappings:
    - endpoints: [auth, adminaction, telephony, trustmonitor, activity]
      server: siem
"""
    )
    if backlog.api is None:
        settings = load_config(path).dls_settings.api
        assert (settings.offset, settings.timeout) == (180.0, 120.0)
    return path


@pytest.fixture(params=list(LAUNCHERS))
def launcher(request: pytest.FixtureRequest) -> tuple[str, ...]:
    """The daemon as on Linux, then without Linux's refinements (tests/portable.py)."""
    return LAUNCHERS[request.param]


# Each backlog on Linux, and the portable daemon on DLS's defaults: what the
# portable daemon changes (acknowledgement, fsync, signals) does not depend
# on the offset, and each of these runs takes seconds.
CRASH_CASES = pytest.mark.parametrize(
    ("backlog", "launcher"),
    [
        ("offset 2 days", "linux"),
        ("defaults", "linux"),
        ("defaults", "portable"),
    ],
    indirect=True,
)


class Daemon:
    """``python -m trio_dls CONFIG`` (or *launcher* CONFIG) as a child process."""

    def __init__(self, config: Path, launcher: tuple[str, ...] = LINUX) -> None:
        """Start it and wait until its tree runs."""
        self.proc = subprocess.Popen(
            [*launcher, str(config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self.lines = Lines(self.proc)
        self.lines.wait_for("started:", timeout=WAIT)

    def stop(self, signum: int) -> int:
        """Send *signum*; return the exit status."""
        self.proc.send_signal(signum)
        status = self.proc.wait(timeout=WAIT)
        self.lines.rest()
        assert self.proc.stderr is not None
        self.proc.stderr.close()
        return status


def duplicates(received: list[Key]) -> collections.Counter[Endpoint]:
    """How many extra copies of records each endpoint got."""
    extra: collections.Counter[Endpoint] = collections.Counter()
    for (endpoint, _), count in collections.Counter(received).items():
        extra[endpoint] += count - 1
    return extra


@CRASH_CASES
def test_sigkill_during_catch_up_loses_nothing(
    tmp_path: Path,
    fake: FakeDuo,
    siem: Siem,
    backlog: Backlog,
    launcher: tuple[str, ...],
) -> None:
    """Killed with SIGKILL at random moments, restarts still deliver everything.

    Duplicates are bounded by one page per endpoint per kill.  The wait for
    the rest also ends once that bound is broken, so that a daemon sending
    pages again and again fails at once.
    """
    config = write_config(tmp_path, fake, siem, backlog)
    want = expected(fake)
    rng = random.Random(1234)
    kills = 4
    for _ in range(kills):
        daemon = Daemon(config, launcher)
        seen = len(siem.received)
        target = seen + rng.randint(1, 3000)
        siem.wait_for_records(target)
        assert daemon.stop(signal.SIGKILL) == -signal.SIGKILL
    assert len(set(siem.received)) < len(want)  # the kills were mid-way

    def done_or_too_many_duplicates() -> bool:
        return siem.holds(want) or any(
            siem.extra[e] > kills * PAGE[e] for e in Endpoint
        )

    daemon = Daemon(config, launcher)
    siem.wait_for(done_or_too_many_duplicates)
    assert daemon.stop(signal.SIGTERM) == 0

    for endpoint, extra in duplicates(siem.received).items():
        assert extra <= kills * PAGE[endpoint], endpoint
    assert set(want) == set(siem.received)


@CRASH_CASES
def test_sigterm_and_restart_send_nothing_twice(
    tmp_path: Path,
    fake: FakeDuo,
    siem: Siem,
    backlog: Backlog,
    launcher: tuple[str, ...],
) -> None:
    """Stopped with SIGTERM mid-catch-up and restarted, no record arrives twice."""
    config = write_config(tmp_path, fake, siem, backlog)
    want = expected(fake)
    for target in (1500, 5000):
        daemon = Daemon(config, launcher)
        siem.wait_for_records(target)
        assert daemon.stop(signal.SIGTERM) == 0
    assert len(set(siem.received)) < len(want)

    def done_or_a_duplicate() -> bool:
        return siem.holds(want) or sum(siem.extra.values()) > 0

    daemon = Daemon(config, launcher)
    siem.wait_for(done_or_a_duplicate)
    assert daemon.stop(signal.SIGTERM) == 0

    assert collections.Counter() == duplicates(siem.received)
    assert sorted(want) == sorted(siem.received)
