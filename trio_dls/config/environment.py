"""What a config file leaves to its surroundings, and how it is filled in.

This module owns ``Environment`` (the base directory, the variables and the
user id the loader may look at, injected so that tests never see the
process's), the default state directory, and ``resolve``: relative paths
anchored at the config file's directory, the skey read from ``skey_file`` or
``skey_env``.  ``resolve`` assumes the cross-checks passed: the files it reads
exist and the variables it reads are set.  Without secrets (``secrets=False``,
for commands that sign nothing) it reads no skey at all, from wherever it
comes, and puts an ``UnloadedSecret`` in its place.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import attrs

from trio_dls.config.model import (
    STATE_DIRECTORY_NAME,
    SYSTEM_CAS,
    Config,
    Secret,
    Server,
    TlsSettings,
    UnloadedSecret,
)


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
        else default_state_directory(env.environ, env.euid)
    )
    settings = attrs.evolve(
        settings,
        checkpointing=attrs.evolve(checkpointing, directory=str(directory)),
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
