"""Duo's pages are decoded by orjson where it decides as ``json.loads`` does.

``parse_json`` must give what ``json.loads(data, parse_int=...)`` gave
before orjson: the same values, of the same types, for every document, and
the same error for every text that is not one.  Hypothesis writes the
documents; the cases orjson misreads or refuses are written out below.
"""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trio_dls.duo.client import parse_json


def reference(data: bytes) -> Any:
    """What the decoding was before orjson."""

    def integer(text: str) -> int | str:
        return int(text) if len(text.lstrip("-")) <= 4300 else text

    return json.loads(data, parse_int=integer)


def typed(value: Any) -> Any:
    """*value* with every number tagged by its type (1 and 1.0 differ; NaN is equal)."""
    if isinstance(value, dict):
        return {key: typed(item) for key, item in value.items()}
    if isinstance(value, list):
        return [typed(item) for item in value]
    if isinstance(value, float):
        return ("float", "nan" if math.isnan(value) else repr(value))
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return ("int", value)
    return value


values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.sampled_from([2**63 - 1, 2**63, 2**64 - 1, 2**64, -(2**63), -(2**63) - 1])
    | st.floats()
    | st.text(),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)


@given(values, st.booleans())
def test_any_document_decodes_as_json_loads_does(
    value: Any,
    ascii_only: bool,  # noqa: FBT001 - given by hypothesis
) -> None:
    """Numbers of every size, NaN and infinities, any text, nested: the same."""
    data = json.dumps(value, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")
    assert typed(parse_json(data)) == typed(reference(data))


@pytest.mark.parametrize(
    "data",
    [
        b'{"a": 1, "a": 2}',  # the last of duplicate keys
        b"[18446744073709551616]",  # orjson: a float
        b"[-9223372036854775809]",  # orjson: a float
        b'["1234567890123456789", 12]',  # 19 digits in a string
        b"[1e400, -1e400, 1.5e-400]",
        b'["\\ud800", "\\udfff x"]',  # lone surrogates, escaped
        b"\xef\xbb\xbf[1]",  # a byte-order mark
        b"[" + b"9" * 5000 + b"]",  # beyond int()'s 4,300 digits: text
        b' {"stat": "OK"} ',
    ],
)
def test_what_orjson_misreads_or_refuses_decodes_as_json_loads_does(
    data: bytes,
) -> None:
    """Each case orjson alone would decide otherwise gives json.loads's value."""
    assert typed(parse_json(data)) == typed(reference(data))


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"{",
        b'{"a": }',
        b"[1,]",
        b"\xff",
        b"[1] [2]",
        b"nul",
        b"[" * 20_000 + b"]" * 20_000,  # too deep for either
    ],
)
def test_what_is_not_json_raises_as_json_loads_does(data: bytes) -> None:
    """Malformed JSON raises the error json.loads raises (too deep: RecursionError)."""
    with pytest.raises((ValueError, RecursionError)) as expected:
        reference(data)
    with pytest.raises(type(expected.value)):
        parse_json(data)
