"""What the real cursor store tells its observer.

Rules for these tests: as in ``tests.test_checkpoints`` (every file in
``tmp_path``, the store's clock injected wherever an event carries a time, a
failing rename simulated by patching exactly that call), with a
``RecordingObserver`` given to the store.  File work runs in the store's own
worker threads: the events still reach the observer, on trio's thread.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING

from tests.observing import RecordingObserver
from tests.test_checkpoints import NOW, TRUNCATED, corruption_of
from trio_dls.checkpoints import (
    CheckpointStore,
    cursor_file_name,
    previous_file_name,
)
from trio_dls.duo.cursors import WindowCursor, encode_cursor
from trio_dls.endpoints import Endpoint
from trio_dls.observe.events import (
    CorruptFile,
    CursorLost,
    CursorRestored,
    CursorSaveFailed,
    CursorSaveRecovered,
    DlsCheckpointIgnored,
    DlsCheckpointImported,
    Event,
)

if TYPE_CHECKING:
    import pytest

CHILD = "DAXXXXXXXXXXXXXXXXXX"
CURSOR = WindowCursor(1_790_000_000_000)


async def test_every_failed_save_is_told_counted_and_the_first_good_one_after(
    tmp_path: Path,
) -> None:
    """Saves into a file (not a directory) fail, counted; once it goes, recovered."""
    blocked = tmp_path / "state"
    blocked.write_text("")
    seen = RecordingObserver()
    store = CheckpointStore(blocked, observer=seen)
    for _ in range(3):
        await store.save(Endpoint.AUTH, None, CURSOR)
    blocked.unlink()
    await store.save(Endpoint.AUTH, CHILD, CURSOR)
    await store.save(Endpoint.AUTH, CHILD, CURSOR)

    assert seen.events == [
        CursorSaveFailed(blocked, "File exists", 1),
        CursorSaveFailed(blocked, "File exists", 2),
        CursorSaveFailed(blocked, "File exists", 3),
        CursorSaveRecovered(blocked, 3),
    ]


async def test_a_corrupt_cursor_resumed_from_its_copy_is_told_with_both(
    tmp_path: Path,
) -> None:
    """The damaged file, where it went, and the copy's position and age are told."""
    store = CheckpointStore(tmp_path)
    await store.save(Endpoint.AUTH, None, CURSOR)
    await store.save(Endpoint.AUTH, None, WindowCursor(1_790_000_060_000))
    path = tmp_path / cursor_file_name(Endpoint.AUTH, None)
    path.write_bytes(TRUNCATED)
    seen = RecordingObserver()
    store = CheckpointStore(tmp_path, clock=lambda: NOW + 300, observer=seen)

    assert await store.load(Endpoint.AUTH, None) == CURSOR
    corrupt = CorruptFile(
        path,
        corruption_of(Endpoint.AUTH, TRUNCATED),
        f"{path.name}.corrupt-20260921T141820Z",
    )
    assert seen.events == [
        CursorRestored(Endpoint.AUTH, None, path, corrupt, position=NOW, age=300.0)
    ]


async def test_a_missing_cursor_resumed_from_its_copy_is_told_without_damage(
    tmp_path: Path,
) -> None:
    """A copy without its file: CursorRestored with no corrupt file."""
    (tmp_path / previous_file_name(Endpoint.TELEPHONY, CHILD)).write_bytes(
        encode_cursor(Endpoint.TELEPHONY, CURSOR)
    )
    seen = RecordingObserver()
    store = CheckpointStore(tmp_path, clock=lambda: NOW + 60, observer=seen)

    assert await store.load(Endpoint.TELEPHONY, CHILD) == CURSOR
    path = tmp_path / cursor_file_name(Endpoint.TELEPHONY, CHILD)
    assert seen.events == [
        CursorRestored(Endpoint.TELEPHONY, CHILD, path, None, position=NOW, age=60.0)
    ]


async def test_a_cursor_and_copy_both_corrupt_are_told_lost_with_the_dls_file(
    tmp_path: Path,
) -> None:
    """Both damaged: CursorLost with both files, the offset and the unused DLS one."""
    path = tmp_path / cursor_file_name(Endpoint.AUTH, None)
    previous = tmp_path / previous_file_name(Endpoint.AUTH, None)
    dls = tmp_path / "auth_checkpoint_data.txt"
    path.write_bytes(TRUNCATED)
    previous.write_bytes(TRUNCATED)
    dls.write_text('["1700000000123", "tx"]')
    seen = RecordingObserver()
    store = CheckpointStore(tmp_path, offset_days=1.5, clock=lambda: NOW, observer=seen)

    assert await store.load(Endpoint.AUTH, None) is None
    error = corruption_of(Endpoint.AUTH, TRUNCATED)
    assert seen.events == [
        CursorLost(
            Endpoint.AUTH,
            None,
            path,
            previous,
            CorruptFile(path, error, f"{path.name}.corrupt-20260921T141320Z"),
            CorruptFile(previous, error, f"{previous.name}.corrupt-20260921T141320Z"),
            offset_days=1.5,
            dls_ignored=dls,
        )
    ]


async def test_a_cursor_set_aside_at_an_earlier_start_is_told_lost(
    tmp_path: Path,
) -> None:
    """Missing because set aside before: CursorLost with no damaged file now."""
    path = tmp_path / cursor_file_name(Endpoint.TRUSTMONITOR, None)
    path.write_bytes(b"\x00" * 16)
    assert await CheckpointStore(tmp_path).load(Endpoint.TRUSTMONITOR, None) is None
    seen = RecordingObserver()

    assert (
        await CheckpointStore(tmp_path, observer=seen).load(Endpoint.TRUSTMONITOR, None)
        is None
    )
    [lost] = seen.of(CursorLost)
    assert (
        lost.corrupt,
        lost.previous_corrupt,
        lost.dls_ignored,
    ) == (None, None, None)
    assert path == lost.path
    assert len(seen.events) == 1


async def test_a_file_that_cannot_be_moved_aside_is_told_with_the_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A refused rename: the corrupt file is told with no new name and the error."""
    path = tmp_path / cursor_file_name(Endpoint.ACTIVITY, None)
    path.write_bytes(TRUNCATED)
    replace = Path.replace

    def refuse_aside(self: Path, target: Path) -> Path:
        if ".corrupt-" in str(target):
            raise PermissionError(13, "Permission denied")
        return replace(self, target)

    monkeypatch.setattr(Path, "replace", refuse_aside)
    seen = RecordingObserver()
    assert (
        await CheckpointStore(tmp_path, observer=seen).load(Endpoint.ACTIVITY, None)
        is None
    )

    [lost] = seen.of(CursorLost)
    assert lost.corrupt == CorruptFile(
        path,
        corruption_of(Endpoint.ACTIVITY, TRUNCATED),
        None,
        "Permission denied",
    )


async def test_dls_checkpoints_imported_or_ignored_are_told(tmp_path: Path) -> None:
    """A DLS checkpoint read at a first start is told; an unreadable one, ignored."""
    good = tmp_path / "telephony_checkpoint_data.txt"
    bad = tmp_path / f"auth_checkpoint_data_{CHILD}.txt"
    good.write_text('"1700000000124,x"')
    bad.write_text("not a checkpoint")
    seen = RecordingObserver()
    store = CheckpointStore(tmp_path, observer=seen)

    assert await store.load(Endpoint.TELEPHONY, None) is not None
    assert await store.load(Endpoint.AUTH, CHILD) is None
    [imported, ignored] = seen.events
    assert DlsCheckpointImported(Endpoint.TELEPHONY, None, good) == imported
    assert isinstance(ignored, DlsCheckpointIgnored)
    assert (Endpoint.AUTH, CHILD, bad) == (
        ignored.endpoint,
        ignored.account_id,
        ignored.path,
    )
    assert ignored.error


async def test_events_of_a_load_reach_the_observer_on_trios_thread(
    tmp_path: Path,
) -> None:
    """The file work runs in a worker thread; the observer is called on trio's."""
    (tmp_path / "telephony_checkpoint_data.txt").write_text('"1700000000124,x"')
    called_in: list[threading.Thread] = []

    def observer(event: Event) -> None:
        del event
        called_in.append(threading.current_thread())

    await CheckpointStore(tmp_path, observer=observer).load(Endpoint.TELEPHONY, None)

    assert [threading.current_thread()] == called_in
