"""The daemon's own log: where it goes, how it looks, and what it never shows.

Records travel to SIEMs through the senders; this module is only about the
program's messages.  They go to standard error (journald, Docker and Kubernetes
collect it) and, as DLS does, to ``dls_settings.log_filepath``.  Times are UTC.

Two looks (``--log-format``): ``text``, one line as a person reads it, and
``json``, one JSON object per line for log pipelines, with the time, level,
logger and message, the account, endpoint or server the line is about when
the call names them (``extra=``, see ``FIELDS``), and a traceback as one
string field.

Every line passes through a redacting formatter, which replaces any
registered secret (the skey) wherever it appears, tracebacks included: belt
and braces on top of never formatting the skey in the first place.  The JSON
formatter masks each value before encoding it, so that a secret JSON would
escape is masked too.

The file is opened by a ``logging.handlers.WatchedFileHandler``: before each
line it checks that the path still names the file it has open, and reopens
the path if not.  So logrotate's default (rename the file, let the program
create a new one) works without ``copytruncate``, which loses the lines
written between its copy and its truncation.
"""

from __future__ import annotations

import enum
import json
import logging
import logging.handlers
import sys
import time
from typing import TYPE_CHECKING, Final, TextIO

if TYPE_CHECKING:
    from collections.abc import Iterable
    from pathlib import Path

FORMAT: Final = "%(asctime)s %(levelname)s %(name)s: %(message)s"
MASK: Final = "********"
#: What a log call may name with ``extra=``, kept as fields of a JSON line.
FIELDS: Final = ("account", "child_account_id", "endpoint", "server")


class LogFormat(enum.StrEnum):
    """How the daemon's log lines look (``--log-format``)."""

    TEXT = "text"
    JSON = "json"


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


class JsonFormatter(logging.Formatter):
    """One JSON object per record, every secret masked (see the module docstring)."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        """Mask each of *secrets* (empty ones are ignored)."""
        super().__init__()
        self.secrets = tuple(s for s in secrets if s)

    def format(self, record: logging.LogRecord) -> str:
        """Format *record* as one line of JSON."""
        seconds = int(record.created)
        millis = int((record.created - seconds) * 1000)
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
        entry: dict[str, object] = {
            "ts": f"{stamp}.{millis:03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for field in FIELDS:
            value = record.__dict__.get(field)
            if value is not None:
                entry[field] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        masked = {
            key: redact(value, self.secrets) if isinstance(value, str) else value
            for key, value in entry.items()
        }
        line = json.dumps(masked, ensure_ascii=False, default=str)
        return redact(line, self.secrets)


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
    log_format: LogFormat = LogFormat.TEXT,
) -> list[str]:
    """Send the ``trio_dls`` logger to *stream* (stderr) and *log_file*.

    Return warnings about the file (it cannot be opened, say): losing the file
    log is no reason not to start, the stream log still works.
    """
    formatter: logging.Formatter = (
        JsonFormatter(secrets)
        if log_format is LogFormat.JSON
        else RedactingFormatter(secrets)
    )
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
            # The platform defaults (``%ProgramData%\\trio-dls``, macOS's
            # ``Library/Logs/trio-dls``) start out missing.
            log_file.parent.mkdir(parents=True, exist_ok=True)
            handlers.append(
                logging.handlers.WatchedFileHandler(log_file, encoding="utf-8")
            )
        except OSError as exc:
            problems.append(
                f"cannot write the log file {log_file}: {exc.strerror}; "
                "logging to standard error only"
            )
    for handler in handlers:
        handler.setFormatter(formatter)
        logger.addHandler(handler)
    return problems
