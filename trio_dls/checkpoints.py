"""The cursor store: one file per (account, endpoint), written atomically.

A fetcher is the only writer of its cursor (DESIGN.md), so the store needs no
locking; what it must guarantee is that a crash at any instant leaves either
the old cursor or the new one on disk, never a torn file.  Hence: write a
temporary file in the same directory, fsync it, rename it over the old one,
fsync the directory.  File work runs in worker threads that are *not*
abandoned on cancellation: a save that started finishes.

A file that cannot be decoded (truncated by a disk that filled up, edited by
hand) is reported, renamed aside with a ``.corrupt-<time>`` suffix for the
operator to look at, and treated as absent, so a bad file never makes the
daemon crash in a loop.

On a first start (no trio-dls file for a pair), a duo_log_sync checkpoint file
in the same directory is imported (see ``trio_dls.cursors``), so a DLS user
switches without replaying 180 days.  DLS's files are left untouched.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import trio

from trio_dls.cursors import (
    CorruptCursorError,
    Cursor,
    decode_cursor,
    encode_cursor,
    parse_dls_checkpoint,
    parse_dls_checkpoint_name,
)
from trio_dls.errors import FatalError

if TYPE_CHECKING:
    from pathlib import Path

    from trio_dls.endpoints import Endpoint

log = logging.getLogger(__name__)

Offload = Callable[..., Awaitable[Any]]

PREFIX = "trio-dls"


def cursor_file_name(endpoint: Endpoint, child_account_id: str | None) -> str:
    """Return the name of the cursor file of (endpoint, MSP child or None)."""
    suffix = f"_{child_account_id}" if child_account_id else ""
    return f"{PREFIX}_{endpoint.value}{suffix}.cursor"


def dls_file_name(endpoint: Endpoint, child_account_id: str | None) -> str:
    """Return the name DLS gives the checkpoint of (endpoint, MSP child or None)."""
    suffix = f"_{child_account_id}" if child_account_id else ""
    return f"{endpoint.value}_checkpoint_data{suffix}.txt"


class CheckpointStore:
    """Cursors on disk, or nowhere when checkpointing is disabled."""

    def __init__(
        self,
        directory: Path,
        *,
        enabled: bool = True,
        offload: Offload = trio.to_thread.run_sync,
    ) -> None:
        """Keep cursors in *directory* (created on first use) if *enabled*.

        *offload* runs the blocking file work; a worker thread by default.
        Tests on trio's virtual clock run it inline instead, because the clock
        would jump ahead while a thread works.
        """
        self.directory = directory
        self.enabled = enabled
        self._offload = offload
        self._save_failing = False

    async def prepare(self) -> None:
        """Create the directory and check it is writable, or raise at start-up.

        A store that cannot save makes every restart replay everything since
        the last save, so this is worth refusing to start for.
        """
        if self.enabled:
            await self._offload(self._prepare)

    def _prepare(self) -> None:
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            msg = (
                f"cannot create the checkpoint directory {self.directory}: "
                f"{exc.strerror}; set dls_settings.checkpointing.directory"
            )
            raise CheckpointError(msg) from None
        if not os.access(self.directory, os.W_OK | os.X_OK):
            msg = f"cannot write in the checkpoint directory {self.directory}"
            raise CheckpointError(msg)

    async def load(
        self, endpoint: Endpoint, child_account_id: str | None
    ) -> Cursor | None:
        """Return the saved cursor, an imported DLS one, or None (first start)."""
        if not self.enabled:
            return None
        cursor: Cursor | None = await self._offload(
            self._load, endpoint, child_account_id
        )
        return cursor

    def _load(self, endpoint: Endpoint, child_account_id: str | None) -> Cursor | None:
        path = self.directory / cursor_file_name(endpoint, child_account_id)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return self._import_dls(endpoint, child_account_id)
        except OSError as exc:
            # Unreadable is not absent: starting over would replay 180 days.
            msg = f"cannot read the cursor file {path}: {exc.strerror}"
            raise CheckpointError(msg) from None
        try:
            return decode_cursor(endpoint, data)
        except CorruptCursorError as exc:
            aside = path.with_name(
                f"{path.name}.corrupt-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}"
            )
            path.replace(aside)
            log.error(  # noqa: TRY400 - the reason is the message, no traceback
                "the cursor file %s is corrupt (%s); moved it to %s and starting "
                "from the configured offset",
                path,
                exc,
                aside.name,
            )
            return self._import_dls(endpoint, child_account_id)

    def _import_dls(
        self, endpoint: Endpoint, child_account_id: str | None
    ) -> Cursor | None:
        name = dls_file_name(endpoint, child_account_id)
        path = self.directory / name
        if parse_dls_checkpoint_name(name) is None or not path.is_file():
            return None
        try:
            cursor = parse_dls_checkpoint(endpoint, path.read_bytes())
        except (CorruptCursorError, OSError) as exc:
            log.warning("ignoring the DLS checkpoint %s: %s", path, exc)
            return None
        log.info("continuing from the DLS checkpoint %s", path)
        return cursor

    async def save(
        self, endpoint: Endpoint, child_account_id: str | None, cursor: Cursor
    ) -> None:
        """Save *cursor* atomically; a failure is logged, never raised.

        A cursor that could not be saved costs duplicates after a restart (the
        pages since the last save are sent again), never a loss; stopping the
        daemon for it would cost fresher records instead.
        """
        if not self.enabled:
            return
        data = encode_cursor(endpoint, cursor)
        name = cursor_file_name(endpoint, child_account_id)
        try:
            await self._offload(self._write, name, data)
        except OSError as exc:
            if not self._save_failing:
                log.error(  # noqa: TRY400 - one line per state change
                    "cannot save cursors in %s: %s; a restart will re-send the "
                    "records since the last saved cursor",
                    self.directory,
                    exc.strerror or exc,
                )
            self._save_failing = True
        else:
            if self._save_failing:
                log.info("cursors are saved again in %s", self.directory)
            self._save_failing = False

    def _write(self, name: str, data: bytes) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / name
        temporary = self.directory / f".{name}.tmp"
        with temporary.open("wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        temporary.replace(path)
        directory = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)


class CheckpointError(FatalError):
    """A cursor file exists but cannot be read.

    Fatal rather than treated as absent: starting over from the configured
    offset would replay up to 180 days into the SIEM.
    """
