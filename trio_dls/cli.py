"""The command line: ``trio-dls [run] CONFIG``, its other commands, exit codes.

Commands are rows of ``COMMANDS``, each an argparse subparser; a command line
that does not start with a command's name runs the daemon, as duo_log_sync's
``duo_log_sync CONFIG`` does.  This module turns outcomes into exit statuses
and one-line messages; it never lets a traceback reach an operator for a
mistake they can fix:

* 0: stopped cleanly (SIGTERM, SIGINT), or ``check`` found the config valid;
* 1: a fatal runtime error, such as credentials Duo rejects;
* 2: the config (or the command line) is wrong; every mistake is listed.
  Also a cursor file written by a newer trio-dls: like a config mistake, it
  needs the operator (upgrade, or move the file), and a restart loop under a
  supervisor would only repeat it.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import logging
import os
import signal
import socket
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Final, TextIO

import attrs
import trio

from trio_dls import __version__, status
from trio_dls.config import (
    Config,
    ConfigError,
    TcpSettings,
    TlsSettings,
    UdpSettings,
    load_config,
    warnings_for,
)
from trio_dls.config.upgrade import UpgradeError
from trio_dls.config.upgrading import upgrade_file
from trio_dls.daemon import run_daemon
from trio_dls.duo.cursors import NewerCursorError
from trio_dls.duo.proxy import proxy_secrets
from trio_dls.duo.shards import Shard, parse_shard
from trio_dls.errors import FatalError
from trio_dls.observe import logsetup
from trio_dls.observe.progress import DEFAULT_INTERVAL, ProgressMode, choose_mode
from trio_dls.online import check_online
from trio_dls.service import reload_request
from trio_dls.service.memory import freeze_startup_heap, limit_malloc_arenas
from trio_dls.siem.formats import JsonStyle, LogFormat, SyslogHeader
from trio_dls.supervisor import DEFAULT_GRACE

if TYPE_CHECKING:
    from collections.abc import Sequence

log = logging.getLogger("trio_dls")

EXIT_OK: Final = 0
EXIT_FATAL: Final = 1
EXIT_CONFIG: Final = 2

INTRO: Final = """\
trio-dls pulls Duo Security logs (auth, adminaction, telephony, trustmonitor,
activity) through Duo's Admin API and sends every record to your SIEM over
TCP, TLS or UDP, as JSON or CEF. It reads duo_log_sync's config file unchanged
and runs in the foreground: start it under systemd, Docker or Kubernetes.
"""

# Where a shard is read when --shard is not given: a StatefulSet sets it once
# for all its pods, as auto/COUNT.
SHARD_ENV: Final = "TRIO_DLS_SHARD"

EXIT_STATUS: Final = """\
exit status:
  0  stopped cleanly, or check found CONFIG valid (and, --online, working),
     or status found every cursor fresh
  1  fatal runtime error (e.g. Duo rejected the credentials), a part
     check --online tried failed, or status found a stale or missing cursor
  2  CONFIG is invalid: each mistake is printed with its line and key;
     or a cursor file was written by a newer trio-dls
"""


@attrs.frozen
class Command:
    """A subcommand: its name, its line in ``--help``, its arguments, its action.

    A new command (``status``, ``upgrade-config``) is a new entry in
    ``COMMANDS``; nothing else in this module needs to change.
    """

    name: str
    synopsis: str
    """The command line as ``--help`` shows it, e.g. ``trio-dls check CONFIG``."""
    summary: str
    """What it does, in a few words, for ``--help``."""
    add_arguments: Callable[[argparse.ArgumentParser], None]
    action: Callable[[argparse.Namespace], int]
    """Runs the command with its parsed options; returns the exit status."""
    description: str | None = None
    """The text of ``trio-dls NAME --help``; the summary when None."""


@attrs.frozen
class Invocation:
    """A parsed command line: which command, with which options."""

    command: Command
    options: argparse.Namespace

    def __call__(self) -> int:
        """Run the command; return the exit status."""
        return self.command.action(self.options)


def _add_config(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "config",
        metavar="CONFIG",
        type=Path,
        help="a duo_log_sync config file (YAML); see sample_config.yml",
    )


def _add_run_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--grace",
        type=float,
        default=DEFAULT_GRACE,
        metavar="SECONDS",
        help="on SIGTERM/SIGINT, how long deliveries in flight may take "
        f"to finish before trio-dls exits anyway (default {DEFAULT_GRACE:g})",
    )
    parser.add_argument(
        "--shard",
        type=_shard,
        # A string default goes through type= as well: a bad $TRIO_DLS_SHARD
        # is a command-line mistake, exit 2, like a bad --shard.
        default=os.environ.get(SHARD_ENV) or None,
        metavar="INDEX/COUNT",
        help="fetch only the MSP children shard INDEX of COUNT owns, so that "
        "COUNT processes share a parent's children; auto/COUNT takes INDEX "
        "from the host name's trailing number (a StatefulSet's pod-3); "
        f"default ${SHARD_ENV}, else every child",
    )
    parser.add_argument(
        "--progress",
        choices=[m.value for m in ProgressMode],
        type=str.lower,
        default=ProgressMode.AUTO.value,
        help="while catching up, say each fetcher's records sent, cursor, lag "
        "and time left: lines (log lines at an interval), live (a table redrawn "
        "in place), off; auto (default): live on an interactive terminal with "
        "text logs, else lines",
    )
    parser.add_argument(
        "--progress-interval",
        type=_interval,
        default=DEFAULT_INTERVAL,
        metavar="SECONDS",
        help="how often progress is said (default "
        f"{DEFAULT_INTERVAL:g}); once caught up, one line per interval at most",
    )
    _add_log_arguments(parser)
    _add_config(parser)


def _interval(text: str) -> float:
    seconds = _seconds(text)
    if seconds < 1:
        msg = f"expected at least 1 second, got {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return seconds


# The levels --log-level offers, by name.
LOG_LEVELS: Final = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


def _add_log_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--log-level",
        choices=list(LOG_LEVELS),
        type=str.lower,
        default=None,
        help="the least severe of trio-dls's own log lines written (default: "
        "dls_settings.log_level, info)",
    )
    parser.add_argument(
        "--log-format",
        choices=[f.value for f in logsetup.LogFormat],
        type=str.lower,
        default=logsetup.LogFormat.TEXT.value,
        help="trio-dls's own log lines (not the records sent): text, or json, "
        "one JSON object per line for log pipelines (default text)",
    )


def _shard(text: str) -> Shard:
    try:
        return parse_shard(text, socket.gethostname())
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _add_demo_arguments(parser: argparse.ArgumentParser) -> None:
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


def _run_command(options: argparse.Namespace) -> int:
    return run(
        options.config,
        grace=options.grace,
        shard=options.shard,
        stderr=sys.stderr,
        log_level=LOG_LEVELS[options.log_level] if options.log_level else None,
        log_format=logsetup.LogFormat(options.log_format),
        progress=ProgressMode(options.progress),
        progress_interval=options.progress_interval,
    )


def _add_check_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--online",
        action="store_true",
        help="then try each real part once: a signed Duo call per mapped "
        "endpoint (and the account list for MSP), a connection to each server; "
        "one line each, exit 1 if any fails",
    )
    _add_config(parser)


def _check_command(options: argparse.Namespace) -> int:
    return check(options.config, sys.stdout, sys.stderr, online=options.online)


def _add_status_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--max-age",
        type=_seconds,
        default=None,
        metavar="SECONDS",
        help="stale when a cursor was last saved longer ago than this "
        "(default: 3 poll intervals, dls_settings.api.timeout, at least 600)",
    )
    parser.add_argument(
        "--max-lag",
        type=_seconds,
        default=None,
        metavar="SECONDS",
        help="also stale when a cursor's position is further back than this "
        "(default: no limit; a first start catching up lags by days)",
    )
    output = parser.add_mutually_exclusive_group()
    output.add_argument(
        "--json", action="store_true", help="print one JSON document instead"
    )
    output.add_argument(
        "--summary",
        action="store_true",
        help="print only the summary line (Nagios shows the first line)",
    )
    _add_config(parser)


def _seconds(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if not seconds >= 0 or seconds == float("inf"):
        msg = f"expected a number of seconds, got {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return seconds


def _reload_command(options: argparse.Namespace) -> int:
    return ask_reload(options.config, sys.stdout, sys.stderr)


def ask_reload(path: Path, stdout: TextIO, stderr: TextIO) -> int:
    """Ask the daemon running the config at *path* to read it again.

    The config is checked first: a file with mistakes is reported here, to
    the operator who asked, and no request is left for the daemon to refuse.
    """
    config = _load(path, stderr, secrets=False)
    if config is None:
        return EXIT_CONFIG
    try:
        request = reload_request.request_reload(config)
    except OSError as exc:
        print(f"trio-dls: cannot ask for a reload: {exc}", file=stderr)
        return EXIT_FATAL
    print(
        f"reload requested ({request}); the daemon running {path} "
        f"applies it within {reload_request.POLL:g} s: see its log",
        file=stdout,
    )
    return EXIT_OK


def _status_command(options: argparse.Namespace) -> int:
    # Status reads cursors only: an operator who may not read the skey (its
    # file is the daemon's, its variable is in the daemon's unit) can run it.
    config = _load(options.config, sys.stderr, secrets=False)
    if config is None:
        return EXIT_CONFIG
    return status.run_status(
        config,
        sys.stdout,
        sys.stderr,
        max_age=options.max_age,
        max_lag=options.max_lag,
        as_json=options.json,
        only_summary=options.summary,
    )


def _add_upgrade_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "old", metavar="OLD", type=Path, help="a config in DLS's pre-1.0.0 layout"
    )
    parser.add_argument(
        "new", metavar="NEW", type=Path, help="where to write the converted config"
    )
    parser.add_argument("--force", action="store_true", help="replace NEW if it exists")


def _upgrade_command(options: argparse.Namespace) -> int:
    return upgrade_config(
        options.old,
        options.new,
        force=options.force,
        stdout=sys.stdout,
        stderr=sys.stderr,
    )


def _demo_command(options: argparse.Namespace) -> int:
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


COMMANDS: Final = (
    Command(
        name="run",
        synopsis="trio-dls CONFIG",
        summary="run until SIGTERM or SIGINT (Ctrl-C)",
        add_arguments=_add_run_arguments,
        action=_run_command,
        description="Run until SIGTERM or SIGINT (Ctrl-C). trio-dls CONFIG is "
        "short for trio-dls run CONFIG.",
    ),
    Command(
        name="check",
        synopsis="trio-dls check CONFIG",
        summary="validate CONFIG and show what would run; --online also tries "
        "Duo and the servers",
        add_arguments=_add_check_arguments,
        action=_check_command,
        description="Validate CONFIG and show what would run, with the skey "
        "masked; exit 2 listing every mistake, with its line and key. With "
        "--online, then try Duo and every server once (exit 1 if any fails).",
    ),
    Command(
        name="status",
        synopsis="trio-dls status CONFIG",
        summary="show each cursor's position, lag and last save; exit 1 if one "
        "is stale (a cron or Nagios check)",
        add_arguments=_add_status_arguments,
        action=_status_command,
        description="Show each cursor's position, lag and last save, read from "
        "the checkpoint directory (safe while the daemon runs; Duo is not "
        "called); exit 0 if every cursor is fresh, 1 if one is stale or "
        "missing, 2 if CONFIG is invalid.",
    ),
    Command(
        name="reload",
        synopsis="trio-dls reload CONFIG",
        summary="ask the daemon running CONFIG to read it again, as SIGHUP "
        "does (on Windows too)",
        add_arguments=_add_config,
        action=_reload_command,
        description="Check CONFIG, then ask the daemon running it to read it "
        "again (a file in its checkpoint directory, looked for every "
        f"{reload_request.POLL:g} s): the same as SIGHUP, where there is none. Exit 2 "
        "if CONFIG is invalid (nothing is asked).",
    ),
    Command(
        name="upgrade-config",
        synopsis="trio-dls upgrade-config OLD NEW",
        summary="convert a config in DLS's pre-1.0.0 layout, comments kept",
        add_arguments=_add_upgrade_arguments,
        action=_upgrade_command,
        description="Convert OLD, a config in DLS's pre-1.0.0 layout (duoclient, "
        "logs, transport), into NEW in today's layout, keeping its comments and "
        "adding the new optional keys commented out; then check NEW. OLD is never "
        "changed; an existing NEW is replaced only with --force. Exit 2 if "
        "nothing could be written (OLD already current included) or NEW does "
        "not pass check.",
    ),
    Command(
        name="demo",
        synopsis="trio-dls demo",
        summary="run against a bundled fake Duo API (no account needed); "
        "see trio-dls demo --help",
        add_arguments=_add_demo_arguments,
        action=_demo_command,
        description="Run trio-dls against the bundled fake Duo API and five "
        "local listeners standing in for SIEMs; no Duo account, no network.",
    ),
)

# duo_log_sync is run as ``duo_log_sync CONFIG``, and trio-dls is a drop-in
# replacement: a command line that does not start with a command name runs
# the daemon.
DEFAULT_COMMAND: Final = "run"

# Options of ``trio-dls`` itself, which must not be handed to the default
# command.  Their abbreviations (``--vers``) do reach it, and work there too:
# every command takes -h and --version.
TOP_LEVEL_OPTIONS: Final = frozenset({"-h", "--help", "--version"})

# Where the summaries start in --help: the column they had before the table.
_SYNOPSIS_WIDTH: Final = 26


def _commands_help() -> str:
    lines = ["commands:"]
    for command in COMMANDS:
        summary = textwrap.wrap(
            command.summary,
            width=78 - 2 - _SYNOPSIS_WIDTH,
            break_on_hyphens=False,
        )
        if len(command.synopsis) >= _SYNOPSIS_WIDTH:
            lines.append(f"  {command.synopsis}")
        else:
            first = summary.pop(0)
            lines.append(f"  {command.synopsis:<{_SYNOPSIS_WIDTH}}{first}")
        lines += [" " * (2 + _SYNOPSIS_WIDTH) + line for line in summary]
    names = ", ".join(command.name for command in COMMANDS)
    note = (
        f"trio-dls CONFIG is short for trio-dls {DEFAULT_COMMAND} CONFIG. A CONFIG "
        f"named like a command ({names}) is written with a directory "
        f"(trio-dls ./check) or after the command (trio-dls {DEFAULT_COMMAND} check)."
    )
    lines += ["", *textwrap.wrap(note, width=78, break_on_hyphens=False)]
    return "\n".join(lines) + "\n"


def _version(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--version", action="version", version=f"trio-dls {__version__}"
    )


def parser() -> argparse.ArgumentParser:
    """The parser of the whole command line, one subparser per command."""
    top = argparse.ArgumentParser(
        prog="trio-dls",
        usage="%(prog)s [-h] [--version] [COMMAND] ...",
        description=f"{INTRO}\n{_commands_help()}\n{EXIT_STATUS}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _version(top)
    # The commands are listed in the description, with their command lines;
    # argparse's own list would only repeat their names.
    subparsers = top.add_subparsers(
        dest="command",
        metavar="COMMAND",
        required=True,
        prog="trio-dls",
        help=argparse.SUPPRESS,
    )
    for command in COMMANDS:
        sub = subparsers.add_parser(
            command.name,
            description=command.description or command.summary,
        )
        _version(sub)
        command.add_arguments(sub)
    return top


def parse(argv: Sequence[str]) -> Invocation:
    """Parse *argv* (without the program name); exit 2 if it is wrong.

    ``--help`` and ``--version`` print and exit 0, as argparse does.
    """
    args = list(argv)
    names = {command.name for command in COMMANDS}
    if not args or (args[0] not in names and args[0] not in TOP_LEVEL_OPTIONS):
        args.insert(0, DEFAULT_COMMAND)
    options = parser().parse_args(args)
    by_name = {command.name: command for command in COMMANDS}
    return Invocation(by_name[options.command], options)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    return parse(sys.argv[1:] if argv is None else argv)()


def _load(path: Path, stderr: TextIO, *, secrets: bool = True) -> Config | None:
    try:
        return load_config(path, secrets=secrets)
    except ConfigError as exc:
        print(exc.render(), file=stderr)
        count = len(exc.problems)
        print(
            f"trio-dls: {count} problem{'s' if count != 1 else ''} in {path}; "
            "nothing was started",
            file=stderr,
        )
        return None


def check(path: Path, stdout: TextIO, stderr: TextIO, *, online: bool = False) -> int:
    """Validate the config at *path* and print what would run.

    *online*: then try Duo and the servers (``trio_dls.online``), only if the
    config is valid; exit 1 if any part fails.
    """
    config = _load(path, stderr)
    if config is None:
        return EXIT_CONFIG
    print(f"{path}: valid", file=stdout)
    print(describe(config), file=stdout)
    for warning in warnings_for(config):
        print(f"warning: {warning}", file=stdout)
    if online and not check_online(config, stdout):
        return EXIT_FATAL
    return EXIT_OK


def upgrade_config(
    old: Path, new: Path, *, force: bool, stdout: TextIO, stderr: TextIO
) -> int:
    """Convert *old* into *new*, say what moved where, then check *new*."""
    try:
        done = upgrade_file(old, new, force=force)
    except UpgradeError as exc:
        for problem in exc.problems:
            print(f"trio-dls: {problem}", file=stderr)
        print(f"trio-dls: {new} was not written", file=stderr)
        return EXIT_CONFIG
    for note in done.notes:
        print(note, file=stdout)
    print(f"wrote {new} (mode 0600: it holds the skey); checking it:", file=stdout)
    return check(new, stdout, stderr)


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
    json_style = (
        " (compact)"
        if settings.log_format is LogFormat.JSON
        and settings.json_style is JsonStyle.COMPACT
        else ""
    )
    lines.append(f"format:      {settings.log_format.upper()}{json_style}")
    lines.append("servers:")
    for server in config.servers:
        transport = str(server.protocol)
        match server.transport:
            case TlsSettings() as tls:
                transport += f", CA {tls.cert_filepath}"
                if tls.client_cert_filepath:
                    transport += f", client certificate {tls.client_cert_filepath}"
                transport += f", {tls.framing.replace('_', ' ')} framing"
            case TcpSettings() as tcp:
                transport += f", {tcp.framing.replace('_', ' ')} framing"
            case UdpSettings() as udp:
                transport += f", datagrams up to {udp.udp_max_size} bytes, "
                transport += f"{udp.udp_oversize} larger ones"
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


def run(
    path: Path,
    *,
    grace: float,
    stderr: TextIO,
    shard: Shard | None = None,
    log_level: int | None = None,
    log_format: logsetup.LogFormat = logsetup.LogFormat.TEXT,
    progress: ProgressMode = ProgressMode.AUTO,
    progress_interval: float = DEFAULT_INTERVAL,
) -> int:
    """Run the daemon for the config at *path* until it is told to stop.

    With a *shard*, an MSP parent's children are fetched only if it owns them.
    The log is written at *log_level* and above (None: the config's
    ``dls_settings.log_level``), in *log_format*; *progress* is said every
    *progress_interval* seconds (``trio_dls.observe.progress``).  SIGHUP
    reads *path* again.
    """
    config = _load(path, stderr)
    if config is None:
        return EXIT_CONFIG
    log_setup = _LogSetup(stderr=stderr, level=log_level, log_format=log_format)
    log_setup.apply(config)
    for warning in warnings_for(config):
        log.warning("%s", warning)
    log.info("trio-dls %s reading %s", __version__, path)
    watching = Watching(
        choose_mode(progress, stream=stderr, log_format=log_format, environ=os.environ),
        progress_interval,
        stderr,
    )
    # Before any worker thread exists (trio_dls.service.memory).
    limit_malloc_arenas()
    # Start-up is done: its objects live as long as the process.
    freeze_startup_heap()
    status = EXIT_OK
    try:
        trio.run(
            _serve_until_signalled, path, config, grace, shard, log_setup, watching
        )
    except* NewerCursorError as group:
        # Before FatalError, its base class: this one is the operator's to fix.
        for exc in _leaves(group):
            log.error("cannot start: %s", exc)  # noqa: TRY400 - one line
        status = EXIT_CONFIG
    except* FatalError as group:
        for exc in _leaves(group):
            log.error("fatal: %s; exiting with status 1", exc)  # noqa: TRY400 - one line
        status = max(status, EXIT_FATAL)
    except* KeyboardInterrupt:
        # Ctrl-C before the signal handlers were in place: nothing had started.
        log.info("interrupted")
    except* Exception:
        log.exception("unexpected error; exiting so the supervisor restarts trio-dls")
        status = max(status, EXIT_FATAL)
    return status


@attrs.define
class _LogSetup:
    """The log's setup, made again from each config a reload applies."""

    stderr: TextIO
    level: int | None
    """``--log-level``; None: the config's."""
    log_format: logsetup.LogFormat
    _previous: list[str] = attrs.Factory(list)
    """The secrets of the config applied before: its tree may still be stopping."""

    def apply(self, config: Config) -> None:
        """Log as *config* says, hiding its secrets (and the last config's)."""
        skey = config.account.skey.reveal() if config.account.skey else ""
        secrets = [s for s in (skey, *proxy_secrets(config.dls_settings.proxy)) if s]
        hidden, self._previous = [*secrets, *self._previous], secrets
        level = self.level
        if level is None:
            level = LOG_LEVELS[config.dls_settings.log_level.value]
        for problem in logsetup.configure(
            secrets=hidden,
            log_file=Path(config.dls_settings.log_filepath),
            stream=self.stderr,
            level=level,
            log_format=self.log_format,
        ):
            log.warning("%s", problem)


def _leaves(group: BaseExceptionGroup[FatalError]) -> list[FatalError]:
    leaves: list[FatalError] = []
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            leaves += _leaves(exc)
        else:
            leaves.append(exc)
    return leaves


@attrs.frozen
class Watching:
    """How progress is said: mode (resolved), interval, stream for live."""

    mode: ProgressMode
    interval: float
    stream: TextIO


def _platform_stops() -> list[signal.Signals]:
    """The stop signals a platform has beside SIGTERM and SIGINT.

    Windows: Ctrl-Break (``SIGBREAK``), which a console gets, as Ctrl-C, from
    the keyboard or ``GenerateConsoleCtrlEvent``; service wrappers (WinSW,
    NSSM) send one of the two to stop the program (``docs/platforms.md``).
    """
    brk = getattr(signal, "SIGBREAK", None)
    return [brk] if brk is not None else []


async def _serve_until_signalled(  # noqa: PLR0917 - trio.run passes them by position
    path: Path,
    config: Config,
    grace: float,
    shard: Shard | None,
    log_setup: _LogSetup,
    watching: Watching,
) -> None:
    hangup = getattr(signal, "SIGHUP", None)  # not on Windows
    wanted = [signal.SIGTERM, signal.SIGINT, *_platform_stops()]
    wanted += [hangup] if hangup else []
    with trio.open_signal_receiver(*wanted) as signals:
        stops: trio.MemorySendChannel[None]
        reloads: trio.MemorySendChannel[None]
        # Bounded: a burst of signals is one stop, or one reload, pending.
        stops, stopped = trio.open_memory_channel[None](1)
        reloads, reload_asked = trio.open_memory_channel[None](1)

        async def dispatch() -> None:
            async for signum in signals:
                log.info("received %s", signal.Signals(signum).name)
                channel = reloads if signum == hangup else stops
                with contextlib.suppress(trio.WouldBlock):
                    channel.send_nowait(None)

        def asked() -> None:
            log.info("reload requested (%s)", request)
            with contextlib.suppress(trio.WouldBlock):
                reloads.send_nowait(None)

        request = reload_request.request_path(config)
        await trio.to_thread.run_sync(reload_request.clear, request)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(dispatch)
            nursery.start_soon(reload_request.watch, request, asked)
            await run_daemon(
                config,
                shutdown_trigger=stopped.receive,
                force_trigger=stopped.receive,
                grace=grace,
                shard=shard,
                reload_trigger=reload_asked.receive,
                load_config=functools.partial(load_config, path),
                on_reloading=log_setup.apply,
                progress=watching.mode,
                progress_interval=watching.interval,
                progress_stream=watching.stream,
            )
            nursery.cancel_scope.cancel()
