"""upgrade-config: DLS's pre-1.0.0 layout becomes today's, comments and all.

Rules for these tests: files are written to ``tmp_path``; each conversion
rule has its test, on a file that differs from the sample only where the
rule looks; the result is read back with the real loader (or ``check``), so
a test passes only if trio-dls would run what was written.
"""

from __future__ import annotations

import io
import re
import stat
import textwrap
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ruamel.yaml import YAML

from trio_dls import cli
from trio_dls.config import ConfigError, Environment, load_config_text
from trio_dls.config.upgrade import (
    RULES,
    AlreadyCurrentError,
    UpgradeError,
    dump,
    upgrade,
)
from trio_dls.endpoints import Endpoint

SAMPLE = Path(__file__).parent / "files" / "dls_pre_1_0.yml"
SKEY = "sEcReTsKeYsEcReTsKeYsEcReTsKeYsEcReT0042"

MINIMAL = """\
duoclient:
  ikey: 'DIXXXXXXXXXXXXXXXXXX'
  skey: 'sEcReTsKeYsEcReTsKeYsEcReTsKeYsEcReT0042'
  host: 'api-test.duosecurity.com'
logs:
  logDir: '/tmp'
  endpoints:
    enabled: ['auth']
  polling:
    duration: 2
    daysinpast: 180
  checkpointDir: '/tmp'
transport:
  protocol: 'TCP'
  host: 'localhost'
  port: 8888
  certFileDir: '/tmp'
  certFileName: 'selfsigned.cert'
recoverFromCheckpoint:
  enabled: False
"""


def converted(text: str) -> Any:
    """Upgrade *text* and read the result back as plain data."""
    return YAML(typ="safe").load(dump(upgrade(text).tree))


def loaded(text: str, tmp_path: Path) -> Any:
    """Upgrade *text* and load the result with trio-dls's own loader."""
    env = Environment(base_directory=tmp_path, environ={}, euid=1000)
    return load_config_text(dump(upgrade(text).tree), "new.yml", env)


def edit(old: str, new: str, text: str = MINIMAL) -> str:
    """*text* with *old* replaced by *new*, which must be there."""
    assert old in text
    return text.replace(old, new)


# One test per conversion rule.


def test_every_rule_has_a_test() -> None:
    """The rules tested below are all the rules there are."""
    tested = {
        "_version",
        "_account",
        "_log_filepath",
        "_log_format",
        "_api",
        "_checkpointing",
        "_server",
        "_endpoints",
    }
    assert tested == {rule.__name__ for rule in RULES}


def test_version_is_added() -> None:
    """The result has ``version: '1.0.0'``, first."""
    data = converted(MINIMAL)
    assert data["version"] == "1.0.0"
    assert next(iter(data)) == "version"


def test_duoclient_becomes_account_with_hostname() -> None:
    """``duoclient`` is ``account``, its keys copied, ``host`` as ``hostname``."""
    account = converted(MINIMAL)["account"]
    assert account["ikey"] == "DIXXXXXXXXXXXXXXXXXX"
    assert account["skey"] == SKEY
    assert account["hostname"] == "api-test.duosecurity.com"
    assert "host" not in account
    assert "duoclient" not in converted(MINIMAL)


@pytest.mark.parametrize(
    ("log_dir", "expected"),
    [
        ("/tmp", "/tmp/duologsync.log"),
        ("/var/log/dls/", "/var/log/dls/duologsync.log"),
        ("C:\\\\DLS\\\\logs", "C:\\DLS\\logs\\duologsync.log"),
    ],
)
def test_logdir_becomes_log_filepath(log_dir: str, expected: str) -> None:
    """``logDir`` becomes ``log_filepath``, the directory plus ``duologsync.log``."""
    text = edit("logDir: '/tmp'", f'logDir: "{log_dir}"')
    assert expected == converted(text)["dls_settings"]["log_filepath"]


def test_log_format_json_is_added() -> None:
    """``log_format: 'JSON'`` is added: the old layout knew no other format."""
    assert converted(MINIMAL)["dls_settings"]["log_format"] == "JSON"


@pytest.mark.parametrize(
    ("minutes", "seconds"), [("2", 120), ("5", 300), ("0.5", 30), ("'3'", 180)]
)
def test_polling_becomes_api_in_seconds(minutes: str, seconds: float) -> None:
    """``polling`` is ``api``: minutes of ``duration`` are seconds of ``timeout``."""
    text = edit("duration: 2", f"duration: {minutes}")
    text = edit("daysinpast: 180", "daysinpast: 1.5", text)
    api = converted(text)["dls_settings"]["api"]
    assert {"offset": 1.5, "timeout": seconds} == api


def test_recover_and_checkpointdir_become_checkpointing() -> None:
    """``recoverFromCheckpoint.enabled`` and ``checkpointDir`` are ``checkpointing``."""
    text = edit("checkpointDir: '/tmp'", "checkpointDir: '/var/lib/dls'")
    checkpointing = converted(text)["dls_settings"]["checkpointing"]
    assert checkpointing == {"enabled": False, "directory": "/var/lib/dls"}


@pytest.mark.parametrize(
    ("directory", "name", "expected"),
    [
        ("/tmp", "selfsigned.cert", "/tmp/selfsigned.cert"),
        ("C:\\\\certs\\\\", "ca.pem", "C:\\certs\\ca.pem"),
        ("", "ca.pem", "ca.pem"),
    ],
)
def test_transport_becomes_server_1(directory: str, name: str, expected: str) -> None:
    """``transport`` is ``servers[0]``, id 'Server 1', with ``cert_filepath`` joined."""
    text = edit("certFileDir: '/tmp'", f'certFileDir: "{directory}"')
    text = edit("certFileName: 'selfsigned.cert'", f"certFileName: '{name}'", text)
    data = converted(text)
    assert [
        {
            "id": "Server 1",
            "hostname": "localhost",
            "port": 8888,
            "protocol": "TCP",
            "cert_filepath": expected,
        }
    ] == data["servers"]
    assert "transport" not in data


def test_enabled_endpoints_become_the_mapping_to_server_1() -> None:
    """``endpoints.enabled`` becomes one mapping, to 'Server 1'."""
    text = edit("enabled: ['auth']", "enabled:\n      - auth\n      - telephony")
    mappings = converted(text)["account"]["endpoint_server_mappings"]
    assert mappings == [{"endpoints": ["auth", "telephony"], "server": "Server 1"}]


def test_each_rule_applied_says_what_moved_where() -> None:
    """A note per move or addition, naming the old key and the new one."""
    notes = upgrade(MINIMAL).notes
    assert all(" -> " in note or note.startswith("added ") for note in notes)
    for old, new in [
        ("duoclient", "account"),
        ("logs.logDir", "dls_settings.log_filepath"),
        ("logs.polling", "dls_settings.api"),
        ("recoverFromCheckpoint.enabled", "dls_settings.checkpointing.enabled"),
        ("logs.checkpointDir", "dls_settings.checkpointing.directory"),
        ("transport", "servers[0]"),
        ("logs.endpoints.enabled", "account.endpoint_server_mappings[0]"),
    ]:
        assert any(old in note and new in note for note in notes), (old, new)
    assert all(SKEY not in note for note in notes)


# Comments.


def lines_of(text: str) -> list[str]:
    """The lines of *text*, stripped."""
    return [line.strip() for line in text.splitlines()]


def comment_lines(text: str) -> list[str]:
    """Every comment of *text*, full-line or at the end of a line, stripped."""
    found = []
    for line in text.splitlines():
        match = re.search(r"(?:^|\s)(#.*)$", line)
        if match:
            found.append(match.group(1).strip())
    return found


def test_comments_on_kept_keys_stay_with_them() -> None:
    """A comment above or beside an old key is above or beside its new key."""
    new = lines_of(dump(upgrade(SAMPLE.read_text()).tree))

    def above(comment: str, key: str) -> None:
        index = new.index(comment)
        following = [line for line in new[index + 1 :] if not line.startswith("#")]
        assert following[0].startswith(key), (comment, key)

    above("# Credentials of the Admin API application", "account:")
    above("# Integration key of the application", "ikey:")
    above("# Secret key: keep it out of version control", "skey:")
    above("# Where DLS writes its own log, and what it fetches", "dls_settings:")
    above("# DLS writes duologsync.log in this directory", "log_filepath:")
    above("# Minutes between two polls", "timeout: 300")
    above("# How far back the first start goes, in days", "offset: 30")
    above("# Checkpoint files go here", "directory:")
    above("# The SIEM", "servers:")
    above("# Splunk's TCP input", "port: 8888")
    above("# Resume from the checkpoint files after a restart", "checkpointing:")
    above("# Which logs to fetch", "endpoint_server_mappings:")
    assert "hostname: 'api-xxxxxxxx.duosecurity.com'  # from the Admin Panel" in new
    assert "protocol: 'TCP'  # TCP, TCPSSL or UDP" in new
    assert new[-1] == "# End of the file: nothing after this."
    assert new[0].startswith("# duo_log_sync configuration, in the layout")


def test_no_comment_line_is_lost() -> None:
    """Every comment of the old file is in the new one, in the same words."""
    old = SAMPLE.read_text()
    new = dump(upgrade(old).tree)
    missing = [c for c in comment_lines(old) if c not in comment_lines(new)]
    assert missing == []


def test_new_optional_keys_are_commented_out_with_their_defaults(
    tmp_path: Path,
) -> None:
    """Uncommenting the added keys gives a file that means the same: the defaults."""
    new = dump(upgrade(MINIMAL).tree)
    added = [line for line in new.splitlines() if re.match(r"\s*# \w+:", line)]
    names = {line.split("#")[1].split(":")[0].strip() for line in added}
    assert {
        "max_calls_in_flight",
        "max_pages_in_memory",
        "proxy",
        "proxy_server",
        "proxy_port",
        "framing",
        "syslog_header",
        "syslog_facility",
        "is_msp",
        "block_list",
        "msp_refresh_interval",
        "msp_api_host",
        "ca_certs",
    } == names
    # An example without a default (a file to trust) stays commented.
    uncommented = "\n".join(
        line if "no default" in line else re.sub(r"^(\s*)# (\w+:)", r"\1\2", line)
        for line in new.splitlines()
    )
    env = Environment(base_directory=tmp_path, environ={}, euid=1000)
    assert load_config_text(new, "new.yml", env) == load_config_text(
        uncommented, "new.yml", env
    )


@pytest.mark.parametrize(
    ("protocol", "keys"),
    [
        ("UDP", {"udp_max_size", "udp_oversize"}),
        ("TCPSSL", {"framing", "client_cert_filepath", "tls_verify_hostname"}),
    ],
)
def test_the_servers_optional_keys_are_those_of_its_protocol(
    protocol: str, keys: set[str]
) -> None:
    """A UDP server is offered the datagram keys, a TCPSSL one the TLS keys."""
    new = dump(upgrade(edit("protocol: 'TCP'", f"protocol: '{protocol}'")).tree)
    offered = set(re.findall(r"^    # (\w+):", new, flags=re.MULTILINE))
    assert keys <= offered


# The command: check, refusals, the old file, errors.


@pytest.fixture
def old(tmp_path: Path) -> Path:
    """The commented sample, copied where the test may look at it."""
    path = tmp_path / "old.yml"
    path.write_bytes(SAMPLE.read_bytes())
    return path


def test_the_upgraded_sample_passes_check(
    old: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``upgrade-config`` then ``check`` on the result both exit 0."""
    new = tmp_path / "new.yml"
    assert cli.main(["upgrade-config", str(old), str(new)]) == 0
    assert cli.main(["check", str(new)]) == 0
    out = capsys.readouterr().out
    assert f"{new}: valid" in out
    assert "Server 1: 127.0.0.1:8888 (TCP, newline framing)" in out
    assert "polling:     every 300 s once caught up" in out


def test_the_skey_is_never_printed(
    old: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The skey is copied into NEW, and appears in no output."""
    new = tmp_path / "new.yml"
    assert cli.main(["upgrade-config", str(old), str(new)]) == 0
    captured = capsys.readouterr()
    assert SKEY not in captured.out + captured.err
    assert SKEY in new.read_text()


def test_new_is_private(old: Path, tmp_path: Path) -> None:
    """NEW holds the skey: mode 0600; and no temporary file is left beside it."""
    new = tmp_path / "new.yml"
    assert cli.main(["upgrade-config", str(old), str(new)]) == 0
    assert stat.S_IMODE(new.stat().st_mode) == 0o600
    assert {"old.yml", "new.yml"} == {p.name for p in tmp_path.iterdir()}


def test_an_existing_new_is_refused_unless_forced(
    old: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An existing NEW is left alone (exit 2); with --force it is replaced."""
    new = tmp_path / "new.yml"
    new.write_text("mine\n")
    assert cli.main(["upgrade-config", str(old), str(new)]) == 2
    assert new.read_text() == "mine\n"
    assert "already exists; not replaced (add --force" in capsys.readouterr().err
    assert cli.main(["upgrade-config", "--force", str(old), str(new)]) == 0
    assert "version: '1.0.0'" in new.read_text()
    assert stat.S_IMODE(new.stat().st_mode) == 0o600


def test_old_is_never_changed(old: Path, tmp_path: Path) -> None:
    """OLD's bytes are the same after an upgrade, a forced one included."""
    before = old.read_bytes()
    new = tmp_path / "new.yml"
    cli.main(["upgrade-config", str(old), str(new)])
    cli.main(["upgrade-config", "--force", str(old), str(new)])
    assert before == old.read_bytes()


def test_new_may_not_be_old(old: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Even with --force, NEW naming OLD is refused and OLD stays as it was."""
    before = old.read_bytes()
    other_name = old.parent / "." / old.name
    assert cli.main(["upgrade-config", "--force", str(old), str(other_name)]) == 2
    assert before == old.read_bytes()
    assert "is the old file itself" in capsys.readouterr().err


ERRORS = {
    "missing": (None, "no such file"),
    "not YAML": ("duoclient: [\n", "line 2: invalid YAML"),
    "not a mapping": ("- a\n- b\n", "must be a mapping"),
    "already current": (
        "version: '1.0.0'\n",
        "already in the current layout (version: '1.0.0'); nothing to upgrade",
    ),
    "another version": ("version: '2.0.0'\nlogs: {}\n", "'2.0.0' is not a layout"),
    "current keys, no version": (
        "account: {}\nservers: []\n",
        "it has servers, account but no version; add version: '1.0.0' instead",
    ),
    "unknown key": (
        edit("  port: 8888\n", "  port: 8888\n  prot: 1\n"),
        "transport.prot: not a key of DLS's pre-1.0.0 layout",
    ),
    "bad duration": (
        edit("duration: 2", "duration: soon"),
        "logs.polling.duration: expected a number of minutes, got 'soon'",
    ),
}


@pytest.mark.parametrize("case", list(ERRORS))
def test_a_file_that_cannot_be_upgraded_is_named_and_nothing_is_written(
    case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Exit 2, one line naming OLD and the reason, no traceback, no NEW."""
    text, expected = ERRORS[case]
    old = tmp_path / "old.yml"
    if text is not None:
        old.write_text(text)
    new = tmp_path / "new.yml"
    assert cli.main(["upgrade-config", str(old), str(new)]) == 2
    err = capsys.readouterr().err
    assert f"trio-dls: {old}: " in err
    assert expected in err
    assert "Traceback" not in err
    assert not new.exists()


def test_already_current_is_its_own_error() -> None:
    """A 1.0.0 file raises ``AlreadyCurrentError``, so a caller can tell it apart."""
    with pytest.raises(AlreadyCurrentError):
        upgrade("version: '1.0.0'\n")
    with pytest.raises(UpgradeError) as caught:
        upgrade("logs: {}\nfoo: 1\n")
    assert not isinstance(caught.value, AlreadyCurrentError)


def test_new_that_fails_check_is_said_and_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A CA file absent here: NEW is written, check's complaint follows, exit 2."""
    old = tmp_path / "old.yml"
    old.write_text(
        edit("certFileDir: '/tmp'", f"certFileDir: '{tmp_path}/none'").replace(
            "protocol: 'TCP'", "protocol: 'TCPSSL'"
        )
    )
    new = tmp_path / "new.yml"
    assert cli.main(["upgrade-config", str(old), str(new)]) == 2
    assert new.exists()
    err = capsys.readouterr().err
    assert "servers[0].cert_filepath: no such file" in err


def test_the_loader_recognises_the_old_layout(tmp_path: Path) -> None:
    """Loading an old-layout file says what it is and how to convert it, in one line."""
    env = Environment(base_directory=tmp_path, environ={}, euid=1000)
    with pytest.raises(ConfigError) as caught:
        load_config_text(MINIMAL, "old.yml", env)
    assert caught.value.render().splitlines() == [
        "old.yml:1: this is DLS's pre-1.0.0 layout (duoclient, logs, transport; "
        "no version), which trio-dls does not run; convert it with: "
        "trio-dls upgrade-config old.yml NEW.yml"
    ]


def test_check_on_the_old_layout_suggests_upgrade_config(
    old: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``trio-dls check OLD`` exits 2 pointing at ``upgrade-config``."""
    assert cli.check(old, io.StringIO(), err := io.StringIO()) == 2
    assert f"trio-dls upgrade-config {old} NEW.yml" in err.getvalue()
    assert SKEY not in err.getvalue()
    capsys.readouterr()


# The meaning survives, for any old file: a property.

ENDPOINTS = [e.value for e in Endpoint]


@st.composite
def old_configs(draw: st.DrawFn) -> tuple[str, dict[str, Any], list[str]]:
    """An old-layout file with a random choice of optional keys and comments."""
    comments: list[str] = []

    def line(indent: int, text: str) -> list[str]:
        out = []
        if draw(st.booleans()):
            comments.append(f"# note {len(comments)}")
            out.append(" " * indent + comments[-1])
        eol = ""
        if draw(st.booleans()):
            comments.append(f"# aside {len(comments)}")
            eol = "  " + comments[-1]
        return [*out, " " * indent + text + eol]

    facts: dict[str, Any] = {
        "port": draw(st.integers(1, 65535)),
        "protocol": draw(st.sampled_from(["TCP", "UDP"])),
        "endpoints": draw(
            st.lists(st.sampled_from(ENDPOINTS), min_size=1, max_size=5, unique=True)
        ),
        "duration": draw(st.none() | st.integers(1, 60)),
        "daysinpast": draw(st.none() | st.integers(0, 180)),
        "log_dir": draw(st.none() | st.sampled_from(["/tmp", "/var/log/dls/"])),
        "checkpoint_dir": draw(st.none() | st.sampled_from(["/tmp", "state"])),
        "recover": draw(st.none() | st.booleans()),
    }
    text = ["duoclient:"]
    text += line(2, "ikey: 'DIXXXXXXXXXXXXXXXXXX'")
    text += line(2, f"skey: '{SKEY}'")
    text += line(2, "host: 'api-test.duosecurity.com'")
    text += line(0, "logs:")
    if facts["log_dir"] is not None:
        text += line(2, f"logDir: '{facts['log_dir']}'")
    text += line(2, "endpoints:")
    text += line(4, f"enabled: {facts['endpoints']}")
    if facts["duration"] is not None or facts["daysinpast"] is not None:
        text += line(2, "polling:")
        if facts["duration"] is not None:
            text += line(4, f"duration: {facts['duration']}")
        if facts["daysinpast"] is not None:
            text += line(4, f"daysinpast: {facts['daysinpast']}")
    if facts["checkpoint_dir"] is not None:
        text += line(2, f"checkpointDir: '{facts['checkpoint_dir']}'")
    text += line(0, "transport:")
    text += line(2, f"protocol: '{facts['protocol']}'")
    text += line(2, "host: 'siem.example.com'")
    text += line(2, f"port: {facts['port']}")
    if facts["recover"] is not None:
        text += line(0, "recoverFromCheckpoint:")
        text += line(2, f"enabled: {facts['recover']}")
    return "\n".join(text) + "\n", facts, comments


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=old_configs())
def test_upgrading_keeps_the_meaning_and_every_comment(
    case: tuple[str, dict[str, Any], list[str]], tmp_path: Path
) -> None:
    """For any old file, the new one loads and means what DLS's mapping says."""
    text, facts, comments = case
    new = dump(upgrade(text).tree)
    config = loaded(text, tmp_path)
    (server,) = config.servers
    assert ("Server 1", "siem.example.com", facts["port"], facts["protocol"]) == (
        server.id,
        server.hostname,
        server.port,
        str(server.protocol),
    )
    assert (
        config.account.ikey,
        config.account.hostname,
        config.account.skey.reveal(),
    ) == ("DIXXXXXXXXXXXXXXXXXX", "api-test.duosecurity.com", SKEY)
    assert set(facts["endpoints"]) == {str(e) for e in config.account.endpoints}
    api = config.dls_settings.api
    if facts["duration"] is not None:
        assert facts["duration"] * 60 == api.timeout
    if facts["daysinpast"] is not None:
        assert facts["daysinpast"] == api.offset
    if facts["log_dir"] is not None:
        expected = facts["log_dir"].rstrip("/") + "/duologsync.log"
        assert expected == config.dls_settings.log_filepath
    checkpointing = config.dls_settings.checkpointing
    if facts["recover"] is not None:
        assert facts["recover"] == checkpointing.enabled
    if facts["checkpoint_dir"] is not None:
        assert str(tmp_path / facts["checkpoint_dir"]) == checkpointing.directory
    assert [c for c in comments if c not in new] == []


def test_the_sample_is_realistic() -> None:
    """The sample file has every key of the old layout, so every rule runs on it."""
    text = SAMPLE.read_text()
    for key in textwrap.dedent("""\
        duoclient ikey skey host logs logDir endpoints enabled polling duration
        daysinpast checkpointDir transport protocol port certFileDir
        certFileName recoverFromCheckpoint""").split():
        assert re.search(rf"^\s*{key}:", text, flags=re.MULTILINE), key
