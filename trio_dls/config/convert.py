"""Strict conversion: plain YAML data in, a ``Config`` or a list of Problems out.

This module owns the cattrs converter and its scalar hooks, which refuse what
DLS's YAML 1.1 parser would have guessed at (``port: 'abc'``, ``is_msp:
maybe``) and accept the spellings whose meaning is obvious (``'False'``,
``no``, ``port: '9000'``), and the flattening of cattrs' error tree into
Problems with key paths, including which key an unknown one was probably
meant to be.  It knows nothing of lines, files or the environment: data goes
in, values or Problems come out.
"""

from __future__ import annotations

import difflib
import enum
import re
import typing
from typing import TYPE_CHECKING, Any, Final, TypeVar

import attrs
import cattrs
from cattrs.errors import (
    AttributeValidationNote,
    ClassValidationError,
    ForbiddenExtraKeysError,
    IterableValidationError,
)

from trio_dls.config.model import (
    DEFAULT_OFFSET_DAYS,
    MAX_UDP_MAX_SIZE,
    SERVER_KEYS,
    TRANSPORT_SETTINGS,
    Config,
    Count,
    DatagramSize,
    EndpointServerMapping,
    ListenAddress,
    LogLevel,
    MspApiHost,
    NonEmptyStr,
    OffsetDays,
    Port,
    PositiveSeconds,
    Protocol,
    Secret,
    Server,
    TcpSettings,
    TlsSettings,
    UdpSettings,
    split_listen_address,
)
from trio_dls.config.problems import KeyPath, Problem, ProblemKind
from trio_dls.endpoints import Endpoint
from trio_dls.siem.formats import Facility, JsonStyle, LogFormat, SyslogHeader
from trio_dls.siem.framing import MIN_UDP_MAX_SIZE, Framing, OversizePolicy

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator


class InvalidValueError(ValueError):
    """A scalar hook's complaint; its text becomes a Problem's detail."""

    kind: ProblemKind = ProblemKind.INVALID


class _WrongShapeError(InvalidValueError):
    """A hook's complaint about the container, not the value (a list expected)."""

    kind = ProblemKind.SHAPE


class _WrongProtocolError(InvalidValueError):
    """A server key that belongs to the servers of another protocol."""

    kind = ProblemKind.WRONG_PROTOCOL


_TRUE = frozenset({"true", "yes", "on", "y"})
_FALSE = frozenset({"false", "no", "off", "n"})
_INTEGER = re.compile(r"[+-]?\d+")
# A decimal number as people write one; not "nan", "inf" or "1_000", which
# Python's float() would also take.
_DECIMAL = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")


def _show(value: object) -> str:
    return repr(value) if isinstance(value, str) else str(value)


def _to_bool(value: object, _: type) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise InvalidValueError(f"expected true or false, got {_show(value)}")


def to_int(value: object) -> int:
    """Read *value* as a whole number, a quoted one included, or refuse it."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and _INTEGER.fullmatch(value.strip()):
        return int(value)
    raise InvalidValueError(f"expected a whole number, got {_show(value)}")


def _to_number(value: object) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            pass
    raise InvalidValueError(f"expected a number, got {_show(value)}")


def _to_str(value: object, _: type) -> str:
    if isinstance(value, str):
        return value
    raise InvalidValueError(
        f"expected text, got {_show(value)}; put it in quotes: '{value}'"
    )


def _to_non_empty_str(value: object, _: type) -> str:
    text = _to_str(value, str)
    if not text.strip():
        raise InvalidValueError("must not be empty")
    return text


def _to_port(value: object, _: type) -> int:
    port = to_int(value)
    if not 1 <= port <= 65535:  # noqa: PLR2004 - the TCP/UDP port range
        raise InvalidValueError(f"must be a port from 1 to 65535, got {port}")
    return port


def _to_count(value: object, _: type) -> int:
    count = to_int(value)
    if count < 1:
        raise InvalidValueError(f"must be a whole number from 1 up, got {count}")
    return count


def _to_datagram_size(value: object, _: type) -> int:
    size = to_int(value)
    if not MIN_UDP_MAX_SIZE <= size <= MAX_UDP_MAX_SIZE:
        raise InvalidValueError(
            f"must be a number of bytes from {MIN_UDP_MAX_SIZE} (what every "
            f"syslog receiver accepts) to {MAX_UDP_MAX_SIZE}, got {size}"
        )
    return size


def _to_offset(value: object, _: type) -> float:
    # DLS computes ``timedelta(days=offset)``, so any number of days works
    # there, 1.5 included: a DLS config that runs must load here too.
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        days = float(value)
    elif isinstance(value, str) and _DECIMAL.fullmatch(value.strip()):
        days = float(value.strip())
    else:
        raise InvalidValueError(f"expected a number of days, got {_show(value)}")
    # Written so that NaN fails it too.
    if not 0 <= days <= DEFAULT_OFFSET_DAYS:
        raise InvalidValueError(
            f"must be a number of days from 0 to 180 (Duo keeps 180 days "
            f"of logs), got {_show(value)}"
        )
    return days


def _to_positive_seconds(value: object, _: type) -> float:
    seconds = _to_number(value)
    if not seconds > 0:
        raise InvalidValueError(f"must be a number of seconds above 0, got {seconds:g}")
    return seconds


def _to_listen_address(value: object, _: type) -> str:
    text = _to_str(value, str).strip()
    if text:
        try:
            port = split_listen_address(text)[1]
        except ValueError as exc:
            raise InvalidValueError(str(exc)) from None
        if port == 0:
            msg = f"expected HOST:PORT (a port from 1 to 65535), got {text!r}"
            raise InvalidValueError(msg)
    return text


def _to_secret(value: object, _: type) -> Secret:
    # The value is never echoed: a wrong type is reported by type alone.
    if not isinstance(value, str):
        kind = (
            "a list"
            if isinstance(value, list)
            else "a mapping"
            if isinstance(value, dict)
            else "true or false"
            if isinstance(value, bool)
            else "a number"
        )
        raise InvalidValueError(f"expected text in quotes, got {kind}")
    if not value.strip():
        raise InvalidValueError("must not be empty")
    return Secret(value.strip())


E = TypeVar("E", bound=enum.Enum)


def _enum_hook(cls: type[E], *, upper: bool = False) -> Callable[[object, type], E]:
    # Matched by value when it is text, by name otherwise (syslog facilities).
    def spelling(member: E) -> str:
        value = member.value
        return (value if isinstance(value, str) else member.name).lower()

    by_name = {spelling(member).replace("-", "_"): member for member in cls}
    by_name |= {spelling(member).replace("_", "-"): member for member in cls}
    choices = ", ".join(spelling(member).replace("_", "-") for member in cls)
    if upper:  # as DLS's documentation writes them
        choices = choices.upper()

    def to_member(value: object, _: type) -> E:
        if isinstance(value, str) and value.strip().lower() in by_name:
            return by_name[value.strip().lower()]
        raise InvalidValueError(f"expected one of {choices}, got {_show(value)}")

    return to_member


def _endpoints_hook(value: object, _: type) -> tuple[Endpoint, ...]:
    # DLS's documentation shows both ``endpoints: 'telephony'`` and a list.
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items:
        raise InvalidValueError("expected a list of endpoint names")
    to_endpoint = _enum_hook(Endpoint)
    return tuple(dict.fromkeys(to_endpoint(item, Endpoint) for item in items))


def _str_tuple_hook(value: object, _: type) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise _WrongShapeError("expected a list")
    return tuple(_to_str(item, str) for item in value)


def _non_empty_tuple(
    converter: cattrs.Converter, item: type
) -> Callable[[object, type], tuple[Any, ...]]:
    # Let cattrs structure the items so their errors carry their index.
    structure_items = converter.get_structure_hook(tuple[item, ...])  # type: ignore[valid-type]

    def hook(value: object, cls: type) -> tuple[Any, ...]:
        if not isinstance(value, list):
            raise _WrongShapeError("expected a list")
        if not value:
            raise InvalidValueError("must list at least one entry")
        return structure_items(value, cls)  # type: ignore[no-any-return]

    return hook


# A server's own keys, then the keys of the protocols' settings classes: the
# flat mapping of DLS's file holds them all side by side.
_SERVER_FIELDS: Final = {
    a.name: a for a in attrs.fields(Server) if a.name != "transport"
}
_TRANSPORT_FIELDS: Final = {
    a.name: a
    for cls in (TlsSettings, TcpSettings, UdpSettings)
    for a in attrs.fields(cls)
}
_TLS_ONLY: Final = ("client_cert_filepath", "client_key_filepath", "tls_server_name")


def _wrong_protocol(name: str, value: object, protocol: Protocol | None) -> str | None:
    """Why the key *name* with *value* has no place on a *protocol* server.

    Only what DLS's users have been told is refused: a TLS-only file or name,
    a framing other than newline over UDP.  Other keys of another protocol
    (``udp_max_size`` on a TCP server, an empty ``cert_filepath`` as in DLS's
    template) are checked for their type and otherwise set aside.  A protocol
    that is missing or wrong counts as neither TCPSSL nor UDP.
    """
    blank = not (isinstance(value, str) and value.strip())
    if name in _TLS_ONLY and protocol is not Protocol.TCPSSL and not blank:
        return "applies to TCPSSL servers only"
    if name == "framing" and protocol is Protocol.UDP and value is not Framing.NEWLINE:
        return "framing applies to TCP and TCPSSL; over UDP each record is one datagram"
    return None


def _noted(exc: Exception, name: str, field: Any) -> Exception:  # noqa: ANN401
    # The note that ``_flatten`` reads the key of a mistake from.
    exc.add_note(AttributeValidationNote(f"Structuring {name}", name, field.type))
    return exc


def _server_hook(converter: cattrs.Converter) -> Callable[[object, type], Server]:
    """Structure DLS's flat server mapping into a Server and its transport.

    ``protocol`` decides which settings class the per-protocol keys go to;
    every key is still read with its own type, so that one pass reports every
    mistake of the mapping, each at its key, as the generated hooks do.
    """

    def read(
        value: dict[str, Any], fields: dict[str, Any], errors: list[Exception]
    ) -> dict[str, Any]:
        found = {}
        for name, field in fields.items():
            if name not in value:
                if field.default is attrs.NOTHING:
                    errors.append(_noted(KeyError(name), name, field))
                continue
            try:
                found[name] = converter.structure(value[name], field.type)
            except Exception as exc:  # noqa: BLE001 - every mistake is reported
                errors.append(_noted(exc, name, field))
        return found

    def hook(value: object, _: type) -> Server:
        if not isinstance(value, dict):
            # What the generated hook raises too: "expected a mapping".
            raise TypeError(value)
        errors: list[Exception] = []
        common = read(value, _SERVER_FIELDS, errors)
        settings = read(value, _TRANSPORT_FIELDS, errors)
        for name, setting in settings.items():
            why = _wrong_protocol(name, setting, common.get("protocol"))
            if why is not None:
                errors.append(
                    _noted(_WrongProtocolError(why), name, _TRANSPORT_FIELDS[name])
                )
        extra = set(value) - set(_SERVER_FIELDS) - set(_TRANSPORT_FIELDS)
        if extra:
            errors.append(ForbiddenExtraKeysError("", Server, extra))
        if errors:
            raise ClassValidationError("While structuring Server", errors, Server)
        cls = TRANSPORT_SETTINGS[common["protocol"]]
        own = {a.name for a in attrs.fields(cls)}
        transport = cls(**{k: v for k, v in settings.items() if k in own})
        return Server(**common, transport=transport)

    return hook


def make_converter() -> cattrs.Converter:
    """Build the strict converter that turns plain data into a ``Config``."""
    converter = cattrs.Converter(forbid_extra_keys=True, detailed_validation=True)
    converter.register_structure_hook(bool, _to_bool)
    converter.register_structure_hook(str, _to_str)
    converter.register_structure_hook(int, lambda v, _: to_int(v))
    converter.register_structure_hook(NonEmptyStr, _to_non_empty_str)
    converter.register_structure_hook(Port, _to_port)
    converter.register_structure_hook(OffsetDays, _to_offset)
    converter.register_structure_hook(PositiveSeconds, _to_positive_seconds)
    converter.register_structure_hook(DatagramSize, _to_datagram_size)
    converter.register_structure_hook(Count, _to_count)
    converter.register_structure_hook(ListenAddress, _to_listen_address)
    converter.register_structure_hook(Secret, _to_secret)
    _register_exact(converter, tuple[Endpoint, ...], _endpoints_hook)
    _register_exact(converter, tuple[str, ...], _str_tuple_hook)
    enums: list[tuple[type[enum.Enum], bool]] = [
        (Protocol, True),  # written in capitals, as DLS's documentation does
        (LogFormat, True),
        (SyslogHeader, False),
        (Facility, False),
        (Framing, False),
        (OversizePolicy, False),
        (MspApiHost, False),
        (LogLevel, False),
        (JsonStyle, False),
    ]
    for cls, upper in enums:
        converter.register_structure_hook(cls, _enum_hook(cls, upper=upper))
    converter.register_structure_hook(Server, _server_hook(converter))
    for item in (Server, EndpointServerMapping):
        _register_exact(
            converter,
            tuple[item, ...],  # type: ignore[valid-type]
            _non_empty_tuple(converter, item),
        )
    return converter


def _register_exact(
    converter: cattrs.Converter, target: object, hook: Callable[[Any, Any], Any]
) -> None:
    # Generic aliases are not classes, so they are matched by equality.
    converter.register_structure_hook_func(lambda t: t == target, hook)


_CONVERTER: Final = make_converter()


def _fields_of(cls: type) -> list[str]:
    # A server's mapping is flat: its keys are those of every protocol.
    if cls is Server:
        return list(SERVER_KEYS)
    return [a.name for a in attrs.fields(cls)]


def _class_at(path: KeyPath) -> type | None:
    """The model class that the mapping at *path* is structured into."""
    cls: Any = Config
    for part in path:
        if isinstance(part, int):
            continue
        field = attrs.fields_dict(cls).get(part) if attrs.has(cls) else None
        if field is None:
            return None
        cls = field.type
        # ``tuple[Server, ...]``: the mappings inside are Servers.
        args = [a for a in typing.get_args(cls) if a is not Ellipsis]
        if typing.get_origin(cls) is tuple and args:
            cls = args[0]
    return cls if attrs.has(cls) else None


# Keys that DLS's older documents and templates used, with what they became.
_RENAMED: Final = {
    "accounts": "account",
    "checkpoint_dir": "directory",
    "servers": "server",
}


def _unknown_key(path: KeyPath, key: str, choices: list[str]) -> Problem:
    expected = tuple(choices)
    renamed = _RENAMED.get(key)
    if renamed is not None and renamed in choices:
        return Problem(
            ProblemKind.RENAMED_KEY, (*path, key), suggestion=renamed, expected=expected
        )
    close = difflib.get_close_matches(key, choices, n=1, cutoff=0.6)
    return Problem(
        ProblemKind.UNKNOWN_KEY,
        (*path, key),
        suggestion=close[0] if close else None,
        expected=expected,
    )


def _flatten(exc: BaseException, path: KeyPath) -> Iterator[Problem]:
    """Turn a cattrs error tree into Problems with key paths."""
    if isinstance(exc, (ClassValidationError, IterableValidationError)):
        with_notes, without_notes = exc.group_exceptions()
        for sub, note in with_notes:
            if isinstance(note, AttributeValidationNote):
                yield from _flatten(sub, (*path, note.name))
            else:
                yield from _flatten(sub, (*path, note.index))
        for sub in without_notes:
            yield from _flatten(sub, path)
    elif isinstance(exc, ForbiddenExtraKeysError):
        cls = _class_at(path)
        choices = _fields_of(cls) if cls else []
        for key in sorted(exc.extra_fields):
            yield _unknown_key(path, key, choices)
    elif isinstance(exc, KeyError) and path == ("version",):
        yield Problem(
            ProblemKind.MISSING,
            path,
            detail="a file without it is DLS's pre-1.0.0 layout; add version: "
            "'1.0.0' once the file uses dls_settings, servers and account",
        )
    elif isinstance(exc, KeyError):
        yield Problem(ProblemKind.MISSING, path)
    elif isinstance(exc, InvalidValueError):
        yield Problem(exc.kind, path, detail=str(exc))
    elif isinstance(exc, (TypeError, ValueError, AttributeError)):
        # A mapping where a list was expected, a list where a mapping was...
        yield Problem(ProblemKind.SHAPE, path, detail=_shape_message(path))
    else:  # pragma: no cover - anything else is a bug, not a config mistake
        raise exc


def _shape_message(path: KeyPath) -> str:
    cls = _class_at(path)
    if cls is not None:
        return "expected a mapping of keys to values"
    return "this value has the wrong shape"


def structure(data: object) -> tuple[Config | None, list[Problem]]:
    """Structure plain *data* into a Config, or list every problem found."""
    if not isinstance(data, dict):
        return None, [
            Problem(
                ProblemKind.SHAPE,
                (),
                detail="the file must be a mapping of keys to values",
            )
        ]
    try:
        return _CONVERTER.structure(data, Config), []
    except ClassValidationError as exc:
        return None, list(_flatten(exc, ()))
