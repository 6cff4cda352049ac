"""Making a rename durable: the directory's fsync, where the OS has one.

A file written to a temporary name, fsynced and renamed over the old one is
on disk once the directory entry is too.  On POSIX systems that takes an
fsync of the directory, opened read-only.  Windows cannot open a directory
as a file (``os.open`` refuses it) and has no such step: NTFS journals the
rename itself, and ``MoveFileEx``, which ``os.replace`` calls, returns once
it is done.  So the step is chosen by capability: ``CAN_SYNC_DIRECTORIES``
is whether the OS has it, and ``sync_directory`` does nothing where it has
not (``docs/platforms.md``).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["CAN_SYNC_DIRECTORIES", "sync_directory"]

# Not Final: a test (or an embedding) may switch it off, and it is read at
# each call.
CAN_SYNC_DIRECTORIES = os.name == "posix"


def sync_directory(directory: Path | str) -> None:
    """Flush *directory*'s entries to disk (nothing where the OS cannot).

    Errors are the caller's: a cursor store counts a failed save.
    """
    if not CAN_SYNC_DIRECTORIES:
        return
    handle = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)
