"""SIGHUP to the real daemon process: a bad config is refused, a good one applied.

Rules for these tests: as in ``tests.test_crash``, ``python -m trio_dls``
runs as its own process against the fake Duo API (real HTTPS, in a thread of
the test) with DLS's defaults (offset 180 days, timeout 120 s) and a backlog
of several pages per endpoint, and sends to loopback TCP listeners.  Every
wait is bounded and waits for a line or a record, never a sleep.
"""

from __future__ import annotations

import collections
import signal
from typing import TYPE_CHECKING

import pytest

from tests.test_crash import (
    BACKLOGS,
    WAIT,
    Daemon,
    Key,
    expected,
    serving_siem,
    slow_fake,
    write_config,
)

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from trio_dls.fakeduo import FakeDuo

DEFAULTS = BACKLOGS["defaults"]


@pytest.fixture
def fake() -> Iterator[FakeDuo]:
    """The fake of ``tests.test_crash``, over four days (DLS's defaults)."""
    with slow_fake(DEFAULTS) as server:
        yield server


def test_sighup_refuses_a_bad_config_and_applies_a_good_one(
    tmp_path: Path, fake: FakeDuo
) -> None:
    """A bad file changes nothing; moving to another server loses nothing.

    Nor does it repeat anything: each record reaches one of the two, once.
    """
    with serving_siem() as second, serving_siem() as first:
        config = write_config(tmp_path, fake, first, DEFAULTS)
        good = config.read_text()
        want = expected(fake)
        daemon = Daemon(config)
        first.wait_for_records(1500)

        config.write_text(good.replace("protocol: TCP", "protocol: TCPP"))
        daemon.proc.send_signal(signal.SIGHUP)
        daemon.lines.wait_for("config not reloaded", timeout=WAIT)
        refused_at = len(first.received)
        first.wait_for_records(refused_at + 1000)  # still sending there

        moved = good.replace(
            f"port: {first.server_address[1]}", f"port: {second.server_address[1]}"
        )
        config.write_text(moved)
        daemon.proc.send_signal(signal.SIGHUP)
        daemon.lines.wait_for("started:", timeout=WAIT, count=2)
        moved_at = len(first.received)

        def all_arrived() -> bool:
            return len(set(first.received) | set(second.received)) >= len(
                set(want)
            ) and set(want) <= set(first.received) | set(second.received)

        second.wait_for(all_arrived)
        assert daemon.stop(signal.SIGTERM) == 0
        output = "".join(daemon.lines.seen)

    # Every problem of the bad file, with its key path, and the config kept.
    assert "servers[0].protocol" in output
    assert "the running config is kept" in output
    assert "servers changed: siem" in output
    # The move came mid-way: each server got part; between the two, every
    # record arrived exactly once.  (What the first one reads after the
    # "started:" line may have been written before it: not counted.)
    assert moved_at < len(set(want))
    assert len(second.received) > 0
    both: list[Key] = first.received + second.received
    assert collections.Counter(both).most_common(1)[0][1] == 1
    assert set(want) <= set(both)
    assert fake.skey not in output
