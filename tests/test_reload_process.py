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
import subprocess
import sys
from typing import TYPE_CHECKING

import pytest

from tests.portable import PORTABLE
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
    # Whether any record was left for the second server depends on how far
    # the catch-up got while the command started: not asserted.  The move
    # itself is ("servers changed"), and between the two every record
    # arrived exactly once.
    both: list[Key] = first.received + second.received
    assert collections.Counter(both).most_common(1)[0][1] == 1
    assert set(want) <= set(both)
    assert fake.skey not in output


def reload_command(config: Path) -> subprocess.CompletedProcess[str]:
    """``trio-dls reload CONFIG``, as an operator runs it beside the daemon."""
    return subprocess.run(
        [sys.executable, "-m", "trio_dls", "reload", str(config)],
        capture_output=True,
        text=True,
        timeout=WAIT,
        check=False,
    )


def test_the_reload_command_applies_a_config_where_there_is_no_sighup(
    tmp_path: Path, fake: FakeDuo
) -> None:
    """Without SIGHUP (as on Windows), ``trio-dls reload`` moves the records.

    The daemon runs as ``tests/portable.py`` starts it, without SIGHUP.  A
    bad file is refused by the command itself (exit 2, nothing asked); a
    good one is applied, and each record reaches one of the servers once.
    """
    with serving_siem() as second, serving_siem() as first:
        config = write_config(tmp_path, fake, first, DEFAULTS)
        good = config.read_text()
        want = expected(fake)
        daemon = Daemon(config, PORTABLE)
        first.wait_for_records(300)

        config.write_text(good.replace("protocol: TCP", "protocol: TCPP"))
        refused = reload_command(config)
        assert refused.returncode == 2
        assert "servers[0].protocol" in refused.stderr

        moved = good.replace(
            f"port: {first.server_address[1]}", f"port: {second.server_address[1]}"
        )
        config.write_text(moved)
        asked = reload_command(config)
        assert asked.returncode == 0, asked.stderr
        assert "reload requested" in asked.stdout
        daemon.lines.wait_for("started:", timeout=WAIT, count=2)

        def all_arrived() -> bool:
            return set(want) <= set(first.received) | set(second.received)

        second.wait_for(all_arrived)
        assert daemon.stop(signal.SIGTERM) == 0
        output = "".join(daemon.lines.seen)

    assert "reload requested" in output
    assert "servers changed: siem" in output
    assert "config not reloaded" not in output  # the bad file never reached it
    # Whether any record was left for the second server depends on how far
    # the catch-up got while the command started: not asserted.  The move
    # itself is ("servers changed"), and between the two every record
    # arrived exactly once.
    both: list[Key] = first.received + second.received
    assert collections.Counter(both).most_common(1)[0][1] == 1
    assert set(want) <= set(both)
    assert not (tmp_path / "state" / "reload-request").exists()
