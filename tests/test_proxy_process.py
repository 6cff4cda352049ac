"""The real daemon process behind a real HTTP proxy: tinyproxy, with Basic auth.

Rules for these tests: ``python -m trio_dls`` runs as its own process against
the fake Duo API (real HTTPS, in a thread of the test) through tinyproxy (its
own process, ``tests.tinyproxy_fixtures``), and sends to a loopback TCP
listener standing in for the SIEM.  Every wait is bounded and waits for
something to happen (a line, a record, an exit), never for time to pass.  The
proxy password must show nowhere: not on stderr, not in the log file.
Without tinyproxy they skip, except in CI.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from typing import TYPE_CHECKING

import pytest

from tests.fakeduo.fixtures import small_config
from tests.test_cli import Lines
from tests.test_crash import WAIT, Siem, serving_siem
from tests.tinyproxy_fixtures import free_port, require_tinyproxy, running_tinyproxy
from trio_dls.endpoints import Endpoint
from trio_dls.fakeduo import FakeDuo, serve_in_thread

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

USER = "dls"
PASSWORD = "pr0xy-s3cret-pw"


@pytest.fixture
def tinyproxy() -> str:
    """Tinyproxy's path (skips or, in CI, fails without it)."""
    return require_tinyproxy()


@pytest.fixture
def fake() -> Iterator[FakeDuo]:
    """A fake Duo with a small day of records, serving in a thread."""
    with serve_in_thread(FakeDuo(small_config())) as server:
        yield server


@pytest.fixture
def siem() -> Iterator[Siem]:
    """The listener, serving in a thread."""
    with serving_siem() as server:
        yield server


def write_config(
    tmp_path: Path, fake: FakeDuo, siem: Siem, proxy_port: int, password: str
) -> Path:
    """A config sending auth logs to the listener, through the proxy, with auth."""
    path = tmp_path / "config.yml"
    path.write_text(
        f"""\
version: '1.0.0'
dls_settings:
  log_filepath: {tmp_path / "trio-dls.log"}
  api: {{offset: 2, timeout: 120}}
  checkpointing: {{directory: {tmp_path / "state"}}}
  proxy:
    proxy_server: 127.0.0.1
    proxy_port: {proxy_port}
    proxy_username: {USER}
    proxy_password: '{password}'
servers:
  - {{id: siem, hostname: 127.0.0.1, port: {siem.server_address[1]}, protocol: TCP}}
account:
  ikey: {fake.ikey}
  skey: {fake.skey}
  hostname: localhost:{fake.port}
  ca_certs: {fake.ca_certs}
  endpoint_server_mappings:
    - endpoints: [auth]
      server: siem
""",
        encoding="utf-8",
    )
    return path


def start(config: Path) -> tuple[subprocess.Popen[str], Lines]:
    """Start ``python -m trio_dls CONFIG``; its stderr is read line by line."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "trio_dls", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    return proc, Lines(proc)


def stop(proc: subprocess.Popen[str], lines: Lines) -> tuple[int, str]:
    """SIGTERM (if still running); return the exit status and all of stderr."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    status = proc.wait(timeout=WAIT)
    text = lines.rest()
    assert proc.stderr is not None
    proc.stderr.close()
    return status, text


def auth_keys(fake: FakeDuo) -> set[tuple[Endpoint, str]]:
    """The auth records a correct client fetches from the fake now."""
    return {(Endpoint.AUTH, r.key) for r in fake.servable_records(Endpoint.AUTH)}


def test_the_daemon_fetches_through_an_authenticating_proxy(
    tinyproxy: str, fake: FakeDuo, siem: Siem, tmp_path: Path
) -> None:
    """Records arrive through tinyproxy's BasicAuth; its log holds the CONNECT."""
    with running_tinyproxy(
        tinyproxy, tmp_path, connect_port=fake.port, basic_auth=(USER, PASSWORD)
    ) as proxy:
        config = write_config(tmp_path, fake, siem, proxy.port, PASSWORD)
        proc, lines = start(config)
        try:
            want = auth_keys(fake)
            siem.wait_for(lambda: want <= set(siem.copies))
        finally:
            status, stderr = stop(proc, lines)
        assert f"localhost:{fake.port}" in proxy.connects()
    assert status == 0
    assert PASSWORD not in stderr
    assert PASSWORD not in (tmp_path / "trio-dls.log").read_text(encoding="utf-8")


def test_the_daemon_stops_when_the_proxy_refuses_its_credentials(
    tinyproxy: str, fake: FakeDuo, siem: Siem, tmp_path: Path
) -> None:
    """Wrong proxy credentials: exit status 1, one line naming the proxy."""
    wrong = "not-" + PASSWORD
    with running_tinyproxy(
        tinyproxy, tmp_path, connect_port=fake.port, basic_auth=(USER, PASSWORD)
    ) as proxy:
        config = write_config(tmp_path, fake, siem, proxy.port, wrong)
        proc, lines = start(config)
        status, stderr = stop_when_exited(proc, lines)
    assert status == 1
    fatal = [line for line in stderr.splitlines() if "fatal:" in line]
    assert fatal
    assert f"proxy 127.0.0.1:{proxy.port} refused the credentials (401)" in fatal[0]
    assert wrong not in stderr
    assert "Traceback" not in stderr
    assert siem.received == []


def stop_when_exited(proc: subprocess.Popen[str], lines: Lines) -> tuple[int, str]:
    """Wait (bounded) for the daemon to exit by itself; its status and stderr."""
    try:
        proc.wait(timeout=WAIT)
    except subprocess.TimeoutExpired:
        stop(proc, lines)
        pytest.fail("the daemon did not exit by itself")
    return stop(proc, lines)


def test_the_daemon_retries_until_the_proxy_listens(
    tinyproxy: str, fake: FakeDuo, siem: Siem, tmp_path: Path
) -> None:
    """No proxy at the address: retried with backoff, named; then records flow."""
    port = free_port()
    config = write_config(tmp_path, fake, siem, port, PASSWORD)
    proc, lines = start(config)
    try:
        lines.wait_for(
            f"cannot connect to the proxy 127.0.0.1:{port}: connection refused",
            timeout=WAIT,
        )
        with running_tinyproxy(
            tinyproxy,
            tmp_path,
            connect_port=fake.port,
            basic_auth=(USER, PASSWORD),
            port=port,
        ):
            want = auth_keys(fake)
            siem.wait_for(lambda: want <= set(siem.copies))
    finally:
        status, stderr = stop(proc, lines)
    assert status == 0
    failed = [line for line in stderr.splitlines() if "connection refused" in line]
    assert failed
    assert all("retrying (next in" in line for line in failed)
    assert PASSWORD not in stderr
