"""What a config file leaves to its surroundings, and how it is filled in.

This module owns ``Environment`` (the base directory, the variables, the
user id and the platform the loader may look at, injected so that tests
never see the process's), the default state and log locations of each
platform (``docs/platforms.md``), and ``resolve``: relative paths
anchored at the config file's directory, the skey read from ``skey_file`` or
``skey_env``.  ``resolve`` assumes the cross-checks passed: the files it reads
exist and the variables it reads are set.  Without secrets (``secrets=False``,
for commands that sign nothing) it reads no skey at all, from wherever it
comes, and puts an ``UnloadedSecret`` in its place.
"""

from __future__ import annotations

import ntpath
import os
import posixpath
import sys
from collections.abc import Mapping
from pathlib import Path, PurePath, PurePosixPath, PureWindowsPath
from typing import Final

import attrs

from trio_dls.config.model import (
    DEFAULT_LOG_FILEPATH,
    STATE_DIRECTORY_NAME,
    SYSTEM_CAS,
    Config,
    Secret,
    Server,
    TlsSettings,
    UnloadedSecret,
)

# What ``sys.platform`` says on the systems with their own conventions;
# anything else is treated as Linux (the BSDs too).
WINDOWS: Final = "win32"
MACOS: Final = "darwin"
# Where a user id is unknown (Windows has none): never root's paths.
NO_EUID: Final = -1
DLS_LOG_NAME: Final = "duologsync.log"


def process_euid() -> int:
    """The process's effective user id; ``NO_EUID`` where the OS has none."""
    geteuid = getattr(os, "geteuid", None)  # not on Windows
    return NO_EUID if geteuid is None else int(geteuid())


@attrs.frozen
class Environment:
    """What the loader may look at outside the file (injected for tests).

    *platform* is a ``sys.platform`` value: paths are read with its rules
    (a drive letter and backslashes are absolute on Windows only) and the
    default locations follow its conventions.
    """

    base_directory: Path
    environ: Mapping[str, str]
    euid: int
    platform: str = sys.platform

    @classmethod
    def of_process(cls, config_path: Path) -> Environment:
        """The real environment, relative paths anchored at the config file."""
        return cls(
            base_directory=config_path.resolve().parent,
            environ=os.environ,
            euid=process_euid(),
        )

    def path(self, value: str) -> Path:
        r"""Resolve *value* (``~`` and relative to the config file's directory).

        Read with the platform's rules: on Windows, DLS's ``C:\certs\ca.pem``
        (or ``C:/certs/ca.pem``) is absolute and kept as it is, and ``~`` is
        ``%USERPROFILE%``.
        """
        flavor = PureWindowsPath if self.platform == WINDOWS else PurePosixPath
        pure: PurePath = flavor(value)
        home = _home(self.environ, self.platform)
        if pure.parts[:1] == ("~",):
            if home is None:
                return self.base_directory / Path(value).expanduser()
            pure = flavor(home, *pure.parts[1:])
        elif value.startswith("~") and self.platform != WINDOWS:
            pure = flavor(posixpath.expanduser(value))  # ~user
        if pure.is_absolute():
            return Path(str(pure))
        return Path(str(flavor(str(self.base_directory), pure)))


def _home(environ: Mapping[str, str], platform: str) -> str | None:
    return environ.get("USERPROFILE" if platform == WINDOWS else "HOME") or None


def default_state_directory(
    environ: Mapping[str, str], euid: int, platform: str = sys.platform
) -> Path:
    r"""Where cursors live when the config does not say.

    Not ``/tmp`` as in DLS: it is emptied at reboot, and a lost cursor means
    replaying up to 180 days of logs into the SIEM.  ``$STATE_DIRECTORY``
    first (set by systemd's ``StateDirectory=``), then by platform:

    * Windows: ``%ProgramData%\trio-dls`` (a service's machine-wide data);
    * macOS: ``/Library/Application Support/trio-dls`` for root (a launchd
      daemon), ``~/Library/Application Support/trio-dls`` otherwise;
    * Linux and others: ``/var/lib/trio-dls`` for root, otherwise
      ``$XDG_STATE_HOME/trio-dls`` (by default ``~/.local/state/trio-dls``).
    """
    if environ.get("STATE_DIRECTORY"):
        return Path(environ["STATE_DIRECTORY"].split(":")[0])
    if platform == WINDOWS:
        return Path(ntpath.join(_program_data(environ), STATE_DIRECTORY_NAME))
    home = _home(environ, platform) or str(Path("~").expanduser())
    if platform == MACOS:
        base = "" if euid == 0 else home
        support = posixpath.join(base or "/", "Library", "Application Support")
        return Path(posixpath.join(support, STATE_DIRECTORY_NAME))
    if euid == 0:
        return Path("/var/lib") / STATE_DIRECTORY_NAME
    xdg = environ.get("XDG_STATE_HOME") or posixpath.join(home, ".local", "state")
    return Path(xdg) / STATE_DIRECTORY_NAME


def default_log_file(
    environ: Mapping[str, str], euid: int, platform: str = sys.platform
) -> str:
    r"""Where the log file goes when the config does not say.

    On Linux, DLS's own ``/tmp/duologsync.log``, so that a DLS config moves
    over unchanged (and whatever watched that file still finds it).  Where
    ``/tmp`` is not the convention: ``%ProgramData%\trio-dls\duologsync.log``
    on Windows, ``~/Library/Logs/trio-dls/duologsync.log`` on macOS
    (``/Library/Logs/...`` for root).
    """
    if platform == WINDOWS:
        return ntpath.join(_program_data(environ), STATE_DIRECTORY_NAME, DLS_LOG_NAME)
    if platform == MACOS:
        home = _home(environ, platform) or str(Path("~").expanduser())
        base = "/" if euid == 0 else home
        return posixpath.join(
            base, "Library", "Logs", STATE_DIRECTORY_NAME, DLS_LOG_NAME
        )
    return DEFAULT_LOG_FILEPATH


def _program_data(environ: Mapping[str, str]) -> str:
    # Set on every Windows since Vista; C:\ProgramData is its usual value.
    return environ.get("PROGRAMDATA") or environ.get("ProgramData") or r"C:\ProgramData"


def resolve(config: Config, env: Environment, *, secrets: bool = True) -> Config:
    """Fill in what the file leaves to the environment: paths, the skey.

    Without *secrets* the skey is not read, not even one written in the file:
    an ``UnloadedSecret`` takes its place, which can sign nothing.
    """
    account = config.account
    if not secrets:
        account = attrs.evolve(account, skey=UnloadedSecret())
    elif account.skey_file is not None:
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
        else default_state_directory(env.environ, env.euid, env.platform)
    )
    # As DLS, a path given is used as it is (relative: to the working
    # directory); only the default depends on the platform.
    log_file = settings.log_filepath or default_log_file(
        env.environ, env.euid, env.platform
    )
    settings = attrs.evolve(
        settings,
        checkpointing=attrs.evolve(checkpointing, directory=str(directory)),
        log_filepath=log_file,
    )
    return attrs.evolve(config, account=account, servers=servers, dls_settings=settings)


def _resolve_server(server: Server, env: Environment) -> Server:
    # Only TLS settings name files.
    if not isinstance(server.transport, TlsSettings):
        return server
    tls = server.transport

    def resolved(value: str) -> str:
        return str(env.path(value)) if value.strip() else ""

    transport = attrs.evolve(
        tls,
        cert_filepath=tls.cert_filepath
        if tls.cert_filepath == SYSTEM_CAS
        else resolved(tls.cert_filepath),
        client_cert_filepath=resolved(tls.client_cert_filepath),
        client_key_filepath=resolved(tls.client_key_filepath),
    )
    return attrs.evolve(server, transport=transport)
