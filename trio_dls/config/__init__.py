"""The configuration: duo_log_sync's config file, read unchanged, as frozen values.

Theory of operation
-------------------
A config file goes through three stages, and every stage reports *all* of its
problems, each a ``Problem`` value (kind, key path, line, and for a typo the
key it probably meant) instead of stopping at the first one:

1. ``loading.parse_yaml`` turns text into a YAML tree.  ruamel.yaml is used in
   its round-trip mode because that mode remembers the line and column of
   every key and item; the tree is kept only to point at lines.
2. ``convert.structure`` turns the plain data into the frozen attrs classes of
   ``model`` with a strict cattrs converter: unknown keys (typos) are refused,
   scalars are not coerced silently (``port: 'abc'`` or ``is_msp: maybe`` are
   errors, not ``True``), ranges are checked.
3. ``checks.cross_check`` looks at relations the types cannot express: a
   mapping that names an unknown server, duplicate server ids, a TLS server
   without a CA, files that do not exist, where the skey comes from.  It walks
   the raw data defensively, so that it still reports its findings when stage
   2 failed.

``loading.load_config_text`` puts the stages together, places each problem on
its line and raises one ``ConfigError`` (``problems``) for all of them; on
success ``environment.resolve`` fills in what the file leaves to its
surroundings (relative paths, the skey from a file or a variable).

Nothing here does I/O of its own except through the few injected callables of
``load_config`` (reading the file, looking at other files, the environment),
so tests can run it on strings.

YAML 1.2 traps: DLS used PyYAML (YAML 1.1), where ``enabled: no`` is false;
ruamel.yaml reads YAML 1.2, where it is the string ``'no'``.  The converter
accepts the usual spellings of booleans in strings (``'False'``, ``no``, ``On``)
and numbers in strings (``port: '9000'``) because their meaning is obvious, and
refuses anything else with a message.  No value is ever guessed.
"""

from __future__ import annotations

from trio_dls.config.checks import cross_check
from trio_dls.config.convert import make_converter, structure
from trio_dls.config.environment import Environment, default_state_directory
from trio_dls.config.loading import (
    load_config,
    load_config_text,
    parse_yaml,
    warnings_for,
)
from trio_dls.config.model import (
    DEFAULT_LOG_FILEPATH,
    DEFAULT_OFFSET_DAYS,
    DEFAULT_POLL_SECONDS,
    GUIDANCE_POLL_SECONDS,
    MAX_UDP_MAX_SIZE,
    STATE_DIRECTORY_NAME,
    SYSTEM_CAS,
    TRANSPORT_SETTINGS,
    Account,
    Api,
    Checkpointing,
    Config,
    DatagramSize,
    DlsSettings,
    EndpointServerMapping,
    LogLevel,
    MspApiHost,
    NonEmptyStr,
    OffsetDays,
    Port,
    PositiveSeconds,
    Protocol,
    Proxy,
    Secret,
    SecretNotLoadedError,
    Server,
    TcpSettings,
    TlsSettings,
    Transport,
    UdpSettings,
    split_host_port,
)
from trio_dls.config.problems import (
    ConfigError,
    KeyPath,
    Problem,
    ProblemKind,
    format_path,
)

__all__ = [
    "DEFAULT_LOG_FILEPATH",
    "DEFAULT_OFFSET_DAYS",
    "DEFAULT_POLL_SECONDS",
    "GUIDANCE_POLL_SECONDS",
    "MAX_UDP_MAX_SIZE",
    "STATE_DIRECTORY_NAME",
    "SYSTEM_CAS",
    "TRANSPORT_SETTINGS",
    "Account",
    "Api",
    "Checkpointing",
    "Config",
    "ConfigError",
    "DatagramSize",
    "DlsSettings",
    "EndpointServerMapping",
    "Environment",
    "KeyPath",
    "LogLevel",
    "MspApiHost",
    "NonEmptyStr",
    "OffsetDays",
    "Port",
    "PositiveSeconds",
    "Problem",
    "ProblemKind",
    "Protocol",
    "Proxy",
    "Secret",
    "SecretNotLoadedError",
    "Server",
    "TcpSettings",
    "TlsSettings",
    "Transport",
    "UdpSettings",
    "cross_check",
    "default_state_directory",
    "format_path",
    "load_config",
    "load_config_text",
    "make_converter",
    "parse_yaml",
    "split_host_port",
    "structure",
    "warnings_for",
]
