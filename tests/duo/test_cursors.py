"""Cursors: checkpoint bytes round-trip, bad bytes raise one error, DLS files import.

Rules for these tests: no files are touched (checkpoint contents are bytes in memory);
every way a checkpoint can be damaged must raise `CorruptCursorError` and nothing
else, so each corruption test also accepts no other exception; the one other outcome
is `NewerCursorError`, for a format newer than ours.
"""

from __future__ import annotations

import contextlib
import json
import math

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from trio_dls import __version__
from trio_dls.duo.cursors import (
    AdminCursor,
    CorruptCursorError,
    Cursor,
    DlsImport,
    NewerCursorError,
    WindowCursor,
    decode_cursor,
    encode_cursor,
    import_dls_checkpoints,
    initial_cursor,
    parse_dls_checkpoint,
    parse_dls_checkpoint_name,
    refuse_newer_cursor,
)
from trio_dls.endpoints import Endpoint

WINDOWED = [Endpoint.AUTH, Endpoint.TELEPHONY, Endpoint.ACTIVITY, Endpoint.TRUSTMONITOR]
LATEST_SECOND = 32_503_680_000


window_cursors = st.integers(0, LATEST_SECOND * 1000 - 1).flatmap(
    lambda mintime: st.builds(
        WindowCursor,
        st.just(mintime),
        st.none() | st.integers(mintime + 1, LATEST_SECOND * 1000),
        st.none() | st.text(min_size=1),
    )
)
admin_cursors = st.builds(
    AdminCursor,
    st.integers(0, LATEST_SECOND),
    st.frozensets(st.text()),
    st.booleans(),
)


def cursors_for(endpoint: Endpoint) -> st.SearchStrategy[Cursor]:
    """Any valid cursor of the kind ``endpoint`` takes."""
    if endpoint is Endpoint.ADMINACTION:
        return admin_cursors
    return window_cursors


# Encoding ------------------------------------------------------------------------


@given(data=st.data(), endpoint=st.sampled_from(list(Endpoint)))
def test_every_cursor_survives_encoding(
    data: st.DataObject, endpoint: Endpoint
) -> None:
    """Decoding an encoded cursor gives back the same cursor."""
    cursor = data.draw(cursors_for(endpoint))

    assert cursor == decode_cursor(endpoint, encode_cursor(endpoint, cursor))


def test_window_cursor_encoding_is_versioned_json() -> None:
    """A window cursor is written as JSON naming its format version and endpoint."""
    cursor = WindowCursor(1_700_000_000_000, 1_700_000_060_000, "1700000001000,tx")

    data = encode_cursor(Endpoint.AUTH, cursor)

    assert json.loads(data) == {
        "version": 1,
        "endpoint": "auth",
        "written_by": f"trio-dls {__version__}",
        "mintime": 1_700_000_000_000,
        "maxtime": 1_700_000_060_000,
        "next_offset": "1700000001000,tx",
    }
    assert data.endswith(b"}\n")


def test_admin_cursor_encoding_is_deterministic() -> None:
    """The sent identities are written sorted, so equal cursors give equal bytes."""
    cursor = AdminCursor(1_700_000_000, frozenset({"b.0", "a.1", "a.0"}))

    document = json.loads(encode_cursor(Endpoint.ADMINACTION, cursor))

    assert document == {
        "version": 1,
        "endpoint": "adminaction",
        "written_by": f"trio-dls {__version__}",
        "mintime": 1_700_000_000,
        "sent": ["a.0", "a.1", "b.0"],
        "inclusive": False,
    }


def test_encoding_refuses_a_cursor_of_the_wrong_kind() -> None:
    """Encoding an admin cursor as auth, or the reverse, is a programming error."""
    with pytest.raises(TypeError):
        encode_cursor(Endpoint.AUTH, AdminCursor(1))
    with pytest.raises(TypeError):
        encode_cursor(Endpoint.ADMINACTION, WindowCursor(1))


def test_cursor_of_another_endpoint_is_corrupt() -> None:
    """A telephony cursor found under the activity name is not used."""
    data = encode_cursor(Endpoint.TELEPHONY, WindowCursor(1_700_000_000_000))

    with pytest.raises(CorruptCursorError, match="'telephony', not 'activity'"):
        decode_cursor(Endpoint.ACTIVITY, data)


def _window(**changes: object) -> bytes:
    document = {
        "version": 1,
        "endpoint": "auth",
        "mintime": 1_700_000_000_000,
        "maxtime": None,
        "next_offset": None,
    }
    return json.dumps(document | changes).encode()


def _admin(**changes: object) -> bytes:
    document = {
        "version": 1,
        "endpoint": "adminaction",
        "mintime": 1_700_000_000,
        "sent": [],
        "inclusive": False,
    }
    return json.dumps(document | changes).encode()


@pytest.mark.parametrize(
    ("endpoint", "data"),
    [
        (Endpoint.AUTH, b""),
        (Endpoint.AUTH, b"\n"),
        (Endpoint.AUTH, b"\x00\x00\x00\x00"),
        (Endpoint.AUTH, b"\xff\xfe{"),
        (Endpoint.AUTH, b'{"version": 1, "endpoint": "auth", "mintime": 17'),
        (Endpoint.AUTH, b"[" * 100_000 + b"]" * 100_000),
        (Endpoint.AUTH, b"1" * 5000),
        (Endpoint.AUTH, b" " * (5 * 1024 * 1024)),
        (Endpoint.AUTH, b"null"),
        (Endpoint.AUTH, b"[1700000000000]"),
        (Endpoint.AUTH, _window(version=0)),
        (Endpoint.AUTH, _window(version=-2)),
        (Endpoint.AUTH, _window(version="2")),
        (Endpoint.AUTH, _window(version=2.0)),
        (Endpoint.AUTH, _window(version="1")),
        (Endpoint.AUTH, _window(version=True)),
        (Endpoint.AUTH, _window(version=1.0)),
        (Endpoint.AUTH, _window(endpoint="Auth")),
        (Endpoint.AUTH, _window(extra=1)),
        (Endpoint.AUTH, _window(written_by=1)),
        (Endpoint.AUTH, _window(written_by="")),
        (Endpoint.AUTH, _window(written_by="trio-dls 9\nforged line")),
        (Endpoint.AUTH, _window(written_by="x" * 101)),
        (Endpoint.AUTH, _window(mintime="1700000000000")),
        (Endpoint.AUTH, _window(mintime=1.7e12)),
        (Endpoint.AUTH, _window(mintime=True)),
        (Endpoint.AUTH, _window(mintime=-1)),
        (Endpoint.AUTH, _window(mintime=10**20)),
        (Endpoint.AUTH, _window(mintime=None)),
        (Endpoint.AUTH, _window(maxtime=1_700_000_000_000)),
        (Endpoint.AUTH, _window(maxtime="x")),
        (Endpoint.AUTH, _window(next_offset="")),
        (Endpoint.AUTH, _window(next_offset=["1", "t"])),
        (Endpoint.AUTH, _window().replace(b"1700000000000", b"NaN")),
        (Endpoint.AUTH, _window().replace(b"1700000000000", b"Infinity")),
        (Endpoint.ADMINACTION, _window(endpoint="adminaction")),
        (Endpoint.ADMINACTION, _admin(sent="a.0")),
        (Endpoint.ADMINACTION, _admin(sent=[1])),
        (Endpoint.ADMINACTION, _admin(sent=[["a"]])),
        (Endpoint.ADMINACTION, _admin(sent=[{}])),
        (Endpoint.ADMINACTION, _admin(inclusive=0)),
        (Endpoint.ADMINACTION, _admin(inclusive=None)),
        (Endpoint.ADMINACTION, _admin(mintime=1_700_000_000_000)),
    ],
)
def test_damaged_checkpoint_raises_corrupt_cursor(
    endpoint: Endpoint, data: bytes
) -> None:
    """Every kind of damaged or foreign checkpoint raises CorruptCursorError."""
    with pytest.raises(CorruptCursorError):
        decode_cursor(endpoint, data)


@given(data=st.data(), endpoint=st.sampled_from(list(Endpoint)))
def test_truncated_checkpoint_raises_corrupt_cursor(
    data: st.DataObject, endpoint: Endpoint
) -> None:
    """A checkpoint cut short anywhere before its last brace is refused, never used."""
    encoded = encode_cursor(endpoint, data.draw(cursors_for(endpoint)))
    cut = data.draw(st.integers(0, len(encoded) - 3))

    with pytest.raises(CorruptCursorError):
        decode_cursor(endpoint, encoded[:cut])


@given(endpoint=st.sampled_from(list(Endpoint)), data=st.binary())
@example(endpoint=Endpoint.AUTH, data=b"\xef\xbb\xbf{}")
def test_arbitrary_bytes_never_raise_anything_else(
    endpoint: Endpoint, data: bytes
) -> None:
    """Whatever the bytes, decoding gives a cursor or raises one of our two errors."""
    with contextlib.suppress(CorruptCursorError, NewerCursorError):
        assert isinstance(decode_cursor(endpoint, data), WindowCursor | AdminCursor)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda children: st.lists(children) | st.dictionaries(st.text(), children),
    max_leaves=20,
)


@given(
    endpoint=st.sampled_from(list(Endpoint)),
    changes=st.dictionaries(
        st.sampled_from(["version", "endpoint", "mintime", "maxtime", "next_offset"])
        | st.sampled_from(["sent", "inclusive", "other"]),
        json_values,
    ),
)
def test_arbitrary_json_fields_never_raise_anything_else(
    endpoint: Endpoint, changes: dict[str, object]
) -> None:
    """Any JSON in a cursor's fields gives a cursor or raises one of our two errors."""
    base = _admin if endpoint is Endpoint.ADMINACTION else _window
    try:
        data = base(**{"endpoint": endpoint.value} | changes)
    except ValueError:
        # json.dumps refuses the NaN and infinities it would have to write.
        return
    with contextlib.suppress(CorruptCursorError, NewerCursorError):
        assert isinstance(decode_cursor(endpoint, data), WindowCursor | AdminCursor)


def test_a_cursor_without_written_by_still_decodes() -> None:
    """A file written by trio-dls 0.1.0, before ``written_by`` existed, is read."""
    assert WindowCursor(1_700_000_000_000) == decode_cursor(Endpoint.AUTH, _window())


@pytest.mark.parametrize(
    "data",
    [
        _window(version=2, written_by="trio-dls 0.9.0"),
        # A newer format may change anything else: only the version is trusted.
        json.dumps(
            {"version": 2, "written_by": "trio-dls 0.9.0", "positions": []}
        ).encode(),
    ],
)
def test_a_cursor_in_a_newer_format_is_not_corrupt(data: bytes) -> None:
    """A newer format raises NewerCursorError naming both releases, not "corrupt"."""
    with pytest.raises(NewerCursorError) as info:
        decode_cursor(Endpoint.AUTH, data)
    assert (
        f"cursor: written by trio-dls 0.9.0 (cursor format 2); this is trio-dls "
        f"{__version__} (format 1): upgrade trio-dls or move the file away"
    ) == str(info.value)


def test_a_newer_cursor_error_names_its_file() -> None:
    """The store puts the file's path in the message; an unknown writer is said so."""
    with pytest.raises(NewerCursorError) as info:
        decode_cursor(Endpoint.AUTH, _window(version=3, written_by=["x"]))
    assert str(info.value.at("/state/trio-dls_auth.cursor")).startswith(
        "/state/trio-dls_auth.cursor: written by a newer trio-dls (cursor format 3)"
    )


@pytest.mark.parametrize(
    "data", [_window(), _window(version=0), b"", b"[2]", b'{"version": 2', b"\xff"]
)
def test_refuse_newer_cursor_passes_anything_not_newer(data: bytes) -> None:
    """The start-up check refuses newer files only; corrupt ones are load's business."""
    refuse_newer_cursor(data)


def test_refuse_newer_cursor_refuses_a_newer_file() -> None:
    """The start-up check raises NewerCursorError for a newer file."""
    with pytest.raises(NewerCursorError):
        refuse_newer_cursor(_admin(version=2))


# Cursor values -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mintime", "maxtime", "next_offset"),
    [
        (-1, None, None),
        (True, None, None),
        (1.5, None, None),
        (10, 10, None),
        (10, 9, None),
        (10, 11, ""),
    ],
)
def test_window_cursor_refuses_a_window_duo_would_refuse(
    mintime: int, maxtime: int | None, next_offset: str | None
) -> None:
    """A window cursor cannot hold a window Duo answers with HTTP 400."""
    with pytest.raises(ValueError, match="must be"):
        WindowCursor(mintime, maxtime, next_offset)


@pytest.mark.parametrize(
    ("endpoint", "expected"),
    [
        (Endpoint.AUTH, WindowCursor(1_700_000_000_250 - 3 * 86_400_000)),
        (Endpoint.TRUSTMONITOR, WindowCursor(1_700_000_000_250 - 3 * 86_400_000)),
        (Endpoint.ADMINACTION, AdminCursor(1_700_000_000 - 3 * 86_400)),
    ],
)
def test_initial_cursor_starts_offset_days_ago(
    endpoint: Endpoint, expected: Cursor
) -> None:
    """A first start begins ``offset`` days before now, in the endpoint's unit."""
    assert expected == initial_cursor(endpoint, 1_700_000_000.25, 3)


@pytest.mark.parametrize(
    ("endpoint", "expected"),
    [
        (Endpoint.AUTH, WindowCursor(1_700_000_000_250 - 36 * 3_600_000)),
        (Endpoint.ADMINACTION, AdminCursor(1_700_000_000 - 36 * 3_600)),
    ],
)
def test_initial_cursor_takes_a_fraction_of_a_day(
    endpoint: Endpoint, expected: Cursor
) -> None:
    """``offset: 1.5`` starts 36 hours back, as DLS's ``timedelta(days=1.5)``."""
    assert expected == initial_cursor(endpoint, 1_700_000_000.25, 1.5)


def test_initial_cursor_rounds_a_fraction_to_the_unit() -> None:
    """0.1 days is 8,640,000 ms back, not one more for floating point's error."""
    expected = WindowCursor(1_700_000_000_000 - 8_640_000)
    assert expected == initial_cursor(Endpoint.AUTH, 1_700_000_000.0, 0.1)


@pytest.mark.parametrize("offset", [-1, -0.5, math.nan, math.inf, True])
def test_initial_cursor_refuses_an_offset_that_is_no_span(offset: float) -> None:
    """An offset in the future, NaN, infinite or a bool is a bug, not a cursor."""
    with pytest.raises(ValueError, match="offset_days"):
        initial_cursor(Endpoint.AUTH, 1_700_000_000.0, offset)


# DLS checkpoints -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("auth_checkpoint_data.txt", (Endpoint.AUTH, None)),
        ("adminaction_checkpoint_data.txt", (Endpoint.ADMINACTION, None)),
        ("telephony_checkpoint_data.txt", (Endpoint.TELEPHONY, None)),
        ("trustmonitor_checkpoint_data.txt", (Endpoint.TRUSTMONITOR, None)),
        ("activity_checkpoint_data.txt", (Endpoint.ACTIVITY, None)),
        (
            "auth_checkpoint_data_DA9TRRUR2EVF3Y7NXKC8.txt",
            (Endpoint.AUTH, "DA9TRRUR2EVF3Y7NXKC8"),
        ),
        ("auth_checkpoint_data.txt.tmp", None),
        ("auth_checkpoint_data_.txt", None),
        ("auth_checkpoint_data_DA1/x.txt", None),
        ("authlog_checkpoint_data.txt", None),
        ("Auth_checkpoint_data.txt", None),
        ("auth.json", None),
        ("", None),
    ],
)
def test_dls_checkpoint_names(
    name: str, expected: tuple[Endpoint, str | None] | None
) -> None:
    """DLS checkpoint names give the endpoint and child account; others give None."""
    assert expected == parse_dls_checkpoint_name(name)


@pytest.mark.parametrize(
    ("endpoint", "content", "expected"),
    [
        # Duo's next_offset is continued as it is: nothing repeated, nothing lost.
        (
            Endpoint.AUTH,
            b'["1700000000123", "fb6b8b1c-txid"]',
            WindowCursor(1_700_000_000_123, None, "1700000000123,fb6b8b1c-txid"),
        ),
        (
            Endpoint.AUTH,
            b'[1700000000123, "t"]',
            WindowCursor(1_700_000_000_123, None, "1700000000123,t"),
        ),
        # "last + 1" restarts at "last": a record sharing it is repeated, not lost.
        (
            Endpoint.TELEPHONY,
            b'"1700000000124,d3b4-telephony-id"',
            WindowCursor(1_700_000_000_123),
        ),
        (
            Endpoint.ACTIVITY,
            b'"1700000000124,act-1"\n',
            WindowCursor(1_700_000_000_123),
        ),
        (Endpoint.TRUSTMONITOR, b"1700000000124", WindowCursor(1_700_000_000_123)),
        (Endpoint.ADMINACTION, b"1700000001", AdminCursor(1_700_000_000)),
        # Older DLS releases wrote telephony v1 times in seconds.
        (Endpoint.TELEPHONY, b"1700000001", WindowCursor(1_700_000_000_000)),
        (Endpoint.ADMINACTION, b"1700000001000", AdminCursor(1_700_000_000)),
        (Endpoint.AUTH, b"1700000000124", WindowCursor(1_700_000_000_123)),
    ],
)
def test_dls_checkpoint_contents(
    endpoint: Endpoint, content: bytes, expected: Cursor
) -> None:
    """Each DLS checkpoint maps to the cursor that resumes at or before its position."""
    assert expected == parse_dls_checkpoint(endpoint, content)


@pytest.mark.parametrize(
    ("endpoint", "content"),
    [
        (Endpoint.AUTH, b""),
        (Endpoint.AUTH, b"null"),
        (Endpoint.AUTH, b'["1700000000123"]'),
        (Endpoint.AUTH, b'["1700000000123", ""]'),
        (Endpoint.AUTH, b'["17e3", "t"]'),
        (Endpoint.AUTH, b'["\xd9\xa1\xd9\xa2", "t"]'),
        (Endpoint.AUTH, b'["' + b"9" * 30 + b'", "t"]'),
        (Endpoint.AUTH, b'"1700000000124,tx"'),
        (Endpoint.TELEPHONY, b'"1700000000124"'),
        (Endpoint.TELEPHONY, b'"1700000000124,"'),
        (Endpoint.TELEPHONY, b'"x,1700000000124"'),
        (Endpoint.TELEPHONY, b'"' + b"9" * 5000 + b',x"'),
        (Endpoint.ACTIVITY, b'["1700000000124", "a"]'),
        (Endpoint.TRUSTMONITOR, b'"1700000000124"'),
        (Endpoint.TRUSTMONITOR, b"1700000000124.5"),
        (Endpoint.TRUSTMONITOR, b"0"),
        (Endpoint.TRUSTMONITOR, b"-5"),
        (Endpoint.TRUSTMONITOR, b"true"),
        (Endpoint.ADMINACTION, b"1" + b"0" * 30),
        (Endpoint.ADMINACTION, b'{"mintime": 1}'),
    ],
)
def test_damaged_dls_checkpoint_raises_corrupt_cursor(
    endpoint: Endpoint, content: bytes
) -> None:
    """A DLS checkpoint that is not what DLS writes raises CorruptCursorError."""
    with pytest.raises(CorruptCursorError):
        parse_dls_checkpoint(endpoint, content)


@given(endpoint=st.sampled_from(list(Endpoint)), content=st.binary())
def test_arbitrary_dls_content_never_raises_anything_else(
    endpoint: Endpoint, content: bytes
) -> None:
    """Whatever a DLS file holds, parsing gives a cursor or CorruptCursorError."""
    with contextlib.suppress(CorruptCursorError):
        assert isinstance(
            parse_dls_checkpoint(endpoint, content), WindowCursor | AdminCursor
        )


def test_dls_directory_imports_usable_files_and_lists_the_rest() -> None:
    """A directory's DLS files become cursors; bad ones are listed, others ignored."""
    files = [
        ("auth_checkpoint_data.txt", b'["1700000000123", "tx"]'),
        ("adminaction_checkpoint_data_DA9TRRUR2EVF3Y7NXKC8.txt", b"1700000001"),
        ("telephony_checkpoint_data.txt", b'"1700000000'),
        ("config.yml", b"version: '1.0.0'"),
    ]

    result = import_dls_checkpoints(files)

    assert result.cursors == {
        (Endpoint.AUTH, None): WindowCursor(
            1_700_000_000_123, None, "1700000000123,tx"
        ),
        (Endpoint.ADMINACTION, "DA9TRRUR2EVF3Y7NXKC8"): AdminCursor(1_700_000_000),
    }
    [(name, reason)] = result.rejected
    assert name == "telephony_checkpoint_data.txt"
    assert reason.startswith("not JSON")


def test_empty_directory_imports_nothing() -> None:
    """No DLS files, no cursors and nothing to report."""
    assert DlsImport(cursors={}, rejected=()) == import_dls_checkpoints([])


@pytest.mark.parametrize("endpoint", WINDOWED)
def test_imported_window_cursor_encodes(endpoint: Endpoint) -> None:
    """An imported cursor can be saved in trio-dls's own format at once."""
    cursor = parse_dls_checkpoint(endpoint, b"1700000000124")

    assert cursor == decode_cursor(endpoint, encode_cursor(endpoint, cursor))
