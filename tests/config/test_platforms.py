"""Where each platform keeps state and logs, and how it reads paths (simulated).

The platform is a value of ``Environment`` (``sys.platform``'s), so every
platform's rules run here, on Linux: the defaults of ``docs/platforms.md``,
and DLS's Windows-style paths read as Windows reads them.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from trio_dls.config import ConfigError, Environment, default_state_directory
from trio_dls.config.environment import NO_EUID, default_log_file
from trio_dls.config.loading import load_config_text

WINDOWS_ENV = {"PROGRAMDATA": r"D:\ProgramData", "USERPROFILE": r"C:\Users\duo"}


@pytest.mark.parametrize(
    ("platform", "environ", "euid", "expected"),
    [
        ("win32", WINDOWS_ENV, -1, r"D:\ProgramData\trio-dls"),
        ("win32", {}, -1, r"C:\ProgramData\trio-dls"),
        (
            "darwin",
            {"HOME": "/Users/duo"},
            501,
            "/Users/duo/Library/Application Support/trio-dls",
        ),
        ("darwin", {"HOME": "/var/root"}, 0, "/Library/Application Support/trio-dls"),
        ("linux", {"HOME": "/home/duo"}, 1000, "/home/duo/.local/state/trio-dls"),
        (
            "linux",
            {"HOME": "/home/duo", "XDG_STATE_HOME": "/srv/st"},
            1000,
            "/srv/st/trio-dls",
        ),
        ("linux", {"HOME": "/root"}, 0, "/var/lib/trio-dls"),
        ("linux", {"STATE_DIRECTORY": "/var/lib/x:/var/lib/y"}, 0, "/var/lib/x"),
        ("freebsd14", {"HOME": "/home/duo"}, 1000, "/home/duo/.local/state/trio-dls"),
    ],
)
def test_the_default_state_directory_follows_the_platform(
    platform: str, environ: dict[str, str], euid: int, expected: str
) -> None:
    """%ProgramData% on Windows, Application Support on macOS, XDG on Linux."""
    assert str(default_state_directory(environ, euid, platform)) == expected


@pytest.mark.parametrize(
    ("platform", "environ", "euid", "expected"),
    [
        ("win32", WINDOWS_ENV, -1, r"D:\ProgramData\trio-dls\duologsync.log"),
        (
            "darwin",
            {"HOME": "/Users/duo"},
            501,
            "/Users/duo/Library/Logs/trio-dls/duologsync.log",
        ),
        ("darwin", {"HOME": "/var/root"}, 0, "/Library/Logs/trio-dls/duologsync.log"),
        ("linux", {"HOME": "/home/duo"}, 1000, "/tmp/duologsync.log"),
        ("linux", {"HOME": "/root"}, 0, "/tmp/duologsync.log"),
    ],
)
def test_the_default_log_file_follows_the_platform(
    platform: str, environ: dict[str, str], euid: int, expected: str
) -> None:
    """DLS's /tmp/duologsync.log on Linux; the platform's log place elsewhere."""
    assert default_log_file(environ, euid, platform) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (r"C:\Program Files\Duo\ca.pem", r"C:\Program Files\Duo\ca.pem"),
        ("C:/Program Files/Duo/ca.pem", r"C:\Program Files\Duo\ca.pem"),
        (r"\\siem\share\ca.pem", r"\\siem\share\ca.pem"),
        (r"certs\ca.pem", r"E:\dls\certs\ca.pem"),
        ("certs/ca.pem", r"E:\dls\certs\ca.pem"),
        (r"~\certs\ca.pem", r"C:\Users\duo\certs\ca.pem"),
    ],
)
def test_windows_paths_are_read_with_windows_rules(value: str, expected: str) -> None:
    """A drive or a share is absolute; a relative path is the config's folder's."""
    env = Environment(
        base_directory=Path(r"E:\dls"), environ=WINDOWS_ENV, euid=-1, platform="win32"
    )
    assert str(env.path(value)) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("/etc/ssl/ca.pem", "/etc/ssl/ca.pem"),
        ("certs/ca.pem", "/etc/trio-dls/certs/ca.pem"),
        ("~/ca.pem", "/home/duo/ca.pem"),
    ],
)
def test_posix_paths_keep_their_rules(value: str, expected: str) -> None:
    """On Linux and macOS, relative to the config's directory; ~ is $HOME."""
    env = Environment(
        base_directory=Path("/etc/trio-dls"),
        environ={"HOME": "/home/duo"},
        euid=1000,
        platform="linux",
    )
    assert str(env.path(value)) == expected


DLS_WINDOWS = """\
version: '1.0.0'
dls_settings:
  checkpointing: {{enabled: True, directory: 'C:\\DLS\\checkpoints'}}
servers:
  - id: siem
    hostname: siem.example.com
    port: 6514
    protocol: TCPSSL
    cert_filepath: {cert}
account:
  ikey: DIXXXXXXXXXXXXXXXXXX
  skey: a-secret-key-of-forty-characters-000000
  hostname: api-xxxxxxxx.duosecurity.com
  endpoint_server_mappings: [{{endpoints: [auth], server: siem}}]
"""


@pytest.mark.parametrize(
    "cert",
    [
        r"'C:\Users\duo\Documents\siem.crt'",  # single quotes, as DLS's docs
        r"C:\Users\duo\Documents\siem.crt",  # no quotes
        r'"C:\\Users\\duo\\Documents\\siem.crt"',  # double quotes, escaped
        "'C:/Users/duo/Documents/siem.crt'",  # forward slashes
    ],
)
def test_dls_windows_style_paths_load_as_written(cert: str) -> None:
    """Every way DLS's users write a Windows path names the same file.

    The file is not on this Linux machine, so the check reports it missing:
    by the very name Windows would open, not one joined to the config's folder.
    """
    env = Environment(
        base_directory=Path(r"E:\dls"), environ=WINDOWS_ENV, euid=-1, platform="win32"
    )
    with pytest.raises(ConfigError) as caught:
        load_config_text(DLS_WINDOWS.format(cert=cert), "config.yml", env)
    rendered = caught.value.render()
    assert r"no such file: C:\Users\duo\Documents\siem.crt" in rendered
    assert "E:" not in rendered
    assert len(caught.value.problems) == 1


def test_a_windows_checkpoint_directory_is_kept_as_written() -> None:
    """A drive-letter checkpoint directory is absolute on Windows."""
    env = Environment(
        base_directory=Path(r"E:\dls"), environ=WINDOWS_ENV, euid=-1, platform="win32"
    )
    text = DLS_WINDOWS.format(cert="system")
    config = load_config_text(text, "config.yml", env)
    assert config.dls_settings.checkpointing.directory == r"C:\DLS\checkpoints"
    assert config.dls_settings.log_filepath == r"D:\ProgramData\trio-dls\duologsync.log"


def test_without_a_user_id_the_environment_is_not_roots(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Windows has no geteuid: the process's environment still loads, as no root."""
    monkeypatch.delattr(os, "geteuid")
    config = tmp_path / "config.yml"
    assert Environment.of_process(config).euid == NO_EUID
