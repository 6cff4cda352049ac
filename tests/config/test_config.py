"""The config: DLS's files load unchanged; every mistake is named with its line.

Rules for these tests: configs are written to ``tmp_path``; the environment the
loader sees (variables, uid, base directory) is injected, never the process's;
every broken config is checked for its key path, its line and its message.
"""

from __future__ import annotations

import io
import textwrap
from pathlib import Path

import attrs
import pytest

from trio_dls.cli import check
from trio_dls.config import (
    ConfigError,
    DatagramSize,
    Environment,
    KeyPath,
    MspApiHost,
    Problem,
    ProblemKind,
    Protocol,
    SecretNotLoadedError,
    TcpSettings,
    TlsSettings,
    UdpSettings,
    default_state_directory,
    load_config,
    load_config_text,
)
from trio_dls.endpoints import Endpoint
from trio_dls.siem.formats import Facility, JsonStyle, LogFormat, SyslogHeader
from trio_dls.siem.framing import Framing, OversizePolicy

CONFIGS = Path(__file__).parent / "files"
SKEY = "sEcReTsKeYsEcReTsKeYsEcReTsKeYsEcReT0042"

# Line numbers below refer to this text; keep it stable.
BASE = f"""\
version: '1.0.0'
dls_settings:
  log_format: JSON
  api:
    offset: 30
    timeout: 120
  checkpointing:
    enabled: true
    directory: state
servers:
  - id: siem
    hostname: 127.0.0.1
    port: 9000
    protocol: TCP
account:
  ikey: DIXXXXXXXXXXXXXXXXXX
  skey: {SKEY}
  hostname: api-test.duosecurity.com
  endpoint_server_mappings:
    - endpoints: [auth, adminaction]
      server: siem
"""


def load(text: str, env: Environment) -> object:
    """Load *text* as a config file named config.yml."""
    return load_config_text(text, "config.yml", env)


def problems_of(text: str, env: Environment) -> list[str]:
    """Return the rendered problems of *text*, which must be invalid."""
    with pytest.raises(ConfigError) as info:
        load(text, env)
    return info.value.render().splitlines()


def edit(old: str, new: str) -> str:
    """Return BASE with *old* (which must occur once) replaced by *new*."""
    assert BASE.count(old) == 1, old
    return BASE.replace(old, new)


def test_base_config_is_valid(env: Environment) -> None:
    """The base config used by the broken-config cases is itself valid."""
    config = load_config_text(BASE, "config.yml", env)
    assert config.account.endpoints == (Endpoint.AUTH, Endpoint.ADMINACTION)


def test_dls_template_loads(tmp_path: Path) -> None:
    """DLS's own template (all keys, comments included) loads as DLS reads it."""
    env = Environment(base_directory=tmp_path, environ={}, euid=1000)
    text = (CONFIGS / "dls_template.yml").read_text()
    config = load_config_text(text, "template_config.yml", env)
    assert config.version == "1.0.0"
    assert config.dls_settings.log_filepath == "/tmp/duologsync.log"
    assert config.dls_settings.log_format is LogFormat.JSON
    assert config.dls_settings.api.offset == 180.0
    assert config.dls_settings.api.timeout == 120.0
    assert config.dls_settings.checkpointing.enabled is True
    assert config.dls_settings.checkpointing.directory == "/tmp"
    assert config.dls_settings.proxy.enabled is False
    server = config.servers[0]
    assert (server.id, server.hostname, server.port, server.protocol) == (
        "Server 1",
        "siem.example.com",
        8888,
        Protocol.TCP,
    )
    assert config.account.ikey == "DIXXXXXXXXXXXXXXXXXX"
    assert config.account.is_msp is False
    assert config.account.block_list == ()
    assert config.account.msp_refresh_interval == 3600.0
    assert config.account.msp_api_host is MspApiHost.PARENT
    assert config.account.endpoints == tuple(Endpoint)


def test_dls_example_config_loads(env: Environment) -> None:
    """DLS's example_config.yml (double quotes, list of five endpoints) loads."""
    text = textwrap.dedent(
        """\
        version: "1.0.0"

        dls_settings:
          log_filepath: "/tmp/duologsync.log"
          log_format: "JSON"

          api:
            offset: 180
            timeout: 120

          checkpointing:
            enabled: True
            directory: "/tmp"

        servers:
          - id: "test"
            hostname: "127.0.0.1"
            port: 8888
            protocol: "TCP"

        account:
          ikey: "admin-api-ikey"
          skey: "admin-api-skey"
          hostname: "host.name.com"

          endpoint_server_mappings:
            - endpoints:
                ["adminaction", "auth", "telephony", "trustmonitor", "activity"]
              server: "test"
          is_msp: False
        """
    )
    config = load_config_text(text, "example_config.yml", env)
    assert config.account.endpoints == tuple(Endpoint)


def test_minimal_config_takes_dls_defaults(env: Environment) -> None:
    """Keys left out take DLS's defaults, but checkpoints go to a state dir."""
    text = textwrap.dedent(
        f"""\
        version: '1.0.0'
        servers:
          - {{id: s, hostname: localhost, port: 514, protocol: UDP}}
        account:
          ikey: DI1
          skey: {SKEY}
          hostname: api-1.duosecurity.com
          endpoint_server_mappings:
            - {{endpoints: auth, server: s}}
        """
    )
    env = attrs.evolve(env, environ={"HOME": "/home/dls"})
    settings = load_config_text(text, "c.yml", env).dls_settings
    assert settings.log_filepath == "/tmp/duologsync.log"
    assert settings.log_format is LogFormat.JSON
    assert settings.json_style is JsonStyle.DLS
    assert (settings.api.offset, settings.api.timeout) == (180.0, 120.0)
    assert settings.checkpointing.enabled is True
    assert settings.checkpointing.directory == "/home/dls/.local/state/trio-dls"
    assert settings.proxy.enabled is False


@pytest.mark.parametrize(
    ("environ", "euid", "expected"),
    [
        ({"STATE_DIRECTORY": "/var/lib/custom"}, 0, "/var/lib/custom"),
        ({"STATE_DIRECTORY": "/a:/b"}, 1000, "/a"),
        ({}, 0, "/var/lib/trio-dls"),
        ({"XDG_STATE_HOME": "/x/state", "HOME": "/h"}, 1000, "/x/state/trio-dls"),
        ({"HOME": "/h"}, 1000, "/h/.local/state/trio-dls"),
    ],
)
def test_default_state_directory(
    environ: dict[str, str], euid: int, expected: str
) -> None:
    """The default checkpoint directory survives reboots (never /tmp)."""
    assert Path(expected) == default_state_directory(environ, euid)


def test_names_are_accepted_in_any_case(env: Environment) -> None:
    """Protocol, format and endpoint names are accepted in any case."""
    text = (
        edit("log_format: JSON", "log_format: cef")
        .replace("protocol: TCP", "protocol: udp")
        .replace("[auth, adminaction]", "[AUTH, AdminAction, trustMonitor]")
    )
    config = load_config_text(text, "c.yml", env)
    assert config.dls_settings.log_format is LogFormat.CEF
    assert config.servers[0].protocol is Protocol.UDP
    assert config.account.endpoints == (
        Endpoint.AUTH,
        Endpoint.ADMINACTION,
        Endpoint.TRUSTMONITOR,
    )


def test_tcpssl_is_accepted_in_lower_case(env: Environment, tmp_path: Path) -> None:
    """``protocol: tcpssl`` with a CA file is a TLS server."""
    (tmp_path / "ca.pem").write_text("not checked here")
    text = edit("protocol: TCP", "protocol: tcpssl\n    cert_filepath: ca.pem")
    server = load_config_text(text, "c.yml", env).servers[0]
    assert server.protocol is Protocol.TCPSSL
    assert isinstance(server.transport, TlsSettings)
    assert Path(server.transport.cert_filepath) == tmp_path / "ca.pem"


def test_server_extensions_are_read(env: Environment, tmp_path: Path) -> None:
    """The optional per-server keys of trio-dls are read, in any case."""
    for name in ("ca.pem", "client.pem", "client.key"):
        (tmp_path / name).write_text("pem")
    text = edit(
        "protocol: TCP",
        "protocol: TCPSSL\n    cert_filepath: ca.pem\n    framing: Octet-Counting\n"
        "    syslog_header: RFC5424\n    syslog_facility: LOCAL0\n"
        "    client_cert_filepath: client.pem\n    client_key_filepath: client.key\n"
        "    tls_server_name: siem.internal\n    tls_verify_hostname: no",
    )
    server = load_config_text(text, "c.yml", env).servers[0]
    tls = server.transport
    assert isinstance(tls, TlsSettings)
    assert tls.framing is Framing.OCTET_COUNTING
    assert server.syslog_header is SyslogHeader.RFC5424
    assert server.syslog_facility is Facility.LOCAL0
    assert tls.client_cert_filepath == str(tmp_path / "client.pem")
    assert tls.client_key_filepath == str(tmp_path / "client.key")
    assert (tls.tls_server_name, tls.tls_verify_hostname) == (
        "siem.internal",
        False,
    )


def test_udp_extensions_are_read(env: Environment) -> None:
    """A UDP server takes a datagram size limit and an oversize policy."""
    text = edit(
        "protocol: TCP", "protocol: UDP\n    udp_max_size: 8192\n    udp_oversize: drop"
    )
    server = load_config_text(text, "c.yml", env).servers[0]
    assert server.transport == UdpSettings(DatagramSize(8192), OversizePolicy.DROP)


def test_server_defaults_are_dls_behaviour(env: Environment) -> None:
    """Without the extension keys a server behaves as DLS's did."""
    server = load_config_text(BASE, "c.yml", env).servers[0]
    assert server.transport == TcpSettings(framing=Framing.NEWLINE)
    assert server.syslog_header is SyslogHeader.NONE
    text = edit("protocol: TCP", "protocol: TCPSSL\n    cert_filepath: system")
    tls = load_config_text(text, "c.yml", env).servers[0].transport
    assert isinstance(tls, TlsSettings)
    assert (tls.framing, tls.tls_verify_hostname) == (Framing.NEWLINE, True)


def test_each_protocol_gets_its_own_settings_class(env: Environment) -> None:
    """The flat keys of a server go to the settings class of its protocol."""
    classes = {}
    for protocol, extra in (
        ("TCP", ""),
        ("TCPSSL", "\n    cert_filepath: system"),
        ("UDP", ""),
    ):
        text = edit("protocol: TCP", f"protocol: {protocol}{extra}")
        server = load_config_text(text, "c.yml", env).servers[0]
        classes[server.protocol] = type(server.transport)
    assert classes == {
        Protocol.TCP: TcpSettings,
        Protocol.TCPSSL: TlsSettings,
        Protocol.UDP: UdpSettings,
    }


def test_keys_of_another_protocol_are_checked_then_set_aside(
    env: Environment,
) -> None:
    """``udp_max_size`` on a TCP server is read as DLS allowed, and not kept."""
    text = edit("protocol: TCP", "protocol: TCP\n    udp_max_size: 9000")
    server = load_config_text(text, "c.yml", env).servers[0]
    assert server.transport == TcpSettings()


def test_a_tls_key_on_a_udp_server_is_of_the_wrong_protocol(
    env: Environment,
) -> None:
    """A TLS-only key elsewhere is a ``WRONG_PROTOCOL`` problem at that key."""
    text = edit("protocol: TCP", "protocol: UDP\n    tls_server_name: siem")
    problem = problem_of(text, env)
    expected = (ProblemKind.WRONG_PROTOCOL, ("servers", 0, "tls_server_name"))
    assert expected == (problem.kind, problem.path)


def test_dls_proxy_defaults_mean_no_proxy(env: Environment) -> None:
    """``proxy_server: ''`` and ``proxy_port: 0`` (DLS's defaults) mean no proxy."""
    text = edit(
        "  checkpointing:",
        "  proxy:\n    proxy_server: ''\n    proxy_port: 0\n  checkpointing:",
    )
    assert load_config_text(text, "c.yml", env).dls_settings.proxy.enabled is False


def test_proxy_is_read(env: Environment) -> None:
    """A proxy host and port are kept as given."""
    text = edit(
        "  checkpointing:",
        "  proxy:\n    proxy_server: proxy.corp\n    proxy_port: '3128'\n"
        "  checkpointing:",
    )
    proxy = load_config_text(text, "c.yml", env).dls_settings.proxy
    assert (proxy.enabled, proxy.proxy_server, proxy.proxy_port) == (
        True,
        "proxy.corp",
        3128,
    )


def test_empty_cert_filepath_is_accepted_where_not_needed(env: Environment) -> None:
    """DLS's template ships ``cert_filepath: ''`` on TCP and UDP servers."""
    text = edit("protocol: TCP", "protocol: TCP\n    cert_filepath: ''")
    assert load_config_text(text, "c.yml", env).servers[0].transport == TcpSettings()


def test_trustmonitor_with_cef_and_msp_is_accepted(env: Environment) -> None:
    """DLS refused trust monitor with CEF or MSP; trio-dls supports both."""
    text = (
        edit("log_format: JSON", "log_format: CEF")
        .replace("[auth, adminaction]", "[trustmonitor]")
        .replace(
            "  endpoint_server_mappings:", "  is_msp: true\n  endpoint_server_mappings:"
        )
    )
    config = load_config_text(text, "c.yml", env)
    assert config.account.is_msp is True
    assert config.account.endpoints == (Endpoint.TRUSTMONITOR,)


def test_hostname_may_carry_a_port(env: Environment) -> None:
    """``account.hostname`` may be ``host:port``; requests are signed for host."""
    text = edit("api-test.duosecurity.com", "localhost:8443")
    account = load_config_text(text, "c.yml", env).account
    assert (account.api_host, account.api_port) == ("localhost", 8443)


def test_msp_refresh_interval_is_read(env: Environment) -> None:
    """``account.msp_refresh_interval`` sets how often MSP children are listed."""
    text = edit(
        "  endpoint_server_mappings:",
        "  is_msp: true\n  msp_refresh_interval: '600'\n  endpoint_server_mappings:",
    )
    assert load_config_text(text, "config.yml", env).account.msp_refresh_interval == (
        600.0
    )


@pytest.mark.parametrize(
    ("written", "expected"),
    [
        ("child", MspApiHost.CHILD),
        ("Child", MspApiHost.CHILD),
        ("PARENT", MspApiHost.PARENT),
    ],
)
def test_msp_api_host_is_read_in_any_case(
    env: Environment, written: str, expected: MspApiHost
) -> None:
    """``account.msp_api_host`` picks the host MSP children are called on."""
    text = edit(
        "  endpoint_server_mappings:",
        f"  is_msp: true\n  msp_api_host: {written}\n  endpoint_server_mappings:",
    )
    assert expected is load_config_text(text, "config.yml", env).account.msp_api_host


@pytest.mark.parametrize("written", ["compact", "COMPACT", "'Compact'"])
def test_json_style_is_read_in_any_case(env: Environment, written: str) -> None:
    """``dls_settings.json_style`` picks how JSON is written."""
    text = edit("log_format: JSON", f"log_format: JSON\n  json_style: {written}")
    config = load_config_text(text, "config.yml", env)
    assert config.dls_settings.json_style is JsonStyle.COMPACT


def test_ca_certs_is_resolved_next_to_the_config(
    env: Environment, tmp_path: Path
) -> None:
    """``account.ca_certs`` names a CA bundle, relative to the config file."""
    (tmp_path / "duo-ca.pem").write_text("pem")
    text = edit(
        "  endpoint_server_mappings:",
        "  ca_certs: duo-ca.pem\n  endpoint_server_mappings:",
    )
    account = load_config_text(text, "c.yml", env).account
    assert account.ca_certs == str(tmp_path / "duo-ca.pem")


def test_skey_from_a_file(env: Environment, tmp_path: Path) -> None:
    """``skey_file`` reads the skey from a file, trailing newline dropped."""
    (tmp_path / "skey").write_text(SKEY + "\n")
    text = edit(f"skey: {SKEY}", "skey_file: skey")
    skey = load_config_text(text, "c.yml", env).account.skey
    assert skey is not None
    assert skey.reveal() == SKEY


def test_skey_from_the_environment(env: Environment) -> None:
    """``skey_env`` reads the skey from an environment variable."""
    env = attrs.evolve(env, environ={"DUO_SKEY": SKEY})
    text = edit(f"skey: {SKEY}", "skey_env: DUO_SKEY")
    skey = load_config_text(text, "c.yml", env).account.skey
    assert skey is not None
    assert skey.reveal() == SKEY


def test_skey_from_the_environment_drops_a_trailing_newline(
    env: Environment,
) -> None:
    """``skey_env`` is stripped like an inline or file skey (a Kubernetes secret)."""
    env = attrs.evolve(env, environ={"DUO_SKEY": f"{SKEY}\n"})
    text = edit(f"skey: {SKEY}", "skey_env: DUO_SKEY")
    skey = load_config_text(text, "c.yml", env).account.skey
    assert skey is not None
    assert skey.reveal() == SKEY


def test_skey_is_masked_in_the_model(env: Environment) -> None:
    """The loaded config's repr never shows the skey."""
    config = load_config_text(BASE, "c.yml", env)
    assert SKEY not in repr(config)
    assert SKEY not in str(config.account)


# Without secrets: for commands that sign nothing (status).

SKEY_SOURCES = {
    "inline": f"skey: {SKEY}",
    "a missing file": "skey_file: /nonexistent/skey",
    "an unset variable": "skey_env: DUO_SKEY",
}


@pytest.mark.parametrize("source", SKEY_SOURCES.values(), ids=SKEY_SOURCES.keys())
def test_without_secrets_the_skey_is_neither_read_nor_usable(
    source: str, env: Environment
) -> None:
    """``secrets=False`` loads the config whatever the skey's source says.

    The skey is a placeholder that prints as a mask and refuses to be
    revealed, so the config can sign nothing; the rest is loaded as usual.
    """
    config = load_config_text(
        edit(f"skey: {SKEY}", source), "c.yml", env, secrets=False
    )
    skey = config.account.skey
    assert skey is not None
    with pytest.raises(SecretNotLoadedError, match="not loaded") as caught:
        skey.reveal()
    assert SKEY not in str(caught.value)
    assert SKEY not in repr(config)
    assert "not loaded" in repr(skey)
    assert config.account.endpoints == (Endpoint.AUTH, Endpoint.ADMINACTION)
    assert skey != load_config_text(BASE, "c.yml", env).account.skey


def test_without_secrets_other_problems_are_still_reported(env: Environment) -> None:
    """Skipping the skey's file skips nothing else, nor where the skey comes from."""
    text = edit(f"  skey: {SKEY}\n", "  skey_file: a\n  skey_env: B\n").replace(
        "port: 9000", "port: 'abc'"
    )
    with pytest.raises(ConfigError) as info:
        load_config_text(text, "config.yml", env, secrets=False)
    paths = {problem.path for problem in info.value.problems}
    assert ("account", "skey_env") in paths  # only one of them, please
    assert any(path[-1] == "port" for path in paths)


def test_with_secrets_a_missing_skey_file_is_still_reported(env: Environment) -> None:
    """The default loads secrets and reports where the skey cannot be read."""
    text = edit(f"skey: {SKEY}", "skey_file: /nonexistent/skey")
    with pytest.raises(ConfigError, match="no such file: /nonexistent/skey"):
        load_config_text(text, "c.yml", env)


# YAML 1.2 traps: the obvious value, or a clear error; never a silent wrong one.


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("no", False),
        ("No", False),
        ("'False'", False),
        ("off", False),
        ("yes", True),
        ("'true'", True),
        ("True", True),
        ("on", True),
    ],
)
def test_boolean_spellings(env: Environment, value: str, expected: bool) -> None:  # noqa: FBT001
    """``enabled: no`` is false as it was in DLS (PyYAML), not the string 'no'."""
    text = edit("enabled: true", f"enabled: {value}")
    config = load_config_text(text, "c.yml", env)
    assert expected is config.dls_settings.checkpointing.enabled


def test_is_msp_quoted_false_is_false(env: Environment) -> None:
    """``is_msp: 'False'`` (DLS's template says to use single quotes) is false."""
    text = edit(
        "  endpoint_server_mappings:", "  is_msp: 'False'\n  endpoint_server_mappings:"
    )
    assert load_config_text(text, "c.yml", env).account.is_msp is False


def test_quoted_port_is_a_number(env: Environment) -> None:
    """``port: '9000'`` is the port 9000."""
    text = edit("port: 9000", "port: '9000'")
    assert load_config_text(text, "c.yml", env).servers[0].port == 9000


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0", 0.0),
        ("4.0", 4.0),
        ("1.5", 1.5),
        ("0.25", 0.25),
        ("'1.5'", 1.5),
        ("'30'", 30.0),
        ("1e2", 100.0),
        ("180", 180.0),
        ("180.0", 180.0),
    ],
)
def test_offset_takes_any_number_of_days_up_to_180(
    env: Environment, value: str, expected: float
) -> None:
    """``offset: 4.0`` or ``1.5`` loads: DLS reads it as ``timedelta(days=offset)``."""
    text = edit("offset: 30", f"offset: {value}")
    assert expected == load_config_text(text, "c.yml", env).dls_settings.api.offset


def test_check_shows_a_fractional_offset(tmp_path: Path) -> None:
    """``trio-dls check`` says 1.5 days for ``offset: 1.5``."""
    path = tmp_path / "config.yml"
    path.write_text(edit("offset: 30", "offset: 1.5"))
    out, err = io.StringIO(), io.StringIO()
    assert check(path, out, err) == 0
    assert "start:       1.5 days back on a first start" in out.getvalue()


def test_a_boolean_is_not_a_port(env: Environment) -> None:
    """``port: true`` is refused, not read as port 1."""
    text = edit("port: 9000", "port: true")
    assert problems_of(text, env) == [
        "config.yml:13: servers[0].port: expected a whole number, got True"
    ]


# Broken configs: one case each, with the line, key path and message expected.

BROKEN = {
    "missing version": (
        edit("version: '1.0.0'\n", ""),
        "config.yml:1: version: required key is missing (a file without it is "
        "DLS's pre-1.0.0 layout; add version: '1.0.0' once the file uses "
        "dls_settings, servers and account)",
    ),
    "empty version": (
        edit("version: '1.0.0'", "version: ''"),
        "config.yml:1: version: must not be empty",
    ),
    "missing servers": (
        edit(
            "servers:\n  - id: siem\n    hostname: 127.0.0.1\n    port: 9000\n"
            "    protocol: TCP\n",
            "",
        ),
        "config.yml:1: servers: required key is missing",
    ),
    "servers is not a list": (
        edit(
            "servers:\n  - id: siem\n    hostname: 127.0.0.1\n    port: 9000\n"
            "    protocol: TCP\n",
            "servers: siem\n",
        ),
        "config.yml:10: servers: expected a list",
    ),
    "empty servers": (
        edit(
            "servers:\n  - id: siem\n    hostname: 127.0.0.1\n    port: 9000\n"
            "    protocol: TCP\n",
            "servers: []\n",
        ),
        "config.yml:10: servers: must list at least one entry",
    ),
    "missing account": (
        BASE[: BASE.index("account:")],
        "config.yml:1: account: required key is missing",
    ),
    "missing ikey": (
        edit("  ikey: DIXXXXXXXXXXXXXXXXXX\n", ""),
        "config.yml:15: account.ikey: required key is missing",
    ),
    "ikey with no value": (
        edit("ikey: DIXXXXXXXXXXXXXXXXXX", "ikey:"),
        "config.yml:16: account.ikey: required key has no value",
    ),
    "missing server hostname": (
        edit("    hostname: 127.0.0.1\n", ""),
        "config.yml:11: servers[0].hostname: required key is missing",
    ),
    "typo in a key": (
        edit("    hostname: 127.0.0.1", "    hostnme: 127.0.0.1"),
        "config.yml:12: servers[0].hostnme: unknown key (did you mean 'hostname'?)",
    ),
    "DLS's old 'accounts' key": (
        edit("account:", "accounts:"),
        "config.yml:15: accounts: unknown key; this file format calls it 'account'",
    ),
    "port is text": (
        edit("port: 9000", "port: 'abc'"),
        "config.yml:13: servers[0].port: expected a whole number, got 'abc'",
    ),
    "port 0": (
        edit("port: 9000", "port: 0"),
        "config.yml:13: servers[0].port: must be a port from 1 to 65535, got 0",
    ),
    "port 70000": (
        edit("port: 9000", "port: 70000"),
        "config.yml:13: servers[0].port: must be a port from 1 to 65535, got 70000",
    ),
    "port with a fraction": (
        edit("port: 9000", "port: 9000.5"),
        "config.yml:13: servers[0].port: expected a whole number, got 9000.5",
    ),
    "is_msp maybe": (
        edit(
            "  endpoint_server_mappings:",
            "  is_msp: maybe\n  endpoint_server_mappings:",
        ),
        "config.yml:19: account.is_msp: expected true or false, got 'maybe'",
    ),
    "enabled is a number": (
        edit("enabled: true", "enabled: 2"),
        "config.yml:8: dls_settings.checkpointing.enabled: expected true or "
        "false, got 2",
    ),
    "offset -1": (
        edit("offset: 30", "offset: -1"),
        "config.yml:5: dls_settings.api.offset: must be a number of days "
        "from 0 to 180 (Duo keeps 180 days of logs), got -1",
    ),
    "offset just below 0": (
        edit("offset: 30", "offset: -0.01"),
        "config.yml:5: dls_settings.api.offset: must be a number of days "
        "from 0 to 180 (Duo keeps 180 days of logs), got -0.01",
    ),
    "offset 200": (
        edit("offset: 30", "offset: 200"),
        "config.yml:5: dls_settings.api.offset: must be a number of days "
        "from 0 to 180 (Duo keeps 180 days of logs), got 200",
    ),
    "offset just over 180": (
        edit("offset: 30", "offset: 180.5"),
        "config.yml:5: dls_settings.api.offset: must be a number of days "
        "from 0 to 180 (Duo keeps 180 days of logs), got 180.5",
    ),
    "offset is not a number": (
        edit("offset: 30", "offset: .nan"),
        "config.yml:5: dls_settings.api.offset: must be a number of days "
        "from 0 to 180 (Duo keeps 180 days of logs), got nan",
    ),
    "offset is infinite": (
        edit("offset: 30", "offset: .inf"),
        "config.yml:5: dls_settings.api.offset: must be a number of days "
        "from 0 to 180 (Duo keeps 180 days of logs), got inf",
    ),
    "offset is a boolean": (
        edit("offset: 30", "offset: true"),
        "config.yml:5: dls_settings.api.offset: expected a number of days, got True",
    ),
    "offset is the text nan": (
        edit("offset: 30", "offset: 'nan'"),
        "config.yml:5: dls_settings.api.offset: expected a number of days, got 'nan'",
    ),
    "offset is text": (
        edit("offset: 30", "offset: a week"),
        "config.yml:5: dls_settings.api.offset: expected a number of days, "
        "got 'a week'",
    ),
    "timeout 0": (
        edit("timeout: 120", "timeout: 0"),
        "config.yml:6: dls_settings.api.timeout: must be a number of seconds "
        "above 0, got 0",
    ),
    "unknown log format": (
        edit("log_format: JSON", "log_format: XML"),
        "config.yml:3: dls_settings.log_format: expected one of JSON, CEF, got 'XML'",
    ),
    "unknown protocol": (
        edit("protocol: TCP", "protocol: FTP"),
        "config.yml:14: servers[0].protocol: expected one of TCP, TCPSSL, UDP, "
        "got 'FTP'",
    ),
    "mapping names an unknown server": (
        edit("server: siem", "server: splunk"),
        "config.yml:21: account.endpoint_server_mappings[0].server: no server has "
        "the id 'splunk' (servers defined: 'siem')",
    ),
    "unknown endpoint": (
        edit("[auth, adminaction]", "[auth, authlog]"),
        "config.yml:20: account.endpoint_server_mappings[0].endpoints: expected "
        "one of auth, adminaction, telephony, trustmonitor, activity, got 'authlog'",
    ),
    "no endpoints": (
        edit("[auth, adminaction]", "[]"),
        "config.yml:20: account.endpoint_server_mappings[0].endpoints: expected "
        "a list of endpoint names",
    ),
    "mappings with no value": (
        edit(
            "  endpoint_server_mappings:\n    - endpoints: [auth, adminaction]\n"
            "      server: siem\n",
            "  endpoint_server_mappings:\n",
        ),
        "config.yml:19: account.endpoint_server_mappings: required key has no value",
    ),
    "TCPSSL without cert_filepath": (
        edit("protocol: TCP", "protocol: TCPSSL"),
        "config.yml:11: servers[0].cert_filepath: a TCPSSL server needs "
        "cert_filepath: the CA bundle (PEM) that signed the server's certificate, "
        "or 'system' to trust the operating system's CAs",
    ),
    "TCPSSL with a cert file that does not exist": (
        edit("protocol: TCP", "protocol: TCPSSL\n    cert_filepath: missing.pem"),
        "config.yml:15: servers[0].cert_filepath: no such file: {tmp}/missing.pem",
    ),
    "duplicate server ids": (
        edit(
            "    protocol: TCP\n",
            "    protocol: TCP\n  - id: siem\n    hostname: h2\n    port: 9001\n"
            "    protocol: UDP\n",
        ),
        "config.yml:15: servers[1].id: duplicate server id 'siem'; ids must be unique",
    ),
    "msp_refresh_interval 0": (
        edit(
            "  endpoint_server_mappings:",
            "  msp_refresh_interval: 0\n  endpoint_server_mappings:",
        ),
        "config.yml:19: account.msp_refresh_interval: must be a number of "
        "seconds above 0, got 0",
    ),
    "msp_refresh_interval is negative": (
        edit(
            "  endpoint_server_mappings:",
            "  msp_refresh_interval: -60\n  endpoint_server_mappings:",
        ),
        "config.yml:19: account.msp_refresh_interval: must be a number of "
        "seconds above 0, got -60",
    ),
    "msp_refresh_interval is text": (
        edit(
            "  endpoint_server_mappings:",
            "  msp_refresh_interval: hourly\n  endpoint_server_mappings:",
        ),
        "config.yml:19: account.msp_refresh_interval: expected a number, got 'hourly'",
    ),
    "unknown json_style": (
        edit("log_format: JSON", "log_format: JSON\n  json_style: tight"),
        "config.yml:4: dls_settings.json_style: expected one of dls, compact, "
        "got 'tight'",
    ),
    "unknown msp_api_host": (
        edit(
            "  endpoint_server_mappings:",
            "  msp_api_host: own\n  endpoint_server_mappings:",
        ),
        "config.yml:19: account.msp_api_host: expected one of parent, child, got 'own'",
    ),
    "msp_api_host is not text": (
        edit(
            "  endpoint_server_mappings:",
            "  msp_api_host: [child]\n  endpoint_server_mappings:",
        ),
        "config.yml:19: account.msp_api_host: expected one of parent, child, "
        "got ['child']",
    ),
    "ca_certs that does not exist": (
        edit(
            "  endpoint_server_mappings:",
            "  ca_certs: nope.pem\n  endpoint_server_mappings:",
        ),
        "config.yml:19: account.ca_certs: no such file: {tmp}/nope.pem",
    ),
    "ca_certs whose name is too long to look up": (
        edit(
            "  endpoint_server_mappings:",
            f"  ca_certs: {'c' * 300}.pem\n  endpoint_server_mappings:",
        ),
        f"config.yml:19: account.ca_certs: cannot read {{tmp}}/{'c' * 300}.pem: "
        "File name too long",
    ),
    "no page allowed in memory": (
        edit("timeout: 120", "timeout: 120\n    max_pages_in_memory: 0"),
        "config.yml:7: dls_settings.api.max_pages_in_memory: must be a whole "
        "number from 1 up, got 0",
    ),
    "more calls in flight than pages in memory": (
        edit(
            "timeout: 120",
            "timeout: 120\n    max_calls_in_flight: '12'\n    max_pages_in_memory: 4",
        ),
        "config.yml:7: dls_settings.api.max_calls_in_flight: must not exceed "
        "max_pages_in_memory (4): each call in flight holds the place of the page "
        "it brings, got 12",
    ),
    "no skey at all": (
        edit(f"  skey: {SKEY}\n", ""),
        "config.yml:15: account: required key is missing: skey (or skey_file, "
        "or skey_env)",
    ),
    "skey given twice": (
        edit(f"  skey: {SKEY}\n", f"  skey: {SKEY}\n  skey_env: DUO_SKEY\n"),
        "config.yml:18: account.skey_env: give only one of skey, skey_file and "
        "skey_env (found skey, skey_env)",
    ),
    "skey_env names an unset variable": (
        edit(f"skey: {SKEY}", "skey_env: DUO_SKEY"),
        "config.yml:17: account.skey_env: the environment variable DUO_SKEY is "
        "not set or empty",
    ),
    "skey_file that does not exist": (
        edit(f"skey: {SKEY}", "skey_file: /nonexistent/skey"),
        "config.yml:17: account.skey_file: no such file: /nonexistent/skey",
    ),
    "hostname with a bad port": (
        edit("api-test.duosecurity.com", "api-test.duosecurity.com:99999"),
        "config.yml:18: account.hostname: expected host or host:port (port 1 to "
        "65535), got 'api-test.duosecurity.com:99999'",
    ),
    "hostname is a number": (
        edit("hostname: 127.0.0.1", "hostname: 12345"),
        "config.yml:12: servers[0].hostname: expected text, got 12345; put it in "
        "quotes: '12345'",
    ),
    "proxy server without a port": (
        edit(
            "  checkpointing:",
            "  proxy:\n    proxy_server: proxy.corp\n  checkpointing:",
        ),
        "config.yml:7: dls_settings.proxy.proxy_port: proxy_server is set, so "
        "proxy_port is required (1 to 65535)",
    ),
    "account is a list": (
        BASE[: BASE.index("account:")] + "account:\n  - ikey: x\n",
        "config.yml:15: account: expected a mapping of keys to values",
    ),
    "checkpoint directory is a file": (
        edit("directory: state", "directory: afile"),
        "config.yml:9: dls_settings.checkpointing.directory: not a directory: "
        "{tmp}/afile",
    ),
    "framing on a UDP server": (
        edit("protocol: TCP", "protocol: UDP\n    framing: octet-counting"),
        "config.yml:15: servers[0].framing: framing applies to TCP and TCPSSL; "
        "over UDP each record is one datagram",
    ),
    "unknown framing": (
        edit("protocol: TCP", "protocol: TCP\n    framing: lines"),
        "config.yml:15: servers[0].framing: expected one of newline, "
        "octet-counting, got 'lines'",
    ),
    "UDP datagram limit too small": (
        edit("protocol: TCP", "protocol: UDP\n    udp_max_size: 100"),
        "config.yml:15: servers[0].udp_max_size: must be a number of bytes from "
        "480 (what every syslog receiver accepts) to 65507, got 100",
    ),
    "client certificate on a plain TCP server": (
        edit("protocol: TCP", "protocol: TCP\n    client_cert_filepath: c.pem"),
        "config.yml:15: servers[0].client_cert_filepath: applies to TCPSSL "
        "servers only",
    ),
    "client key without a client certificate": (
        edit(
            "protocol: TCP",
            "protocol: TCPSSL\n    cert_filepath: system\n"
            "    client_key_filepath: afile",
        ),
        "config.yml:16: servers[0].client_key_filepath: a client key needs "
        "client_cert_filepath too",
    ),
    "unknown syslog facility": (
        edit("protocol: TCP", "protocol: TCP\n    syslog_facility: local9"),
        "config.yml:15: servers[0].syslog_facility: expected one of kern, user, "
        "mail, daemon, auth, syslog, lpr, news, uucp, cron, authpriv, ftp, ntp, "
        "security, console, solaris-cron, local0, local1, local2, local3, local4, "
        "local5, local6, local7, got 'local9'",
    ),
    "invalid YAML": (
        edit("    offset: 30", "    offset: [30"),
        "config.yml:6:12: invalid YAML: while parsing a flow sequence expected "
        "',' or ']', but got ':'",
    ),
    "duplicate YAML key": (
        edit("    offset: 30", "    offset: 30\n    offset: 40"),
        "config.yml:6:5: invalid YAML: while constructing a mapping found "
        'duplicate key "offset" with value "40" (original value: "30")',
    ),
    "top level is a list": (
        "- version: '1.0.0'\n",
        "config.yml:1: the file must be a mapping of keys to values",
    ),
    "empty file": ("", "config.yml: the file is empty"),
    "only comments": ("# nothing yet\n", "config.yml: the file is empty"),
}


@pytest.mark.parametrize("case", list(BROKEN), ids=list(BROKEN))
def test_broken_config(case: str, tmp_path: Path) -> None:
    """Each broken config yields its own message naming the key path and line.

    Checked the way an operator meets it: ``trio-dls check`` on the file,
    exit status 2, the message and a summary line, no traceback.
    """
    text, expected = BROKEN[case]
    (tmp_path / "afile").write_text("")
    path = tmp_path / "config.yml"
    path.write_text(text)
    out, err = io.StringIO(), io.StringIO()
    status = check(path, out, err)
    assert (status, out.getvalue()) == (2, "")
    assert [
        str(path) + expected.format(tmp=tmp_path).removeprefix("config.yml"),
        f"trio-dls: 1 problem in {path}; nothing was started",
    ] == err.getvalue().splitlines()


def test_every_mistake_is_reported_at_once(env: Environment) -> None:
    """Several mistakes in one file are all reported, in line order."""
    text = (
        edit("offset: 30", "offset: 500")
        .replace("port: 9000", "port: 'x'")
        .replace("server: siem", "server: other")
        .replace(
            "  ikey: DIXXXXXXXXXXXXXXXXXX\n",
            "  ikey: DIXXXXXXXXXXXXXXXXXX\n  colour: blue\n",
        )
    )
    lines = problems_of(text, env)
    assert [line.split(": ")[0] for line in lines] == [
        "config.yml:5",
        "config.yml:13",
        "config.yml:17",
        "config.yml:22",
    ]


def test_skey_is_never_echoed_in_errors(env: Environment) -> None:
    """Even pasted into the wrong key, the skey does not appear in a message."""
    text = (
        edit("hostname: 127.0.0.1", f"hostname: 127.0.0.1\n    typo: {SKEY}")
        .replace("ikey: DIXXXXXXXXXXXXXXXXXX", f"ikey: [{SKEY}]")
        .replace("protocol: TCP", f"protocol: {SKEY}")
    )
    rendered = "\n".join(problems_of(text, env))
    assert "servers[0].protocol" in rendered
    assert SKEY not in rendered


def test_a_numeric_skey_is_not_echoed(env: Environment) -> None:
    """An skey that YAML reads as a number is refused without showing it."""
    text = edit(f"skey: {SKEY}", "skey: 123456789012345678901234567890")
    assert problems_of(text, env) == [
        "config.yml:17: account.skey: expected text in quotes, got a number"
    ]


@pytest.mark.parametrize(
    ("make_path", "expected"),
    [
        (lambda tmp: tmp, "{path}: is a directory, not a config file"),
        (lambda tmp: tmp / "absent.yml", "{path}: no such file"),
        (lambda tmp: tmp / "afile" / "c.yml", "{path}: cannot read: Not a directory"),
    ],
    ids=["directory", "missing", "unreadable"],
)
def test_unusable_config_paths(
    tmp_path: Path, make_path: object, expected: str
) -> None:
    """A directory or unreadable path given as the config is one clear line."""
    (tmp_path / "afile").write_text("")
    path = make_path(tmp_path)  # type: ignore[operator]
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert [expected.format(path=path)] == info.value.render().splitlines()


def test_non_utf8_file(tmp_path: Path) -> None:
    """A file that is not UTF-8 text is refused with the offending byte."""
    path = tmp_path / "c.yml"
    path.write_bytes(b"version: '1.0.0'\nservers: \xff\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert [
        f"{path}: not UTF-8 text (at byte offset 26)"
    ] == info.value.render().splitlines()


# Problems are values: what a caller (``check``, a future ``upgrade-config``)
# acts on is the kind, the key path and the suggestion, never the wording.


def problem_of(text: str, env: Environment) -> Problem:
    """Return the one problem of *text*, which must be invalid."""
    with pytest.raises(ConfigError) as info:
        load(text, env)
    [problem] = info.value.problems
    return problem


@pytest.mark.parametrize(
    ("text", "kind", "path", "suggestion"),
    [
        (
            edit("    hostname: 127.0.0.1", "    hostnme: 127.0.0.1"),
            ProblemKind.UNKNOWN_KEY,
            ("servers", 0, "hostnme"),
            "hostname",
        ),
        (
            edit("account:", "accounts:"),
            ProblemKind.RENAMED_KEY,
            ("accounts",),
            "account",
        ),
        (
            edit("  ikey: DIXXXXXXXXXXXXXXXXXX\n", ""),
            ProblemKind.MISSING,
            ("account", "ikey"),
            None,
        ),
        (
            edit("ikey: DIXXXXXXXXXXXXXXXXXX", "ikey:"),
            ProblemKind.NO_VALUE,
            ("account", "ikey"),
            None,
        ),
        (
            edit("port: 9000", "port: 'abc'"),
            ProblemKind.INVALID,
            ("servers", 0, "port"),
            None,
        ),
        (
            BASE[: BASE.index("account:")] + "account:\n  - ikey: x\n",
            ProblemKind.SHAPE,
            ("account",),
            None,
        ),
        (
            edit("server: siem", "server: splunk"),
            ProblemKind.CROSS_CHECK,
            ("account", "endpoint_server_mappings", 0, "server"),
            None,
        ),
        (
            edit("    offset: 30", "    offset: [30"),
            ProblemKind.SYNTAX,
            (),
            None,
        ),
        ("", ProblemKind.FILE, (), None),
    ],
    ids=[
        "typo",
        "renamed",
        "missing",
        "no value",
        "invalid",
        "shape",
        "cross-check",
        "syntax",
        "empty",
    ],
)
def test_problem_kind_path_and_suggestion(
    env: Environment,
    text: str,
    kind: ProblemKind,
    path: KeyPath,
    suggestion: str | None,
) -> None:
    """Each sort of mistake is a Problem of its own kind, at its key path."""
    problem = problem_of(text, env)
    assert (kind, path, suggestion) == (
        problem.kind,
        problem.path,
        problem.suggestion,
    )


def test_unknown_key_lists_the_keys_allowed_beside_it(env: Environment) -> None:
    """A key like no other has no suggestion, and lists the keys allowed there."""
    text = edit("    port: 9000", "    port: 9000\n    colour: blue")
    problem = problem_of(text, env)
    assert (problem.kind, problem.suggestion) == (ProblemKind.UNKNOWN_KEY, None)
    assert "protocol" in problem.expected
    assert "udp_max_size" in problem.expected


def test_a_missing_skey_names_its_alternatives(env: Environment) -> None:
    """Without any skey the problem is at ``account``, naming the three keys."""
    problem = problem_of(edit(f"  skey: {SKEY}\n", ""), env)
    assert (
        problem.kind,
        problem.path,
        problem.expected,
    ) == (ProblemKind.MISSING, ("account",), ("skey", "skey_file", "skey_env"))


def test_a_problem_renders_from_its_fields() -> None:
    """The message is built from kind and suggestion, not stored as text."""
    problem = Problem(
        ProblemKind.UNKNOWN_KEY,
        ("servers", 0, "hostnme"),
        suggestion="hostname",
        line=12,
    )
    assert problem.render("config.yml") == (
        "config.yml:12: servers[0].hostnme: unknown key (did you mean 'hostname'?)"
    )


def test_a_typo_echo_is_dropped_by_its_suggestion(env: Environment) -> None:
    """The key a typo stands for is not also reported missing (one problem)."""
    text = edit("  ikey: DIXXXXXXXXXXXXXXXXXX", "  iky: DIXXXXXXXXXXXXXXXXXX")
    problem = problem_of(text, env)
    assert (
        problem.kind,
        problem.path,
        problem.suggestion,
    ) == (ProblemKind.UNKNOWN_KEY, ("account", "iky"), "ikey")
