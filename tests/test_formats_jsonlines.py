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

from trio_dls.formats.jsonlines import json_message
from trio_dls.framing import Framing, frame_for_stream

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
