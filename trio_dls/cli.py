"""The command line: ``trio-dls CONFIG``, ``trio-dls check CONFIG``, exit codes.

This module turns outcomes into exit statuses and one-line messages; it never
lets a traceback reach an operator for a mistake they can fix:

* 0: stopped cleanly (SIGTERM, SIGINT), or ``check`` found the config valid;
* 1: a fatal runtime error, such as credentials Duo rejects;
* 2: the config (or the command line) is wrong; every mistake is listed.
  Also a cursor file written by a newer trio-dls: like a config mistake, it
  needs the operator (upgrade, or move the file), and a restart loop under a
  supervisor would only repeat it.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Final, TextIO

import trio

from trio_dls import __version__, logs
from trio_dls.config import Config, ConfigError, Protocol, load_config, warnings_for
from trio_dls.cursors import NewerCursorError
from trio_dls.daemon import run_daemon
from trio_dls.errors import FatalError
from trio_dls.formats import SyslogHeader
from trio_dls.supervisor import DEFAULT_GRACE

if TYPE_CHECKING:
    from collections.abc import Sequence

log = logging.getLogger("trio_dls")

EXIT_OK: Final = 0
EXIT_FATAL: Final = 1
EXIT_CONFIG: Final = 2

DESCRIPTION: Final = """\
trio-dls pulls Duo Security logs (auth, adminaction, telephony, trustmonitor,
activity) through Duo's Admin API and sends every record to your SIEM over
TCP, TLS or UDP, as JSON or CEF. It reads duo_log_sync's config file unchanged
and runs in the foreground: start it under systemd, Docker or Kubernetes.

commands:
  trio-dls CONFIG           run until SIGTERM or SIGINT (Ctrl-C)
  trio-dls check CONFIG     validate CONFIG and show what would run
  trio-dls demo             run against a bundled fake Duo API (no account
                            needed); see trio-dls demo --help

exit status:
  0  stopped cleanly, or check found CONFIG valid
  1  fatal runtime error (e.g. Duo rejected the credentials)
  2  CONFIG is invalid: each mistake is printed with its line and key;
     or a cursor file was written by a newer trio-dls
"""


def _parser(prog: str, *, command: str | None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog if command is None else f"{prog} {command}",
        description=DESCRIPTION if command is None else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--version", action="version", version=f"trio-dls {__version__}"
    )
    parser.add_argument(
        "config",
        metavar="CONFIG",
        type=Path,
        help="a duo_log_sync config file (YAML); see sample_config.yml",
    )
    if command is None:
        parser.add_argument(
            "--grace",
            type=float,
            default=DEFAULT_GRACE,
            metavar="SECONDS",
            help="on SIGTERM/SIGINT, how long deliveries in flight may take "
            f"to finish before trio-dls exits anyway (default {DEFAULT_GRACE:g})",
        )
    return parser


def _demo_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="trio-dls demo",
        description="Run trio-dls against the bundled fake Duo API and five "
        "local listeners standing in for SIEMs; no Duo account, no network.",
    )
    parser.add_argument(
        "--seconds", type=float, default=10.0, help="how long to run (default 10)"
    )
    parser.add_argument(
        "--format",
        choices=["JSON", "CEF"],
        type=str.upper,
        default="JSON",
        help="the log_format to send (default JSON)",
    )
    parser.add_argument(
        "--rate-limit",
        type=float,
        default=None,
        metavar="PER_MINUTE",
        help="make the fake Duo answer 429 above this many requests a minute "
        "per endpoint, to watch trio-dls pace itself",
    )
    parser.add_argument(
        "--backlog",
        type=int,
        default=None,
        metavar="RECORDS",
        help="records per endpoint in the fake's two days of logs "
        "(default: a few hundred; try 20000 with --rate-limit 30 --seconds 60)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] == "demo":
        options = _demo_parser().parse_args(args[1:])
        # The fake Duo API (and trustme, cryptography) is for the demo only:
        # the daemon and check never load it.
        from trio_dls import demo  # noqa: PLC0415

        return demo.main(
            sys.stdout,
            seconds=options.seconds,
            log_format=options.format,
            rate_limit=options.rate_limit,
            backlog=options.backlog,
        )
    if args and args[0] == "check":
        options = _parser("trio-dls", command="check").parse_args(args[1:])
        return check(options.config, sys.stdout, sys.stderr)
    options = _parser("trio-dls", command=None).parse_args(args)
    return run(options.config, grace=options.grace, stderr=sys.stderr)


def _load(path: Path, stderr: TextIO) -> Config | None:
    try:
        return load_config(path)
    except ConfigError as exc:
        print(exc.render(), file=stderr)
        count = len(exc.problems)
        print(
            f"trio-dls: {count} problem{'s' if count != 1 else ''} in {path}; "
            "nothing was started",
            file=stderr,
        )
        return None


def check(path: Path, stdout: TextIO, stderr: TextIO) -> int:
    """Validate the config at *path* and print what would run."""
    config = _load(path, stderr)
    if config is None:
        return EXIT_CONFIG
    print(f"{path}: valid", file=stdout)
    print(describe(config), file=stdout)
    for warning in warnings_for(config):
        print(f"warning: {warning}", file=stdout)
    return EXIT_OK


def describe(config: Config) -> str:
    """Summarise what *config* would run, with the skey masked."""
    account = config.account
    settings = config.dls_settings
    skey_source = (
        f"from the file {account.skey_file}"
        if account.skey_file
        else f"from ${account.skey_env}"
        if account.skey_env
        else "inline"
    )
    lines = [
        f"account:     ikey {account.ikey} at {account.hostname}",
        f"             skey ******** ({skey_source})",
        f"             MSP parent: {'yes' if account.is_msp else 'no'}"
        + (f", skipping {', '.join(account.block_list)}" if account.block_list else ""),
    ]
    if account.ca_certs:
        lines.append(f"             Duo API trusted via {account.ca_certs}")
    lines.append(f"format:      {settings.log_format.upper()}")
    lines.append("servers:")
    for server in config.servers:
        transport = str(server.protocol)
        if server.protocol is Protocol.TCPSSL:
            transport += f", CA {server.cert_filepath}"
            if server.client_cert_filepath:
                transport += f", client certificate {server.client_cert_filepath}"
        if server.protocol is Protocol.UDP:
            transport += f", datagrams up to {server.udp_max_size} bytes, "
            transport += f"{server.udp_oversize} larger ones"
        else:
            transport += f", {server.framing.replace('_', ' ')} framing"
        if server.syslog_header is not SyslogHeader.NONE:
            transport += f", {server.syslog_header.upper()} header"
        lines.append(f"  {server.id}: {server.hostname}:{server.port} ({transport})")
    lines.append("endpoints:")
    for endpoint in account.endpoints:
        servers = ", ".join(account.servers_for(endpoint))
        lines.append(f"  {endpoint} -> {servers}")
    checkpointing = settings.checkpointing
    lines += [
        f"start:       {settings.api.offset:g} days back on a first start",
        f"polling:     every {settings.api.timeout:g} s once caught up",
        "checkpoints: "
        + (
            checkpointing.directory
            if checkpointing.enabled
            else f"disabled (each start goes {settings.api.offset:g} days back)"
        ),
        "proxy:       "
        + (
            f"{settings.proxy.proxy_server}:{settings.proxy.proxy_port}"
            if settings.proxy.enabled
            else "none"
        ),
        f"log file:    {settings.log_filepath}",
    ]
    return "\n".join(lines)


def run(path: Path, *, grace: float, stderr: TextIO) -> int:
    """Run the daemon for the config at *path* until it is told to stop."""
    config = _load(path, stderr)
    if config is None:
        return EXIT_CONFIG
    skey = config.account.skey.reveal() if config.account.skey else ""
    for problem in logs.configure(
        secrets=[skey],
        log_file=Path(config.dls_settings.log_filepath),
        stream=stderr,
    ):
        log.warning("%s", problem)
    for warning in warnings_for(config):
        log.warning("%s", warning)
    log.info("trio-dls %s reading %s", __version__, path)
    status = EXIT_OK
    try:
        trio.run(_serve_until_signalled, config, grace)
    except* NewerCursorError as group:
        # Before FatalError, its base class: this one is the operator's to fix.
        for exc in _leaves(group):
            log.error("cannot start: %s", exc)  # noqa: TRY400 - one line
        status = EXIT_CONFIG
    except* FatalError as group:
        for exc in _leaves(group):
            log.error("fatal: %s", exc)  # noqa: TRY400 - one line, not a traceback
        status = max(status, EXIT_FATAL)
    except* KeyboardInterrupt:
        # Ctrl-C before the signal handlers were in place: nothing had started.
        log.info("interrupted")
    except* Exception:
        log.exception("unexpected error; exiting so the supervisor restarts trio-dls")
        status = max(status, EXIT_FATAL)
    return status


def _leaves(group: BaseExceptionGroup[FatalError]) -> list[FatalError]:
    leaves: list[FatalError] = []
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            leaves += _leaves(exc)
        else:
            leaves.append(exc)
    return leaves


async def _serve_until_signalled(config: Config, grace: float) -> None:
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:

        async def next_signal() -> None:
            async for signum in signals:
                log.info("received %s", signal.Signals(signum).name)
                return

        await run_daemon(
            config,
            shutdown_trigger=next_signal,
            force_trigger=next_signal,
            grace=grace,
        )
