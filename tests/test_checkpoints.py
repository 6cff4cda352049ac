"""The cursor store: atomic files, corrupt ones set aside, DLS files imported."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import pytest

from trio_dls.checkpoints import CheckpointError, CheckpointStore, cursor_file_name
from trio_dls.cursors import AdminCursor, WindowCursor
from trio_dls.endpoints import Endpoint

if TYPE_CHECKING:
    from pathlib import Path

CHILD = "DAXXXXXXXXXXXXXXXXXX"


async def test_a_saved_cursor_is_loaded_back(tmp_path: Path) -> None:
    """What was saved for (endpoint, child) is what a new store loads."""
    cursor = WindowCursor(1_790_000_000_000, 1_790_000_100_000, "1790000050000,tx")
    await CheckpointStore(tmp_path / "state").save(Endpoint.AUTH, CHILD, cursor)
    store = CheckpointStore(tmp_path / "state")
    assert cursor == await store.load(Endpoint.AUTH, CHILD)
    assert await store.load(Endpoint.AUTH, None) is None


async def test_saving_leaves_no_temporary_file(tmp_path: Path) -> None:
    """A save replaces the file whole; nothing else stays in the directory."""
    store = CheckpointStore(tmp_path)
    for second in (1_790_000_000, 1_790_000_001):
        await store.save(Endpoint.ADMINACTION, None, AdminCursor(second))
    assert [cursor_file_name(Endpoint.ADMINACTION, None)] == sorted(
        p.name for p in tmp_path.iterdir()
    )
    assert AdminCursor(1_790_000_001) == await store.load(Endpoint.ADMINACTION, None)


async def test_a_corrupt_cursor_is_set_aside(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A truncated file is reported, renamed aside, and treated as absent."""
    path = tmp_path / cursor_file_name(Endpoint.TELEPHONY, None)
    path.write_bytes(b'{"version": 1, "endpo')
    with caplog.at_level(logging.ERROR):
        assert await CheckpointStore(tmp_path).load(Endpoint.TELEPHONY, None) is None
    assert not path.exists()
    aside = [p.name for p in tmp_path.iterdir()]
    assert len(aside) == 1
    assert aside[0].startswith(path.name + ".corrupt-")
    assert "is corrupt" in caplog.text


async def test_a_dls_checkpoint_is_imported_when_there_is_no_cursor(
    tmp_path: Path,
) -> None:
    """DLS's trustmonitor file ("last + 1" ms) becomes a cursor at "last"."""
    (tmp_path / f"trustmonitor_checkpoint_data_{CHILD}.txt").write_text("1790000000001")
    store = CheckpointStore(tmp_path)
    assert WindowCursor(1_790_000_000_000) == await store.load(
        Endpoint.TRUSTMONITOR, CHILD
    )


async def test_our_cursor_wins_over_a_dls_checkpoint(tmp_path: Path) -> None:
    """Once trio-dls saved a cursor, DLS's old file is ignored."""
    (tmp_path / "adminaction_checkpoint_data.txt").write_text("1700000001")
    store = CheckpointStore(tmp_path)
    await store.save(Endpoint.ADMINACTION, None, AdminCursor(1_790_000_000))
    assert AdminCursor(1_790_000_000) == await store.load(Endpoint.ADMINACTION, None)


async def test_a_disabled_store_saves_and_loads_nothing(tmp_path: Path) -> None:
    """With checkpointing disabled every start begins at the offset."""
    store = CheckpointStore(tmp_path / "state", enabled=False)
    await store.prepare()
    await store.save(Endpoint.AUTH, None, WindowCursor(1_790_000_000_000))
    assert await store.load(Endpoint.AUTH, None) is None
    assert not (tmp_path / "state").exists()


async def test_an_unusable_directory_is_fatal_at_start(tmp_path: Path) -> None:
    """A checkpoint directory that cannot be created stops the start."""
    (tmp_path / "file").write_text("")
    with pytest.raises(CheckpointError, match="cannot create the checkpoint"):
        await CheckpointStore(tmp_path / "file" / "state").prepare()


async def test_a_failing_save_is_logged_not_raised(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A save that fails costs duplicates after a restart, never a crash."""
    (tmp_path / "file").write_text("")
    store = CheckpointStore(tmp_path / "file" / "state")
    with caplog.at_level(logging.ERROR):
        await store.save(Endpoint.AUTH, None, WindowCursor(1_790_000_000_000))
        await store.save(Endpoint.AUTH, None, WindowCursor(1_790_000_000_001))
    assert caplog.text.count("cannot save cursors") == 1
