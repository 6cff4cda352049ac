"""``trio-dls reload CONFIG``: a reload asked for through a file, on any OS.

SIGHUP asks a running daemon to read its config again, but Windows has no
SIGHUP, and a service account may not be allowed to signal the daemon's
process anyway.  So the command writes a request file, ``reload-request``,
in the config's checkpoint directory (which the daemon owns already), and
the daemon looks for that file every ``POLL`` seconds: when it is there, it
removes it and reloads exactly as on SIGHUP (``trio_dls.reload``).  Looking
costs one ``stat`` in a worker thread every two seconds.

A request found when the daemon starts is removed: the start reads the
config anyway.  The daemon watches the checkpoint directory it started with;
a reload that moves the checkpoint directory is asked for by the next
request in the new one, or by a restart.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import TYPE_CHECKING, Final

import trio

from trio_dls.durable import sync_directory

if TYPE_CHECKING:
    from collections.abc import Callable

    from trio_dls.config import Config

__all__ = ["POLL", "REQUEST_NAME", "request_path", "request_reload", "watch"]

REQUEST_NAME: Final = "reload-request"
POLL: Final = 2.0  # seconds between two looks for the request


def request_path(config: Config) -> Path:
    """The request file of the daemon running *config*."""
    return Path(config.dls_settings.checkpointing.directory) / REQUEST_NAME


def request_reload(config: Config) -> Path:
    """Ask the daemon running *config* to reload; return the request file."""
    path = request_path(config)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{REQUEST_NAME}.tmp")
    temporary.write_text(f"asked by process {os.getpid()}\n", encoding="utf-8")
    temporary.replace(path)
    sync_directory(path.parent)
    return path


def clear(path: Path) -> None:
    """Forget a request left from before the start."""
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


async def watch(path: Path, asked: Callable[[], None], poll: float = POLL) -> None:
    """Call *asked* each time the request file appears (it is removed then)."""
    while True:
        await trio.sleep(poll)
        found = await trio.to_thread.run_sync(_take, path)
        if found:
            asked()


def _take(path: Path) -> bool:
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    except OSError:
        return False  # unreadable directory: the next look tries again
    return True
