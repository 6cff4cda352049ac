"""Shard processes split an MSP parent's children: each child once, resharded too.

Rules for these tests: ``python -m trio_dls run --shard INDEX/COUNT`` runs as
its own process, one per shard, against the fake Duo API (real HTTPS, in a
thread of the test) and a loopback TCP listener of its own standing in for the
SIEM, so that what each process sent is known; every process shares one
checkpoint directory, as pods share a ReadWriteMany volume.  Everything is on
loopback, every wait is bounded (a condition polled with a deadline, never a
sleep), and what arrived is compared with what the fake holds, per child
(records carry ``child_account_id``).
"""

from __future__ import annotations

import json
import os
import signal
import socketserver
import subprocess
import sys
import threading
import time
from typing import TYPE_CHECKING, Any

import pytest

from tests.test_cli import Lines
from tests.test_crash import key_of
from trio_dls.duo.shards import Shard, owns
from trio_dls.endpoints import Endpoint
from trio_dls.fakeduo import (
    DatasetSpec,
    FakeDuo,
    FakeDuoConfig,
    FakeRecord,
    make_children,
    serve_in_thread,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

WAIT = 20.0  # seconds; a bound on each wait, never a sleep
DAY = 86_400.0
ENDPOINTS = (Endpoint.AUTH, Endpoint.TELEPHONY, Endpoint.TRUSTMONITOR)
# Eight children whose owners, with 2 shards and with 3, are all non-empty,
# and of which some move from each of shards 0/2 and 1/2 to the new 2/3.
CHILDREN = make_children(8, seed=0)
SPEC = DatasetSpec(
    seed=21,
    span=DAY,
    admin_burst=0,
    counts={Endpoint.AUTH: 120, Endpoint.TELEPHONY: 60, Endpoint.TRUSTMONITOR: 40},
)
# Duo shows a record two minutes after its time, and trio-dls's windows end
# two minutes back: a record this many seconds younger than that, added once
# the processes stopped, is newer than every window they fetched, and becomes
# servable this long after.
FRESH_LEAD = 2.0
Key = tuple[str, Endpoint, str]
"""A delivered record: its child account id, endpoint and identity."""


class Listener(socketserver.ThreadingTCPServer):
    """A loopback TCP listener keeping every complete JSON line it receives."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, changed: threading.Condition) -> None:
        """Listen on a free loopback port; notify *changed* on every record."""
        super().__init__(("127.0.0.1", 0), _Handler)
        self.received: list[Key] = []
        self.changed = changed

    @property
    def port(self) -> int:
        """The port it listens on."""
        return int(self.server_address[1])

    def add(self, line: bytes) -> None:
        """Keep one received record and wake the waiters."""
        endpoint, key = key_of(line)
        child = str(json.loads(line)["child_account_id"])
        with self.changed:
            self.received.append((child, endpoint, key))
            self.changed.notify_all()


class _Handler(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        server = self.server
        assert isinstance(server, Listener)
        for line in self.rfile:
            if not line.endswith(b"\n"):
                return  # cut by a stop: not a record
            server.add(line)


class Listeners:
    """Listeners sharing one condition, so a wait can watch all of them."""

    def __init__(self) -> None:
        """Start with none."""
        self.changed = threading.Condition()
        self.all: list[Listener] = []

    def new(self) -> Listener:
        """Start one more listener, serving in a thread."""
        listener = Listener(self.changed)
        threading.Thread(target=listener.serve_forever, daemon=True).start()
        self.all.append(listener)
        return listener

    def wait_for(self, predicate: Callable[[], bool]) -> None:
        """Block until *predicate()* holds (under the condition); fail after WAIT."""
        with self.changed:
            assert self.changed.wait_for(predicate, timeout=WAIT)

    def close(self) -> None:
        """Stop every listener."""
        for listener in self.all:
            listener.shutdown()
            listener.server_close()


@pytest.fixture
def fake() -> Iterator[FakeDuo]:
    """A fake MSP parent with eight children, each holding records on every endpoint."""
    config = FakeDuoConfig(children=CHILDREN, dataset=SPEC)
    with serve_in_thread(FakeDuo(config)) as server:
        yield server


@pytest.fixture
def listeners() -> Iterator[Listeners]:
    """The listeners a test starts, stopped at its end."""
    group = Listeners()
    try:
        yield group
    finally:
        group.close()


class ShardProcess:
    """``python -m trio_dls run --shard INDEX/COUNT CONFIG`` as a child process."""

    def __init__(self, config: Path, shard: Shard) -> None:
        """Start it (``wait_started`` waits until it runs)."""
        self.shard = shard
        env = {k: v for k, v in os.environ.items() if k != "TRIO_DLS_SHARD"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "trio_dls", "run", "--shard", str(shard), config],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env={**env, "PYTHONUNBUFFERED": "1"},
        )
        self.lines = Lines(self.proc)
        self.terminated = False

    def wait_started(self) -> None:
        """Return once it told which children it owns and its tree runs."""
        owned = len(owned_by(self.shard))
        self.lines.wait_for(
            f"shard {self.shard}: owning {owned} of {len(CHILDREN)} child accounts",
            timeout=WAIT,
        )
        self.lines.wait_for("started:", timeout=WAIT)

    def terminate(self) -> None:
        """Send SIGTERM, once: a second signal would make it exit at once."""
        assert not self.terminated
        self.terminated = True
        self.proc.send_signal(signal.SIGTERM)

    def wait(self) -> tuple[int, str]:
        """Return the exit status and everything it wrote, once it exited."""
        status = self.proc.wait(timeout=WAIT)
        output = self.lines.rest()
        assert self.proc.stderr is not None
        self.proc.stderr.close()
        return status, output

    def kill(self) -> None:
        """Kill it if it still runs (a failed test's clean-up)."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=WAIT)
        assert self.proc.stderr is not None
        if not self.proc.stderr.closed:
            self.lines.rest()  # the reading thread is done once it saw the end
            self.proc.stderr.close()


@pytest.fixture
def processes() -> Iterator[list[ShardProcess]]:
    """The processes a test starts; any still running at its end are killed."""
    started: list[ShardProcess] = []
    try:
        yield started
    finally:
        for process in started:
            process.kill()


def write_config(tmp_path: Path, fake: FakeDuo, listener: Listener, name: str) -> Path:
    """A config for the MSP parent sending to *listener*, cursors in tmp_path/state."""
    path = tmp_path / f"{name}.yml"
    endpoints = ", ".join(str(e) for e in ENDPOINTS)
    path.write_text(
        f"""\
version: '1.0.0'
dls_settings:
  log_filepath: {tmp_path / f"{name}.log"}
  api: {{offset: 2, timeout: 1}}
  checkpointing: {{directory: {tmp_path / "state"}}}
servers:
  - {{id: siem, hostname: 127.0.0.1, port: {listener.port}, protocol: TCP}}
account:
  ikey: {fake.ikey}
  skey: {fake.skey}
  hostname: localhost:{fake.port}
  ca_certs: {fake.ca_certs}
  is_msp: true
  endpoint_server_mappings:
    - endpoints: [{endpoints}]
      server: siem
"""
    )
    return path


def held(fake: FakeDuo, children: list[str]) -> list[Key]:
    """Every record the fake serves now for *children* on ENDPOINTS."""
    return [
        (child, endpoint, record.key)
        for child in children
        for endpoint in ENDPOINTS
        for record in fake.servable_records(endpoint, child)
    ]


def owned_by(shard: Shard) -> list[str]:
    """The ids of the children *shard* owns."""
    return [c.account_id for c in CHILDREN if owns(shard, c.account_id)]


def fresh_body(endpoint: Endpoint, like: FakeRecord, ts_ms: int) -> dict[str, Any]:
    """A copy of *like*'s body with a new identity and the time *ts_ms*."""
    body = dict(like.body)
    iso = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts_ms / 1000))
    iso += f".{ts_ms % 1000:03d}000+00:00"
    tag = f"fresh-{like.key}"
    match endpoint:
        case Endpoint.AUTH:
            body.update(txid=tag, timestamp=ts_ms // 1000, isotimestamp=iso)
        case Endpoint.TELEPHONY:
            body.update(telephony_id=tag, ts=iso)
        case Endpoint.TRUSTMONITOR:
            body.update(sekey=tag, surfaced_timestamp=ts_ms)
        case _:  # pragma: no cover - not among ENDPOINTS
            raise AssertionError(endpoint)
    return body


def add_fresh_records(fake: FakeDuo) -> list[Key]:
    """Give every child one record per endpoint, newer than any window fetched."""
    ts_ms = int(
        (time.time() - fake.config.rules.availability_delay + FRESH_LEAD) * 1000
    )
    added = []
    for child in CHILDREN:
        for endpoint in ENDPOINTS:
            like = fake.servable_records(endpoint, child.account_id)[-1]
            body = fresh_body(endpoint, like, ts_ms)
            record = fake.add_record(endpoint, body, ts_ms, child.account_id)
            added.append((child.account_id, endpoint, record.key))
    return added


def start_shards(
    tmp_path: Path,
    fake: FakeDuo,
    listeners: Listeners,
    processes: list[ShardProcess],
    count: int,
) -> list[Listener]:
    """Start shards 0 to *count* - 1, each sending to a new listener of its own."""
    started = []
    for index in range(count):
        listener = listeners.new()
        config = write_config(tmp_path, fake, listener, f"shard-{index}-of-{count}")
        process = ShardProcess(config, Shard(index, count))
        processes.append(process)  # killed at the end, even if it never starts
        started.append(listener)
    for process in processes[-count:]:
        process.wait_started()
    return started


def stop_all(processes: list[ShardProcess]) -> None:
    """Stop every process still running with SIGTERM; each must stop cleanly."""
    running = [process for process in processes if not process.terminated]
    for process in running:
        process.terminate()
    for process in running:
        status, output = process.wait()
        assert status == 0, output
        assert "Traceback" not in output
        assert "stopped" in output


def test_shards_split_children_and_resharding_sends_nothing_twice(
    tmp_path: Path,
    fake: FakeDuo,
    listeners: Listeners,
    processes: list[ShardProcess],
) -> None:
    """Two shards send each child's records once; three, resharded, only new ones."""
    two = [owned_by(Shard(i, 2)) for i in range(2)]
    three = [owned_by(Shard(i, 3)) for i in range(3)]
    assert all(two)  # every process has a share
    assert all(three)
    moved = set(three[2])
    assert moved & set(two[0])  # both give some away
    assert moved & set(two[1])
    everyone = [c.account_id for c in CHILDREN]
    want = held(fake, everyone)
    assert {child for child, _, _ in want} == set(everyone)

    first = start_shards(tmp_path, fake, listeners, processes, 2)

    def first_done_or_wrong() -> bool:
        got = [key for listener in first for key in listener.received]
        return set(got) >= set(want) or len(got) > len(want)

    listeners.wait_for(first_done_or_wrong)
    stop_all(processes)
    # Each process sent exactly the children its shard owns, each record once.
    for listener, children in zip(first, two, strict=True):
        assert listener.received  # a share of its own
        assert sorted(listener.received) == sorted(held(fake, children))
    delivered = {key for listener in first for key in listener.received}

    # From 2 shards to 3: a child that changed process continues from the
    # cursor its old owner saved in the shared directory.  Its fresh record
    # comes after everything a replay from the offset would send first, on
    # the same connection: once every fresh record arrived, nothing else may
    # have.
    fresh = add_fresh_records(fake)
    second = start_shards(tmp_path, fake, listeners, processes, 3)

    def second_done_or_wrong() -> bool:
        got = [key for listener in second for key in listener.received]
        return set(got) >= set(fresh) or any(key in delivered for key in got)

    listeners.wait_for(second_done_or_wrong)
    stop_all(processes)
    for listener, children in zip(second, three, strict=True):
        mine = [key for key in fresh if key[0] in children]
        assert mine  # a share of its own
        assert sorted(listener.received) == sorted(mine)
    assert sorted(want + fresh) == sorted(
        key for listener in listeners.all for key in listener.received
    )
