"""Rules every test follows, and the fixtures shared across the suite.

- All traffic stays on loopback: servers bind 127.0.0.1 (or ``localhost``, which
  the fake Duo API's certificate names) on port 0; no test resolves a name
  through the machine's DNS.
- Time is virtual wherever time matters (trio's ``autojump_clock`` or a
  ``MockClock`` moved by the test); no test sleeps real seconds to wait for
  something.  Process tests wait on what the process prints, with a deadline.
- Real parts where users have them: the fake Duo API is a real HTTPS server
  driven by the real duo_client, and SIEM-side suites use real sockets and a
  real rsyslogd.  Suites that need a program the machine lacks (rsyslogd,
  libfaketime) skip, except in CI (``CI`` set), where they fail.

Tests mirror the package: ``tests/duo``, ``tests/siem``, ``tests/observe``,
``tests/config`` and ``tests/fakeduo`` test the packages of the same names;
the supervision tree, the fetcher, the cursor store, the CLI and whole-daemon
runs are tested at the top.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import pytest

from trio_dls.config import Environment

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path


@pytest.fixture
def env(tmp_path: Path) -> Environment:
    """An environment anchored in a temporary directory, with no variables."""
    return Environment(base_directory=tmp_path, environ={}, euid=1000)


@pytest.fixture
def daemon_logger() -> Iterator[None]:
    """Give back the ``trio_dls`` logger as it was before the test.

    ``run`` and ``logsetup.configure`` point the logger at their own streams
    and stop propagation, which would hide every later test's records from
    ``caplog``.
    """
    logger = logging.getLogger("trio_dls")
    handlers, level, propagate = logger.handlers[:], logger.level, logger.propagate
    yield
    for handler in logger.handlers:
        if handler not in handlers:
            handler.close()
    logger.handlers[:] = handlers
    logger.setLevel(level)
    logger.propagate = propagate
