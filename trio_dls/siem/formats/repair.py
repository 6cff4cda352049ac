r"""Values a format cannot write as received, what is written instead, and why.

Theory of operation: no single record may stop the daemon. A record that made
formatting raise would crash the sender, and after the restart the same page
would come back and crash it again, for ever. Yet Python's ``json`` module
decodes things that no format here can write back as they are: lone UTF-16
surrogates (``"\ud83d"`` is valid JSON, but no UTF-8 encoder takes the
result), ``NaN`` and ``Infinity`` (which ``json.dumps`` would write, and a
strict JSON parser refuses), integers too long for ``str()`` and nesting too
deep for the encoder's recursion.

The formats therefore write every record the ordinary way first, and only
when that fails (or would give invalid output) they come here for a copy they
can write. So an ordinary record's bytes never change, and only what would
otherwise have been lost is altered. Each change is said in a *repair*: a
short sentence naming the value's place (``$.user.name`` for the JSON format,
the CEF key for CEF) and what was written instead. The sender logs the
repairs of a record once and counts the record.

This module is pure and knows nothing of logs or senders. A repair, and
every description made here, is ASCII, short and never a raw value, so that
logging it cannot fail (a lone surrogate breaks a UTF-8 log file's encoder)
or flood the log (a value may be megabytes long).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping

import attrs

from trio_dls.endpoints import Endpoint

#: Deeper nesting than this is written as null. Duo's records nest five or
#: six levels; Python's encoders recurse once per level, so a record nested
#: near the interpreter's recursion limit (which ``json.loads`` still decodes)
#: fails to encode in a deeper call stack. The bound keeps the repaired copy
#: far from that limit.
MAX_DEPTH = 100

#: Longest excerpt of a text value quoted in a repair or a record's name.
_EXCERPT = 40
# Integers up to this many bits are quoted in full (about 77 digits).
_QUOTED_BITS = 256

_SURROGATE = re.compile("[\ud800-\udfff]")

# What names a record in a log line: the id Duo gives each record of an
# endpoint; administrator logs have none, so their time and action.
_ID_FIELDS: Mapping[Endpoint, tuple[str, ...]] = {
    Endpoint.AUTH: ("txid",),
    Endpoint.TELEPHONY: ("telephony_id",),
    Endpoint.ACTIVITY: ("activity_id",),
    Endpoint.TRUSTMONITOR: ("sekey",),
    Endpoint.ADMINACTION: ("timestamp", "action"),
}


@attrs.frozen
class Rendered:
    """The bytes of one message, and the repairs that writing them took."""

    data: bytes
    repairs: tuple[str, ...] = ()


def has_surrogates(text: str) -> bool:
    """Return whether ``text`` holds a UTF-16 surrogate, which UTF-8 cannot encode."""
    return _SURROGATE.search(text) is not None


def replace_surrogates(text: str) -> str:
    """Return ``text`` with every surrogate code point replaced by U+FFFD.

    U+FFFD is Unicode's replacement character, what a decoder puts where it
    met something it could not read, so a SIEM user sees that a character
    was there. Python's ``json`` already joins an escaped high and low
    surrogate into one character, so a surrogate left in a decoded string is
    always a lone one.
    """
    return _SURROGATE.sub("\ufffd", text)


def _digits(value: int) -> int:
    """Return about how many decimal digits ``value`` has, without ``str()``."""
    return int(value.bit_length() * math.log10(2)) + 1


def _too_long(value: int) -> bool:
    # The limit is the interpreter's (sys.set_int_max_str_digits), so ask it.
    try:
        str(value)
    except ValueError:
        return True
    return False


def _describe_float(value: float) -> str:
    # JSON's spelling of the non-finite ones, as json.loads reads them.
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return repr(value)


def describe_value(value: object) -> str:
    """Return a short ASCII text naming ``value``, safe to log whatever it holds."""
    match value:
        case str():
            more = f"... ({len(value)} characters)" if len(value) > _EXCERPT else ""
            return ascii(value[:_EXCERPT]) + more
        case bool() | None:
            return json.dumps(value)
        case int():
            if value.bit_length() <= _QUOTED_BITS:
                return str(value)
            return f"an integer of about {_digits(value)} digits"
        case float():
            return _describe_float(value)
        case Mapping():
            return "an object"
        case list() | tuple():
            return "a list"
        case _:
            return f"a {type(value).__name__}"


def describe_record(record: Mapping[str, object], endpoint: Endpoint) -> str:
    """Return how a log line names ``record`` of ``endpoint``: its id, log-safe."""
    named = [
        f"{key} {describe_value(record[key])}"
        for key in _ID_FIELDS[endpoint]
        if key in record
    ]
    return ", ".join(named) or "without an id"


def _place(path: tuple[str | int, ...]) -> str:
    """Return ``path``, a root name and steps, as text: ``$.user.name``, ``cs4[0]``."""
    root, *steps = path
    parts = [str(root)]
    for step in steps:
        if isinstance(step, int):
            parts.append(f"[{step}]")
        elif step.isidentifier() and step.isascii() and len(step) <= _EXCERPT:
            parts.append(f".{step}")
        else:
            parts.append(f"[{describe_value(step)}]")
    return "".join(parts)


def _number(
    value: float, path: tuple[str | int, ...], repairs: list[str]
) -> float | None:
    if isinstance(value, int):
        unwritable = _too_long(value)
    else:
        unwritable = not math.isfinite(value)
    if unwritable:
        repairs.append(f"{describe_value(value)} at {_place(path)} written as null")
        return None
    return value


def json_safe(value: object, path: tuple[str | int, ...], repairs: list[str]) -> object:
    r"""Return a copy of ``value`` that ``json.dumps(value, allow_nan=False)`` writes.

    ``path`` names ``value``'s place in the repairs, each appended to
    ``repairs``: ``NaN`` and infinities, integers too long for ``str()``,
    nesting deeper than ``MAX_DEPTH`` and anything that is not a JSON type
    become null, the value a JSON reader already expects may stand anywhere.
    A string is kept as it is: with ``ensure_ascii`` a lone surrogate is
    written as a valid ``\udXXX`` escape, and where a format needs UTF-8 it
    replaces surrogates in the text it writes.
    """
    match value:
        case str() | bool() | None:
            return value
        case int() | float():
            return _number(value, path, repairs)
        case Mapping() | list() | tuple() if len(path) > MAX_DEPTH:
            repairs.append(
                f"nesting deeper than {MAX_DEPTH} levels at {_place(path)}"
                " written as null"
            )
            return None
        case Mapping():
            copy: dict[str, object] = {}
            for key, item in value.items():
                # A decoded JSON object's keys are always strings; anything
                # else came from code, and is named rather than guessed at.
                text = key if isinstance(key, str) else describe_value(key)
                copy[text] = json_safe(item, (*path, text), repairs)
            return copy
        case list() | tuple():
            return [
                json_safe(item, (*path, index), repairs)
                for index, item in enumerate(value)
            ]
        case _:
            repairs.append(f"{describe_value(value)} at {_place(path)} written as null")
            return None
