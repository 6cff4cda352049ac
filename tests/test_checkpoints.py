"""The cursor store: atomic files, corrupt ones set aside, DLS files imported.

Rules for these tests: every file lives in ``tmp_path``; the store's clock is injected
wherever a message or a file name carries a time; a failing rename or hard link is
simulated by patching exactly that call, since these tests may run as root, for whom
permissions fail nothing.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest

from trio_dls import __version__
from trio_dls.checkpoints import (
    CheckpointError,
    CheckpointStore,
    cursor_file_name,
    previous_file_name,
)
from trio_dls.duo.cursors import (
    AdminCursor,
    CorruptCursorError,
    NewerCursorError,
    WindowCursor,
    decode_cursor,
    encode_cursor,
    import_dls_checkpoints,
)
from trio_dls.endpoints import Endpoint

CHILD = "DAXXXXXXXXXXXXXXXXXX"
# 2026-09-21T14:13:20Z
NOW = 1_790_000_000.0
TRUNCATED = b'{"version": 1, "endpo'


def corruption_of(endpoint: Endpoint, data: bytes) -> str:
    """Return the reason decoding *data* gives, as the store reports it."""
    with pytest.raises(CorruptCursorError) as info:
        decode_cursor(endpoint, data)
    return str(info.value)


def errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The messages logged at error level."""
    return [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]


def newer_cursor(endpoint: Endpoint) -> bytes:
    """A cursor file as a future trio-dls with format 2 might write it."""
    document = json.loads(encode_cursor(endpoint, WindowCursor(1_790_000_000_000)))
    return json.dumps(document | {"version": 2, "written_by": "trio-dls 9.0"}).encode()


async def test_a_saved_cursor_is_loaded_back(tmp_path: Path) -> None:
    """What was saved for (endpoint, child) is what a new store loads."""
    cursor = WindowCursor(1_790_000_000_000, 1_790_000_100_000, "1790000050000,tx")
    await CheckpointStore(tmp_path / "state").save(Endpoint.AUTH, CHILD, cursor)
    store = CheckpointStore(tmp_path / "state")
    assert cursor == await store.load(Endpoint.AUTH, CHILD)
    assert await store.load(Endpoint.AUTH, None) is None


async def test_saving_leaves_no_temporary_file(tmp_path: Path) -> None:
    """A save leaves the cursor and its previous copy, and no temporary file."""
    store = CheckpointStore(tmp_path)
    for second in (1_790_000_000, 1_790_000_001):
        await store.save(Endpoint.ADMINACTION, None, AdminCursor(second))
    assert [
        cursor_file_name(Endpoint.ADMINACTION, None),
        previous_file_name(Endpoint.ADMINACTION, None),
    ] == sorted(p.name for p in tmp_path.iterdir())
    assert AdminCursor(1_790_000_001) == await store.load(Endpoint.ADMINACTION, None)


async def test_a_save_keeps_the_cursor_it_replaces(tmp_path: Path) -> None:
    """After two saves the previous copy holds the first cursor, the file the second."""
    store = CheckpointStore(tmp_path)
    first, second = WindowCursor(1_790_000_000_000), WindowCursor(1_790_000_060_000)
    await store.save(Endpoint.AUTH, CHILD, first)
    assert not (tmp_path / previous_file_name(Endpoint.AUTH, CHILD)).exists()
    await store.save(Endpoint.AUTH, CHILD, second)
    previous = (tmp_path / previous_file_name(Endpoint.AUTH, CHILD)).read_bytes()
    assert first == decode_cursor(Endpoint.AUTH, previous)
    assert second == await store.load(Endpoint.AUTH, CHILD)


async def test_the_previous_copy_is_kept_without_hard_links(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a filesystem without hard links (SMB) the previous copy is a copy."""

    def no_links(*_: object) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_links)
    store = CheckpointStore(tmp_path)
    await store.save(Endpoint.ADMINACTION, None, AdminCursor(1_790_000_000))
    await store.save(Endpoint.ADMINACTION, None, AdminCursor(1_790_000_001))
    previous = (tmp_path / previous_file_name(Endpoint.ADMINACTION, None)).read_bytes()
    assert AdminCursor(1_790_000_000) == decode_cursor(Endpoint.ADMINACTION, previous)
    assert [
        cursor_file_name(Endpoint.ADMINACTION, None),
        previous_file_name(Endpoint.ADMINACTION, None),
    ] == sorted(p.name for p in tmp_path.iterdir())


def test_the_previous_copy_is_no_dls_checkpoint() -> None:
    """A directory scan for DLS checkpoints ignores trio-dls's files and copies."""
    files = [
        (name(endpoint, CHILD), b"1790000000001")
        for endpoint in Endpoint
        for name in (cursor_file_name, previous_file_name)
    ]
    assert not import_dls_checkpoints(files).cursors


async def test_a_corrupt_cursor_resumes_from_the_previous_copy(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A damaged file is set aside; the previous position is used, said in an error."""
    store = CheckpointStore(tmp_path, clock=lambda: NOW + 300)
    await store.save(Endpoint.AUTH, None, WindowCursor(1_790_000_000_000))
    await store.save(Endpoint.AUTH, None, WindowCursor(1_790_000_060_000))
    path = tmp_path / cursor_file_name(Endpoint.AUTH, None)
    path.write_bytes(TRUNCATED)
    with caplog.at_level(logging.ERROR):
        cursor = await CheckpointStore(tmp_path, clock=lambda: NOW + 300).load(
            Endpoint.AUTH, None
        )
    assert WindowCursor(1_790_000_000_000) == cursor
    assert [
        f"the cursor file {path} is corrupt ({corruption_of(Endpoint.AUTH, TRUNCATED)})"
        f"; moved it to {path.name}.corrupt-20260921T141820Z; resuming from the "
        "previous saved position (2026-09-21T14:13:20Z, 5 minutes ago): at most "
        "one page is sent again"
    ] == errors(caplog)
    aside = tmp_path / f"{path.name}.corrupt-20260921T141820Z"
    assert aside.read_bytes() == TRUNCATED


async def test_a_corrupt_cursor_without_a_copy_restarts_from_the_offset(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """With no usable copy the offset is used, never DLS's older checkpoint."""
    (tmp_path / "auth_checkpoint_data.txt").write_text('["1700000000123", "tx"]')
    path = tmp_path / cursor_file_name(Endpoint.AUTH, None)
    path.write_bytes(TRUNCATED)
    store = CheckpointStore(tmp_path, offset_days=1.5, clock=lambda: NOW)
    with caplog.at_level(logging.ERROR):
        assert await store.load(Endpoint.AUTH, None) is None
    assert [
        f"the cursor file {path} is corrupt ({corruption_of(Endpoint.AUTH, TRUNCATED)})"
        f"; moved it to {path.name}.corrupt-20260921T141320Z; there is no previous "
        "copy; starting from the configured offset, up to 1.5 days back "
        "(dls_settings.api.offset); the DLS checkpoint auth_checkpoint_data.txt is "
        "older and is not used"
    ] == errors(caplog)


async def test_a_corrupt_cursor_and_copy_are_both_set_aside(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """When the previous copy is damaged too, both go aside and the offset is used."""
    path = tmp_path / cursor_file_name(Endpoint.ADMINACTION, CHILD)
    previous = tmp_path / previous_file_name(Endpoint.ADMINACTION, CHILD)
    path.write_bytes(b"")
    previous.write_bytes(b"{}")
    store = CheckpointStore(tmp_path, offset_days=30, clock=lambda: NOW)
    with caplog.at_level(logging.ERROR):
        assert await store.load(Endpoint.ADMINACTION, CHILD) is None
    [message] = errors(caplog)
    assert "; its previous copy is corrupt too (" in message
    assert message.endswith(
        "starting from the configured offset, up to 30 days back "
        "(dls_settings.api.offset)"
    )
    assert [
        f"{path.name}.corrupt-20260921T141320Z",
        f"{previous.name}.corrupt-20260921T141320Z",
    ] == sorted(p.name for p in tmp_path.iterdir())


async def test_a_missing_cursor_resumes_from_its_previous_copy(tmp_path: Path) -> None:
    """A previous copy without its file (a crash cannot do that) is still used."""
    (tmp_path / previous_file_name(Endpoint.TELEPHONY, None)).write_bytes(
        encode_cursor(Endpoint.TELEPHONY, WindowCursor(1_790_000_000_000))
    )
    (tmp_path / "telephony_checkpoint_data.txt").write_text('"1700000000124,x"')
    store = CheckpointStore(tmp_path)
    assert WindowCursor(1_790_000_000_000) == await store.load(Endpoint.TELEPHONY, None)


async def test_a_cursor_set_aside_before_never_lets_dls_back_in(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """After a restart from the offset that crashed before a save, DLS stays unused."""
    (tmp_path / "trustmonitor_checkpoint_data.txt").write_text("1700000000001")
    path = tmp_path / cursor_file_name(Endpoint.TRUSTMONITOR, None)
    path.write_bytes(b"\x00" * 16)
    assert await CheckpointStore(tmp_path).load(Endpoint.TRUSTMONITOR, None) is None
    caplog.clear()
    with caplog.at_level(logging.ERROR):
        assert await CheckpointStore(tmp_path).load(Endpoint.TRUSTMONITOR, None) is None
    [message] = errors(caplog)
    assert message.startswith(f"the cursor file {path} is missing (set aside")
    assert "DLS checkpoint trustmonitor_checkpoint_data.txt is older" in message


async def test_a_corrupt_cursor_that_cannot_be_moved_is_no_crash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A failed rename aside is logged; the copy is used and stays the copy."""
    store = CheckpointStore(tmp_path)
    await store.save(Endpoint.ACTIVITY, None, WindowCursor(1_790_000_000_000))
    await store.save(Endpoint.ACTIVITY, None, WindowCursor(1_790_000_060_000))
    path = tmp_path / cursor_file_name(Endpoint.ACTIVITY, None)
    path.write_bytes(TRUNCATED)
    replace = Path.replace

    def refuse_aside(self: Path, target: Path) -> Path:
        if ".corrupt-" in str(target):
            raise PermissionError(13, "Permission denied")
        return replace(self, target)

    monkeypatch.setattr(Path, "replace", refuse_aside)
    store = CheckpointStore(tmp_path)
    with caplog.at_level(logging.ERROR):
        assert WindowCursor(1_790_000_000_000) == await store.load(
            Endpoint.ACTIVITY, None
        )
    [message] = errors(caplog)
    assert "; could not move it aside: Permission denied; resuming from" in message
    # The corrupt file must not become the previous copy at the next save.
    await store.save(Endpoint.ACTIVITY, None, WindowCursor(1_790_000_120_000))
    previous = (tmp_path / previous_file_name(Endpoint.ACTIVITY, None)).read_bytes()
    assert WindowCursor(1_790_000_000_000) == decode_cursor(Endpoint.ACTIVITY, previous)


async def test_a_newer_cursor_file_stops_the_start(tmp_path: Path) -> None:
    """prepare() refuses a file by a newer trio-dls, naming it and both releases."""
    path = tmp_path / cursor_file_name(Endpoint.AUTH, CHILD)
    path.write_bytes(newer_cursor(Endpoint.AUTH))
    (tmp_path / cursor_file_name(Endpoint.TELEPHONY, None)).write_bytes(TRUNCATED)
    with pytest.raises(NewerCursorError) as info:
        await CheckpointStore(tmp_path).prepare()
    assert (
        f"{path}: written by trio-dls 9.0 (cursor format 2); this is trio-dls "
        f"{__version__} (format 1): upgrade trio-dls or move the file away"
    ) == str(info.value)
    assert newer_cursor(Endpoint.AUTH) == path.read_bytes()


async def test_every_newer_cursor_file_is_counted(tmp_path: Path) -> None:
    """After a downgrade, one message says how many files are newer."""
    for endpoint in (Endpoint.AUTH, Endpoint.ACTIVITY):
        (tmp_path / cursor_file_name(endpoint, None)).write_bytes(
            newer_cursor(endpoint)
        )
    (tmp_path / previous_file_name(Endpoint.AUTH, None)).write_bytes(
        newer_cursor(Endpoint.AUTH)
    )
    with pytest.raises(NewerCursorError) as info:
        await CheckpointStore(tmp_path).prepare()
    first = tmp_path / cursor_file_name(Endpoint.ACTIVITY, None)
    assert str(info.value).startswith(
        f"{first} (and 2 more cursor files there): written by trio-dls 9.0"
    )


async def test_loading_a_newer_cursor_file_raises(tmp_path: Path) -> None:
    """A newer file met after start-up is the same error, and is left in place."""
    path = tmp_path / cursor_file_name(Endpoint.TRUSTMONITOR, None)
    path.write_bytes(newer_cursor(Endpoint.TRUSTMONITOR))
    with pytest.raises(NewerCursorError, match=f"^{path}: written by trio-dls 9.0"):
        await CheckpointStore(tmp_path).load(Endpoint.TRUSTMONITOR, None)
    assert [path.name] == [p.name for p in tmp_path.iterdir()]


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
