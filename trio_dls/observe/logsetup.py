"""The daemon's own log: where it goes, how it looks, and what it never shows.

Records travel to SIEMs through the senders; this module is only about the
program's messages.  They go to standard error (journald, Docker and Kubernetes
collect it) and, as DLS does, to ``dls_settings.log_filepath``.  Times are UTC.

Every line passes through ``RedactingFormatter``, which replaces any registered
secret (the skey) wherever it appears, tracebacks included: belt and braces on
top of never formatting the skey in the first place.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import TYPE_CHECKING, Final, TextIO

if TYPE_CHECKING:
    from collections.abc import Iterable
    from pathlib import Path

FORMAT: Final = "%(asctime)s %(levelname)s %(name)s: %(message)s"
MASK: Final = "********"


def _utc(seconds: float | None) -> time.struct_time:
    return time.gmtime(seconds)


class RedactingFormatter(logging.Formatter):
    """A formatter that masks secrets in the whole formatted text, UTC times."""

    converter = staticmethod(_utc)

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        """Mask each of *secrets* (empty ones are ignored)."""
        super().__init__(FORMAT, datefmt="%Y-%m-%dT%H:%M:%SZ")
        self.secrets = tuple(s for s in secrets if s)

    def format(self, record: logging.LogRecord) -> str:
        """Format *record*, then mask every secret in the result."""
        return redact(super().format(record), self.secrets)


def redact(text: str, secrets: Iterable[str]) -> str:
    """Replace every occurrence of each secret in *text* by a mask."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, MASK)
    return text


def configure(
    *,
    secrets: Iterable[str] = (),
    log_file: Path | None = None,
    stream: TextIO | None = None,
    level: int = logging.INFO,
) -> list[str]:
    """Send the ``trio_dls`` logger to *stream* (stderr) and *log_file*.

    Return warnings about the file (it cannot be opened, say): losing the file
    log is no reason not to start, the stream log still works.
    """
    formatter = RedactingFormatter(secrets)
    logger = logging.getLogger("trio_dls")
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()
    logger.setLevel(level)
    logger.propagate = False
    handlers: list[logging.Handler] = [logging.StreamHandler(stream or sys.stderr)]
    problems = []
    if log_file is not None:
        try:
            handlers.append(logging.FileHandler(log_file, encoding="utf-8"))
        except OSError as exc:
            problems.append(
                f"cannot write the log file {log_file}: {exc.strerror}; "
                "logging to standard error only"
            )
    for handler in handlers:
        handler.setFormatter(formatter)
        logger.addHandler(handler)
    return problems
