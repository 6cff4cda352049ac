r"""CEF output read back by an independent parser: cefp, not ours.

Rules for these tests: the parser is the ``cefp`` package from PyPI, the one
CEF parser there that tokenises by the standard (escaped ``|`` and ``\`` in
the header; escaped ``\``, ``=``, ``\n`` and ``\r`` in extension values) and
unescapes what it reads; the better-known ``pycef`` returns values still
escaped and refuses ``\`` or ``=`` in a header field. It reads a bare CEF
message, so the duo_log_sync prefix is not part of these tests.
"""

from __future__ import annotations

import copy
from typing import Any

import hypothesis
import pytest
from hypothesis import strategies as st

from trio_dls.endpoints import Endpoint
from trio_dls.siem.formats.cef import cef_message

cefp = pytest.importorskip("cefp", reason="the cefp test dependency is missing")

HOSTILE = "ev|l=name\\dom\r\n 'quoted' \"x\"  ünïcødé 名前 🙂 a=b\\=c \\"

ADMINACTION: dict[str, Any] = {
    "action": "user_update",
    "description": HOSTILE,
    "isotimestamp": "2026-11-27T14:05:00+00:00",
    "object": "jdoe|=\\",
    "timestamp": 1795788300,
    "username": "AD Sync: corp\\dir",
    "eventtype": "administrator|x\\y",
    "host": "api-xxxxxxxx.duosecurity.com",
}


def parse(message: str) -> dict[str, Any]:
    """Parse with cefp; custom strings are returned under their labels."""
    parsed: dict[str, Any] = cefp.parse(message)
    extension: dict[str, str] = parsed["extension"]
    for key in [k for k in extension if k.endswith("Label")]:
        extension[extension.pop(key)] = extension.pop(key.removesuffix("Label"))
    return parsed


def test_cefp_reads_hostile_values_back() -> None:
    r"""|, =, \, CR, LF, quotes and non-ASCII all come back as they were."""
    parsed = parse(cef_message(ADMINACTION, Endpoint.ADMINACTION))
    expected_extension = {
        "action": "user_update",
        "msg": HOSTILE,
        "event_type": "administrator|x\\y",
        "object": "jdoe|=\\",
        "rt": "1795788300000",
        "suser": "AD Sync: corp\\dir",
    }
    assert parsed["device"]["event_class_id"] == "administrator|x\\y"
    assert parsed["name"] == "user_update"
    assert expected_extension == parsed["extension"]


def test_cefp_reads_the_header() -> None:
    """The header fields are DLS's vendor, product and severity."""
    parsed = parse(cef_message(ADMINACTION, Endpoint.ADMINACTION))
    expected = {
        "vendor": "Duo Security",
        "product": "DuoLogSync",
        "version": "trio-dls-0.1.0",
        "event_class_id": "administrator|x\\y",
    }
    assert expected == parsed["device"]
    assert parsed["severity"] == "5"


@hypothesis.given(
    description=st.text(min_size=1),
    obj=st.text(min_size=1),
    username=st.text(min_size=1),
    action=st.text(min_size=1).filter(lambda t: "\r" not in t and "\n" not in t),
)
def test_cefp_reads_any_values_back(
    description: str, obj: str, username: str, action: str
) -> None:
    """Whatever text an administrator record holds, cefp reads it back unchanged."""
    record = copy.deepcopy(ADMINACTION)
    record.update(description=description, object=obj, username=username, action=action)
    parsed = parse(cef_message(record, Endpoint.ADMINACTION))
    expected = {
        "action": action,
        "msg": description,
        "event_type": "administrator|x\\y",
        "object": obj,
        "rt": "1795788300000",
        "suser": username,
    }
    assert action == parsed["name"]
    assert expected == parsed["extension"]
