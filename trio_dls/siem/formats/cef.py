r"""Records as ArcSight CEF, with duo_log_sync's header and field names.

Theory of operation: a CEF message is a header of seven ``|``-separated
fields and an extension of ``key=value`` pairs::

    CEF:0|Duo Security|DuoLogSync|<version>|<signature id>|<name>|5|<extension>

The vendor, product, severity, signature ids, names, extension keys and
``csN``/``csNLabel`` custom strings are duo_log_sync's (2.4.1 for auth,
telephony and activity; 2.3 for administrator logs, which 2.4 dropped), so
SIEM parsers written for duo_log_sync keep working. What differs is what
duo_log_sync got wrong:

- escaping (duo_log_sync escaped nothing): header fields escape ``\\`` and
  ``|``; extension values escape ``\\``, ``=``, CR (``\\r``) and LF
  (``\\n``), so no value can end the line or fake a ``key=`` pair;
- ``rt`` is the event time in epoch milliseconds for every endpoint;
- auth ``dhost`` is ``access_device.hostname`` (duo_log_sync read
  ``access_device.host``, which Duo never sends, so it wrote ``dhost=None``);
- telephony ``rt`` comes from ``ts`` (duo_log_sync read ``timestamp``, absent
  from v2 telephony records, and wrote ``rt=None``);
- activity ``act`` and the signature id accept ``action`` both as the older
  string and as the newer ``{name, details}`` object (duo_log_sync failed on
  the string), ``rt`` is epoch ms (duo_log_sync wrote the ISO text), and
  ``outcome`` is ``outcome.result`` (duo_log_sync read a top-level ``result``
  that activity records do not have);
- a missing value is left out instead of written as ``None``;
- Trust Monitor events get a CEF mapping (duo_log_sync had none);
- an MSP child's ``child_account_id`` travels as ``cs6`` (duo_log_sync put it
  in the JSON only).

The ``csN`` numbers are fixed per endpoint, never renumbered when a value is
missing, so ``cs3`` always means the same field for a given signature.

Whatever a value holds, the message is written (``render_cef``), repaired
where it could not be as received (``trio_dls.siem.formats.repair``): a lone
surrogate becomes U+FFFD (the message is UTF-8, which cannot encode one); an
integer too long for ``str()`` or an impossible event time is left out, as a
missing value is; and inside a list or object written as JSON, ``NaN``,
infinities, too-long integers and too-deep nesting become null. A value of an
unexpected type (a string where an object was, an object where a string was)
needs no repair: a path through it finds nothing, and an object or list in a
field is written as JSON.

This module only formats text: the duo_log_sync prefix or a syslog header in
front, the encoding and the framing belong to the callers.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping

import attrs

from trio_dls import __version__
from trio_dls.endpoints import EVENTTYPES, Endpoint
from trio_dls.siem.formats.eventtime import (
    EventTime,
    Record,
    event_time_ms,
    read_event_time,
)
from trio_dls.siem.formats.repair import (
    Rendered,
    describe_value,
    has_surrogates,
    json_safe,
    replace_surrogates,
)

DEVICE_VENDOR = "Duo Security"
#: Kept from duo_log_sync: SIEM parsers select Duo events by vendor and product.
DEVICE_PRODUCT = "DuoLogSync"
#: duo_log_sync put its own version here (2.4.1 in its last release). trio-dls
#: puts its own, marked as such: the version already changed with every
#: duo_log_sync release, so no parser can depend on it, and since some fields
#: are mapped differently (see above) a SIEM engineer must be able to tell
#: which program wrote an event.
DEVICE_VERSION = f"trio-dls-{__version__}"
#: duo_log_sync gives every event severity 5 (of 0-10); so does trio-dls.
SEVERITY = "5"

_HEADER_ESCAPES = str.maketrans({"\\": "\\\\", "|": "\\|", "\r": " ", "\n": " "})
_VALUE_ESCAPES = str.maketrans({"\\": "\\\\", "=": "\\=", "\r": "\\r", "\n": "\\n"})


def escape_header_field(text: str) -> str:
    r"""Return ``text`` escaped for a CEF header field: ``\`` and ``|``.

    The CEF standard allows multiple lines only in extension values and gives
    the header no escape for them, so a CR or LF in a header field becomes a
    space: the one lossy case, for header values (event types, action names)
    that Duo never sends with line breaks.
    """
    return text.translate(_HEADER_ESCAPES)


def escape_extension_value(text: str) -> str:
    r"""Return ``text`` escaped for a CEF extension value: ``\``, ``=``, CR, LF.

    ``|`` needs no escape in the extension (the CEF standard says so, and
    escaping it would show a stray backslash in parsers that follow it).
    """
    return text.translate(_VALUE_ESCAPES)


def _json_text(value: object, where: str, repairs: list[str]) -> str:
    # Lists and objects (Trust Monitor reasons, activity details) as compact
    # JSON: unambiguous, and a SIEM can decode it again, so it must be JSON.
    try:
        return json.dumps(
            value, separators=(",", ":"), ensure_ascii=False, allow_nan=False
        )
    except (ValueError, TypeError, RecursionError):
        pass
    safe = json_safe(value, (where,), repairs)
    return json.dumps(safe, separators=(",", ":"), ensure_ascii=False)


def _text(value: object, where: str, repairs: list[str]) -> str | None:
    """Return the CEF text of a record value, or None when there is none.

    ``where`` names the value (its CEF key) in what is appended to
    ``repairs`` if the value cannot be written as received.
    """
    match value:
        case None | "":
            return None
        case str():
            text = value
        case bool():
            # JSON's spelling, not Python's "True" that duo_log_sync wrote.
            return "true" if value else "false"
        case int() | float():
            try:
                return str(value)
            except ValueError:
                repairs.append(f"{describe_value(value)} in {where} left out")
                return None
        case _:
            text = _json_text(value, where, repairs)
    if has_surrogates(text):
        repairs.append(f"lone surrogates in {where} replaced by U+FFFD")
        return replace_surrogates(text)
    return text


def _get(record: Record, *path: str) -> object:
    """Follow ``path`` through nested objects; None where any step is missing."""
    value: object = record
    for key in path:
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    return value


Getter = Callable[[Record], object]


def _path(*path: str) -> Getter:
    return lambda record: _get(record, *path)


def _activity_action(record: Record) -> object:
    # Older activity records have a string action; newer ones an object.
    action = record.get("action")
    if isinstance(action, Mapping):
        return action.get("name")
    return action


def _activity_signature(record: Record) -> object:
    # duo_log_sync 2.4.1 prefers action_extended.name when Duo sends it.
    extended = _get(record, "action_extended", "name")
    return extended if extended is not None else _activity_action(record)


def _activity_outcome(record: Record) -> object:
    found = _get(record, "outcome", "result")
    return found if found is not None else record.get("result")


def _explanations(record: Record) -> object:
    explanations = record.get("explanations")
    if not isinstance(explanations, list):
        return None
    summaries = [_get(item, "summary") for item in explanations]
    return "; ".join(s for s in summaries if isinstance(s, str)) or None


def _eventtype(endpoint: Endpoint) -> Getter:
    default = EVENTTYPES[endpoint]

    def get(record: Record) -> object:
        found = record.get("eventtype")
        return found if found is not None else default

    return get


@attrs.frozen
class Field:
    """One extension field: its CEF key, where its value comes from, its label.

    ``label`` is set for custom strings only: ``cs1`` with label ``factor`` is
    written ``cs1Label=factor cs1=<value>``, as duo_log_sync does.
    """

    key: str
    value: Getter
    label: str | None = None
    event_time: bool = False
    """The value is the record's event time: ``render_cef`` reads it once."""


@attrs.frozen
class EndpointMapping:
    """How one endpoint's records become CEF: header getters and fields."""

    signature_id: Getter
    name: Getter
    fields: tuple[Field, ...]


def _rt(endpoint: Endpoint) -> Field:
    return Field("rt", lambda record: event_time_ms(record, endpoint), event_time=True)


_CHILD_ACCOUNT = Field("cs6", _path("child_account_id"), "child_account_id")

#: Per endpoint, in duo_log_sync's order of fields.
MAPPINGS: Mapping[Endpoint, EndpointMapping] = {
    Endpoint.AUTH: EndpointMapping(
        signature_id=_eventtype(Endpoint.AUTH),
        name=_eventtype(Endpoint.AUTH),
        fields=(
            Field("dhost", _path("access_device", "hostname")),
            Field("src", _path("access_device", "ip")),
            Field("cs1", _path("application", "name"), "integration"),
            Field("cs2", _path("eventtype"), "event_type"),
            Field("cs3", _path("factor"), "factor"),
            Field("outcome", _path("result")),
            _rt(Endpoint.AUTH),
            Field("duser", _path("user", "name")),
            _CHILD_ACCOUNT,
        ),
    ),
    Endpoint.ADMINACTION: EndpointMapping(
        signature_id=_eventtype(Endpoint.ADMINACTION),
        name=_path("action"),
        fields=(
            Field("cs1", _path("action"), "action"),
            Field("msg", _path("description")),
            Field("cs2", _path("eventtype"), "event_type"),
            Field("cs3", _path("object"), "object"),
            _rt(Endpoint.ADMINACTION),
            Field("cs4", _path("type"), "type"),
            Field("suser", _path("username")),
            _CHILD_ACCOUNT,
        ),
    ),
    Endpoint.TELEPHONY: EndpointMapping(
        signature_id=_eventtype(Endpoint.TELEPHONY),
        name=_eventtype(Endpoint.TELEPHONY),
        fields=(
            Field("cs1", _path("context"), "context"),
            Field("cs2", _path("credits"), "credits"),
            Field("cs3", _path("eventtype"), "event_type"),
            Field("cs4", _path("phone"), "phone"),
            _rt(Endpoint.TELEPHONY),
            Field("cs5", _path("type"), "type"),
            _CHILD_ACCOUNT,
        ),
    ),
    Endpoint.ACTIVITY: EndpointMapping(
        signature_id=_activity_signature,
        name=_path("actor", "type"),
        fields=(
            Field("src", _path("access_device", "ip", "address")),
            Field("act", _activity_action),
            Field("suser", _path("actor", "name")),
            _rt(Endpoint.ACTIVITY),
            Field("msg", _path("target", "details")),
            Field("outcome", _activity_outcome),
            Field("cs1", _path("application", "name"), "integration_name"),
            Field("cs2", _path("application", "type"), "integration_type"),
            _CHILD_ACCOUNT,
        ),
    ),
    # duo_log_sync had no CEF for Trust Monitor. The shape follows its
    # administrator mapping: a fixed signature id for the class of event and
    # the event's own type as the name; the surfaced authentication supplies
    # the same keys as an auth record (duser, src, dhost, outcome).
    Endpoint.TRUSTMONITOR: EndpointMapping(
        signature_id=lambda _record: "trust_monitor",
        name=_path("type"),
        fields=(
            Field("externalId", _path("sekey")),
            _rt(Endpoint.TRUSTMONITOR),
            Field("cs1", _path("type"), "type"),
            Field("cs2", _path("state"), "state"),
            Field("cs3", _path("priority_event"), "priority_event"),
            Field("cs4", _path("priority_reasons"), "priority_reasons"),
            Field("msg", _explanations),
            Field("cs5", _path("surfaced_auth", "application", "name"), "integration"),
            Field("duser", _path("surfaced_auth", "user", "name")),
            Field("src", _path("surfaced_auth", "access_device", "ip")),
            Field("dhost", _path("surfaced_auth", "access_device", "hostname")),
            Field("outcome", _path("surfaced_auth", "result")),
            _CHILD_ACCOUNT,
        ),
    ),
}


def _extension(
    record: Record,
    fields: tuple[Field, ...],
    repairs: list[str],
    event_time: EventTime | None = None,
) -> str:
    pairs: list[str] = []
    for field in fields:
        if field.event_time and event_time is not None:
            value: object = event_time.ms
        else:
            value = field.value(record)
        text = _text(value, field.key, repairs)
        if text is None:
            continue
        if field.label is not None:
            pairs.append(f"{field.key}Label={escape_extension_value(field.label)}")
        pairs.append(f"{field.key}={escape_extension_value(text)}")
    return " ".join(pairs)


def cef_extension(record: Record, fields: tuple[Field, ...]) -> str:
    """Return the escaped ``key=value`` pairs of ``fields`` that have a value."""
    return _extension(record, fields, [])


def render_cef(
    record: Record,
    endpoint: Endpoint,
    *,
    device_version: str = DEVICE_VERSION,
    event_time: EventTime | None = None,
) -> Rendered:
    """Return ``record`` of ``endpoint`` as one UTF-8 CEF message, and repairs.

    There is no prefix. The message never contains a raw CR or LF, and
    ``record`` is never mutated. It never raises for a record decoded from
    JSON: what cannot be written as received is repaired and the repairs say
    so, in order, each once. *event_time* is ``read_event_time(record,
    endpoint)`` if the caller has it already (for a header), not to read the
    time twice.
    """
    if event_time is None:
        event_time = read_event_time(record, endpoint)
    repairs: list[str] = []
    mapping = MAPPINGS[endpoint]
    # A blank header field makes common parsers reject the whole line, so a
    # record without its signature falls back to the endpoint's name, and a
    # record without a name to its signature id.
    signature_id = (
        _text(mapping.signature_id(record), "the signature id", repairs)
        or endpoint.value
    )
    name = _text(mapping.name(record), "the name", repairs) or signature_id
    header = (
        "CEF:0",
        escape_header_field(DEVICE_VENDOR),
        escape_header_field(DEVICE_PRODUCT),
        escape_header_field(device_version),
        escape_header_field(signature_id),
        escape_header_field(name),
        SEVERITY,
    )
    extension = _extension(record, mapping.fields, repairs, event_time)
    # rt comes from the event time; an impossible one was left out.
    problem = event_time.problem
    if problem is not None:
        repairs.append(problem)
    text = "|".join(header) + "|" + extension
    return Rendered(text.encode(), tuple(dict.fromkeys(repairs)))


def cef_message(
    record: Record, endpoint: Endpoint, *, device_version: str = DEVICE_VERSION
) -> str:
    """Return ``record`` of ``endpoint`` as one CEF message, without any prefix.

    The result never contains a raw CR or LF or a surrogate, and never
    mutates ``record``; ``render_cef`` also says what had to be repaired.
    """
    return render_cef(record, endpoint, device_version=device_version).data.decode()
