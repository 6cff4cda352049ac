"""The files in deploy/ work with the tools that read them: systemd, logrotate.

Rules for these tests: the real ``systemd-analyze`` and ``logrotate`` read the
files as shipped, changed only where a test machine differs (the program's
path, the log's path, no ``su`` to a user that does not exist).  A test
whose tool is missing skips, unless ``CI`` is set: then it fails, since CI
must run it.  The daemon runs as a process; every wait is bounded.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_cli import Lines, spawn, write_config

DEPLOY = Path(__file__).parents[2] / "deploy"
WAIT = 60.0  # real seconds, a bound on each wait


def tool(name: str, package: str) -> str:
    """The path of *name*; skip (or, in CI, fail) if it is not installed."""
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")
    if found:
        return found
    if os.environ.get("CI"):
        pytest.fail(f"{name} is missing, and CI must run this test: install {package}")
    pytest.skip(f"{name} is not installed (Debian: apt-get install {package})")


def test_the_unit_file_verifies(tmp_path: Path) -> None:
    """``systemd-analyze verify`` finds nothing wrong with deploy/trio-dls.service."""
    analyze = tool("systemd-analyze", "systemd")
    unit = (DEPLOY / "trio-dls.service").read_text()
    assert "Type=notify" in unit
    assert re.search(r"^WatchdogSec=\d+", unit, re.MULTILINE)
    # The one line a test machine cannot honour: trio-dls is not installed in
    # /usr/local/bin here.
    copy = tmp_path / "trio-dls.service"
    copy.write_text(
        unit.replace("ExecStart=/usr/local/bin/trio-dls", f"ExecStart={sys.executable}")
    )
    done = subprocess.run(
        [analyze, "verify", str(copy)],
        capture_output=True,
        text=True,
        timeout=WAIT,
        check=False,
    )
    assert (done.returncode, done.stderr) == (0, "")


def test_logrotate_rotates_a_running_daemon_log(tmp_path: Path) -> None:
    """After logrotate moves the file, the daemon's next lines go to a new one."""
    logrotate = tool("logrotate", "logrotate")
    log = tmp_path / "trio-dls.log"
    conf = tmp_path / "logrotate.conf"
    snippet = (DEPLOY / "logrotate" / "trio-dls").read_text()
    snippet = snippet.replace("/var/log/trio-dls/trio-dls.log", str(log))
    conf.write_text(re.sub(r"^\s*su .*$", "", snippet, flags=re.MULTILINE))
    with spawn(write_config(tmp_path)) as proc:
        lines = Lines(proc)
        try:
            lines.wait_for("started:", timeout=WAIT)
            subprocess.run(
                [logrotate, "--force", "--state", str(tmp_path / "lr.state"), conf],
                timeout=WAIT,
                check=True,
            )
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=WAIT) == 0
        finally:
            proc.kill()
        lines.rest()
    # "reading CONFIG" was written to both before "started:" reached stderr;
    # "received SIGTERM", after the rotation.
    rotated = (tmp_path / "trio-dls.log.1").read_text()
    assert "reading" in rotated
    assert "received SIGTERM" not in rotated
    assert "received SIGTERM" in log.read_text()
    assert "reading" not in log.read_text()
