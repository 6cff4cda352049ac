"""A real HTTP CONNECT proxy for the proxy suites: Debian's tinyproxy, run by the test.

Each ``Tinyproxy`` is its own process with a config written into the test's
temporary directory: it listens on 127.0.0.1 only, admits 127.0.0.1 only,
tunnels only to the one port given (the fake Duo API's), and logs every
CONNECT to a file the test reads.  tinyproxy cannot take port 0, so a free
port is found by binding to port 0 and closing; if another process takes it
meanwhile, tinyproxy exits and is started again on another port.  The
Debian service (if the package started one) plays no part.

Without tinyproxy the suites skip, except in CI (``CI`` set), where they fail.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING

import attrs
import pytest

if TYPE_CHECKING:
    from collections.abc import Iterator

START_WAIT = 20.0  # seconds: a bound on tinyproxy's start, never a sleep
_START_TRIES = 5


def find_tinyproxy() -> str | None:
    """The path of tinyproxy (Debian puts it in /usr/bin), or None."""
    return shutil.which(
        "tinyproxy", path=os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin"])
    )


def require_tinyproxy() -> str:
    """Tinyproxy's path; skip the test without it, or fail it in CI."""
    found = find_tinyproxy()
    if found is None:
        if os.environ.get("CI"):
            pytest.fail(
                "tinyproxy is missing, and CI must run the proxy suite: install "
                "the Debian package tinyproxy"
            )
        pytest.skip("tinyproxy is not installed (apt-get install tinyproxy)")
    return found


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listened on a moment ago."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def tinyproxy_config(
    port: int, connect_port: int, log_file: Path, basic_auth: tuple[str, str] | None
) -> str:
    """A tinyproxy config: loopback only, CONNECT to *connect_port* only, logged."""
    lines = [
        f"Port {port}",
        "Listen 127.0.0.1",
        "Allow 127.0.0.1",
        f"ConnectPort {connect_port}",
        f'LogFile "{log_file}"',
        # Connect is the level that logs each request line, CONNECTs included.
        "LogLevel Connect",
        "MaxClients 20",
        "Timeout 60",
    ]
    if basic_auth is not None:
        lines.append(f"BasicAuth {basic_auth[0]} {basic_auth[1]}")
    return "\n".join(lines) + "\n"


@attrs.frozen
class Tinyproxy:
    """A running tinyproxy: where it listens and what it logged."""

    process: subprocess.Popen[bytes]
    port: int
    log_file: Path

    def log(self) -> str:
        """What tinyproxy logged so far."""
        if not self.log_file.exists():
            return ""
        return self.log_file.read_text(encoding="utf-8", errors="replace")

    def connects(self) -> list[str]:
        """The targets of the CONNECT requests logged so far (``host:port``)."""
        found = []
        for line in self.log().splitlines():
            _, sep, request = line.partition("): CONNECT ")
            if sep:
                found.append(request.split()[0])
        return found

    def wait_for_connect(self, target: str) -> list[str]:
        """Wait (bounded) until a CONNECT to *target* is logged; return them all.

        tinyproxy logs the request line as it reads it, before the tunnel is
        made; the call that used the tunnel has ended by the time this runs,
        so the wait is normally none.
        """
        deadline = time.monotonic() + START_WAIT
        while target not in (seen := self.connects()):
            if time.monotonic() > deadline:
                return seen
            time.sleep(0.01)
        return seen


def _listening(port: int) -> bool:
    with (
        contextlib.suppress(OSError),
        socket.create_connection(("127.0.0.1", port), timeout=1),
    ):
        return True
    return False


def _start(
    tinyproxy: str,
    directory: Path,
    connect_port: int,
    basic_auth: tuple[str, str] | None,
    port: int,
) -> Tinyproxy | None:
    log_file = directory / f"tinyproxy-{port}.log"
    config = directory / f"tinyproxy-{port}.conf"
    config.write_text(
        tinyproxy_config(port, connect_port, log_file, basic_auth), encoding="utf-8"
    )
    with (directory / f"tinyproxy-{port}.stderr").open("wb") as stderr:
        process = subprocess.Popen(
            [tinyproxy, "-d", "-c", str(config)],
            stdin=subprocess.DEVNULL,
            stdout=stderr,
            stderr=stderr,
        )
    deadline = time.monotonic() + START_WAIT
    while not _listening(port):
        if process.poll() is not None:
            return None  # most likely the port was taken meanwhile
        if time.monotonic() > deadline:
            _stop(process)
            msg = f"tinyproxy did not start listening:\n{log_file.read_text()}"
            raise RuntimeError(msg)
        time.sleep(0.01)
    return Tinyproxy(process, port, log_file)


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@contextlib.contextmanager
def running_tinyproxy(
    tinyproxy: str,
    directory: Path,
    *,
    connect_port: int,
    basic_auth: tuple[str, str] | None = None,
    port: int | None = None,
) -> Iterator[Tinyproxy]:
    """Run tinyproxy in the foreground on loopback for the block; stop it after.

    It listens on *port* if given (one try), else on a free port.
    """
    for _ in range(1 if port else _START_TRIES):
        running = _start(
            tinyproxy, directory, connect_port, basic_auth, port or free_port()
        )
        if running is not None:
            break
    else:
        msg = f"tinyproxy exited at start {_START_TRIES} times; see {directory}"
        raise RuntimeError(msg)
    try:
        yield running
    finally:
        _stop(running.process)
