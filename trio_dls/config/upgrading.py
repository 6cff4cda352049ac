"""The files of ``upgrade-config``: OLD read, never written; NEW written atomically.

``upgrade`` converts text; this module is the I/O around it.  OLD is only
read.  NEW is written to a temporary file in its own directory and renamed
over its name, so that a crash leaves the old NEW or the whole new one, never
half a file; it is created with mode 0600 because it holds the skey.  An
existing NEW is replaced only when the caller says so (``--force``), and NEW
may never be OLD itself.  Every refusal is an ``UpgradeError`` naming the file.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from trio_dls.config.upgrade import Upgrade, UpgradeError, dump, upgrade
from trio_dls.durable import sync_directory


def read_old(path: Path) -> str:
    """Read the old config at *path* as text; raise ``UpgradeError`` if it cannot be."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise UpgradeError([f"{path}: no such file"]) from None
    except IsADirectoryError:
        raise UpgradeError([f"{path}: is a directory, not a config file"]) from None
    except OSError as exc:
        raise UpgradeError([f"{path}: cannot read: {exc.strerror}"]) from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        msg = f"{path}: not UTF-8 text (at byte offset {exc.start})"
        raise UpgradeError([msg]) from None


def write_new(path: Path, text: str, *, force: bool) -> None:
    """Write *text* to *path* atomically, mode 0600; an existing one only if *force*."""
    if path.is_dir():
        raise UpgradeError([f"{path}: is a directory"])
    if path.exists() and not force:
        msg = f"{path}: already exists; not replaced (add --force to replace it)"
        raise UpgradeError([msg])
    directory = path.parent
    try:
        # mkstemp creates the file with mode 0600, before any byte is in it.
        handle, temporary = tempfile.mkstemp(
            dir=directory, prefix=f".{path.name}.", suffix=".tmp"
        )
    except OSError as exc:
        msg = f"{path}: cannot write in {directory}: {exc.strerror}"
        raise UpgradeError([msg]) from None
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        Path(temporary).replace(path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            Path(temporary).unlink()
        raise UpgradeError([f"{path}: cannot write: {exc.strerror}"]) from None
    _sync_directory(directory)


def _sync_directory(directory: Path) -> None:
    # The rename is durable once the directory is on disk too; where a
    # directory cannot be opened for that, the file is written all the same.
    with contextlib.suppress(OSError):
        sync_directory(directory)


def upgrade_file(old: Path, new: Path, *, force: bool) -> Upgrade:
    """Convert the file *old* into the file *new*; return what was done."""
    if _same_file(old, new):
        msg = f"{new}: is the old file itself; upgrade-config never overwrites it"
        raise UpgradeError([msg])
    text = read_old(old)
    try:
        done = upgrade(text)
    except UpgradeError as exc:
        raise type(exc)([f"{old}: {problem}" for problem in exc.problems]) from None
    write_new(new, dump(done.tree), force=force)
    return done


def _same_file(old: Path, new: Path) -> bool:
    try:
        return new.exists() and old.exists() and old.samefile(new)
    except OSError:
        return False
