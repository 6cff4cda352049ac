r"""Any record, in every format, header and framing: no exception, sound output.

Rules for these tests: each record is a realistic one of its endpoint (the
CEF tests' records) with fields replaced by random JSON values of the kinds
Python's ``json`` module decodes and no format can write as they are: lone
surrogates (``"\ud83d"``), ``NaN`` and infinities, integers beyond ``str()``'s
limit, deep lists, nulls where objects were, objects where strings were. The
record's identifying field (txid, telephony_id, activity_id, sekey; the time
and action of an administrator record) is never replaced, and must come out
with its value. The output is read back strictly: JSON with ``NaN`` refused,
CEF with the strict parser of ``test_formats_cef``.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

import hypothesis
import pytest
from hypothesis import strategies as st

from tests.siem.formats.test_cef import (
    ACTIVITY,
    ADMINACTION,
    AUTH,
    TELEPHONY,
    TRUSTMONITOR,
    labelled,
    strict_parse,
)
from trio_dls.endpoints import Endpoint
from trio_dls.siem.formats import (
    JsonStyle,
    LogFormat,
    MessageSettings,
    SyslogHeader,
    render_message,
    render_page,
)
from trio_dls.siem.framing import (
    DEFAULT_UDP_MAX_SIZE,
    DatagramOutcome,
    Framing,
    frame_datagram,
    frame_for_stream,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

BASES: Mapping[Endpoint, dict[str, Any]] = {
    Endpoint.AUTH: AUTH,
    Endpoint.ADMINACTION: ADMINACTION,
    Endpoint.TELEPHONY: TELEPHONY,
    Endpoint.ACTIVITY: ACTIVITY,
    Endpoint.TRUSTMONITOR: TRUSTMONITOR,
}
IDS: Mapping[Endpoint, tuple[str, ...]] = {
    Endpoint.AUTH: ("txid",),
    Endpoint.ADMINACTION: ("timestamp", "action"),
    Endpoint.TELEPHONY: ("telephony_id",),
    Endpoint.ACTIVITY: ("activity_id",),
    Endpoint.TRUSTMONITOR: ("sekey",),
}
# The top-level keys the formats read, so that random values land where they
# are mapped, and not only in fields that are merely carried along.
READ_KEYS = (
    "access_device",
    "action",
    "action_extended",
    "actor",
    "application",
    "child_account_id",
    "context",
    "credits",
    "description",
    "eventtype",
    "explanations",
    "factor",
    "isotimestamp",
    "object",
    "outcome",
    "phone",
    "priority_event",
    "priority_reasons",
    "result",
    "state",
    "surfaced_auth",
    "surfaced_timestamp",
    "target",
    "timestamp",
    "ts",
    "type",
    "user",
    "username",
)
INNER_KEYS = ("name", "hostname", "ip", "address", "details", "type", "result")
RECEIVED_MS = 1794121389000
HOST = "relay-01"

_CHARACTERS = st.characters(exclude_categories=()) | st.characters(categories=["Cs"])
_TEXT = st.text(_CHARACTERS, max_size=12) | st.sampled_from(
    [
        "",
        "\ud83d",
        "narr\udc00oway",
        "a\r\nb=c|d\\",
        "2026-11-27T14:03:09+00:00",
        "0001-01-01T00:00:00+14:00",
        "9999-12-31T23:59:59-14:00",
    ]
)


def power_of_ten(digits: int) -> int:
    """Return a number of *digits* + 1 digits: from 4300 on, str() refuses it."""
    number: int = 10**digits
    return number


_NUMBERS = (
    st.integers()
    | st.floats()
    | st.sampled_from([4300, 5000]).map(power_of_ten)
    | st.sampled_from(
        [
            2**63,
            10**20,
            1795788189,
            1e300,
            float("nan"),
            float("inf"),
            float("-inf"),
        ]
    )
)
_JSON = st.recursive(
    st.none() | st.booleans() | _NUMBERS | _TEXT,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.sampled_from(INNER_KEYS) | _TEXT, children, max_size=4)
    ),
    max_leaves=12,
)


def nested(depth: int) -> list[object]:
    """Return a list nested *depth* deep (json.loads itself stops near 1000)."""
    outer: list[object] = []
    for _ in range(depth):
        outer = [outer]
    return outer


_VALUES = (
    _JSON
    | st.dictionaries(st.sampled_from(INNER_KEYS), _JSON, max_size=4)
    | st.integers(min_value=90, max_value=3000).map(nested)
)


def overrides(endpoint: Endpoint) -> st.SearchStrategy[dict[str, object]]:
    """Random values for some fields of *endpoint*'s record, never its id."""
    keys = st.sampled_from(READ_KEYS) | _TEXT
    return st.dictionaries(
        keys.filter(lambda key: key not in IDS[endpoint]), _VALUES, max_size=6
    )


def strict_loads(text: str) -> Any:
    """Decode *text* as strict JSON: NaN and Infinity are refused."""

    def refuse(constant: str) -> object:
        raise ValueError(f"{constant} is not JSON")

    return json.loads(text, parse_constant=refuse)


def _plain(record: Mapping[str, Any], *path: str) -> str | None:
    """The text at *path* when every step is an object and it is non-empty text."""
    value: Any = record
    for key in path:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value if isinstance(value, str) and value else None


# Where each endpoint's identifying or user field lands in CEF. The ids of
# auth, telephony and activity records have no CEF key (as in duo_log_sync),
# so their user or phone stands in.
CEF_IDENTITY: Mapping[Endpoint, tuple[str, Callable[[Mapping[str, Any]], object]]] = {
    Endpoint.AUTH: ("duser", lambda r: _plain(r, "user", "name")),
    Endpoint.ADMINACTION: ("action", lambda r: r["action"]),
    Endpoint.TELEPHONY: ("phone", lambda r: _plain(r, "phone")),
    Endpoint.ACTIVITY: ("suser", lambda r: _plain(r, "actor", "name")),
    Endpoint.TRUSTMONITOR: ("externalId", lambda r: r["sekey"]),
}

_STAMP_3164 = r"[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d"


def header_pattern(
    endpoint: Endpoint, log_format: LogFormat, header: SyslogHeader
) -> re.Pattern[str]:
    """The header or prefix every message of this kind starts with."""
    match header:
        case SyslogHeader.RFC5424:
            return re.compile(
                rf"<14>1 \d{{4}}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{{3}}Z {HOST}"
                rf" trio-dls - {endpoint} - "
            )
        case SyslogHeader.RFC3164:
            return re.compile(rf"<14>{_STAMP_3164} {HOST} trio-dls: ")
        case SyslogHeader.NONE if log_format is LogFormat.CEF:
            return re.compile(rf"[A-Z][a-z]{{2}} \d\d \d\d:\d\d:\d\d {HOST} ")
        case SyslogHeader.NONE:
            return re.compile("")


def check_framings(message: bytes) -> None:
    """Every framing takes *message*: one LF, the right count, a UTF-8 datagram."""
    newline = frame_for_stream(message, Framing.NEWLINE)
    assert newline.count(b"\n") == 1
    assert newline.endswith(b"\n")
    length, _, rest = frame_for_stream(message, Framing.OCTET_COUNTING).partition(b" ")
    assert (len(message), message) == (int(length), rest)
    datagram = frame_datagram(message, max_size=DEFAULT_UDP_MAX_SIZE)
    assert datagram.payload is not None
    assert len(datagram.payload) <= DEFAULT_UDP_MAX_SIZE
    datagram.payload.decode()
    if datagram.outcome is DatagramOutcome.WHOLE:
        assert message == datagram.payload


def check_json(body: str, record: Mapping[str, Any], endpoint: Endpoint) -> None:
    """The body is strict JSON with every key of *record* and its id unchanged."""
    parsed = strict_loads(body)
    assert list(record) == list(parsed)
    for key in IDS[endpoint]:
        assert record[key] == parsed[key]


def check_cef(body: str, record: Mapping[str, Any], endpoint: Endpoint) -> None:
    """The body is strict CEF with duo_log_sync's header and the record's identity."""
    header, pairs = strict_parse(body)
    expected_header = ["CEF:0", "Duo Security", "DuoLogSync", "5"]
    assert expected_header == [*header[:3], header[6]]
    key, value = CEF_IDENTITY[endpoint]
    expected = value(record)
    if isinstance(expected, str):
        assert re.sub("[\ud800-\udfff]", "\ufffd", expected) == labelled(pairs)[key]


def check_everything(
    record: Mapping[str, Any], endpoint: Endpoint, log_format: LogFormat
) -> str:
    """Render *record* with every header and framing and check it all; the body."""
    bodies: set[str] = set()
    for header in SyslogHeader:
        settings = MessageSettings(
            hostname=HOST, log_format=log_format, syslog_header=header
        )
        rendered = render_message(
            record, endpoint, settings, fallback_time_ms=RECEIVED_MS
        )
        # Repairs are logged: they must be short ASCII whatever the record held.
        assert all(r.isascii() and len(r) < 500 for r in rendered.repairs)
        text = rendered.data.decode()
        found = header_pattern(endpoint, log_format, header).match(text)
        assert found is not None
        bodies.add(text[found.end() :])
        check_framings(rendered.data)
    # Only the header differs, so the body is read back once.
    (body,) = bodies
    if log_format is LogFormat.JSON:
        check_json(body, record, endpoint)
    else:
        check_cef(body, record, endpoint)
    return body


@pytest.mark.parametrize("log_format", list(LogFormat))
@pytest.mark.parametrize("endpoint", list(Endpoint))
@hypothesis.settings(max_examples=40, deadline=None)
@hypothesis.given(data=st.data())
def test_any_record_renders_in_every_header_and_framing(
    endpoint: Endpoint, log_format: LogFormat, data: st.DataObject
) -> None:
    """Random JSON values in any field: no exception, strict output, id intact."""
    record = {**BASES[endpoint], **data.draw(overrides(endpoint))}
    check_everything(record, endpoint, log_format)


# A megabyte of text starting and ending with a lone surrogate, full of what
# CEF must escape.
BIG = "\ud83d" + "x=|\\\r\n" * 174_762 + "\udc00"
# Where each endpoint's record carries it, besides the unmapped "note".
BIG_FIELDS: Mapping[Endpoint, dict[str, object]] = {
    Endpoint.AUTH: {"user": {"name": BIG}},
    Endpoint.ADMINACTION: {"username": BIG},
    Endpoint.TELEPHONY: {"phone": BIG},
    Endpoint.ACTIVITY: {"actor": {"name": BIG}},
    Endpoint.TRUSTMONITOR: {"state": BIG},
}


@pytest.mark.parametrize("log_format", list(LogFormat))
@pytest.mark.parametrize("endpoint", list(Endpoint))
def test_a_megabyte_string_with_lone_surrogates(
    endpoint: Endpoint, log_format: LogFormat
) -> None:
    """A 1 MB value in a mapped and in a carried field arrives whole, repaired."""
    record = {**BASES[endpoint], **BIG_FIELDS[endpoint], "note": BIG}
    body = check_everything(record, endpoint, log_format)
    if log_format is LogFormat.JSON:
        expected = BIG
        assert expected == strict_loads(body)["note"]
    else:
        repaired = "\ufffd" + BIG[1:-1] + "\ufffd"
        assert repaired in labelled(strict_parse(body)[1]).values()


@pytest.mark.parametrize("json_style", list(JsonStyle))
@pytest.mark.parametrize("header", list(SyslogHeader))
@pytest.mark.parametrize("log_format", list(LogFormat))
@hypothesis.settings(max_examples=25, deadline=None)
@hypothesis.given(data=st.data())
def test_a_page_is_its_records_rendered_one_by_one(
    log_format: LogFormat,
    header: SyslogHeader,
    json_style: JsonStyle,
    data: st.DataObject,
) -> None:
    """``render_page`` writes and repairs each record as ``render_message`` does.

    Pages mix plain records with odd ones, so the page's way round (one
    record that needs a repair) is taken as well as the direct one.
    """
    endpoint = data.draw(st.sampled_from(list(Endpoint)))
    plain = st.just(dict(BASES[endpoint]))
    odd = overrides(endpoint).map(lambda more: {**BASES[endpoint], **more})
    records = data.draw(st.lists(plain | odd, max_size=5))
    settings = MessageSettings(
        hostname=HOST,
        log_format=log_format,
        syslog_header=header,
        json_style=json_style,
    )
    one_by_one = [
        render_message(record, endpoint, settings, fallback_time_ms=RECEIVED_MS)
        for record in records
    ]
    messages, repaired = render_page(
        records, endpoint, settings, fallback_time_ms=RECEIVED_MS
    )
    assert [r.data for r in one_by_one] == messages
    expected = [(i, r.repairs) for i, r in enumerate(one_by_one) if r.repairs]
    assert expected == repaired
