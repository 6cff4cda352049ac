"""The configuration: duo_log_sync's config file, read unchanged, as frozen values.

Theory of operation
-------------------
A config file goes through three stages, and every stage reports *all* of its
problems, each with the key path and line it concerns, instead of stopping at
the first one:

1. ``parse_yaml`` turns bytes into a YAML tree.  ruamel.yaml is used in its
   round-trip mode because that mode remembers the line and column of every key
   and item; the tree is kept only to point at lines.
2. ``structure`` turns the plain data into the frozen attrs classes below with a
   strict cattrs converter: unknown keys (typos) are refused, scalars are not
   coerced silently (``port: 'abc'`` or ``is_msp: maybe`` are errors, not
   ``True``), ranges are checked.
3. ``cross_check`` looks at relations the types cannot express: a mapping that
   names an unknown server, duplicate server ids, a TLS server without a CA,
   files that do not exist, where the skey comes from.  It walks the raw data
   defensively, so that it still reports its findings when stage 2 failed.

This module does no I/O of its own except through the few injected callables of
``load_config`` (reading the file, looking at other files, the environment), so
tests can run it on strings.

YAML 1.2 traps: DLS used PyYAML (YAML 1.1), where ``enabled: no`` is false;
ruamel.yaml reads YAML 1.2, where it is the string ``'no'``.  The converter
accepts the usual spellings of booleans in strings (``'False'``, ``no``, ``On``)
and numbers in strings (``port: '9000'``) because their meaning is obvious, and
refuses anything else with a message.  No value is ever guessed.
"""

from __future__ import annotations

import difflib
import enum
import os
import re
import typing
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, Final, NewType, TypeVar

import attrs
import cattrs
from cattrs.errors import (
    AttributeValidationNote,
    ClassValidationError,
    ForbiddenExtraKeysError,
    IterableValidationError,
)
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from trio_dls.endpoints import Endpoint
from trio_dls.formats import Facility, LogFormat, SyslogHeader
from trio_dls.framing import (
    DEFAULT_OVERSIZE_POLICY,
    DEFAULT_UDP_MAX_SIZE,
    MIN_UDP_MAX_SIZE,
    Framing,
    OversizePolicy,
)

# --------------------------------------------------------------------------
# The model
# --------------------------------------------------------------------------


class Protocol(enum.StrEnum):
    """How records travel to a server (DLS's names)."""

    TCP = "TCP"
    TCPSSL = "TCPSSL"
    UDP = "UDP"


class Secret:
    """A value that must never be printed: repr and str show a mask."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        """Wrap *value*."""
        self._value = value

    def reveal(self) -> str:
        """Return the secret itself, for the one place that signs requests."""
        return self._value

    def __repr__(self) -> str:
        """Show a mask, never the value."""
        return "Secret('********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        """Compare by value, so configs with the same secret are equal."""
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        """Hash by value, like the str it wraps."""
        return hash(self._value)


# Scalars with a meaning beyond their Python type; each has a strict hook.
NonEmptyStr = NewType("NonEmptyStr", str)
Port = NewType("Port", int)
# Days as DLS reads them (``timedelta(days=offset)``): fractions are allowed.
OffsetDays = NewType("OffsetDays", float)
PositiveSeconds = NewType("PositiveSeconds", float)
DatagramSize = NewType("DatagramSize", int)
# The largest UDP payload over IPv4.
MAX_UDP_MAX_SIZE: Final = 65507

DEFAULT_LOG_FILEPATH: Final = "/tmp/duologsync.log"  # noqa: S108 - DLS's default
DEFAULT_OFFSET_DAYS: Final = 180
DEFAULT_POLL_SECONDS: Final = 120.0
# Below this the poll interval goes against Duo's published guidance ("no more
# than once per minute"); allowed, since the fetchers adapt to 429s, but said.
GUIDANCE_POLL_SECONDS: Final = 60.0
STATE_DIRECTORY_NAME: Final = "trio-dls"
# ``cert_filepath: system`` trusts the operating system's CAs instead of a file.
SYSTEM_CAS: Final = "system"


@attrs.frozen
class Api:
    """``dls_settings.api``: how far back to start, how often to poll."""

    offset: OffsetDays = OffsetDays(float(DEFAULT_OFFSET_DAYS))
    timeout: PositiveSeconds = PositiveSeconds(DEFAULT_POLL_SECONDS)


@attrs.frozen
class Checkpointing:
    """``dls_settings.checkpointing``: where cursors are kept.

    An empty ``directory`` stands for the default state directory; the loader
    replaces it with the resolved path (see ``default_state_directory``).
    """

    enabled: bool = True
    directory: str = ""


@attrs.frozen
class Proxy:
    """``dls_settings.proxy``: an HTTP CONNECT proxy for the Duo API.

    DLS's defaults, ``proxy_server: ''`` and ``proxy_port: 0``, mean no proxy.
    """

    proxy_server: str = ""
    proxy_port: int = 0

    @property
    def enabled(self) -> bool:
        """Whether requests to Duo go through the proxy."""
        return bool(self.proxy_server)


@attrs.frozen
class DlsSettings:
    """``dls_settings``: everything about the daemon itself."""

    log_filepath: str = DEFAULT_LOG_FILEPATH
    log_format: LogFormat = LogFormat.JSON
    api: Api = Api()
    checkpointing: Checkpointing = Checkpointing()
    proxy: Proxy = Proxy()


@attrs.frozen
class Server:
    """One entry of ``servers``: a SIEM that receives records."""

    id: NonEmptyStr
    hostname: NonEmptyStr
    port: Port
    protocol: Protocol
    # The CA bundle that verifies a TCPSSL server (DLS's meaning); empty when
    # not needed, as in DLS's own template.
    cert_filepath: str = ""
    # Extensions (see sample_config.yml).
    framing: Framing = Framing.NEWLINE
    syslog_header: SyslogHeader = SyslogHeader.NONE
    syslog_facility: Facility = Facility.USER
    client_cert_filepath: str = ""
    client_key_filepath: str = ""
    tls_server_name: str = ""
    tls_verify_hostname: bool = True
    udp_max_size: DatagramSize = DatagramSize(DEFAULT_UDP_MAX_SIZE)
    udp_oversize: OversizePolicy = DEFAULT_OVERSIZE_POLICY


@attrs.frozen
class EndpointServerMapping:
    """One entry of ``account.endpoint_server_mappings``."""

    endpoints: tuple[Endpoint, ...]
    server: NonEmptyStr


@attrs.frozen
class Account:
    """``account``: the Duo credentials and what to fetch with them.

    Exactly one of ``skey``, ``skey_file`` and ``skey_env`` is given in the
    file; the loader resolves the other two into ``skey``.
    """

    ikey: NonEmptyStr
    hostname: NonEmptyStr
    endpoint_server_mappings: tuple[EndpointServerMapping, ...]
    skey: Secret | None = None
    skey_file: str | None = None
    skey_env: str | None = None
    is_msp: bool = False
    block_list: tuple[str, ...] = ()
    ca_certs: str | None = None

    @property
    def api_host(self) -> str:
        """The API hostname without any ``:port`` (what requests are signed with)."""
        return split_host_port(self.hostname)[0]

    @property
    def api_port(self) -> int | None:
        """The port given with the hostname, or None for HTTPS's 443."""
        return split_host_port(self.hostname)[1]

    def servers_for(self, endpoint: Endpoint) -> tuple[str, ...]:
        """Return the ids of the servers *endpoint* is mapped to, in file order."""
        ids: dict[str, None] = {}
        for mapping in self.endpoint_server_mappings:
            if endpoint in mapping.endpoints:
                ids[mapping.server] = None
        return tuple(ids)

    @property
    def endpoints(self) -> tuple[Endpoint, ...]:
        """Every endpoint mapped to at least one server, in a stable order."""
        return tuple(e for e in Endpoint if self.servers_for(e))


@attrs.frozen
class Config:
    """A whole config file."""

    version: NonEmptyStr
    servers: tuple[Server, ...]
    account: Account
    dls_settings: DlsSettings = DlsSettings()

    def server(self, server_id: str) -> Server:
        """Return the server called *server_id*."""
        for server in self.servers:
            if server.id == server_id:
                return server
        raise KeyError(server_id)


# --------------------------------------------------------------------------
# Problems
# --------------------------------------------------------------------------

KeyPath = tuple[str | int, ...]


@attrs.frozen
class Problem:
    """One mistake in a config file, and where it is."""

    path: KeyPath
    message: str
    line: int | None = None  # 1-based
    column: int | None = None  # 1-based

    def render(self, filename: str) -> str:
        """Format as ``file:line: key.path: message`` (one line)."""
        where = filename
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        text = f"{where}: {format_path(self.path)}: " if self.path else f"{where}: "
        return text + self.message.replace("\n", " ")


class ConfigError(Exception):
    """A config file that cannot be used; ``problems`` lists every mistake."""

    def __init__(self, filename: str, problems: list[Problem]) -> None:
        """Collect *problems* found in *filename*."""
        self.filename = filename
        self.problems = sorted(
            problems, key=lambda p: (p.line if p.line is not None else 0, p.path)
        )
        super().__init__(self.render())

    def render(self) -> str:
        """All problems, one per line."""
        return "\n".join(p.render(self.filename) for p in self.problems)


def format_path(path: KeyPath) -> str:
    """Render ``("servers", 0, "port")`` as ``servers[0].port``."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else f".{part}" if text else part
    return text


class _InvalidValueError(ValueError):
    """A scalar hook's complaint; its text becomes a Problem's message."""


# --------------------------------------------------------------------------
# Stage 1: YAML
# --------------------------------------------------------------------------


def parse_yaml(text: str) -> Any:  # noqa: ANN401 - a YAML document is anything
    """Parse *text* as YAML 1.2, keeping line numbers.

    Raise ``ConfigError`` with the line and column of a syntax error.
    """
    yaml = YAML(typ="rt")
    try:
        return yaml.load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        what = " ".join(filter(None, [exc.context, exc.problem]))
        problem = Problem(
            (),
            f"invalid YAML: {what}",
            line=mark.line + 1 if mark else None,
            column=mark.column + 1 if mark else None,
        )
        raise ConfigError("", [problem]) from None
    except YAMLError as exc:
        raise ConfigError("", [Problem((), f"invalid YAML: {exc}")]) from None


def _plain(node: Any) -> Any:  # noqa: ANN401 - mirrors YAML's any
    """Copy a ruamel tree into plain dicts, lists and scalars.

    Keys whose value is null are left out, so that ``block_list:`` with
    nothing after it takes the default, and a required key with no value is
    reported as missing (see ``_describe`` for the wording).
    """
    if isinstance(node, Mapping):
        return {str(k): _plain(v) for k, v in node.items() if v is not None}
    if isinstance(node, list):
        return [_plain(v) for v in node]
    if isinstance(node, bool):
        return bool(node)
    if isinstance(node, int):
        return int(node)
    if isinstance(node, float):
        return float(node)
    if isinstance(node, str):
        return str(node)
    return node


def _locate(tree: Any, path: KeyPath) -> int:  # noqa: ANN401
    """Return the 1-based line of *path* in *tree*, or of its nearest parent."""
    line = 1
    node = tree
    for part in path:
        if isinstance(node, CommentedMap) and isinstance(part, str) and part in node:
            row, _ = node.lc.key(part)
        elif (
            isinstance(node, CommentedSeq)
            and isinstance(part, int)
            and 0 <= part < len(node)
        ):
            row, _ = node.lc.item(part)
        else:
            break
        line = row + 1
        node = node[part]
    return line


# --------------------------------------------------------------------------
# Stage 2: structure
# --------------------------------------------------------------------------

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
    raise _InvalidValueError(f"expected true or false, got {_show(value)}")


def _to_int(value: object) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and _INTEGER.fullmatch(value.strip()):
        return int(value)
    raise _InvalidValueError(f"expected a whole number, got {_show(value)}")


def _to_number(value: object) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            pass
    raise _InvalidValueError(f"expected a number, got {_show(value)}")


def _to_str(value: object, _: type) -> str:
    if isinstance(value, str):
        return value
    raise _InvalidValueError(
        f"expected text, got {_show(value)}; put it in quotes: '{value}'"
    )


def _to_non_empty_str(value: object, _: type) -> str:
    text = _to_str(value, str)
    if not text.strip():
        raise _InvalidValueError("must not be empty")
    return text


def _to_port(value: object, _: type) -> int:
    port = _to_int(value)
    if not 1 <= port <= 65535:  # noqa: PLR2004 - the TCP/UDP port range
        raise _InvalidValueError(f"must be a port from 1 to 65535, got {port}")
    return port


def _to_datagram_size(value: object, _: type) -> int:
    size = _to_int(value)
    if not MIN_UDP_MAX_SIZE <= size <= MAX_UDP_MAX_SIZE:
        raise _InvalidValueError(
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
        raise _InvalidValueError(f"expected a number of days, got {_show(value)}")
    # Written so that NaN fails it too.
    if not 0 <= days <= DEFAULT_OFFSET_DAYS:
        raise _InvalidValueError(
            f"must be a number of days from 0 to 180 (Duo keeps 180 days "
            f"of logs), got {_show(value)}"
        )
    return days


def _to_positive_seconds(value: object, _: type) -> float:
    seconds = _to_number(value)
    if not seconds > 0:
        raise _InvalidValueError(
            f"must be a number of seconds above 0, got {seconds:g}"
        )
    return seconds


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
        raise _InvalidValueError(f"expected text in quotes, got {kind}")
    if not value.strip():
        raise _InvalidValueError("must not be empty")
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
        raise _InvalidValueError(f"expected one of {choices}, got {_show(value)}")

    return to_member


def _endpoints_hook(value: object, _: type) -> tuple[Endpoint, ...]:
    # DLS's documentation shows both ``endpoints: 'telephony'`` and a list.
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items:
        raise _InvalidValueError("expected a list of endpoint names")
    to_endpoint = _enum_hook(Endpoint)
    return tuple(dict.fromkeys(to_endpoint(item, Endpoint) for item in items))


def _str_tuple_hook(value: object, _: type) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise _InvalidValueError("expected a list")
    return tuple(_to_str(item, str) for item in value)


def _non_empty_tuple(
    converter: cattrs.Converter, item: type
) -> Callable[[object, type], tuple[Any, ...]]:
    # Let cattrs structure the items so their errors carry their index.
    structure_items = converter.get_structure_hook(tuple[item, ...])  # type: ignore[valid-type]

    def hook(value: object, cls: type) -> tuple[Any, ...]:
        if not isinstance(value, list):
            raise _InvalidValueError("expected a list")
        if not value:
            raise _InvalidValueError("must list at least one entry")
        return structure_items(value, cls)  # type: ignore[no-any-return]

    return hook


def make_converter() -> cattrs.Converter:
    """Build the strict converter that turns plain data into a ``Config``."""
    converter = cattrs.Converter(forbid_extra_keys=True, detailed_validation=True)
    converter.register_structure_hook(bool, _to_bool)
    converter.register_structure_hook(str, _to_str)
    converter.register_structure_hook(int, lambda v, _: _to_int(v))
    converter.register_structure_hook(NonEmptyStr, _to_non_empty_str)
    converter.register_structure_hook(Port, _to_port)
    converter.register_structure_hook(OffsetDays, _to_offset)
    converter.register_structure_hook(PositiveSeconds, _to_positive_seconds)
    converter.register_structure_hook(DatagramSize, _to_datagram_size)
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
    ]
    for cls, upper in enums:
        converter.register_structure_hook(cls, _enum_hook(cls, upper=upper))
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


for _cls in (
    Api,
    Checkpointing,
    Proxy,
    DlsSettings,
    Server,
    EndpointServerMapping,
    Account,
    Config,
):
    attrs.resolve_types(_cls)
_CONVERTER: Final = make_converter()


def _fields_of(cls: type) -> list[str]:
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


def _unknown_key_message(key: str, choices: list[str]) -> str:
    if key in _RENAMED and _RENAMED[key] in choices:
        return f"unknown key; this file format calls it '{_RENAMED[key]}'"
    close = _suggestion(key, choices)
    if close:
        return f"unknown key (did you mean '{close}'?)"
    return f"unknown key; expected one of: {', '.join(choices)}"


def _suggestion(key: str, choices: list[str]) -> str | None:
    if key in _RENAMED and _RENAMED[key] in choices:
        return _RENAMED[key]
    close = difflib.get_close_matches(key, choices, n=1, cutoff=0.6)
    return close[0] if close else None


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
            yield Problem((*path, key), _unknown_key_message(key, choices))
    elif isinstance(exc, KeyError) and path == ("version",):
        yield Problem(
            path,
            "required key is missing (a file without it is DLS's pre-1.0.0 "
            "layout; add version: '1.0.0' once the file uses dls_settings, "
            "servers and account)",
        )
    elif isinstance(exc, KeyError):
        yield Problem(path, "required key is missing")
    elif isinstance(exc, _InvalidValueError):
        yield Problem(path, str(exc))
    elif isinstance(exc, (TypeError, ValueError, AttributeError)):
        # A mapping where a list was expected, a list where a mapping was...
        yield Problem(path, _shape_message(path))
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
        return None, [Problem((), "the file must be a mapping of keys to values")]
    try:
        return _CONVERTER.structure(data, Config), []
    except ClassValidationError as exc:
        return None, list(_flatten(exc, ()))


# --------------------------------------------------------------------------
# Stage 3: relations between values, files and the environment
# --------------------------------------------------------------------------


@attrs.frozen
class Environment:
    """What the loader may look at outside the file (injected for tests)."""

    base_directory: Path
    environ: Mapping[str, str]
    euid: int

    @classmethod
    def of_process(cls, config_path: Path) -> Environment:
        """The real environment, relative paths anchored at the config file."""
        return cls(
            base_directory=config_path.resolve().parent,
            environ=os.environ,
            euid=os.geteuid(),
        )

    def path(self, value: str) -> Path:
        """Resolve *value* (``~`` and relative to the config file's directory)."""
        return self.base_directory / Path(value).expanduser()


def split_host_port(hostname: str) -> tuple[str, int | None]:
    """Split ``api-x.duosecurity.com:8443`` into host and port (None if absent)."""
    host, sep, port = hostname.strip().rpartition(":")
    if sep and host and port.isdigit():
        return host, int(port)
    return hostname.strip(), None


def _get(data: object, *path: str | int) -> object:
    node = data
    for part in path:
        if isinstance(part, str) and isinstance(node, dict):
            node = node.get(part)
        elif isinstance(part, int) and isinstance(node, list) and part < len(node):
            node = node[part]
        else:
            return None
    return node


def _readable_file(env: Environment, value: str) -> str | None:
    """Return why *value* is not a readable file, or None if it is."""
    path = env.path(value)
    if not path.exists():
        return f"no such file: {path}"
    if not path.is_file():
        return f"not a file: {path}"
    if not os.access(path, os.R_OK):
        return f"cannot read {path}: permission denied"
    return None


def _check_servers(data: object, env: Environment) -> Iterator[Problem]:
    servers = _get(data, "servers")
    if not isinstance(servers, list):
        return
    seen: set[str] = set()
    for index, server in enumerate(servers):
        if not isinstance(server, dict):
            continue
        server_id = server.get("id")
        if isinstance(server_id, str) and server_id.strip():
            if server_id in seen:
                yield Problem(
                    ("servers", index, "id"),
                    f"duplicate server id {server_id!r}; ids must be unique",
                )
            seen.add(server_id)
        protocol = server.get("protocol")
        cert = server.get("cert_filepath")
        is_tls = isinstance(protocol, str) and protocol.strip().upper() == "TCPSSL"
        if is_tls and not (isinstance(cert, str) and cert.strip()):
            yield Problem(
                ("servers", index, "cert_filepath"),
                "a TCPSSL server needs cert_filepath: the CA bundle (PEM) that "
                "signed the server's certificate, or 'system' to trust the "
                "operating system's CAs",
            )
        elif is_tls and isinstance(cert, str) and cert.strip() != SYSTEM_CAS:
            why = _readable_file(env, cert.strip())
            if why:
                yield Problem(("servers", index, "cert_filepath"), why)
        yield from _check_server_extensions(index, server, env, is_tls=is_tls)


def _check_server_extensions(
    index: int, server: dict[str, object], env: Environment, *, is_tls: bool
) -> Iterator[Problem]:
    protocol = server.get("protocol")
    is_udp = isinstance(protocol, str) and protocol.strip().upper() == "UDP"
    framing = server.get("framing")
    if is_udp and isinstance(framing, str) and framing.strip().lower() != "newline":
        yield Problem(
            ("servers", index, "framing"),
            "framing applies to TCP and TCPSSL; over UDP each record is one datagram",
        )
    tls_only = ("client_cert_filepath", "client_key_filepath", "tls_server_name")
    for name in tls_only:
        value = server.get(name)
        if not is_tls and isinstance(value, str) and value.strip():
            yield Problem(("servers", index, name), "applies to TCPSSL servers only")
    if not is_tls:
        return
    cert = server.get("client_cert_filepath")
    key = server.get("client_key_filepath")
    has_cert = isinstance(cert, str) and bool(cert.strip())
    if isinstance(key, str) and key.strip() and not has_cert:
        yield Problem(
            ("servers", index, "client_key_filepath"),
            "a client key needs client_cert_filepath too",
        )
    for name, value in (("client_cert_filepath", cert), ("client_key_filepath", key)):
        if isinstance(value, str) and value.strip():
            why = _readable_file(env, value.strip())
            if why:
                yield Problem(("servers", index, name), why)


def _check_mappings(data: object) -> Iterator[Problem]:
    servers = _get(data, "servers")
    if not isinstance(servers, list) or not servers:
        return  # stage 2 reports it; every reference would be noise
    ids = {
        s["id"]
        for s in (servers if isinstance(servers, list) else [])
        if isinstance(s, dict) and isinstance(s.get("id"), str)
    }
    mappings = _get(data, "account", "endpoint_server_mappings")
    if not isinstance(mappings, list):
        return
    for index, mapping in enumerate(mappings):
        server = _get(mapping, "server")
        if isinstance(server, str) and server.strip() and server not in ids:
            known = ", ".join(repr(i) for i in sorted(ids)) or "none"
            yield Problem(
                ("account", "endpoint_server_mappings", index, "server"),
                f"no server has the id {server!r} (servers defined: {known})",
            )


def _check_account(data: object, env: Environment) -> Iterator[Problem]:
    account = _get(data, "account")
    if not isinstance(account, dict):
        return
    given = [k for k in ("skey", "skey_file", "skey_env") if k in account]
    if not given:
        yield Problem(
            ("account",),
            "required key is missing: skey (or skey_file, or skey_env)",
        )
    elif len(given) > 1:
        yield Problem(
            ("account", given[1]),
            f"give only one of skey, skey_file and skey_env (found {', '.join(given)})",
        )
    elif given == ["skey_file"] and isinstance(account["skey_file"], str):
        why = _readable_file(env, account["skey_file"])
        if why:
            yield Problem(("account", "skey_file"), why)
    elif given == ["skey_env"] and isinstance(account["skey_env"], str):
        name = account["skey_env"]
        if not env.environ.get(name, "").strip():
            yield Problem(
                ("account", "skey_env"),
                f"the environment variable {name} is not set or empty",
            )
    ca_certs = account.get("ca_certs")
    if isinstance(ca_certs, str) and ca_certs.strip():
        why = _readable_file(env, ca_certs.strip())
        if why:
            yield Problem(("account", "ca_certs"), why)
    hostname = account.get("hostname")
    if isinstance(hostname, str) and ":" in hostname:
        host, port = split_host_port(hostname)
        if port is None or not 1 <= port <= 65535 or not host:  # noqa: PLR2004
            yield Problem(
                ("account", "hostname"),
                f"expected host or host:port (port 1 to 65535), got {hostname!r}",
            )


def _check_proxy(data: object) -> Iterator[Problem]:
    server = _get(data, "dls_settings", "proxy", "proxy_server")
    port = _get(data, "dls_settings", "proxy", "proxy_port")
    has_server = isinstance(server, str) and bool(server.strip())
    try:
        has_port = port is not None and _to_int(port) != 0
    except _InvalidValueError:
        return  # reported by stage 2
    if has_server and not has_port:
        yield Problem(
            ("dls_settings", "proxy", "proxy_port"),
            "proxy_server is set, so proxy_port is required (1 to 65535)",
        )
    elif has_port and not has_server:
        yield Problem(
            ("dls_settings", "proxy", "proxy_server"),
            "proxy_port is set, so proxy_server is required",
        )
    elif has_port and not 1 <= _to_int(port) <= 65535:  # noqa: PLR2004
        yield Problem(
            ("dls_settings", "proxy", "proxy_port"),
            f"must be a port from 1 to 65535, got {port}",
        )


def _check_directories(data: object, env: Environment) -> Iterator[Problem]:
    directory = _get(data, "dls_settings", "checkpointing", "directory")
    if isinstance(directory, str) and directory.strip():
        path = env.path(directory.strip())
        if path.exists() and not path.is_dir():
            yield Problem(
                ("dls_settings", "checkpointing", "directory"),
                f"not a directory: {path}",
            )


def cross_check(data: object, env: Environment) -> list[Problem]:
    """Check what types cannot: references, duplicates, files, environment."""
    return [
        *_check_servers(data, env),
        *_check_mappings(data),
        *_check_account(data, env),
        *_check_proxy(data),
        *_check_directories(data, env),
    ]


# --------------------------------------------------------------------------
# Putting it together
# --------------------------------------------------------------------------


def default_state_directory(environ: Mapping[str, str], euid: int) -> Path:
    """Where cursors live when the config does not say.

    Not ``/tmp`` as in DLS: it is emptied at reboot, and a lost cursor means
    replaying up to 180 days of logs into the SIEM.  In order:
    ``$STATE_DIRECTORY`` (set by systemd's ``StateDirectory=``), then
    ``/var/lib/trio-dls`` for root, then ``$XDG_STATE_HOME/trio-dls`` (by
    default ``~/.local/state/trio-dls``).
    """
    if environ.get("STATE_DIRECTORY"):
        return Path(environ["STATE_DIRECTORY"].split(":")[0])
    if euid == 0:
        return Path("/var/lib") / STATE_DIRECTORY_NAME
    xdg = environ.get("XDG_STATE_HOME") or str(
        Path(environ.get("HOME", "~")).expanduser() / ".local" / "state"
    )
    return Path(xdg) / STATE_DIRECTORY_NAME


def _resolve(config: Config, env: Environment) -> Config:
    """Fill in what the file leaves to the environment: paths, the skey."""
    account = config.account
    if account.skey_file is not None:
        text = env.path(account.skey_file).read_text(encoding="utf-8")
        account = attrs.evolve(account, skey=Secret(text.strip()))
    elif account.skey_env is not None:
        # Stripped like an inline or file skey: a Kubernetes secret or a
        # shell's $'...' often ends in a newline, and Duo answers it with 401.
        skey = env.environ[account.skey_env].strip()
        account = attrs.evolve(account, skey=Secret(skey))
    if account.ca_certs:
        account = attrs.evolve(account, ca_certs=str(env.path(account.ca_certs)))

    servers = tuple(_resolve_server(server, env) for server in config.servers)

    settings = config.dls_settings
    checkpointing = settings.checkpointing
    directory = (
        env.path(checkpointing.directory.strip())
        if checkpointing.directory.strip()
        else default_state_directory(env.environ, env.euid)
    )
    settings = attrs.evolve(
        settings,
        checkpointing=attrs.evolve(checkpointing, directory=str(directory)),
    )
    return attrs.evolve(config, account=account, servers=servers, dls_settings=settings)


def _resolve_server(server: Server, env: Environment) -> Server:
    if server.protocol is not Protocol.TCPSSL:
        return server

    def resolved(value: str) -> str:
        return str(env.path(value)) if value.strip() else ""

    return attrs.evolve(
        server,
        cert_filepath=server.cert_filepath
        if server.cert_filepath == SYSTEM_CAS
        else resolved(server.cert_filepath),
        client_cert_filepath=resolved(server.client_cert_filepath),
        client_key_filepath=resolved(server.client_key_filepath),
    )


def warnings_for(config: Config) -> list[str]:
    """Things that work but deserve a word at start-up."""
    found = []
    if config.dls_settings.api.timeout < GUIDANCE_POLL_SECONDS:
        found.append(
            f"dls_settings.api.timeout is {config.dls_settings.api.timeout:g} s: "
            "Duo asks for no more than one poll a minute per endpoint; trio-dls "
            "backs off when Duo answers 429"
        )
    if not config.dls_settings.checkpointing.enabled:
        found.append(
            "checkpointing is disabled: every start replays "
            f"{config.dls_settings.api.offset:g} days of logs"
        )
    return found


def load_config_text(text: str, filename: str, env: Environment) -> Config:
    """Load a config from *text*; raise ``ConfigError`` listing every mistake."""
    try:
        tree = parse_yaml(text)
    except ConfigError as exc:
        raise ConfigError(filename, exc.problems) from None
    if tree is None:
        raise ConfigError(filename, [Problem((), "the file is empty")])
    data = _plain(tree)
    config, problems = structure(data)
    problems += cross_check(data, env)
    if problems or config is None:
        located = []
        for problem in problems:
            line = _locate(tree, problem.path)
            message = problem.message
            if message == "required key is missing" and _present_but_null(
                tree, problem.path
            ):
                message = "required key has no value"
            # The skey is never echoed on purpose; this also catches it where
            # a user pasted it into the wrong key.
            for secret in _raw_secrets(data):
                message = message.replace(secret, "********")
            located.append(attrs.evolve(problem, message=message, line=line))
        raise ConfigError(filename, _dedupe(_drop_typo_echoes(located)))
    return _resolve(config, env)


def _drop_typo_echoes(problems: list[Problem]) -> list[Problem]:
    """Drop "missing" reports for keys that an unknown key is the typo of.

    ``hostnme: x`` makes ``hostname`` missing too; one line about the typo,
    with its suggestion, says it all.
    """
    echoes = set()
    for problem in problems:
        suggested = re.search(r"(?:did you mean|calls it) '([^']+)'", problem.message)
        if problem.message.startswith("unknown key") and suggested:
            echoes.add((*problem.path[:-1], suggested.group(1)))
    return [
        p
        for p in problems
        if not (p.path in echoes and p.message.startswith("required key"))
    ]


def _raw_secrets(data: object) -> list[str]:
    skey = _get(data, "account", "skey")
    return [skey.strip()] if isinstance(skey, str) and skey.strip() else []


def _present_but_null(tree: object, path: KeyPath) -> bool:
    node = tree
    for part in path[:-1]:
        try:
            node = node[part]  # type: ignore[index]
        except (KeyError, IndexError, TypeError):
            return False
    return isinstance(node, Mapping) and path[-1] in node and node[path[-1]] is None


def _dedupe(problems: list[Problem]) -> list[Problem]:
    # Stage 3 repeats some of stage 2's findings in other words (a missing
    # skey); keep one problem per key path.
    seen: set[KeyPath] = set()
    kept = []
    for problem in problems:
        if problem.path not in seen:
            kept.append(problem)
            seen.add(problem.path)
    return kept


def load_config(path: Path, env: Environment | None = None) -> Config:
    """Read and load the config file at *path*.

    Raise ``ConfigError`` for a missing, unreadable or invalid file.
    """
    name = str(path)
    if path.is_dir():
        raise ConfigError(name, [Problem((), "is a directory, not a config file")])
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(name, [Problem((), "no such file")]) from None
    except PermissionError:
        raise ConfigError(
            name, [Problem((), "cannot read: permission denied")]
        ) from None
    except OSError as exc:
        raise ConfigError(name, [Problem((), f"cannot read: {exc.strerror}")]) from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            name, [Problem((), f"not UTF-8 text (at byte offset {exc.start})")]
        ) from None
    return load_config_text(text, name, env or Environment.of_process(path))
