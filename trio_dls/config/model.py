"""The configuration model: duo_log_sync's config file as frozen attrs values.

This module owns the shape of a loaded config (``Config`` and the classes it is
made of), the scalar types that carry a meaning beyond their Python type
(``Port``, ``OffsetDays``...), the defaults DLS gives to keys left out, and the
``Secret`` that keeps the skey out of every repr.  It reads nothing and checks
nothing: turning plain data into these values, strictly, is ``convert``'s job;
filling in what the file leaves to the environment is ``environment``'s.
"""

from __future__ import annotations

import enum
from typing import Final, NewType

import attrs

from trio_dls.endpoints import Endpoint
from trio_dls.siem.formats import Facility, JsonStyle, LogFormat, SyslogHeader
from trio_dls.siem.framing import (
    DEFAULT_OVERSIZE_POLICY,
    DEFAULT_UDP_MAX_SIZE,
    Framing,
    OversizePolicy,
)


class Protocol(enum.StrEnum):
    """How records travel to a server (DLS's names)."""

    TCP = "TCP"
    TCPSSL = "TCPSSL"
    UDP = "UDP"


class MspApiHost(enum.StrEnum):
    """Which API host an MSP child's calls go to (``account.msp_api_host``)."""

    # The parent's host, with ``account_id``: DLS's only route.  Enough while
    # every child lives in the parent's Duo deployment.
    PARENT = "parent"
    # The child's own ``api_hostname`` from the account list, still with
    # ``account_id``, as duo_client's ``AccountAdmin`` does: the parent's host
    # cannot serve a child in another deployment.
    CHILD = "child"


class LogLevel(enum.StrEnum):
    """``dls_settings.log_level`` (an extension): the least severe line written.

    ``--log-level`` on the command line overrides it; unlike the flag, it is
    read again on SIGHUP.
    """

    DEBUG = "debug"
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"


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


class SecretNotLoadedError(RuntimeError):
    """A secret the loader was told not to read was asked for."""


class UnloadedSecret(Secret):
    """The skey of a config loaded without secrets (``secrets=False``).

    It stands where the skey would be, so the config is whole, but it holds
    nothing: ``reveal`` raises, so it can never sign a request, and it prints
    as a mask like any secret.  Only commands that use no secret (status)
    load a config this way.
    """

    __slots__ = ()

    def __init__(self) -> None:
        """Hold nothing."""
        super().__init__("")

    def reveal(self) -> str:
        """Refuse: this secret was never read."""
        msg = "the skey was not loaded (the config was loaded without secrets)"
        raise SecretNotLoadedError(msg)

    def __repr__(self) -> str:
        """Say it was not loaded; nothing else is known."""
        return "Secret(<not loaded>)"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        """Equal only to another unloaded secret, never to a real one."""
        return isinstance(other, UnloadedSecret)

    def __hash__(self) -> int:
        """One hash for every unloaded secret."""
        return hash(UnloadedSecret)


# Scalars with a meaning beyond their Python type; each has a strict hook.
NonEmptyStr = NewType("NonEmptyStr", str)
Port = NewType("Port", int)
# Days as DLS reads them (``timedelta(days=offset)``): fractions are allowed.
OffsetDays = NewType("OffsetDays", float)
PositiveSeconds = NewType("PositiveSeconds", float)
# How often an MSP parent's child list is read again: a new child starts
# fetching within the hour, at one account-list call an hour.
DEFAULT_MSP_REFRESH_SECONDS: Final = 3600.0
DatagramSize = NewType("DatagramSize", int)
# ``HOST:PORT`` to listen on (``[::1]:9464`` for IPv6), or empty for off.
ListenAddress = NewType("ListenAddress", str)
# How many of something may be at once: a whole number from 1 up.
Count = NewType("Count", int)
# The largest UDP payload over IPv4.
MAX_UDP_MAX_SIZE: Final = 65507

DEFAULT_LOG_FILEPATH: Final = "/tmp/duologsync.log"  # noqa: S108 - DLS's default
DEFAULT_OFFSET_DAYS: Final = 180
DEFAULT_POLL_SECONDS: Final = 120.0
# The global bounds of the Duo side (extensions): calls in flight, and pages
# held from their request to their last sender's acknowledgement.  On a
# 2-core machine 8 calls cover Duo's latency many times over (the CPU, at some
# 60 us a record, is the limit long before), and 16 pages of up to 1,000
# records stay well under 100 MB however many accounts are fetched.
DEFAULT_MAX_CALLS_IN_FLIGHT: Final = 8
DEFAULT_MAX_PAGES_IN_MEMORY: Final = 16
# How long one Duo call may take (an extension): long enough for a 1000-record
# page from a slow Duo, short enough that a hung connection is noticed within
# a poll interval.
DEFAULT_REQUEST_TIMEOUT: Final = 60.0
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
    # Extensions: DLS runs one thread per endpoint and child, unbounded.
    max_calls_in_flight: Count = Count(DEFAULT_MAX_CALLS_IN_FLIGHT)
    max_pages_in_memory: Count = Count(DEFAULT_MAX_PAGES_IN_MEMORY)
    # An extension: DLS leaves duo_client's default, no timeout at all.
    request_timeout: PositiveSeconds = PositiveSeconds(DEFAULT_REQUEST_TIMEOUT)


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
    ``proxy_username`` and ``proxy_password`` (extensions) are sent as HTTP
    Basic ``Proxy-Authorization`` on the CONNECT; both or neither.
    """

    proxy_server: str = ""
    proxy_port: int = 0
    proxy_username: str = ""
    proxy_password: Secret | None = None

    @property
    def enabled(self) -> bool:
        """Whether requests to Duo go through the proxy."""
        return bool(self.proxy_server)


@attrs.frozen
class Metrics:
    """``dls_settings.metrics`` (an extension): the metrics and health endpoint.

    ``listen`` empty is off.  ``stall_after`` None stands for the default
    derived from the poll interval (``trio_dls.observe.metrics.stall_after``).
    """

    listen: ListenAddress = ListenAddress("")
    stall_after: PositiveSeconds | None = None


@attrs.frozen
class DlsSettings:
    """``dls_settings``: everything about the daemon itself."""

    # Empty stands for the platform's default (DLS's ``/tmp/duologsync.log``
    # on Linux); the loader replaces it (see ``default_log_file``).
    log_filepath: str = ""
    log_format: LogFormat = LogFormat.JSON
    # Extension: how JSON is written (trio_dls.siem.formats.JsonStyle).
    json_style: JsonStyle = JsonStyle.DLS
    log_level: LogLevel = LogLevel.INFO
    api: Api = Api()
    checkpointing: Checkpointing = Checkpointing()
    proxy: Proxy = Proxy()
    metrics: Metrics = Metrics()


@attrs.frozen
class TcpSettings:
    """What only a plain TCP server has: how records are delimited."""

    framing: Framing = Framing.NEWLINE


@attrs.frozen
class TlsSettings:
    """What only a TCPSSL server has: framing, and how the TLS session is set up."""

    # The CA bundle that verifies the server (DLS's meaning), or ``system``.
    # Empty only in a value built by hand: the cross-checks require it in a
    # file.
    cert_filepath: str = ""
    framing: Framing = Framing.NEWLINE
    client_cert_filepath: str = ""
    client_key_filepath: str = ""
    tls_server_name: str = ""
    tls_verify_hostname: bool = True


@attrs.frozen
class UdpSettings:
    """What only a UDP server has: the datagram size and what happens above it."""

    udp_max_size: DatagramSize = DatagramSize(DEFAULT_UDP_MAX_SIZE)
    udp_oversize: OversizePolicy = DEFAULT_OVERSIZE_POLICY


Transport = TcpSettings | TlsSettings | UdpSettings
# Which settings class each protocol's server is built with.
TRANSPORT_SETTINGS: Final[dict[Protocol, type[Transport]]] = {
    Protocol.TCP: TcpSettings,
    Protocol.TCPSSL: TlsSettings,
    Protocol.UDP: UdpSettings,
}


@attrs.frozen
class Server:
    """One entry of ``servers``: a SIEM that receives records.

    The file keeps DLS's flat keys (``cert_filepath`` beside ``hostname``);
    the converter sorts the keys of ``protocol`` into ``transport``, an
    instance of that protocol's settings class, so that a consumer matches on
    ``server.transport`` and never reads a key of another protocol.
    """

    id: NonEmptyStr
    hostname: NonEmptyStr
    port: Port
    protocol: Protocol
    transport: Transport = attrs.field()
    # Extensions (see sample_config.yml).
    syslog_header: SyslogHeader = SyslogHeader.NONE
    syslog_facility: Facility = Facility.USER
    # Extensions: None leaves the sender's defaults, 30 s to connect (TLS
    # handshake included) and 60 s without any byte acknowledged while writing.
    connect_timeout: PositiveSeconds | None = None
    write_timeout: PositiveSeconds | None = None

    @transport.validator
    def _of_the_protocol(self, _: attrs.Attribute[Transport], value: Transport) -> None:
        # ``protocol`` stays a field (logs and the sender table name it), so
        # the two must agree.
        expected = TRANSPORT_SETTINGS[self.protocol]
        if not isinstance(value, expected):
            msg = f"a {self.protocol} server takes {expected.__name__}"
            raise TypeError(msg)


# Every key a server mapping may have, in the order DLS's documentation and
# trio-dls's sample write them: what an unknown key is compared with, and the
# list shown when it resembles none.
SERVER_KEYS: Final = (
    "id",
    "hostname",
    "port",
    "protocol",
    "cert_filepath",
    "framing",
    "syslog_header",
    "syslog_facility",
    "client_cert_filepath",
    "client_key_filepath",
    "tls_server_name",
    "tls_verify_hostname",
    "udp_max_size",
    "udp_oversize",
    "connect_timeout",
    "write_timeout",
)


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
    # An extension: DLS lists an MSP parent's children once, at start-up.
    msp_refresh_interval: PositiveSeconds = PositiveSeconds(DEFAULT_MSP_REFRESH_SECONDS)
    # An extension: DLS always calls the parent's host.
    msp_api_host: MspApiHost = MspApiHost.PARENT

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


def split_host_port(hostname: str) -> tuple[str, int | None]:
    """Split ``api-x.duosecurity.com:8443`` into host and port (None if absent)."""
    host, sep, port = hostname.strip().rpartition(":")
    if sep and host and port.isdigit():
        return host, int(port)
    return hostname.strip(), None


def split_listen_address(text: str) -> tuple[str | None, int]:
    """Split ``HOST:PORT`` (``[::1]:9464``, ``:9464``) into host and port.

    An empty host (``:9464``) is None: every interface.  Raises ValueError,
    saying what is wrong, for anything else.
    """
    host, sep, port = text.strip().rpartition(":")
    # Port 0 (any free port) parses: tests listen there; the config refuses it.
    if not sep or not port.isdigit() or int(port) > 65535:  # noqa: PLR2004
        raise ValueError(f"expected HOST:PORT (a port from 1 to 65535), got {text!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        if not host:
            raise ValueError(f"expected an IPv6 address in the brackets, got {text!r}")
    elif ":" in host or "[" in host or "]" in host:
        raise ValueError(f"write an IPv6 address in brackets: [::1]:9464, got {text!r}")
    return host or None, int(port)


# The annotations above are strings (``from __future__ import annotations``);
# the converter and the unknown-key suggestions read them as types, so they are
# resolved once, here, where the names they mention are in scope.
for _cls in (
    Api,
    Checkpointing,
    Proxy,
    Metrics,
    DlsSettings,
    TcpSettings,
    TlsSettings,
    UdpSettings,
    Server,
    EndpointServerMapping,
    Account,
    Config,
):
    attrs.resolve_types(_cls)
