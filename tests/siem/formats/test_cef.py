r"""CEF output: duo_log_sync's header and keys, escaped so any value survives.

Rules for these tests: golden lines are exact (one realistic record per
endpoint); everything else is checked by parsing the output back with
``strict_parse`` below, which follows the CEF standard to the letter and
refuses anything it does not allow (an unknown escape, a raw CR or LF, a bare
``=`` in a value), so a test cannot pass on output a lenient parser would
merely tolerate. The independent parser (a PyPI package) has its own module,
``test_formats_cef_independent.py``.
"""

from __future__ import annotations

import copy
import json
import re
from typing import Any

import hypothesis
import pytest
from hypothesis import strategies as st

from trio_dls.endpoints import Endpoint
from trio_dls.siem.formats.cef import (
    cef_message,
    escape_extension_value,
    escape_header_field,
)

# A record of every endpoint, shaped as Duo sends it and as the Duo client
# helpers enrich it (eventtype, host). Values are illustrative.
AUTH: dict[str, Any] = {
    "access_device": {
        "browser": "Chrome",
        "browser_version": "120.0.6099.71",
        "epkey": "EP18JX1A10AB102M2T2X",
        "hostname": "laptop-ab12",
        "ip": "203.0.113.7",
        "location": {
            "city": "Ann Arbor",
            "country": "United States",
            "state": "Michigan",
        },
        "os": "Mac OS X",
        "os_version": "14.2",
    },
    "alias": "",
    "application": {"key": "DIY4DOY4OVNW7VMSOGB0", "name": "Corporate VPN"},
    "auth_device": {
        "ip": "198.51.100.23",
        "location": {
            "city": "Ann Arbor",
            "country": "United States",
            "state": "Michigan",
        },
        "name": "+1 734-555-0100",
    },
    "email": "narroway@example.com",
    "event_type": "authentication",
    "factor": "duo_push",
    "isotimestamp": "2026-11-27T14:03:09.417823+00:00",
    "ood_software": None,
    "reason": "user_approved",
    "result": "success",
    "timestamp": 1795788189,
    "trusted_endpoint_status": "not trusted",
    "txid": "340a23e3-23f3-4e3f-9a4c-f1a3c0d1b2e3",
    "user": {
        "groups": ["Duo Users", "VPN"],
        "key": "DU3KC77WJ06Y5HIV7XKQ",
        "name": "narroway",
    },
    "eventtype": "authentication",
    "host": "api-xxxxxxxx.duosecurity.com",
}
ADMINACTION: dict[str, Any] = {
    "action": "user_update",
    "description": '{"realname": "Jane Q. Doe", "notes": "VIP | escalate=yes"}',
    "isotimestamp": "2026-11-27T14:05:00+00:00",
    "object": "jdoe",
    "timestamp": 1795788300,
    "username": "Ada Admin",
    "eventtype": "administrator",
    "host": "api-xxxxxxxx.duosecurity.com",
}
TELEPHONY: dict[str, Any] = {
    "context": "authentication",
    "credits": 1,
    "phone": "+15035550100",
    "telephony_id": "220f5ea7-8a07-4b56-9d0b-2c0b1f3b4e5a",
    "ts": "2026-11-27T14:06:40.250000+00:00",
    "txid": "5b3b2f29-8b1e-4d5c-b9a2-0f8c4f2d7c11",
    "type": "sms",
    "eventtype": "telephony",
    "host": "api-xxxxxxxx.duosecurity.com",
}
ACTIVITY: dict[str, Any] = {
    "access_device": {
        "browser": "Firefox",
        "browser_version": "121.0",
        "ip": {"address": "192.0.2.44"},
        "location": {"city": "Berlin", "country": "Germany", "state": "Berlin"},
        "os": "Windows",
        "os_version": "11",
    },
    "action": {"details": None, "name": "admin_login"},
    "activity_id": "9a6f2f6e-3c1d-4c55-8b0b-6f0d1e2a3b4c",
    "actor": {
        "details": '{"email": "ada@example.com"}',
        "key": "DEH1A2B3C4D5E6F7G8H9",
        "name": "Ada Admin",
        "type": "admin",
    },
    "akey": "DAKXXXXXXXXXXXXXXXXX",
    "application": {
        "key": "DIWXXXXXXXXXXXXXXXXX",
        "name": "Admin Panel",
        "type": "admin_panel",
    },
    "outcome": {"result": "SUCCESS"},
    "target": {
        "details": '{"role": "Owner"}',
        "key": "DEH1A2B3C4D5E6F7G8H9",
        "name": "Ada Admin",
        "type": "admin",
    },
    "ts": "2026-11-27T14:08:20.5+00:00",
    "eventtype": "activity",
    "host": "api-xxxxxxxx.duosecurity.com",
}
TRUSTMONITOR: dict[str, Any] = {
    "explanations": [
        {
            "summary": "narroway has not logged in from this country before.",
            "type": "NEW_COUNTRY",
        },
        {"summary": "The device was not seen before.", "type": "NEW_DEVICE"},
    ],
    "from_new_user": False,
    "priority_event": True,
    "priority_reasons": [{"label": "Germany", "type": "country"}],
    "sekey": "SEDOR9BP00L23C6YUH5",
    "state": "new",
    "surfaced_auth": {
        "access_device": {
            "hostname": None,
            "ip": "192.0.2.99",
            "location": {"country": "Germany"},
        },
        "application": {"key": "DIY4DOY4OVNW7VMSOGB0", "name": "Corporate VPN"},
        "factor": "duo_push",
        "result": "denied",
        "txid": "e9d1c1c2-6f0b-4e0a-9d3f-8b9a7c6d5e4f",
        "user": {"name": "narroway"},
    },
    "surfaced_timestamp": 1795788600123,
    "triaged_as_interesting": False,
    "type": "auth",
}

HEADER = "CEF:0|Duo Security|DuoLogSync|1.2.3|"

_KEY = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
_HEADER_UNESCAPES = {"\\": "\\", "|": "|"}
_VALUE_UNESCAPES = {"\\": "\\", "=": "=", "n": "\n", "r": "\r"}


def _unescape(text: str, table: dict[str, str]) -> str:
    out: list[str] = []
    chars = iter(text)
    for char in chars:
        if char == "\\":
            escaped = next(chars, None)
            if escaped not in table:
                raise ValueError(f"bad escape \\{escaped} in {text!r}")
            out.append(table[escaped])
        elif char == "=" and table is _VALUE_UNESCAPES:
            raise ValueError(f"unescaped = in value {text!r}")
        else:
            out.append(char)
    return "".join(out)


def _split_unescaped(text: str, separator: str, limit: int) -> list[str]:
    """Split ``text`` at up to ``limit`` separators that no backslash escapes."""
    parts: list[str] = []
    start = index = 0
    while index < len(text) and len(parts) < limit:
        if text[index] == "\\":
            index += 2
            continue
        if text[index] == separator:
            parts.append(text[start:index])
            start = index + 1
        index += 1
    parts.append(text[start:])
    return parts


def strict_parse(message: str) -> tuple[list[str], list[tuple[str, str]]]:
    """Parse one CEF message into unescaped header fields and extension pairs.

    Pairs are separated by exactly one space and keys are plain words; every
    ``=`` in a value must be escaped, so each unescaped ``=`` ends a key.
    """
    if "\r" in message or "\n" in message:
        raise ValueError("raw CR or LF in a CEF message")
    parts = _split_unescaped(message, "|", 7)
    if len(parts) != 8 or parts[0] != "CEF:0":
        raise ValueError(f"not a CEF:0 header: {message!r}")
    header = [_unescape(part, _HEADER_UNESCAPES) for part in parts[:7]]
    extension = parts[7]
    if not extension:
        return header, []
    segments = _split_unescaped(extension, "=", len(extension))
    pairs: list[tuple[str, str]] = []
    key = segments[0]
    for segment in segments[1:-1]:
        value, space, next_key = segment.rpartition(" ")
        if not space:
            raise ValueError(f"no space before key in {segment!r}")
        pairs.append((key, value))
        key = next_key
    pairs.append((key, segments[-1]))
    for key, _ in pairs:
        if _KEY.fullmatch(key) is None:
            raise ValueError(f"bad key {key!r}")
    return header, [(key, _unescape(value, _VALUE_UNESCAPES)) for key, value in pairs]


def labelled(pairs: list[tuple[str, str]]) -> dict[str, str]:
    """Return the pairs as a dict, custom strings under their labels."""
    found = dict(pairs)
    for key in [k for k in found if k.endswith("Label")]:
        field = key.removesuffix("Label")
        found[found.pop(key)] = found.pop(field)
    return found


def test_auth_golden() -> None:
    """An auth record gets DLS's auth header and keys, dhost from the hostname."""
    expected = (
        HEADER + "authentication|authentication|5|"
        "dhost=laptop-ab12 src=203.0.113.7 cs1Label=integration cs1=Corporate VPN"
        " cs2Label=event_type cs2=authentication cs3Label=factor cs3=duo_push"
        " outcome=success rt=1795788189417 duser=narroway"
    )
    assert expected == cef_message(AUTH, Endpoint.AUTH, device_version="1.2.3")


def test_adminaction_golden() -> None:
    """An administrator record is named by its action and keeps DLS's cs1..cs3."""
    expected = (
        HEADER + "administrator|user_update|5|"
        "cs1Label=action cs1=user_update"
        ' msg={"realname": "Jane Q. Doe", "notes": "VIP | escalate\\=yes"}'
        " cs2Label=event_type cs2=administrator cs3Label=object cs3=jdoe"
        " rt=1795788300000 suser=Ada Admin"
    )
    actual = cef_message(ADMINACTION, Endpoint.ADMINACTION, device_version="1.2.3")
    assert expected == actual


def test_telephony_golden() -> None:
    """A v2 telephony record has rt from its ts, which DLS wrote as None."""
    expected = (
        HEADER + "telephony|telephony|5|"
        "cs1Label=context cs1=authentication cs2Label=credits cs2=1"
        " cs3Label=event_type cs3=telephony cs4Label=phone cs4=+15035550100"
        " rt=1795788400250 cs5Label=type cs5=sms"
    )
    actual = cef_message(TELEPHONY, Endpoint.TELEPHONY, device_version="1.2.3")
    assert expected == actual


def test_activity_golden() -> None:
    """An activity record is signed by its action and named by its actor type."""
    expected = (
        HEADER + "admin_login|admin|5|"
        "src=192.0.2.44 act=admin_login suser=Ada Admin rt=1795788500500"
        ' msg={"role": "Owner"} outcome=SUCCESS'
        " cs1Label=integration_name cs1=Admin Panel"
        " cs2Label=integration_type cs2=admin_panel"
    )
    actual = cef_message(ACTIVITY, Endpoint.ACTIVITY, device_version="1.2.3")
    assert expected == actual


def test_trustmonitor_golden() -> None:
    """A Trust Monitor event has externalId=sekey and its surfaced auth's keys."""
    expected = (
        HEADER + "trust_monitor|auth|5|"
        "externalId=SEDOR9BP00L23C6YUH5 rt=1795788600123"
        " cs1Label=type cs1=auth cs2Label=state cs2=new"
        " cs3Label=priority_event cs3=true"
        ' cs4Label=priority_reasons cs4=[{"label":"Germany","type":"country"}]'
        " msg=narroway has not logged in from this country before.;"
        " The device was not seen before."
        " cs5Label=integration cs5=Corporate VPN duser=narroway src=192.0.2.99"
        " outcome=denied"
    )
    actual = cef_message(TRUSTMONITOR, Endpoint.TRUSTMONITOR, device_version="1.2.3")
    assert expected == actual


def test_default_device_version_names_trio_dls() -> None:
    """Without an override the header's version says trio-dls wrote the event."""
    header, _ = strict_parse(cef_message(AUTH, Endpoint.AUTH))
    assert header[3] == "trio-dls-0.1.0"


def test_hostile_values_golden() -> None:
    r"""|, =, \, newlines and non-ASCII are escaped exactly as the standard says."""
    record = copy.deepcopy(AUTH)
    record["eventtype"] = "auth|entic\\ation\n"
    record["user"] = {"name": "ev|l=name\\dom\r\nünïcødé 名前"}
    expected = (
        HEADER + "auth\\|entic\\\\ation |auth\\|entic\\\\ation |5|"
        "dhost=laptop-ab12 src=203.0.113.7 cs1Label=integration cs1=Corporate VPN"
        " cs2Label=event_type cs2=auth|entic\\\\ation\\n cs3Label=factor"
        " cs3=duo_push outcome=success rt=1795788189417"
        " duser=ev|l\\=name\\\\dom\\r\\nünïcødé 名前"
    )
    assert expected == cef_message(record, Endpoint.AUTH, device_version="1.2.3")


def test_hostile_values_parse_back() -> None:
    """The strict parser reads hostile values back unchanged."""
    record = copy.deepcopy(AUTH)
    record["user"] = {"name": "ev|l=name\\dom\r\nünïcødé 名前 "}
    record["application"] = {"name": "a=b c=d \\= \\"}
    _, pairs = strict_parse(cef_message(record, Endpoint.AUTH))
    fields = labelled(pairs)
    assert fields["duser"] == "ev|l=name\\dom\r\nünïcødé 名前 "
    assert fields["integration"] == "a=b c=d \\= \\"


def test_missing_values_are_left_out_without_renumbering() -> None:
    """A missing value is omitted, not written None, and cs numbers stay put."""
    record = copy.deepcopy(AUTH)
    del record["application"]
    record["access_device"] = {"ip": "203.0.113.7", "hostname": None}
    _, pairs = strict_parse(cef_message(record, Endpoint.AUTH))
    expected = [
        ("src", "203.0.113.7"),
        ("cs2Label", "event_type"),
        ("cs2", "authentication"),
        ("cs3Label", "factor"),
        ("cs3", "duo_push"),
        ("outcome", "success"),
        ("rt", "1795788189417"),
        ("duser", "narroway"),
    ]
    assert expected == pairs


def test_activity_string_action() -> None:
    """An older activity record with a string action (DLS crashed) is mapped."""
    record = copy.deepcopy(ACTIVITY)
    record["action"] = "user_login"
    header, pairs = strict_parse(cef_message(record, Endpoint.ACTIVITY))
    assert (header[4], dict(pairs)["act"]) == ("user_login", "user_login")


def test_activity_action_extended_signs_the_event() -> None:
    """action_extended.name, when Duo sends it, is the signature id as in DLS."""
    record = copy.deepcopy(ACTIVITY)
    record["action_extended"] = {"name": "admin_login_extended"}
    header, _ = strict_parse(cef_message(record, Endpoint.ACTIVITY))
    assert header[4] == "admin_login_extended"


def test_msp_child_account_id_is_cs6() -> None:
    """An MSP child's account id travels as cs6 on every endpoint."""
    for record, endpoint in [
        (AUTH, Endpoint.AUTH),
        (ADMINACTION, Endpoint.ADMINACTION),
        (TELEPHONY, Endpoint.TELEPHONY),
        (ACTIVITY, Endpoint.ACTIVITY),
        (TRUSTMONITOR, Endpoint.TRUSTMONITOR),
    ]:
        enriched = {**record, "child_account_id": "DA0123456789ABCDEFGH"}
        _, pairs = strict_parse(cef_message(enriched, endpoint))
        assert labelled(pairs)["child_account_id"] == "DA0123456789ABCDEFGH"


def test_record_is_not_mutated() -> None:
    """Formatting only reads the record."""
    for record, endpoint in [
        (AUTH, Endpoint.AUTH),
        (ADMINACTION, Endpoint.ADMINACTION),
        (TELEPHONY, Endpoint.TELEPHONY),
        (ACTIVITY, Endpoint.ACTIVITY),
        (TRUSTMONITOR, Endpoint.TRUSTMONITOR),
    ]:
        before = copy.deepcopy(record)
        cef_message(record, endpoint)
        assert before == record


def test_blank_header_fields_fall_back() -> None:
    """A record without signature or name still gets a complete header."""
    header, _ = strict_parse(cef_message({}, Endpoint.ACTIVITY))
    assert header[4:6] == ["activity", "activity"]


@hypothesis.given(st.text())
def test_extension_escaping_round_trips(text: str) -> None:
    """Any text survives extension escaping and strict unescaping unchanged."""
    assert text == _unescape(escape_extension_value(text), _VALUE_UNESCAPES)


@hypothesis.given(st.text())
def test_extension_escaping_leaves_no_line_break_or_bare_equals(text: str) -> None:
    """An escaped value has no raw CR or LF and no = without its backslash."""
    escaped = escape_extension_value(text)
    assert "\r" not in escaped
    assert "\n" not in escaped
    assert [escaped] == _split_unescaped(escaped, "=", len(escaped))


@hypothesis.given(st.text())
def test_header_escaping_never_leaves_an_unescaped_pipe(text: str) -> None:
    """An escaped header field is one field, without CR or LF."""
    escaped = escape_header_field(text)
    assert [escaped] == _split_unescaped(escaped, "|", len(escaped))
    assert "\r" not in escaped
    assert "\n" not in escaped


@hypothesis.given(st.text().filter(lambda t: "\r" not in t and "\n" not in t))
def test_header_escaping_round_trips(text: str) -> None:
    """Header text without line breaks survives escaping unchanged."""
    assert text == _unescape(escape_header_field(text), _HEADER_UNESCAPES)


_FIELDS = st.fixed_dictionaries(
    {
        "dhost": st.text(min_size=1),
        "src": st.text(min_size=1),
        "integration": st.text(min_size=1),
        "event_type": st.text(min_size=1),
        "factor": st.text(min_size=1),
        "outcome": st.text(min_size=1),
        "duser": st.text(min_size=1),
    }
)


@hypothesis.given(_FIELDS)
def test_any_auth_values_parse_back(fields: dict[str, str]) -> None:
    """Whatever text a record holds, the strict parser reads every field back."""
    record = {
        "access_device": {"hostname": fields["dhost"], "ip": fields["src"]},
        "application": {"name": fields["integration"]},
        "eventtype": fields["event_type"],
        "factor": fields["factor"],
        "result": fields["outcome"],
        "timestamp": 1795788189,
        "user": {"name": fields["duser"]},
    }
    header, pairs = strict_parse(cef_message(record, Endpoint.AUTH))
    one_line = fields["event_type"].replace("\r", " ").replace("\n", " ")
    assert [one_line, one_line] == header[4:6]
    assert {**fields, "rt": "1795788189000"} == labelled(pairs)


def test_strict_parser_refuses_dls_unescaped_output() -> None:
    """The strict parser is strict: DLS's unescaped '=' and newline are refused."""
    refused = 0
    for message in [
        HEADER + "a|5|msg=a=b rt=1",
        HEADER + "a|5|msg=line\nbreak",
        HEADER + "a|5|msg=bad \\escape",
        "CEF:0|Duo Security|DuoLogSync|1.2.3|a|b",
    ]:
        try:
            strict_parse(message)
        except ValueError:
            refused += 1
    assert refused == 4


# --------------------------------------------------------------------------
# Odd records: written repaired or forwarded, never an exception (issue 8)
# --------------------------------------------------------------------------


def _strict_json(text: str) -> object:
    """Decode ``text`` as strict JSON: NaN and Infinity are refused."""

    def refuse(constant: str) -> object:
        raise ValueError(f"{constant} is not JSON")

    return json.loads(text, parse_constant=refuse)


def test_lone_surrogate_in_a_user_name_becomes_the_replacement_character() -> None:
    """A lone surrogate (valid JSON, not UTF-8) is written as U+FFFD."""
    record = copy.deepcopy(AUTH)
    record["user"] = {"name": "narr\ud83doway"}
    message = cef_message(record, Endpoint.AUTH).encode()
    _, pairs = strict_parse(message.decode())
    assert dict(pairs)["duser"] == "narr\ufffdoway"


def test_lone_surrogates_in_the_header_and_in_json_values_are_replaced() -> None:
    """Surrogates in a header field and inside a list written as JSON are replaced."""
    record = copy.deepcopy(TRUSTMONITOR)
    record["type"] = "auth\udc00"
    record["priority_reasons"] = [{"label\ud800": "Germany\udfff"}]
    message = cef_message(record, Endpoint.TRUSTMONITOR).encode()
    header, pairs = strict_parse(message.decode())
    assert header[5] == "auth\ufffd"
    assert labelled(pairs)["priority_reasons"] == '[{"label\ufffd":"Germany\ufffd"}]'


def test_an_integer_too_long_for_str_is_left_out() -> None:
    """An integer of 5000 digits (str() refuses it) is left out; the rest stays."""
    record = copy.deepcopy(TELEPHONY)
    record["credits"] = 10**5000
    _, pairs = strict_parse(cef_message(record, Endpoint.TELEPHONY))
    fields = labelled(pairs)
    assert "credits" not in fields
    assert (fields["phone"], fields["rt"]) == ("+15035550100", "1795788400250")


def test_nan_inside_a_json_valued_field_is_written_as_null() -> None:
    """A NaN or infinity inside a list written as JSON becomes null: strict JSON."""
    record = copy.deepcopy(TRUSTMONITOR)
    record["priority_reasons"] = [{"score": float("nan")}, float("-inf"), 1.5]
    _, pairs = strict_parse(cef_message(record, Endpoint.TRUSTMONITOR))
    reasons = labelled(pairs)["priority_reasons"]
    expected = [{"score": None}, None, 1.5]
    assert expected == _strict_json(reasons)


# Deeper than json.dumps encodes on any supported Python (3.13's is the deepest).
DEEPER_THAN_ANY_ENCODER = 20_000


def test_nesting_too_deep_to_encode_is_cut() -> None:
    """A list nested 20,000 deep (json.dumps recurses out) is cut, and still JSON.

    20,000: too deep for json.dumps on every Python from 3.11 to 3.13 (3.13
    encodes 5,000).
    """
    nested: list[object] = []
    innermost = nested
    for _ in range(DEEPER_THAN_ANY_ENCODER):
        innermost.append([])
        innermost = innermost[0]  # type: ignore[assignment]
    record = copy.deepcopy(TRUSTMONITOR)
    record["priority_reasons"] = nested
    _, pairs = strict_parse(cef_message(record, Endpoint.TRUSTMONITOR))
    fields = labelled(pairs)
    reasons = fields["priority_reasons"]
    assert reasons == "[" * 100 + "null" + "]" * 100
    assert fields["externalId"] == "SEDOR9BP00L23C6YUH5"


@pytest.mark.parametrize(
    "time",
    [
        {"timestamp": float("nan")},
        {"timestamp": float("inf")},
        {"timestamp": 1e300},
        {"timestamp": -(10**15)},
        {"isotimestamp": "0001-01-01T00:00:00+14:00"},
    ],
    ids=["nan", "inf", "1e300", "-1e15", "before-year-1"],
)
def test_an_impossible_event_time_leaves_rt_out(time: dict[str, object]) -> None:
    """A time outside the years 1-9999, NaN or infinite is left out, as if missing."""
    record = {k: v for k, v in AUTH.items() if k not in {"isotimestamp", "timestamp"}}
    record.update(time)
    _, pairs = strict_parse(cef_message(record, Endpoint.AUTH))
    fields = dict(pairs)
    assert "rt" not in fields
    assert fields["duser"] == "narroway"


def test_nulls_where_objects_are_expected_are_left_out() -> None:
    """access_device, target and application.name null: those fields are left out."""
    record = copy.deepcopy(ACTIVITY)
    record.update(access_device=None, target=None)
    record["application"]["name"] = None
    _, pairs = strict_parse(cef_message(record, Endpoint.ACTIVITY))
    expected = [
        ("act", "admin_login"),
        ("suser", "Ada Admin"),
        ("rt", "1795788500500"),
        ("outcome", "SUCCESS"),
        ("cs2Label", "integration_type"),
        ("cs2", "admin_panel"),
    ]
    assert expected == pairs


def test_changed_types_are_forwarded() -> None:
    """A string or list where an object was, an object where a string was: no error."""
    record = copy.deepcopy(AUTH)
    record.update(user="narroway", access_device=["203.0.113.7"], factor={"x": 1})
    _, pairs = strict_parse(cef_message(record, Endpoint.AUTH))
    fields = labelled(pairs)
    assert "duser" not in fields
    assert "dhost" not in fields
    assert fields["factor"] == '{"x":1}'


def test_a_64_kib_description_is_written_whole() -> None:
    """A 64 KiB administrator description reaches msg whole; CEF has no limit."""
    record = copy.deepcopy(ADMINACTION)
    record["description"] = "a=b|\\\n" * (64 * 1024 // 6)
    _, pairs = strict_parse(cef_message(record, Endpoint.ADMINACTION))
    assert dict(pairs)["msg"] == record["description"]
