"""``trio-dls status``: how fresh each cursor is, read from the checkpoint directory.

Theory of operation
-------------------
Status is a reader of the cursor store (``trio_dls.checkpoints``), offline: it calls
no Duo API and talks to no daemon, so it works the same whether the daemon runs,
has stopped or never started, and can serve as a cron or Nagios check.  It needs
no secret either: the command loads the config without secrets
(``load_config(path, secrets=False)``), so an operator who may not read the skey
can run it, and the config it holds could sign nothing.

It must never disturb a running daemon.  So it only reads: it creates no directory,
writes no file, renames nothing (a corrupt file is reported, not set aside: that is
the daemon's job at its next start) and takes no lock.  None is needed: the store
replaces a cursor file by renaming a complete temporary file over it, so opening
the file yields either the old inode or the new one, each complete.  The file's
modification time is read from the descriptor that was read (``fstat``), so the
time and the content always belong to the same save.  A file that is missing,
unreadable or corrupt is one entry's problem, never a crash.

Which entries: every endpoint the config maps, for the account; for an MSP parent,
every child that has a trio-dls file in the directory (a cursor, its previous copy
or a copy set aside as corrupt), minus ``block_list``, times every mapped endpoint.
The parent's children are known only to Duo; the directory is what status can know.

Per entry: the *position* is the cursor's ``mintime``, the time of the next record
the fetcher will fetch; the *lag* is now minus the position (caught up, it is Duo's
two-minute delay plus up to one poll interval); *last saved* is the file's
modification time, and its *age* is now minus that.

Freshness is judged on the age of the last save, because that is what proves a
fetcher is alive: a caught-up fetcher saves once per poll (each empty window moves
the cursor on too), and one catching up saves after every page, while its lag may
legitimately be months.  The default limit is three poll intervals
(``dls_settings.api.timeout``), at least ten minutes: one slow poll or a retry
backoff (capped at five minutes) is not an alarm; three polls without a save are.
``max_lag`` adds a check of the lag, off by default.  A mapped endpoint without a
cursor fails the check: an install that never ran, or a newly mapped endpoint the
daemon was not restarted for, is exactly what a monitor must catch.

The pure part (`entries_wanted`, `assess`, the renderers) works on names, bytes and
times; `read_cursor_file` and `run_status` are the thin I/O around it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Final

import attrs

from trio_dls.checkpoints import (
    CORRUPT_MARK,
    CURSOR_SUFFIX,
    PREFIX,
    PREVIOUS_SUFFIX,
    cursor_file_name,
    dls_file_name,
)
from trio_dls.duo.cursors import (
    CorruptCursorError,
    NewerCursorError,
    decode_cursor,
    units_per_second,
)
from trio_dls.endpoints import Endpoint

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from typing import TextIO

    from trio_dls.config import Config

__all__ = [
    "Entry",
    "FileRead",
    "Report",
    "Snapshot",
    "Thresholds",
    "assess",
    "default_max_age",
    "entries_wanted",
    "read_cursor_file",
    "render_json",
    "render_text",
    "run_status",
]

EXIT_FRESH: Final = 0
EXIT_STALE: Final = 1
EXIT_UNUSABLE: Final = 2

# See the module docstring: three polls without a save, and never less than
# twice the longest retry backoff of a fetcher.
POLLS_WITHOUT_SAVE: Final = 3
MIN_MAX_AGE: Final = 600.0

NOT_STARTED: Final = "no cursor (not started)"


def default_max_age(config: Config) -> float:
    """Return the default limit on a cursor's save age, in seconds."""
    return max(POLLS_WITHOUT_SAVE * config.dls_settings.api.timeout, MIN_MAX_AGE)


@attrs.frozen
class Thresholds:
    """When an entry is stale: its last save, or its lag, older than these."""

    max_age: float
    max_lag: float | None = None


@attrs.frozen
class FileRead:
    """What reading one cursor file gave: bytes and mtime, absence, or an error."""

    data: bytes | None = None
    """The content; None when the file is absent or could not be read."""
    mtime: float | None = None
    """The modification time of the inode that was read (UTC epoch seconds)."""
    error: str | None = None
    """Why the file could not be read, when it exists but could not be."""


ABSENT: Final = FileRead()


@attrs.frozen
class Entry:
    """The state of one (account or MSP child, endpoint) cursor."""

    account: str
    """The account's ikey (an MSP parent's for its children)."""
    child_account_id: str | None
    endpoint: Endpoint
    file: str
    """The cursor file's name, in the checkpoint directory."""
    position: float | None = None
    """The time of the next record to fetch (UTC epoch seconds)."""
    lag: float | None = None
    saved_at: float | None = None
    age: float | None = None
    problem: str | None = None
    """Why the entry is stale; None when it is fresh."""

    @property
    def fresh(self) -> bool:
        """Whether the entry passes the check."""
        return self.problem is None


@attrs.frozen
class Report:
    """Every entry of one config's checkpoint directory, judged at one time."""

    directory: Path
    now: float
    thresholds: Thresholds
    entries: tuple[Entry, ...]

    @property
    def ok(self) -> bool:
        """Whether every entry is fresh (and there is at least one)."""
        return bool(self.entries) and all(entry.fresh for entry in self.entries)


def _child_of(name: str) -> str | None:
    """Return the MSP child id a trio-dls file name belongs to, or None."""
    stem = name.partition(CORRUPT_MARK)[0].removesuffix(PREVIOUS_SUFFIX)
    if not stem.startswith(f"{PREFIX}_") or not stem.endswith(CURSOR_SUFFIX):
        return None
    middle = stem.removeprefix(f"{PREFIX}_").removesuffix(CURSOR_SUFFIX)
    # Endpoint names hold no "_", and child ids only letters and digits.
    endpoint, underscore, child = middle.partition("_")
    if (
        endpoint in _ENDPOINT_NAMES
        and underscore
        and child.isascii()
        and child.isalnum()
    ):
        return child
    return None


_ENDPOINT_NAMES: Final = frozenset(endpoint.value for endpoint in Endpoint)


def entries_wanted(
    config: Config, names: Iterable[str]
) -> tuple[tuple[str | None, Endpoint], ...]:
    """Return the (child account id or None, endpoint) pairs to report, in order.

    *names* are the checkpoint directory's file names; only an MSP parent's
    children are found in them.
    """
    account = config.account
    endpoints = account.endpoints
    if not account.is_msp:
        return tuple((None, endpoint) for endpoint in endpoints)
    blocked = set(account.block_list)
    found = {_child_of(name) for name in names}
    children = sorted(child for child in found if child and child not in blocked)
    if not children:
        # No child has saved anything yet: still one failing line per endpoint.
        return tuple((None, endpoint) for endpoint in endpoints)
    return tuple((child, endpoint) for child in children for endpoint in endpoints)


@attrs.frozen
class Snapshot:
    """What status read of a checkpoint directory."""

    directory: Path
    names: frozenset[str] = frozenset()
    """The names in the directory (none when it does not exist)."""
    files: Mapping[str, FileRead] = attrs.field(factory=dict, hash=False)
    """What reading each wanted cursor file gave; a name not in it is absent."""
    listing_error: str | None = None
    """Why the directory could not be listed, when it exists but could not be."""


def assess(
    config: Config, snapshot: Snapshot, *, now: float, thresholds: Thresholds
) -> Report:
    """Judge every entry *config* wants from a *snapshot* of its directory at *now*."""
    entries = [
        _assess_entry(
            Entry(
                config.account.ikey, child, endpoint, cursor_file_name(endpoint, child)
            ),
            snapshot,
            now=now,
            thresholds=thresholds,
            msp_parent=config.account.is_msp and child is None,
        )
        for child, endpoint in entries_wanted(config, snapshot.names)
    ]
    return Report(snapshot.directory, now, thresholds, tuple(entries))


def _assess_entry(
    entry: Entry,
    snapshot: Snapshot,
    *,
    now: float,
    thresholds: Thresholds,
    msp_parent: bool,
) -> Entry:
    read = snapshot.files.get(entry.file, ABSENT)
    if read.error is not None:
        return attrs.evolve(entry, problem=f"cannot read the cursor file: {read.error}")
    if read.data is None or read.mtime is None:
        if snapshot.listing_error is not None:
            problem = f"cannot list the checkpoint directory: {snapshot.listing_error}"
        elif msp_parent:
            problem = "no cursor for any MSP child account (not started)"
        else:
            problem = _why_missing(
                entry.endpoint, entry.child_account_id, snapshot.names
            )
        return attrs.evolve(entry, problem=problem)
    entry = attrs.evolve(entry, saved_at=read.mtime, age=now - read.mtime)
    try:
        cursor = decode_cursor(entry.endpoint, read.data)
    except CorruptCursorError as exc:
        return attrs.evolve(entry, problem=f"corrupt: {exc}")
    except NewerCursorError as exc:
        return attrs.evolve(entry, problem=str(exc.at("this file")))
    position = cursor.mintime / units_per_second(entry.endpoint)
    entry = attrs.evolve(entry, position=position, lag=now - position)
    problems = []
    if now - read.mtime > thresholds.max_age:
        problems.append(
            f"last saved {_duration(now - read.mtime)} ago, "
            f"more than --max-age {thresholds.max_age:g} s"
        )
    if thresholds.max_lag is not None and now - position > thresholds.max_lag:
        problems.append(
            f"lag {_duration(now - position)}, "
            f"more than --max-lag {thresholds.max_lag:g} s"
        )
    return attrs.evolve(entry, problem="; ".join(problems) or None)


def _why_missing(endpoint: Endpoint, child: str | None, names: frozenset[str]) -> str:
    name = cursor_file_name(endpoint, child)
    set_aside = sorted(n for n in names if n.startswith(name + CORRUPT_MARK))
    if set_aside:
        # The daemon set the file aside at its start and has not saved since.
        return f"no cursor: the last one was set aside as corrupt ({set_aside[-1]})"
    if name + PREVIOUS_SUFFIX in names:
        return "no cursor, only its previous copy (the daemon resumes from it)"
    dls = dls_file_name(endpoint, child)
    if dls in names:
        return f"{NOT_STARTED}; the DLS checkpoint {dls} will be imported"
    return NOT_STARTED


# Rendering -------------------------------------------------------------------


def _iso(seconds: float, timespec: str = "seconds") -> str:
    """Return a UTC time as ISO 8601 with a Z, whatever the local time zone."""
    text = datetime.fromtimestamp(seconds, UTC).isoformat(timespec=timespec)
    return text.replace("+00:00", "Z")


def _duration(seconds: float) -> str:
    """Say a duration compactly, for a table cell or a reason."""
    sign = "-" if seconds < 0 else ""
    seconds = abs(seconds)
    if seconds < 120:  # noqa: PLR2004 - two minutes read better in seconds
        return f"{sign}{seconds:.0f} s"
    if seconds < 7200:  # noqa: PLR2004
        return f"{sign}{seconds / 60:.0f} min"
    if seconds < 2 * 86_400:
        return f"{sign}{seconds / 3600:.1f} h"
    return f"{sign}{seconds / 86_400:.1f} d"


def summary(report: Report) -> str:
    """Return the one-line verdict: OK or STALE, with counts and the limits."""
    limits = f"max age {report.thresholds.max_age:g} s"
    if report.thresholds.max_lag is not None:
        limits += f", max lag {report.thresholds.max_lag:g} s"
    total = len(report.entries)
    stale = sum(not entry.fresh for entry in report.entries)
    plural = "s" if total != 1 else ""
    if report.ok:
        return f"OK: {total} cursor{plural} fresh ({limits}) in {report.directory}"
    return (
        f"STALE: {stale} of {total} cursor{plural} stale ({limits}) "
        f"in {report.directory}"
    )


def render_text(report: Report) -> str:
    """Return the aligned table, one line per entry, then the summary line."""
    header = ("ACCOUNT", "ENDPOINT", "POSITION", "LAG", "LAST SAVED", "AGE", "STATUS")
    rows = [header]
    rows.extend(
        (
            entry.child_account_id or entry.account,
            entry.endpoint.value,
            "-" if entry.position is None else _iso(entry.position),
            "-" if entry.lag is None else _duration(entry.lag),
            "-" if entry.saved_at is None else _iso(entry.saved_at),
            "-" if entry.age is None else _duration(entry.age),
            "ok" if entry.problem is None else f"STALE: {entry.problem}",
        )
        for entry in report.entries
    )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header) - 1)]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False))
        + "  "
        + row[-1]
        for row in rows
    ]
    return "\n".join([*lines, summary(report)]) + "\n"


def _epoch(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds, 3)


def render_json(report: Report) -> str:
    """Return the report as one JSON document, for machines."""
    document = {
        "ok": report.ok,
        "directory": str(report.directory),
        "now": _iso(report.now, "milliseconds"),
        "now_epoch": _epoch(report.now),
        "max_age_seconds": report.thresholds.max_age,
        "max_lag_seconds": report.thresholds.max_lag,
        "entries": [
            {
                "account": entry.account,
                "child_account_id": entry.child_account_id,
                "endpoint": entry.endpoint.value,
                "file": entry.file,
                "position": None
                if entry.position is None
                else _iso(entry.position, "milliseconds"),
                "position_epoch": _epoch(entry.position),
                "lag_seconds": _epoch(entry.lag),
                "saved_at": None
                if entry.saved_at is None
                else _iso(entry.saved_at, "milliseconds"),
                "saved_at_epoch": _epoch(entry.saved_at),
                "age_seconds": _epoch(entry.age),
                "fresh": entry.fresh,
                "problem": entry.problem,
            }
            for entry in report.entries
        ],
    }
    return json.dumps(document, indent=2) + "\n"


# I/O -------------------------------------------------------------------------


def read_cursor_file(path: Path) -> FileRead:
    """Read one cursor file and the mtime of the very inode read; never raise."""
    try:
        # A plain read-only open: no lock, nothing the daemon could wait on.
        descriptor = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return ABSENT
    except OSError as exc:
        return FileRead(error=str(exc.strerror or exc))
    try:
        with os.fdopen(descriptor, "rb") as file:
            mtime = os.fstat(file.fileno()).st_mtime
            data = file.read()
    except OSError as exc:
        return FileRead(error=str(exc.strerror or exc))
    return FileRead(data, mtime)


def _list(directory: Path) -> tuple[frozenset[str], str | None]:
    """Return the directory's names, and why it could not be listed if so."""
    try:
        return frozenset(path.name for path in directory.iterdir()), None
    except FileNotFoundError:
        # Not created yet: the daemon creates it at its first start.
        return frozenset(), None
    except OSError as exc:
        return frozenset(), str(exc.strerror or exc)


def wall_clock() -> float:
    """Return now, in UTC epoch seconds; tests replace it to fix "now"."""
    return datetime.now(UTC).timestamp()


def run_status(
    config: Config,
    stdout: TextIO,
    stderr: TextIO,
    *,
    max_age: float | None = None,
    max_lag: float | None = None,
    as_json: bool = False,
    only_summary: bool = False,
    clock: Callable[[], float] | None = None,
) -> int:
    """Report the cursors of *config*; return 0 if all are fresh, 1 if not.

    Return 2 when there is nothing to check (checkpointing is disabled).
    *clock* (default `wall_clock`) gives "now", in UTC epoch seconds.
    """
    checkpointing = config.dls_settings.checkpointing
    if not checkpointing.enabled:
        print(
            "trio-dls: dls_settings.checkpointing.enabled is false: no cursor is "
            "saved, so there is nothing to check",
            file=stderr,
        )
        return EXIT_UNUSABLE
    directory = Path(checkpointing.directory)
    names, listing_error = _list(directory)
    wanted = entries_wanted(config, names)
    files = {
        name: read_cursor_file(directory / name)
        for name in (cursor_file_name(endpoint, child) for child, endpoint in wanted)
    }
    # "Now" after the reads: a save during them must not look like the future.
    now = (clock or wall_clock)()
    thresholds = Thresholds(
        default_max_age(config) if max_age is None else max_age, max_lag
    )
    snapshot = Snapshot(directory, names, files, listing_error)
    report = assess(config, snapshot, now=now, thresholds=thresholds)
    if as_json:
        stdout.write(render_json(report))
    elif only_summary:
        print(summary(report), file=stdout)
    else:
        stdout.write(render_text(report))
    return EXIT_FRESH if report.ok else EXIT_STALE
