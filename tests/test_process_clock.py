"""The real daemon process, its clock 90 s ahead of Duo's, loses nothing.

Rules for these tests: ``python -m trio_dls`` runs as its own process under
libfaketime (``LD_PRELOAD``), against the fake Duo API (real HTTPS, in a
thread of the test) and a loopback TCP listener standing in for the SIEM.
Every wait is bounded and ends on what the listener received, never after a
sleep.

Why both clocks run twenty times faster than real time: Duo serves a record only
two minutes after its time, and the daemon hard-codes those two minutes, so a
test of what a fast clock does to the last windows must let minutes pass.  At
real speed that is several minutes per run.  So the fake's service clock runs
at ``SPEED`` times real time from the moment the daemon starts (``SpedClock``),
and the daemon runs under ``FAKETIME="+90 x20"``: its wall clock is 90 s ahead
of the fake's and runs at the same speed.  libfaketime speeds up the monotonic
clock too, and shortens the timeouts of ``epoll_wait`` and ``poll`` alike, so
the daemon's trio sleeps, its deadlines and its estimate of Duo's clock (a
``Date`` plus the monotonic time since) all live in the same fast world.
(Keeping the monotonic clock real with ``FAKETIME_DONT_FAKE_MONOTONIC=1`` is
not an option with a speed-up: the timeouts are shortened anyway, and Python's
``time.sleep`` then fails with EINVAL.)  libfaketime starts the speed-up when
the process starts, a few milliseconds after the fake's, so the daemon is a
fraction of a second less than 90 s ahead; the daemon's own warning says by
how much, and the test checks it.

The fake is in live mode: records keep appearing up to "now", so a window that
ends 90 s too late closes over records the fake does not serve yet.  A daemon
that trusts its own clock loses the last 90 s of every window it closes.
"""

from __future__ import annotations

import collections
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.test_cli import Lines
from tests.test_crash import WAIT, Key, Siem, serving_siem
from trio_dls.endpoints import Endpoint
from trio_dls.fakeduo import DatasetSpec, FakeDuo, FakeDuoConfig, serve_in_thread

if TYPE_CHECKING:
    from collections.abc import Iterator

AHEAD = 90  # seconds the daemon's clock is ahead of the fake's
SPEED = 20  # how much faster than real time both clocks run
DELAY = 120.0  # Duo's availability delay, the fake's and the daemon's
# Where distributions install libfaketime (Debian's multiarch directories,
# Fedora's lib64, a ``make install``).
LIBFAKETIME = (
    "usr/lib/*/faketime/libfaketime.so.1",
    "usr/lib64/faketime/libfaketime.so.1",
    "usr/lib/faketime/libfaketime.so.1",
    "usr/local/lib/faketime/libfaketime.so.1",
)
# Real seconds: the daemon delivers them all within about 10.
CLOCK_WAIT = 60.0
LIVE_BUCKET = 10.0  # fake seconds; live records appear at the end of each


def libfaketime() -> str:
    """The path of libfaketime's library; skip the test if it is not installed.

    In CI (``CI`` set) a missing libfaketime fails instead: CI must run this test.
    """
    for pattern in LIBFAKETIME:
        found = sorted(Path("/").glob(pattern))
        if found:
            return str(found[0])
    if os.environ.get("CI"):
        pytest.fail(
            "libfaketime is missing, and CI must run this test: install faketime"
        )
    pytest.skip("libfaketime is not installed (Debian: apt-get install faketime)")


class SpedClock:
    """Real time until started, then SPEED times faster from that moment."""

    def __init__(self) -> None:
        """Run at real speed for now."""
        self.started_at: float | None = None

    def start(self) -> float:
        """Speed up from now on; return the time the speed-up began."""
        self.started_at = time.time()
        return self.started_at

    def __call__(self) -> float:
        """The fake's "now", in UTC epoch seconds."""
        real = time.time()
        if self.started_at is None:
            return real
        return self.started_at + SPEED * (real - self.started_at)


@pytest.fixture
def clock() -> SpedClock:
    """The fake's service clock."""
    return SpedClock()


@pytest.fixture
def fake(clock: SpedClock) -> Iterator[FakeDuo]:
    """A live fake Duo: an hour of records up to its start, then more each bucket."""
    spec = DatasetSpec(
        seed=90,
        span=3_600.0,
        end_before=0.0,
        counts=dict.fromkeys(Endpoint, 300),
        admin_burst=0,
        live=True,
        live_bucket=LIVE_BUCKET,
        live_per_bucket=3,
    )
    # The signatures' Date comes from the daemon's clock, 90 s ahead of the
    # fake's: judged by the fake's clock, it is within the 300 s allowed.
    config = FakeDuoConfig(dataset=spec)
    with serve_in_thread(FakeDuo(config, clock=clock, wall_clock=clock)) as server:
        yield server


@pytest.fixture
def siem() -> Iterator[Siem]:
    """The listener, serving in a thread."""
    with serving_siem() as server:
        yield server


def write_config(tmp_path: Path, fake: FakeDuo, siem: Siem) -> Path:
    """A config sending every endpoint to the listener, polling every minute.

    The offset is the default (180 days).  The poll interval is a minute of
    the daemon's fast clock (Duo's guidance, and three real seconds), not the
    default two, so that the test needs fewer real seconds; it is about the
    clock, not the pace.
    """
    path = tmp_path / "config.yml"
    path.write_text(
        f"""\
version: '1.0.0'
dls_settings:
  log_filepath: {tmp_path / "trio-dls.log"}
  api: {{timeout: 60}}
  checkpointing: {{directory: {tmp_path / "state"}}}
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
    return path


def servable(fake: FakeDuo, as_of: float) -> list[tuple[Key, float]]:
    """Each record a correct client has fetched by *as_of*, with its time.

    Times are the fake's UTC epoch seconds.
    """
    return [
        ((endpoint, record.key), record.ts_ms / 1000)
        for endpoint in Endpoint
        for record in fake.servable_records(endpoint, as_of=as_of)
    ]


def test_a_clock_90_s_ahead_of_duos_loses_nothing(
    tmp_path: Path, fake: FakeDuo, siem: Siem, clock: SpedClock
) -> None:
    """Run with its clock 90 s ahead of Duo's, the daemon delivers all, once.

    The records checked are those servable 150 s after the daemon started:
    they include the 90 s before its first windows' end, which a daemon
    trusting its own clock closes too early, and records made after it
    started.  The daemon must also say that its clock is ahead.
    """
    config = write_config(tmp_path, fake, siem)
    env = {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "LD_PRELOAD": libfaketime(),
        "FAKETIME": f"+{AHEAD} x{SPEED}",
    }
    proc = subprocess.Popen(
        # The grace period is of the fast clock too: 60 s are 3 real seconds.
        [sys.executable, "-m", "trio_dls", "--grace", "60", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    # Popen returns once the program is executed, as libfaketime loads in it
    # and starts its speed-up: the fake's starts now too.
    started = clock.start()
    as_of = started + 150
    lines = Lines(proc)
    try:

        def all_delivered() -> bool:
            # Once the fake's clock passed as_of - DELAY + LIVE_BUCKET, every
            # record older than as_of - DELAY is held: the set is final.
            if clock() < as_of - DELAY + LIVE_BUCKET:
                return False
            return siem.holds([key for key, _ in servable(fake, as_of)])

        siem.wait_until(all_delivered, CLOCK_WAIT)
    finally:
        proc.send_signal(signal.SIGTERM)
        status = proc.wait(timeout=WAIT)
        output = lines.rest()
        assert proc.stderr is not None
        proc.stderr.close()
    want = servable(fake, as_of)
    received = collections.Counter(siem.received)

    # Seconds from the daemon's start to each lost record.  A daemon ending
    # windows by its own clock closes each over the last 90 s it asked for:
    # polling every minute, it loses all from 120 s before its start.
    lost = [round(ts - started) for key, ts in want if key not in received]
    assert lost == []
    assert {key: n for key, n in received.items() if n > 1} == {}
    made_after_start = {key[0] for key, ts in want if ts > started}
    assert set(Endpoint) == made_after_start
    ahead = re.findall(r"this host's clock is (\d+) s ahead of Duo's", output)
    assert len(ahead) == 1, output
    # About 90 s: the speed-ups start a few milliseconds apart, and Duo's
    # clock is known to the second.
    assert AHEAD - 5 <= int(ahead[0]) <= AHEAD + 5
    assert status == 0, output
    assert "Traceback" not in output
