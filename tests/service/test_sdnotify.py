"""systemd notifications: READY, STATUS, WATCHDOG and STOPPING, read off a socket.

Rules for these tests: the test owns the service manager's side, an
``AF_UNIX`` datagram socket in ``tmp_path`` (or an abstract one), named to
trio-dls in ``$NOTIFY_SOCKET`` as systemd would; what is read from it is what
systemd would read.  The tree runs in-process against the in-process fake Duo
API on trio's virtual clock, so that minutes of watchdog pings take
milliseconds; one test runs ``python -m trio_dls`` as a process, bounded by
timeouts, never by a sleep.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import signal
import socket
import subprocess
import sys
import uuid
from typing import TYPE_CHECKING

import attrs
import pytest
import trio
import trio.testing

from tests.duo_inprocess import InProcessDuo
from tests.test_cli import Lines, write_config
from tests.test_fetching import Daemon, config_for, make_app
from trio_dls.duo.discovery import AccountDiscovery
from trio_dls.endpoints import Endpoint
from trio_dls.observe import Fanout, LogObserver
from trio_dls.service import Notifier, NotifySettings, ServiceStatus, serve_notifying
from trio_dls.service.sdnotify import encode, socket_address
from trio_dls.service.systemd import STATUS_EVERY
from trio_dls.supervisor import serve

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

RUN = 600.0  # virtual seconds the tree runs before it is told to stop
WATCHDOG_USEC = 20_000_000  # WatchdogSec=20: a ping every 10 s
WAIT = 60.0  # real seconds, a bound on each wait of the process test


class Manager:
    """The service manager's socket: every datagram it receives, in order."""

    def __init__(self, sock: trio.socket.SocketType) -> None:
        """Read *sock*, bound already."""
        self.sock = sock
        self.messages: list[str] = []

    async def receive(self) -> None:
        """Keep every datagram until cancelled."""
        while True:
            self.messages.append((await self.sock.recv(4096)).decode())

    def starting(self, key: str) -> list[str]:
        """The messages with a line starting with *key*."""
        return [
            m
            for m in self.messages
            if any(line.startswith(key) for line in m.splitlines())
        ]


async def bound(address: str) -> trio.socket.SocketType:
    """A datagram socket bound at *address*."""
    sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    await sock.bind(address)
    return sock


async def run_tree(tmp_path: Path, manager: Manager | None) -> Daemon:
    """Run the tree for RUN virtual seconds under the environment's notifier."""
    app = make_app()
    config = config_for(tmp_path, [Endpoint.AUTH, Endpoint.TELEPHONY])
    status = ServiceStatus(endpoints=len(config.account.endpoints))
    observer = Fanout(LogObserver(), status)
    daemon = Daemon(app, config, observer=observer)
    notifier = Notifier.from_environ()
    try:
        async with trio.open_nursery() as nursery:
            if manager is not None:
                nursery.start_soon(manager.receive)
            await serve_notifying(
                functools.partial(
                    serve,
                    config,
                    fetcher=daemon.fetching(),
                    sender=daemon.recorder,
                    discover_accounts=AccountDiscovery(
                        InProcessDuo(app), observer=observer
                    ),
                    observer=observer,
                ),
                shutdown_trigger=functools.partial(trio.sleep, RUN),
                notifier=notifier,
                status=status,
            )
            # Until the reader waits again: every datagram sent has been read.
            await trio.testing.wait_all_tasks_blocked()
            nursery.cancel_scope.cancel()
    finally:
        notifier.close()
    return daemon


@pytest.fixture
def watchdog(monkeypatch: pytest.MonkeyPatch) -> None:
    """The environment of a unit with WatchdogSec=20, for this process."""
    monkeypatch.setenv("WATCHDOG_USEC", str(WATCHDOG_USEC))
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))


@pytest.mark.usefixtures("watchdog")
async def test_ready_status_watchdog_and_stopping_arrive_in_order(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    autojump_clock: trio.testing.MockClock,
) -> None:
    """READY once the tree runs, STATUS lines, a ping per 10 s, STOPPING last."""
    del autojump_clock
    path = tmp_path / "notify"
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    manager = Manager(await bound(str(path)))
    with manager.sock:
        daemon = await run_tree(tmp_path, manager)
    messages = manager.messages

    assert messages[0].startswith("STATUS=starting")
    assert messages[1].startswith("READY=1\nSTATUS=1 account, 2 fetchers")
    assert [messages[1]] == manager.starting("READY=")
    stopping = manager.starting("STOPPING=")
    assert len(stopping) == 1
    # Only watchdog pings may follow STOPPING, while deliveries finish.
    after = messages[messages.index(stopping[0]) + 1 :]
    assert set(after) <= {"WATCHDOG=1"}
    records = len(daemon.recorder.records)
    assert records > 0
    assert f"; {records:,} records sent" in stopping[0]
    assert "STATUS=stopping" in stopping[0]
    # The fetchers caught up within the run, and the status said so.
    statuses = manager.starting("STATUS=")
    assert any("2 caught up" in line for line in statuses)
    # A ping every WATCHDOG_USEC / 2, from READY to the stop.
    pings = messages.count("WATCHDOG=1")
    interval = WATCHDOG_USEC / 1e6 / 2
    assert RUN // interval - 1 <= pings <= RUN // interval
    # STATUS is sent on change only, at most once per STATUS_EVERY.
    assert len(statuses) <= 3 + RUN // STATUS_EVERY
    assert len(set(statuses)) == len(statuses)


async def test_no_notify_socket_sends_nothing(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    autojump_clock: trio.testing.MockClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Without $NOTIFY_SOCKET the tree runs as before and nothing is sent."""
    del autojump_clock
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    monkeypatch.setenv("WATCHDOG_USEC", str(WATCHDOG_USEC))
    path = tmp_path / "notify"
    manager = Manager(await bound(str(path)))
    with manager.sock:
        daemon = await run_tree(tmp_path, manager)
    assert len(daemon.recorder.records) > 0
    assert manager.messages == []
    assert [r for r in caplog.records if r.name == "trio_dls.service"] == []


async def test_abstract_socket_is_notified(monkeypatch: pytest.MonkeyPatch) -> None:
    """``@name`` in $NOTIFY_SOCKET is the Linux abstract socket of that name."""
    name = f"trio-dls-test-{uuid.uuid4().hex}"
    monkeypatch.setenv("NOTIFY_SOCKET", f"@{name}")
    sock = await bound(f"\0{name}")
    notifier = Notifier.from_environ()
    try:
        notifier.send(READY="1", STATUS="ready")
        with trio.fail_after(5):
            received = await sock.recv(4096)
    finally:
        notifier.close()
        sock.close()
    assert received == b"READY=1\nSTATUS=ready"


async def test_a_manager_gone_is_warned_of_once_and_not_fatal(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    autojump_clock: trio.testing.MockClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Datagrams nobody receives cost one warning; the tree delivers regardless."""
    del autojump_clock
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "nobody"))
    monkeypatch.setenv("WATCHDOG_USEC", str(WATCHDOG_USEC))
    daemon = await run_tree(tmp_path, None)
    assert len(daemon.recorder.records) > 0
    warnings = [r for r in caplog.records if r.name == "trio_dls.service"]
    assert [r.levelno for r in warnings] == [logging.WARNING]
    assert "going on without" in warnings[0].getMessage()


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, None),
        ({"NOTIFY_SOCKET": ""}, None),
        ({"NOTIFY_SOCKET": "/run/n"}, NotifySettings("/run/n", None)),
        (
            {"NOTIFY_SOCKET": "/run/n", "WATCHDOG_USEC": "60000000"},
            NotifySettings("/run/n", 30.0),
        ),
        (
            {"NOTIFY_SOCKET": "@n", "WATCHDOG_USEC": "60000000", "WATCHDOG_PID": "7"},
            NotifySettings("\0n", 30.0),
        ),
        # The watchdog of another process (our parent's) is not ours to feed.
        (
            {"NOTIFY_SOCKET": "/run/n", "WATCHDOG_USEC": "6000", "WATCHDOG_PID": "8"},
            NotifySettings("/run/n", None),
        ),
        (
            {"NOTIFY_SOCKET": "/run/n", "WATCHDOG_USEC": "x"},
            NotifySettings("/run/n", None),
        ),
        (
            {"NOTIFY_SOCKET": "/run/n", "WATCHDOG_USEC": "0"},
            NotifySettings("/run/n", None),
        ),
    ],
)
def test_the_environment_is_read_as_systemd_sets_it(
    environ: dict[str, str], expected: NotifySettings | None
) -> None:
    """$NOTIFY_SOCKET, $WATCHDOG_USEC and $WATCHDOG_PID, for process 7."""
    assert expected == NotifySettings.from_environ(environ, 7)


def test_an_unsupported_address_is_explained() -> None:
    """A vsock: address (or any non-path) says it is not notified, and why."""
    assert socket_address("vsock:2:1234") is None
    said = NotifySettings.from_environ({"NOTIFY_SOCKET": "vsock:2:1234"}, 7)
    assert isinstance(said, str)
    assert "not notifying the service manager" in said


def test_a_status_is_one_line() -> None:
    """A STATUS value with newlines would be read as more assignments: joined."""
    assert encode(READY="1", STATUS="a\nb  c") == b"READY=1\nSTATUS=a b c"


@attrs.define
class NotifiedDaemon:
    """``python -m trio_dls CONFIG`` under a service manager's socket of the test's."""

    proc: subprocess.Popen[str]
    manager: socket.socket

    def until(self, key: str) -> list[str]:
        """The messages read until one starting with *key* (bounded by WAIT)."""
        seen: list[str] = []
        while not any(m.startswith(key) for m in seen):
            seen.append(self.manager.recv(4096).decode())
        return seen


@contextlib.contextmanager
def notified_daemon(tmp_path: Path, config: Path) -> Iterator[NotifiedDaemon]:
    """Run the daemon for *config* with $NOTIFY_SOCKET; kill it after the body."""
    path = tmp_path / "notify"
    manager = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    manager.bind(str(path))
    manager.settimeout(WAIT)
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "NOTIFY_SOCKET": str(path)}
    env.pop("WATCHDOG_USEC", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "trio_dls", "--grace", "5", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    lines = Lines(proc)
    try:
        yield NotifiedDaemon(proc, manager)
    finally:
        proc.kill()
        proc.wait(timeout=WAIT)
        lines.rest()
        assert proc.stderr is not None
        proc.stderr.close()
        manager.close()


def test_the_daemon_process_says_ready_then_stopping(tmp_path: Path) -> None:
    """``python -m trio_dls`` says READY=1, then STOPPING=1 on SIGTERM."""
    with notified_daemon(tmp_path, write_config(tmp_path)) as daemon:
        before_ready = daemon.until("READY=1")
        assert before_ready[0].startswith("STATUS=starting")
        assert "STATUS=1 account, 5 fetchers" in before_ready[-1]
        daemon.proc.send_signal(signal.SIGTERM)
        stopping = daemon.until("STOPPING=1")[-1]
        assert stopping.startswith("STOPPING=1\nSTATUS=stopping")
        assert daemon.proc.wait(timeout=WAIT) == 0


def test_the_daemon_process_says_reloading_then_ready_on_sighup(
    tmp_path: Path,
) -> None:
    """A reload applied: RELOADING=1 (with MONOTONIC_USEC), then READY=1 again."""
    with notified_daemon(tmp_path, write_config(tmp_path)) as daemon:
        daemon.until("READY=1")
        write_config(tmp_path, endpoints="[auth, telephony]")
        daemon.proc.send_signal(signal.SIGHUP)
        reloading = daemon.until("RELOADING=1")[-1].splitlines()
        assert any(line.startswith("MONOTONIC_USEC=") for line in reloading)
        after = daemon.until("READY=1")
        # The old tree's stop is a reload, not the service stopping.
        assert not any(m.startswith("STOPPING=1") for m in after)
        assert "STATUS=1 account, 2 fetchers" in after[-1]
        daemon.proc.send_signal(signal.SIGTERM)
        assert daemon.until("STOPPING=1")[-1].startswith("STOPPING=1")
        assert daemon.proc.wait(timeout=WAIT) == 0
