"""JSON output: the bytes duo_log_sync sends, for any record.

Rules for these tests: duo_log_sync's output is ``json.dumps(log).encode()``
plus a newline; the expected bytes are written out literally, never computed
with the code under test.
"""

from __future__ import annotations

import copy
import json

import hypothesis
from hypothesis import strategies as st

from trio_dls.siem.formats.jsonlines import json_message, write_dls_json
from trio_dls.siem.framing import Framing, frame_for_stream

RECORD = {
    "action": "user_update",
    "description": "line one\nline two | a=b \\ ü",
    "isotimestamp": "2026-11-27T14:05:00+00:00",
    "object": "jdoe",
    "timestamp": 1795788300,
    "username": "Ada Admin",
    "eventtype": "administrator",
    "host": "api-xxxxxxxx.duosecurity.com",
    "child_account_id": "DA0123456789ABCDEFGH",
}

_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda children: st.lists(children) | st.dictionaries(st.text(), children),
    max_leaves=20,
)


def test_golden() -> None:
    """A record is written with json.dumps's defaults: ", ", ": ", ASCII escapes."""
    expected = (
        b'{"action": "user_update", "description": "line one\\nline two | a=b'
        b' \\\\ \\u00fc", "isotimestamp": "2026-11-27T14:05:00+00:00",'
        b' "object": "jdoe", "timestamp": 1795788300, "username": "Ada Admin",'
        b' "eventtype": "administrator", "host": "api-xxxxxxxx.duosecurity.com",'
        b' "child_account_id": "DA0123456789ABCDEFGH"}'
    )
    assert expected == json_message(RECORD)


def test_newline_framed_is_what_dls_sends() -> None:
    """With newline framing the bytes equal DLS's json.dumps(log).encode() + LF."""
    expected = json.dumps(RECORD).encode() + b"\n"
    assert expected == frame_for_stream(json_message(RECORD), Framing.NEWLINE)


def test_record_is_not_mutated() -> None:
    """Formatting only reads the record."""
    before = copy.deepcopy(RECORD)
    json_message(RECORD)
    assert before == RECORD


@hypothesis.given(st.dictionaries(st.text(), _json))
def test_any_record_is_one_ascii_line_that_decodes_back(
    record: dict[str, object],
) -> None:
    """Any JSON record becomes ASCII without a line break and decodes back equal."""
    message = json_message(record)
    assert b"\n" not in message
    assert b"\r" not in message
    assert message.isascii()
    assert record == json.loads(message)


_numbers_and_text = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(st.characters(exclude_categories=()) | st.characters(categories=["Cs"])),
    lambda children: (
        st.lists(children)
        | st.tuples(children, children)
        | st.dictionaries(st.text(), children)
    ),
    max_leaves=30,
)


@hypothesis.given(st.dictionaries(st.text(), _numbers_and_text))
def test_the_encoder_made_once_writes_what_json_dumps_writes(
    record: dict[str, object],
) -> None:
    """``write_dls_json``, the C encoder made once, writes as DLS's ``json.dumps``.

    Floats, lone surrogates and tuples included: json.dumps is what DLS
    calls, not code under test.
    """
    assert json.dumps(record).encode() == write_dls_json(record)


# --------------------------------------------------------------------------
# Odd records: written repaired or forwarded, never an exception (issue 8)
# --------------------------------------------------------------------------


def strict_loads(message: bytes) -> object:
    """Decode ``message`` as strict JSON: NaN and Infinity are refused."""

    def refuse(constant: str) -> object:
        raise ValueError(f"{constant} is not JSON")

    return json.loads(message, parse_constant=refuse)


def test_nan_and_infinities_are_written_as_null() -> None:
    """json.dumps would write NaN and Infinity, which are not JSON: they are null."""
    record = {"txid": "t1", "score": float("nan"), "more": [float("inf"), -1e999]}
    expected = b'{"txid": "t1", "score": null, "more": [null, null]}'
    actual = json_message(record)
    assert expected == actual
    decoded = {"txid": "t1", "score": None, "more": [None, None]}
    assert decoded == strict_loads(actual)


def test_an_integer_too_long_for_str_is_written_as_null() -> None:
    """An integer of 5000 digits (json.dumps refuses it) is null; the rest stays."""
    record = {"txid": "t1", "count": 10**5000, "ok": 12}
    expected = b'{"txid": "t1", "count": null, "ok": 12}'
    assert expected == json_message(record)


# Deeper than json.dumps encodes on any supported Python (3.13's is the deepest).
DEEPER_THAN_ANY_ENCODER = 20_000


def too_deep() -> list[object]:
    """A list nested ``DEEPER_THAN_ANY_ENCODER`` levels deep."""
    nested: list[object] = []
    innermost = nested
    for _ in range(DEEPER_THAN_ANY_ENCODER):
        innermost.append([])
        innermost = innermost[0]  # type: ignore[assignment]
    return nested


def test_nesting_too_deep_to_encode_is_cut() -> None:
    """A list nested 20,000 deep (json.dumps recurses out) is cut at 100 levels.

    How deep json.dumps goes depends on the Python: 3.11 gives up below
    1,000 levels, 3.13 above 5,000; 20,000 is too deep for each of them.
    """
    record = {"txid": "t1", "deep": too_deep()}
    expected = b'{"txid": "t1", "deep": ' + b"[" * 99 + b"null" + b"]" * 99 + b"}"
    assert expected == json_message(record)


def test_a_lone_surrogate_stays_an_escape() -> None:
    r"""A lone surrogate is JSON's \ud83d again, as Duo sent it: nothing to repair."""
    record = {"user": {"name": "narr\ud83doway"}, "k\udc00": 1}
    expected = b'{"user": {"name": "narr\\ud83doway"}, "k\\udc00": 1}'
    assert expected == json_message(record)
    assert record == strict_loads(expected)


def test_nulls_large_fields_and_changed_types_are_forwarded_as_received() -> None:
    """Nulls for objects, a 64 KiB field and odd types reach the JSON unchanged."""
    record = {
        "access_device": None,
        "application": {"name": None},
        "target": None,
        "user": ["narroway"],
        "description": "\u00fc" * (64 * 1024),
        "timestamp": "yesterday",
    }
    assert record == strict_loads(json_message(record))
