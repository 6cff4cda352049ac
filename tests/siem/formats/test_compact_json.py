"""Compact JSON (``json_style: compact``): the same values as DLS's, in fewer bytes.

Rules for these tests: a compact message must decode (strict JSON) to what
the default style's message decodes to, for any record, odd ones included;
the expected bytes of the examples are written out literally.
"""

from __future__ import annotations

import json
import math

import hypothesis
from hypothesis import strategies as st

from tests.siem.formats.test_jsonlines import RECORD, strict_loads, too_deep
from trio_dls.endpoints import Endpoint
from trio_dls.siem.formats import JsonStyle, MessageSettings, render_message
from trio_dls.siem.formats.jsonlines import render_compact_json, render_json

_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.sampled_from([2**63 - 1, 2**63, 2**64, -(2**63) - 1])
    # Too long for str(): made by a function, since hypothesis prints
    # the strategy's arguments.
    | st.just(5000).map(lambda digits: 10**digits)
    | st.floats()
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.text(), children, max_size=4)
    ),
    max_leaves=20,
)


def test_golden() -> None:
    """No spaces after separators; non-ASCII as UTF-8; newlines still escaped."""
    expected = (
        b'{"action":"user_update","description":"line one\\nline two | a=b'
        b' \\\\ \xc3\xbc","isotimestamp":"2026-11-27T14:05:00+00:00",'
        b'"object":"jdoe","timestamp":1795788300,"username":"Ada Admin",'
        b'"eventtype":"administrator","host":"api-xxxxxxxx.duosecurity.com",'
        b'"child_account_id":"DA0123456789ABCDEFGH"}'
    )
    assert expected == render_compact_json(RECORD).data
    assert len(expected) < len(render_json(RECORD).data)


@hypothesis.given(st.dictionaries(st.text(), _values))
def test_any_record_decodes_as_the_default_style_does(
    record: dict[str, object],
) -> None:
    """Any record, NaN, long integers and lone surrogates included: parse-equal.

    One UTF-8 line, no raw line break; repaired where the default style is
    (NaN and infinities aside, which both write as null: see
    ``render_compact_json``).
    """
    compact = render_compact_json(record)
    default = render_json(record)
    assert b"\n" not in compact.data
    assert b"\r" not in compact.data
    compact.data.decode("utf-8")
    assert strict_loads(compact.data) == strict_loads(default.data)
    if not any(isinstance(v, float) and not math.isfinite(v) for v in _leaves(record)):
        assert compact.repairs == default.repairs


def _leaves(value: object) -> list[object]:
    if isinstance(value, dict):
        return [leaf for item in value.values() for leaf in _leaves(item)]
    if isinstance(value, list):
        return [leaf for item in value for leaf in _leaves(item)]
    return [value]


def test_what_orjson_refuses_is_written_repaired_as_the_default_does() -> None:
    """A long integer is null and told; a lone surrogate stays an escape."""
    record = {"txid": "t1", "count": 10**5000, "name": "narr\ud83doway", "n": 2**64}
    rendered = render_compact_json(record)
    assert rendered.data == (
        b'{"txid":"t1","count":null,"name":"narr\\ud83doway","n":18446744073709551616}'
    )
    assert rendered.repairs == render_json(record).repairs
    assert rendered.repairs


def test_nesting_too_deep_is_cut_as_the_default_does() -> None:
    """A list nested 20,000 deep is cut at 100 levels, as in the default style."""
    record = {"txid": "t1", "deep": too_deep()}
    expected = b'{"txid":"t1","deep":' + b"[" * 99 + b"null" + b"]" * 99 + b"}"
    assert expected == render_compact_json(record).data


def test_the_message_follows_the_setting() -> None:
    """``json_style`` picks the style; the default stays DLS's bytes."""
    settings = MessageSettings(hostname="dls-host")
    default = render_message(RECORD, Endpoint.ADMINACTION, settings, fallback_time_ms=0)
    assert default.data == json.dumps(RECORD).encode()
    compact = render_message(
        RECORD,
        Endpoint.ADMINACTION,
        MessageSettings(hostname="dls-host", json_style=JsonStyle.COMPACT),
        fallback_time_ms=0,
    )
    assert compact.data == render_compact_json(RECORD).data
