r"""Records as JSON, byte for byte as duo_log_sync writes them.

Theory of operation: duo_log_sync sends ``json.dumps(log).encode()`` followed
by a newline. This module produces the first part only; the newline (or an
RFC 6587 octet count) is framing, and belongs to ``trio_dls.siem.framing``.

``json.dumps`` keeps its defaults on purpose (``ensure_ascii=True``, the
``", "`` and ``": "`` separators, key order as received): a SIEM rule or a
de-duplication hash written against duo_log_sync's output keeps matching.
With ``ensure_ascii`` every non-ASCII character and every control character,
newlines included, is written as a ``\\u`` or backslash escape, so a message
never contains a raw newline.

The record is the already-enriched one (``eventtype``/``host`` from the Duo
client helpers, ``child_account_id`` for an MSP child); it is only read.

Where duo_log_sync's output would not be JSON, or ``json.dumps`` would raise,
the record is written repaired (``trio_dls.siem.formats.repair``): ``NaN`` and
infinities, which ``json.dumps`` writes as the non-JSON ``NaN`` and
``Infinity``, become null, and so do integers too long for ``str()`` and
nesting too deep to encode. A lone surrogate needs no repair: ``ensure_ascii``
writes it as a ``\udXXX`` escape, which is JSON, just as Duo sent it.

Speed: ``json.dumps`` with any argument builds a ``JSONEncoder`` and, inside
it, the C encoder, for every call; at a thousand records a page that was a
fifth of the cost of writing one. ``write_dls_json`` is the same C encoder,
made once, with the same settings (``tests/siem/formats/test_jsonlines.py``
holds it to ``json.dumps``). It skips only ``check_circular``, which a record
decoded from JSON cannot need: a circular one (made by code) recurses until
``RecursionError``, and is then repaired as before. ``write_dls_json`` and
``write_compact_json`` raise where a record needs repair; a page of records
is written with them, and only a record that raised goes the way of
``render_json`` (``trio_dls.siem.formats.message.render_page``).
"""

from __future__ import annotations

import json
from json.encoder import encode_basestring_ascii
from typing import TYPE_CHECKING, Any

import orjson

from trio_dls.siem.formats.repair import Rendered, json_safe

if TYPE_CHECKING:
    from trio_dls.siem.formats.eventtime import Record


#: What ``write_dls_json`` and ``write_compact_json`` raise for a record that
#: needs repair (orjson's ``JSONEncodeError`` is a ``TypeError``).
UNWRITABLE: tuple[type[Exception], ...] = (ValueError, TypeError, RecursionError)

# allow_nan=False changes nothing for finite numbers; it makes NaN raise
# instead of reaching a SIEM as invalid JSON.
_DLS_ENCODER = json.JSONEncoder(allow_nan=False, check_circular=False)


def _c_encoder() -> Any:  # noqa: ANN401 - the C encoder, or None
    try:
        from _json import make_encoder  # noqa: PLC0415 - CPython's, if any
    except ImportError:  # pragma: no cover - no C accelerator (e.g. PyPy)
        return None
    encoder = _DLS_ENCODER
    return make_encoder(
        None,  # no markers: check_circular=False
        encoder.default,
        encode_basestring_ascii,
        None,  # no indent: one line
        encoder.key_separator,
        encoder.item_separator,
        encoder.sort_keys,
        encoder.skipkeys,
        encoder.allow_nan,
    )


_C_ENCODER = _c_encoder()


def write_dls_json(record: Record) -> bytes:
    """Return ``json.dumps(record, allow_nan=False)`` as ASCII bytes.

    Raises (one of ``UNWRITABLE``) where ``render_json`` would repair.
    """
    if _C_ENCODER is None:  # pragma: no cover - no C accelerator
        return _DLS_ENCODER.encode(record).encode("ascii")
    return "".join(_C_ENCODER(record, 0)).encode("ascii")


def write_compact_json(record: Record) -> bytes:
    """Return ``record`` as compact JSON (orjson); raises where it needs repair.

    orjson's result keeps the buffer it was written in (a kilobyte at least,
    from malloc), so a page of them held together costs some 4 MB more than
    their bytes: a copy of the right size frees each buffer at once, for a
    tenth of a microsecond (peak RSS of ``bench_throughput``'s compact case:
    see the commit).
    """
    return bytes(memoryview(orjson.dumps(record)))


def render_json(record: Record) -> Rendered:
    """Return ``record`` as one line of JSON, without the line ending, and repairs."""
    try:
        return Rendered(write_dls_json(record))
    except UNWRITABLE:
        pass
    return _repaired(record)


def _repaired(record: Record, **style: Any) -> Rendered:  # noqa: ANN401
    """Return ``record`` repaired (``json_safe``), written by json.dumps in *style*."""
    repairs: list[str] = []
    safe = json_safe(record, ("$",), repairs)
    text = json.dumps(safe, allow_nan=False, **style)
    return Rendered(text.encode("ascii"), tuple(repairs))


def render_compact_json(record: Record) -> Rendered:
    """Return ``record`` as compact UTF-8 JSON (``json_style: compact``), and repairs.

    No spaces after separators and non-ASCII characters as UTF-8, not
    escaped: fewer bytes for a SIEM licensed by volume, and the same values
    when parsed (``tests/siem/formats/test_compact_json.py``).  orjson writes
    it; what orjson refuses (an integer beyond 64 bits, a lone surrogate, a
    value of no JSON type, nesting over 254 levels) is written repaired as
    the default style does, compact, with lone surrogates escaped.  orjson
    writes ``NaN`` and infinities as null, as the repair does, but does not
    say so: only an answer that is not JSON can hold them, and one that
    holds a lone surrogate or a long integer is told.
    """
    try:
        return Rendered(write_compact_json(record))
    except TypeError:  # orjson.JSONEncodeError is a TypeError
        pass
    return _repaired(record, separators=(",", ":"))


def json_message(record: Record) -> bytes:
    """Return ``record`` as one line of JSON, without the line ending."""
    return render_json(record).data
