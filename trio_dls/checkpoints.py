"""The cursor store: one file per (account, endpoint), written atomically.

A fetcher is the only writer of its cursor (DESIGN.md), so the store needs no
locking; what it must guarantee is that a crash at any instant leaves either
the old cursor or the new one on disk, never a torn file.  Hence: write a
temporary file in the same directory, fsync it, rename it over the old one,
fsync the directory.  File work runs in worker threads that are *not*
abandoned on cancellation: a save that started finishes.

Each save first keeps the cursor it replaces as ``<name>.prev`` (a hard link
renamed into place, so the main file is never absent).  That previous copy is
the newest valid position known when the main file turns out to be damaged
(truncated by a disk that filled up, edited by hand): the damaged file is
reported, renamed aside with a ``.corrupt-<time>`` suffix for the operator to
look at, and the endpoint resumes from the previous copy, sending at most one
page again.  Only when no copy is usable does it start from the configured
offset, and says so in an error line; never from a DLS checkpoint, which is
older than any cursor trio-dls saved.  A bad file never makes the daemon
crash in a loop.

A cursor file in a newer format is the exception: it is fine for the release
that wrote it, so it is neither set aside nor guessed at; ``prepare`` refuses
to start (`NewerCursorError`) until trio-dls is upgraded or the file moved.

On a first start (no trio-dls file for a pair, not even one set aside), a
duo_log_sync checkpoint file in the same directory is imported (see
``trio_dls.duo.cursors``), so a DLS user switches without replaying 180 days.
DLS's files are left untouched.  docs/cursors.md tells the whole story.

The store writes no log line: what it finds and does is told to its observer
(``trio_dls.observe``) as events, ``CursorRestored``, ``CursorLost``,
``DlsCheckpointImported``, ``DlsCheckpointIgnored`` when loading,
``CursorSaveFailed`` at every failed save (with how many in a row) and
``CursorSaveRecovered`` after them.  A load works in a thread, and observers
are called on trio's, so a load collects its events and tells them once the
thread is done.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Final

import trio

from trio_dls.duo.cursors import (
    CorruptCursorError,
    Cursor,
    NewerCursorError,
    decode_cursor,
    encode_cursor,
    parse_dls_checkpoint,
    parse_dls_checkpoint_name,
    refuse_newer_cursor,
    units_per_second,
)
from trio_dls.durable import sync_directory
from trio_dls.errors import FatalError
from trio_dls.observe import LogObserver
from trio_dls.observe.events import (
    CorruptFile,
    CursorLost,
    CursorRestored,
    CursorSaveFailed,
    CursorSaveRecovered,
    DlsCheckpointIgnored,
    DlsCheckpointImported,
)

if TYPE_CHECKING:
    from pathlib import Path

    from trio_dls.endpoints import Endpoint
    from trio_dls.observe import Observer
    from trio_dls.observe.events import Event

Offload = Callable[..., Awaitable[Any]]

PREFIX = "trio-dls"
CURSOR_SUFFIX: Final = ".cursor"
# Not ending in ".cursor" and never matching DLS's names, so that no scan of
# the directory takes a previous copy for a cursor of its own.
PREVIOUS_SUFFIX: Final = ".prev"
CORRUPT_MARK: Final = ".corrupt-"


def cursor_file_name(endpoint: Endpoint, child_account_id: str | None) -> str:
    """Return the name of the cursor file of (endpoint, MSP child or None)."""
    suffix = f"_{child_account_id}" if child_account_id else ""
    return f"{PREFIX}_{endpoint.value}{suffix}{CURSOR_SUFFIX}"


def previous_file_name(endpoint: Endpoint, child_account_id: str | None) -> str:
    """Return the name of the previous copy of the pair's cursor file."""
    return cursor_file_name(endpoint, child_account_id) + PREVIOUS_SUFFIX


def dls_file_name(endpoint: Endpoint, child_account_id: str | None) -> str:
    """Return the name DLS gives the checkpoint of (endpoint, MSP child or None)."""
    suffix = f"_{child_account_id}" if child_account_id else ""
    return f"{endpoint.value}_checkpoint_data{suffix}.txt"


def _is_cursor_file(name: str) -> bool:
    """Tell a cursor file or previous copy from temporary and set-aside files."""
    return name.startswith(f"{PREFIX}_") and name.endswith(
        (CURSOR_SUFFIX, CURSOR_SUFFIX + PREVIOUS_SUFFIX)
    )


def _set_aside_from(name: str) -> str | None:
    """Return the cursor file name a ``.corrupt-`` file was made from, or None."""
    if not name.startswith(f"{PREFIX}_") or CORRUPT_MARK not in name:
        return None
    return name.partition(CORRUPT_MARK)[0].removesuffix(PREVIOUS_SUFFIX)


def _write_synced(path: Path, data: bytes) -> None:
    with path.open("wb") as file:
        file.write(data)
        file.flush()
        os.fsync(file.fileno())


class CheckpointStore:
    """Cursors on disk, or nowhere when checkpointing is disabled."""

    def __init__(
        self,
        directory: Path,
        *,
        enabled: bool = True,
        offload: Offload = trio.to_thread.run_sync,
        offset_days: float | None = None,
        clock: Callable[[], float] = time.time,
        observer: Observer | None = None,
    ) -> None:
        """Keep cursors in *directory* (created on first use) if *enabled*.

        *offload* runs the blocking file work; a worker thread by default.
        Tests on trio's virtual clock run it inline instead, because the clock
        would jump ahead while a thread works.  *offset_days*, the configured
        ``api.offset``, is only told in the event of a restart from it;
        *clock* (UTC epoch seconds) dates set-aside files and says how far
        back a restart goes.  *observer* is told what the store finds and
        does (a ``LogObserver`` when not given).
        """
        self.directory = directory
        self.enabled = enabled
        self._offload = offload
        self._offset_days = offset_days
        self._clock = clock
        self._observer: Observer = observer or LogObserver()
        # Failed saves in a row, of any pair: the store has one directory.
        self._save_failures = 0
        # Corrupt cursor files that could not be renamed aside: the next save
        # must not keep them as the previous copy.
        self._unmovable: set[str] = set()
        # Names of cursor files with a copy set aside as corrupt: their pair
        # had a trio-dls cursor, so DLS's older checkpoint must not be
        # imported.  Found by one listing of the directory, when first needed;
        # loads run in several threads at once, hence the lock.
        self._set_aside: set[str] | None = None
        self._set_aside_lock = threading.Lock()

    async def prepare(self) -> None:
        """Create the directory and check its files, or raise at start-up.

        Raise `CheckpointError` if the directory cannot be written, and
        `NewerCursorError` if a cursor file there was written by a newer
        trio-dls.  A store that cannot save makes every restart replay
        everything since the last save; a newer file cannot be read without a
        replay or a gap.  Both are worth refusing to start for.
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
        self._refuse_newer_files()

    def _refuse_newer_files(self) -> None:
        try:
            names = sorted(entry.name for entry in self.directory.iterdir())
        except OSError as exc:
            msg = f"cannot list the checkpoint directory {self.directory}: {exc}"
            raise CheckpointError(msg) from None
        newer: list[tuple[str, NewerCursorError]] = []
        for name in filter(_is_cursor_file, names):
            try:
                refuse_newer_cursor((self.directory / name).read_bytes())
            except NewerCursorError as exc:
                newer.append((name, exc))
            except OSError:
                continue  # load() reports an unreadable file when it needs it
        if newer:
            name, first = newer[0]
            where = str(self.directory / name)
            if len(newer) > 1:
                # After a downgrade every file is newer: say so at once, rather
                # than send the operator round one restart per file.
                where += f" (and {len(newer) - 1} more cursor files there)"
            raise first.at(where)

    async def load(
        self, endpoint: Endpoint, child_account_id: str | None
    ) -> Cursor | None:
        """Return the saved cursor, an imported DLS one, or None (the offset).

        Raise `CheckpointError` if the cursor file cannot be read, and
        `NewerCursorError` if a newer trio-dls wrote it.
        """
        if not self.enabled:
            return None
        events: list[Event] = []
        cursor: Cursor | None = await self._offload(
            self._load, endpoint, child_account_id, events
        )
        for event in events:
            self._observer(event)
        return cursor

    def _load(
        self,
        endpoint: Endpoint,
        child_account_id: str | None,
        events: list[Event],
    ) -> Cursor | None:
        """Return the pair's cursor, adding to *events* what is worth telling."""
        name = cursor_file_name(endpoint, child_account_id)
        path = self.directory / name
        previous = self.directory / previous_file_name(endpoint, child_account_id)
        corrupt: CorruptFile | None = None
        data = self._read(path)
        if data is not None:
            try:
                return self._decode(endpoint, path, data)
            except CorruptCursorError as exc:
                corrupt = self._put_aside(path, exc)
        previous_corrupt: CorruptFile | None = None
        data = self._read(previous)
        if data is not None:
            try:
                cursor = self._decode(endpoint, previous, data)
            except CorruptCursorError as exc:
                previous_corrupt = self._put_aside(previous, exc)
            else:
                position = cursor.mintime / units_per_second(endpoint)
                events.append(
                    CursorRestored(
                        endpoint,
                        child_account_id,
                        path,
                        corrupt,
                        position=position,
                        age=self._clock() - position,
                    )
                )
                return cursor
        damaged = corrupt is not None or previous_corrupt is not None
        if damaged or name in self._names_set_aside():
            events.append(
                self._lost(endpoint, child_account_id, corrupt, previous_corrupt)
            )
            return None
        return self._import_dls(endpoint, child_account_id, events)

    @staticmethod
    def _read(path: Path) -> bytes | None:
        try:
            return path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            # Unreadable is not absent: starting over would replay 180 days.
            msg = f"cannot read the cursor file {path}: {exc.strerror}"
            raise CheckpointError(msg) from None

    @staticmethod
    def _decode(endpoint: Endpoint, path: Path, data: bytes) -> Cursor:
        try:
            return decode_cursor(endpoint, data)
        except NewerCursorError as exc:
            raise exc.at(str(path)) from None

    def _put_aside(self, path: Path, error: CorruptCursorError) -> CorruptFile:
        """Rename a corrupt file aside; return what happened, to be told."""
        self._names_set_aside().add(path.name.removesuffix(PREVIOUS_SUFFIX))
        # No colons: they are not allowed in file names on SMB shares.
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(self._clock()))
        aside = path.with_name(f"{path.name}{CORRUPT_MARK}{stamp}")
        try:
            path.replace(aside)
        except OSError as exc:
            # Carry on without it: the file's position is lost either way, and
            # raising would stop every endpoint for one bad file.
            self._unmovable.add(path.name)
            return CorruptFile(path, str(error), None, str(exc.strerror or exc))
        return CorruptFile(path, str(error), aside.name)

    def _names_set_aside(self) -> set[str]:
        with self._set_aside_lock:
            if self._set_aside is None:
                try:
                    names = [entry.name for entry in self.directory.iterdir()]
                except OSError:
                    names = []
                found = (_set_aside_from(name) for name in names)
                self._set_aside = {name for name in found if name}
            return self._set_aside

    def _lost(
        self,
        endpoint: Endpoint,
        child_account_id: str | None,
        corrupt: CorruptFile | None,
        previous_corrupt: CorruptFile | None,
    ) -> CursorLost:
        dls = self.directory / dls_file_name(endpoint, child_account_id)
        return CursorLost(
            endpoint,
            child_account_id,
            self.directory / cursor_file_name(endpoint, child_account_id),
            self.directory / previous_file_name(endpoint, child_account_id),
            corrupt,
            previous_corrupt,
            offset_days=self._offset_days,
            dls_ignored=dls if dls.is_file() else None,
        )

    def _import_dls(
        self, endpoint: Endpoint, child_account_id: str | None, events: list[Event]
    ) -> Cursor | None:
        name = dls_file_name(endpoint, child_account_id)
        path = self.directory / name
        if parse_dls_checkpoint_name(name) is None or not path.is_file():
            return None
        try:
            cursor = parse_dls_checkpoint(endpoint, path.read_bytes())
        except (CorruptCursorError, OSError) as exc:
            events.append(
                DlsCheckpointIgnored(endpoint, child_account_id, path, str(exc))
            )
            return None
        events.append(DlsCheckpointImported(endpoint, child_account_id, path))
        return cursor

    async def save(
        self, endpoint: Endpoint, child_account_id: str | None, cursor: Cursor
    ) -> None:
        """Save *cursor* atomically; a failure is told, never raised.

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
            self._save_failures += 1
            self._observer(
                CursorSaveFailed(
                    self.directory, str(exc.strerror or exc), self._save_failures
                )
            )
        else:
            if self._save_failures:
                self._observer(CursorSaveRecovered(self.directory, self._save_failures))
            self._save_failures = 0

    def _write(self, name: str, data: bytes) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / name
        temporary = self.directory / f".{name}.tmp"
        _write_synced(temporary, data)
        if name not in self._unmovable:
            self._keep_previous(path, self.directory / (name + PREVIOUS_SUFFIX))
        temporary.replace(path)
        self._unmovable.discard(name)
        sync_directory(self.directory)

    def _keep_previous(self, path: Path, previous: Path) -> None:
        """Make *previous* a copy of *path* without *path* ever being absent."""
        staging = self.directory / f".{previous.name}.tmp"
        # Left behind by a crash between the link and the rename.
        with contextlib.suppress(FileNotFoundError):
            staging.unlink()
        try:
            os.link(path, staging)
        except FileNotFoundError:
            return  # the first save: nothing to keep
        except OSError:
            # Some filesystems (SMB shares, some FUSE ones) have no hard
            # links; a copy keeps the same position at the cost of an fsync.
            try:
                data = path.read_bytes()
            except FileNotFoundError:
                return
            _write_synced(staging, data)
        staging.replace(previous)


class CheckpointError(FatalError):
    """A cursor file exists but cannot be read.

    Fatal rather than treated as absent: starting over from the configured
    offset would replay up to 180 days into the SIEM.
    """
