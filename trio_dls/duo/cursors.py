"""Cursors: where each (account, endpoint) continues, and their bytes on disk.

Theory of operation
-------------------
A cursor is everything needed to ask Duo for the next page of one log endpoint, and
nothing else.  It is a plain frozen value: this module reads no file, no clock and no
environment.  The store (an I/O module) writes the bytes of `encode_cursor` atomically
and hands the bytes it reads back to `decode_cursor`; a fetcher turns a cursor into a
request with `trio_dls.duo.paging`.

There are two kinds, because Duo pages its log endpoints in two ways:

* `WindowCursor` for auth, telephony, activity (``/admin/v2/logs/...``) and trust
  monitor, all in milliseconds.  Duo serves a closed window ``[mintime, maxtime]``
  page by page with an opaque ``next_offset``; `trio_dls.duo.paging` explains why
  windows tile time without gaps or overlaps.
* `AdminCursor` for the administrator log (``/admin/v1/logs/administrator``), in
  seconds, which has no paging token at all: the cursor keeps the identities of the
  records already shipped in its boundary second.

A checkpoint file is JSON with a ``version``, the endpoint's name and the release that
wrote it (``written_by``, which files from before it was added lack), so a file copied
to the wrong name or written by a future release is recognised.  A file in a newer
format raises `NewerCursorError`: its position cannot be read, and guessing would mean
a replay or a gap, so the daemon refuses to start until the operator upgrades or moves
the file.  Decoding raises `CorruptCursorError` for every other bad input (not UTF-8,
truncated, wrong types, absurd values) and nothing else, so the store can report the
file and set it aside instead of crashing in a loop on it.

duo_log_sync (DLS) checkpoints
------------------------------
DLS writes ``<endpoint>_checkpoint_data[_<child account id>].txt`` holding the JSON of
its next request position; `import_dls_checkpoints` maps those to cursors so a DLS user
switches without replaying 180 days.  Every mapping errs towards at-least-once: DLS
saves "last timestamp + 1", which already skips any record sharing the last record's
timestamp that had not been fetched yet, so we start *at* the last timestamp instead,
re-sending the (usually one) record there rather than risking a loss:

* auth ``["<ms>", "<txid>"]`` is Duo's own ``next_offset``: we continue with it, in a
  window starting at that millisecond, so nothing is repeated.
* telephony and activity ``"<ms + 1>,<id>"``: a window starting at ``ms``.
* trust monitor (ms) and adminaction (seconds) ``<last + 1>``: start at ``last``.
* A bare number for any endpoint (older DLS releases wrote seconds even for telephony)
  is read as "last + 1" too; its unit is told by its size, since a time in seconds
  stays below 10**11 until the year 5138 and one in milliseconds passed it in 1973.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
from typing import TYPE_CHECKING, Final, TypeAlias, TypeGuard

import attrs

from trio_dls import __version__
from trio_dls.endpoints import Endpoint
from trio_dls.errors import FatalError

if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = [
    "CURSOR_FORMAT_VERSION",
    "AdminCursor",
    "CorruptCursorError",
    "Cursor",
    "DlsImport",
    "NewerCursorError",
    "WindowCursor",
    "decode_cursor",
    "encode_cursor",
    "import_dls_checkpoints",
    "initial_cursor",
    "parse_dls_checkpoint",
    "parse_dls_checkpoint_name",
    "refuse_newer_cursor",
    "units_per_second",
]

CURSOR_FORMAT_VERSION: Final = 1
WRITTEN_BY: Final = f"trio-dls {__version__}"

SECONDS_PER_DAY: Final = 86_400

# Nothing Duo logs can be older than the epoch or later than the year 3000; a cursor
# outside that range is damaged, and accepting it would silently stop fetching.
_LATEST_SECOND: Final = 32_503_680_000

# A number at least this large is milliseconds (see the module docstring).
_FIRST_MILLISECOND_MAGNITUDE: Final = 10**11

# A checkpoint holds a handful of numbers; anything much larger is not one of ours.
# Bounding the size also keeps pathological JSON away from the parser.
_MAX_CHECKPOINT_BYTES: Final = 4 * 1024 * 1024


class CorruptCursorError(ValueError):
    """Checkpoint bytes that do not hold a usable cursor for the expected endpoint."""


# Long enough for any version string, short enough for one line of a message.
_MAX_WRITTEN_BY: Final = 100


class NewerCursorError(FatalError):
    """Checkpoint bytes in a format newer than this release reads.

    Fatal, not corrupt: setting the file aside would restart from an older position
    (a replay), and the file is fine for the release that wrote it.
    """

    def __init__(self, version: int, written_by: str | None, where: str = "") -> None:
        """Describe a cursor of format *version* by *written_by*, found at *where*."""
        self.version = version
        self.written_by = written_by
        self.where = where
        writer = written_by or "a newer trio-dls"
        super().__init__(
            f"{where or 'cursor'}: written by {writer} (cursor format {version}); "
            f"this is {WRITTEN_BY} (format {CURSOR_FORMAT_VERSION}): upgrade "
            "trio-dls or move the file away"
        )

    def at(self, where: str) -> NewerCursorError:
        """Return the same error, naming the file it was found in."""
        return NewerCursorError(self.version, self.written_by, where)


def units_per_second(endpoint: Endpoint) -> int:
    """Return how many of the endpoint's time units make a second (1 or 1000)."""
    return 1 if endpoint is Endpoint.ADMINACTION else 1000


def _require_epoch(name: str, value: object, latest: int) -> None:
    if (
        not isinstance(value, int)
        or isinstance(value, bool)
        or not 0 <= value <= latest
    ):
        msg = f"{name} must be an epoch integer up to {latest}, not {value!r}"
        raise ValueError(msg)


def _check_ms(instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    del instance
    _require_epoch(attribute.name, value, _LATEST_SECOND * 1000)


def _check_seconds(
    instance: object, attribute: attrs.Attribute[int], value: int
) -> None:
    del instance
    _require_epoch(attribute.name, value, _LATEST_SECOND)


def _check_window(instance: WindowCursor) -> None:
    if instance.maxtime is not None:
        _require_epoch("maxtime", instance.maxtime, _LATEST_SECOND * 1000)
        if instance.maxtime <= instance.mintime:
            # Duo answers 400 unless maxtime > mintime.
            msg = f"maxtime {instance.maxtime} must be after mintime {instance.mintime}"
            raise ValueError(msg)
    if instance.next_offset is not None and (
        type(instance.next_offset) is not str or not instance.next_offset
    ):
        msg = f"next_offset must be a non-empty string, not {instance.next_offset!r}"
        raise ValueError(msg)


@attrs.frozen
class WindowCursor:
    """Position in a windowed endpoint (auth, telephony, activity, trust monitor).

    All times are epoch milliseconds.  ``mintime`` is the first one not yet shipped.
    Between windows, ``maxtime`` and ``next_offset`` are None.  While a window is being
    paged, ``maxtime`` is its (inclusive) end, fixed until the window is exhausted, and
    ``next_offset`` is Duo's token for the next page of it.  A ``next_offset`` without
    a ``maxtime`` (only from a DLS import) continues in a window that ends wherever the
    next request ends it.
    """

    mintime: int = attrs.field(validator=_check_ms)
    maxtime: int | None = None
    next_offset: str | None = None

    def __attrs_post_init__(self) -> None:
        """Refuse a window Duo would refuse."""
        _check_window(self)


def _check_sent(
    instance: object, attribute: attrs.Attribute[frozenset[str]], value: object
) -> None:
    del instance
    if type(value) is not frozenset or not all(type(i) is str for i in value):
        msg = f"{attribute.name} must be a frozenset of strings, not {value!r}"
        raise ValueError(msg)


@attrs.frozen
class AdminCursor:
    """Position in the administrator log, in seconds.

    Every record before ``mintime`` (epoch seconds) has been shipped, and so have the
    records of second ``mintime`` whose identities are in ``sent`` (see
    `trio_dls.duo.paging.record_identity`).
    ``inclusive`` records that Duo was seen returning records at exactly the requested
    mintime, which decides what mintime to ask for (see `trio_dls.duo.paging`).
    """

    mintime: int = attrs.field(validator=_check_seconds)
    sent: frozenset[str] = attrs.field(default=frozenset(), validator=_check_sent)
    inclusive: bool = attrs.field(
        default=False, validator=attrs.validators.instance_of(bool)
    )


Cursor: TypeAlias = WindowCursor | AdminCursor


def initial_cursor(endpoint: Endpoint, now: float, offset_days: float) -> Cursor:
    """Return the cursor of a first start: ``offset_days`` before ``now`` (UTC epoch).

    ``offset_days`` may have a fraction (1.5 is 36 hours), as DLS's
    ``timedelta(days=offset)`` allows.  It is not clamped to Duo's 180 days:
    `trio_dls.duo.paging.plan_request` clamps every cursor against the time of the
    request, so this one needs no special case.
    """
    if (
        type(offset_days) not in {int, float}
        or not math.isfinite(offset_days)
        or offset_days < 0
    ):
        msg = f"offset_days must be a non-negative number, not {offset_days!r}"
        raise ValueError(msg)
    unit = units_per_second(endpoint)
    # Rounded to the unit: 0.1 days is 8640000.000000002 ms in floating point.
    span = round(offset_days * SECONDS_PER_DAY * unit)
    mintime = max(0, math.floor(now * unit) - span)
    if endpoint is Endpoint.ADMINACTION:
        return AdminCursor(mintime)
    return WindowCursor(mintime)


def encode_cursor(endpoint: Endpoint, cursor: Cursor) -> bytes:
    """Return the bytes of a checkpoint file holding ``cursor`` for ``endpoint``."""
    _check_kind(endpoint, cursor)
    document: dict[str, object] = {
        "version": CURSOR_FORMAT_VERSION,
        "endpoint": endpoint.value,
        "written_by": WRITTEN_BY,
    }
    if isinstance(cursor, AdminCursor):
        document |= {
            "mintime": cursor.mintime,
            "sent": sorted(cursor.sent),
            "inclusive": cursor.inclusive,
        }
    else:
        document |= {
            "mintime": cursor.mintime,
            "maxtime": cursor.maxtime,
            "next_offset": cursor.next_offset,
        }
    return (json.dumps(document, sort_keys=True, indent=1) + "\n").encode()


_COMMON_KEYS: Final = frozenset({"version", "endpoint", "mintime"})
# Keys a file may lack: trio-dls did not always write them.
_OPTIONAL_KEYS: Final = frozenset({"written_by"})
_WINDOW_KEYS: Final = _COMMON_KEYS | {"maxtime", "next_offset"}
_ADMIN_KEYS: Final = _COMMON_KEYS | {"sent", "inclusive"}


def decode_cursor(endpoint: Endpoint, data: bytes) -> Cursor:
    """Return the cursor held by checkpoint bytes for ``endpoint``.

    Raises `NewerCursorError` for a format newer than this release's, and otherwise
    `CorruptCursorError`, and only that, when the bytes are not what `encode_cursor`
    writes (or 0.1.0 wrote) for this endpoint.
    """
    document = _load_json(data)
    if not isinstance(document, dict):
        raise CorruptCursorError("a cursor must be a JSON object")
    _refuse_newer(document)
    version = document.get("version")
    if version != CURSOR_FORMAT_VERSION or type(version) is not int:
        msg = f"unsupported cursor format version {version!r}"
        raise CorruptCursorError(msg)
    if document.get("endpoint") != endpoint.value:
        msg = f"cursor is for {document.get('endpoint')!r}, not {endpoint.value!r}"
        raise CorruptCursorError(msg)
    keys = _ADMIN_KEYS if endpoint is Endpoint.ADMINACTION else _WINDOW_KEYS
    if document.keys() - _OPTIONAL_KEYS != keys:
        msg = f"cursor keys are {sorted(document)}, expected {sorted(keys)}"
        raise CorruptCursorError(msg)
    if "written_by" in document and not _is_written_by(document["written_by"]):
        msg = f"written_by must be a short text, not {document['written_by']!r}"
        raise CorruptCursorError(msg)
    try:
        if endpoint is Endpoint.ADMINACTION:
            sent = document["sent"]
            if not isinstance(sent, list):
                raise CorruptCursorError("sent must be a list")
            return AdminCursor(
                mintime=document["mintime"],
                sent=frozenset(sent),
                inclusive=document["inclusive"],
            )
        return WindowCursor(
            mintime=document["mintime"],
            maxtime=document["maxtime"],
            next_offset=document["next_offset"],
        )
    except (TypeError, ValueError) as error:
        # The classes' validators are the one definition of a valid cursor; their
        # complaints (and an unhashable item in "sent") become the store's error.
        raise CorruptCursorError(str(error)) from None


def refuse_newer_cursor(data: bytes) -> None:
    """Raise `NewerCursorError` if checkpoint bytes are in a newer format.

    Anything else, corrupt bytes included, passes: this is the start-up check that
    no file needs a newer release; `decode_cursor` judges the rest when it is used.
    """
    with contextlib.suppress(CorruptCursorError):
        document = _load_json(data)
        if isinstance(document, dict):
            _refuse_newer(document)


def _refuse_newer(document: dict[str, object]) -> None:
    version = document.get("version")
    if type(version) is int and version > CURSOR_FORMAT_VERSION:
        # The rest of a newer format may mean anything: only its writer is read.
        written_by = document.get("written_by")
        raise NewerCursorError(
            version, written_by if _is_written_by(written_by) else None
        )


def _is_written_by(value: object) -> TypeGuard[str]:
    # Printable, because it is quoted in a one-line message.
    return (
        isinstance(value, str)
        and 0 < len(value) <= _MAX_WRITTEN_BY
        and value.isprintable()
    )


def _check_kind(endpoint: Endpoint, cursor: Cursor) -> None:
    expected = AdminCursor if endpoint is Endpoint.ADMINACTION else WindowCursor
    if not isinstance(cursor, expected):
        msg = f"{endpoint.value} takes an {expected.__name__}, not {cursor!r}"
        raise TypeError(msg)


def _load_json(data: bytes) -> object:
    if len(data) > _MAX_CHECKPOINT_BYTES:
        raise CorruptCursorError(f"checkpoint of {len(data)} bytes is too large")
    try:
        return json.loads(data.decode("utf-8"), parse_constant=_refuse_constant)
    except (ValueError, RecursionError) as error:
        # ValueError covers bad UTF-8, bad JSON and over-long integers;
        # RecursionError deeply nested brackets.
        raise CorruptCursorError(f"not JSON: {error}") from None


def _refuse_constant(name: str) -> object:
    msg = f"{name} is not a time"
    raise ValueError(msg)


# DLS checkpoint import ---------------------------------------------------------------

_DLS_NAME: Final = re.compile(
    r"(?P<endpoint>auth|adminaction|telephony|trustmonitor|activity)"
    r"_checkpoint_data(?:_(?P<account>[A-Za-z0-9]+))?\.txt"
)


# ASCII digits only, and few enough for int() to accept.
_DIGITS: Final = re.compile(r"[0-9]{1,20}")


def parse_dls_checkpoint_name(name: str) -> tuple[Endpoint, str | None] | None:
    """Return (endpoint, child account id or None) for a DLS checkpoint file name.

    Return None for any other name, so a directory can be scanned with it.
    """
    match = _DLS_NAME.fullmatch(name)
    if match is None:
        return None
    return Endpoint(match["endpoint"]), match["account"]


def parse_dls_checkpoint(endpoint: Endpoint, content: bytes) -> Cursor:
    """Return the cursor equivalent to a DLS checkpoint file's content.

    The mapping is described in the module docstring.  Raises `CorruptCursorError`,
    and only that, when the content is not what DLS writes for ``endpoint``.
    """
    value = _load_json(content)
    unit = units_per_second(endpoint)
    if isinstance(value, int) and not isinstance(value, bool):
        mintime = _last_from_next(value, unit)
    elif endpoint is Endpoint.AUTH and isinstance(value, list):
        return _dls_auth_offset(value)
    elif endpoint in {Endpoint.TELEPHONY, Endpoint.ACTIVITY} and isinstance(value, str):
        head, comma, tail = value.partition(",")
        if not comma or not tail or not _DIGITS.fullmatch(head):
            msg = f"{endpoint.value} checkpoint {value!r} is not '<ms>,<id>'"
            raise CorruptCursorError(msg)
        mintime = _last_from_next(int(head), unit)
    else:
        msg = f"{endpoint.value} checkpoint holds an unexpected {value!r}"
        raise CorruptCursorError(msg)
    try:
        if endpoint is Endpoint.ADMINACTION:
            return AdminCursor(mintime)
        return WindowCursor(mintime)
    except ValueError as error:
        raise CorruptCursorError(str(error)) from None


def _last_from_next(next_time: int, unit: int) -> int:
    """Turn DLS's "last + 1", in either unit, into "last" in the endpoint's unit."""
    if next_time < 1:
        msg = f"checkpoint time {next_time} is before the epoch"
        raise CorruptCursorError(msg)
    its_unit = 1000 if next_time >= _FIRST_MILLISECOND_MAGNITUDE else 1
    last = next_time - 1
    # Rounding down keeps every record of the partial second or millisecond.
    return last * unit // its_unit


def _dls_auth_offset(value: list[object]) -> WindowCursor:
    match value:
        case [str() | int() as ms, str() as txid] if txid and _DIGITS.fullmatch(
            str(ms)
        ):
            try:
                return WindowCursor(mintime=int(ms), next_offset=f"{ms},{txid}")
            except ValueError as error:
                raise CorruptCursorError(str(error)) from None
        case _:
            msg = f"auth checkpoint {value!r} is not ['<ms>', '<txid>']"
            raise CorruptCursorError(msg)


@attrs.frozen
class DlsImport:
    """What a directory of DLS checkpoint files amounts to."""

    cursors: dict[tuple[Endpoint, str | None], Cursor] = attrs.field(hash=False)
    """The cursor of each (endpoint, child account id or None) with a usable file."""
    rejected: tuple[tuple[str, str], ...]
    """(file name, reason) of each DLS checkpoint file that could not be used."""


def import_dls_checkpoints(files: Iterable[tuple[str, bytes]]) -> DlsImport:
    """Return the cursors held by DLS checkpoint files, given as (name, content).

    Names that are not DLS checkpoint names are ignored; unusable files are listed in
    `DlsImport.rejected` for the caller to report, never raised.
    """
    cursors: dict[tuple[Endpoint, str | None], Cursor] = {}
    rejected: list[tuple[str, str]] = []
    for name, content in files:
        key = parse_dls_checkpoint_name(name)
        if key is None:
            continue
        try:
            cursors[key] = parse_dls_checkpoint(key[0], content)
        except CorruptCursorError as error:
            rejected.append((name, str(error)))
    return DlsImport(cursors=cursors, rejected=tuple(rejected))
