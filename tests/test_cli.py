"""The command line: parsing, check, help, version, exit codes, signals, secrecy.

Rules for these tests: how a command line is understood is tested through
``cli.parse``, which starts nothing; the daemon runs as a real process
(``python -m trio_dls``) so that signals, exit statuses and the absence of
tracebacks are those an operator sees; waiting on it is bounded by timeouts,
never a sleep.
"""

from __future__ import annotations

import io
import logging
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import trio

from trio_dls import __version__, cli
from trio_dls.cli import main
from trio_dls.duo.cursors import NewerCursorError
from trio_dls.duo.shards import Shard
from trio_dls.fakeduo import DatasetSpec, FakeDuo, FakeDuoConfig, serve_in_thread
from trio_dls.supervisor import DEFAULT_GRACE

SKEY = "cLiSkEyCliSkEyCliSkEyCliSkEyCliSkEy00042"


def write_config(tmp_path: Path, **overrides: str) -> Path:
    """Write a valid config (with *overrides* of its top lines) to tmp_path."""
    values = {
        "log_format": "JSON",
        "extra_account": "",
        "endpoints": "[auth, adminaction, telephony, trustmonitor, activity]",
        # Nothing listens on port 9 of loopback: the daemon retries, and no
        # name lookup leaves the machine (a real API hostname would ask DNS).
        "duo_host": "localhost:9",
    } | overrides
    path = tmp_path / "config.yml"
    path.write_text(
        f"""\
version: '1.0.0'
dls_settings:
  log_filepath: {tmp_path / "trio-dls.log"}
  log_format: {values["log_format"]}
  checkpointing:
    directory: {tmp_path / "state"}
servers:
  - id: siem
    hostname: 127.0.0.1
    port: 9000
    protocol: TCP
account:
  ikey: DIXXXXXXXXXXXXXXXXXX
  skey: {SKEY}
  hostname: {values["duo_host"]}
{values["extra_account"]}  endpoint_server_mappings:
    - endpoints: {values["endpoints"]}
      server: siem
"""
    )
    return path


def run_cli(*args: str) -> tuple[int, str, str]:
    """Run ``main`` in-process; return (status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    old = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = out, err
    try:
        status = main(list(args))
    except SystemExit as exc:  # argparse's --help and --version
        status = int(exc.code or 0)
    finally:
        sys.stdout, sys.stderr = old
    return status, out.getvalue(), err.getvalue()


def test_check_summarises_a_valid_config(tmp_path: Path) -> None:
    """``check`` exits 0 and shows accounts, mappings, format and checkpoints."""
    status, out, err = run_cli("check", str(write_config(tmp_path)))
    assert (status, err) == (0, "")
    assert "ikey DIXXXXXXXXXXXXXXXXXX at localhost:9" in out
    assert "skey ******** (inline)" in out
    assert "  auth -> siem" in out
    assert "  trustmonitor -> siem" in out
    assert "format:      JSON" in out
    assert f"checkpoints: {tmp_path / 'state'}" in out
    assert SKEY not in out


def test_check_reports_problems_and_exits_2(tmp_path: Path) -> None:
    """``check`` on a broken config prints each problem and exits 2."""
    path = write_config(tmp_path, log_format="XML")
    status, out, err = run_cli("check", str(path))
    assert (status, out) == (2, "")
    assert err.splitlines() == [
        f"{path}:4: dls_settings.log_format: expected one of JSON, CEF, got 'XML'",
        f"trio-dls: 1 problem in {path}; nothing was started",
    ]


def test_version() -> None:
    """``--version`` prints the version."""
    status, out, _ = run_cli("--version")
    assert (status, out) == (0, f"trio-dls {__version__}\n")


def test_help_explains_commands_and_exit_codes() -> None:
    """``--help`` names the commands and the exit statuses."""
    status, out, _ = run_cli("--help")
    assert status == 0
    for text in ("trio-dls CONFIG", "trio-dls check CONFIG", "2  CONFIG is invalid"):
        assert text in out


@pytest.mark.parametrize(
    ("argv", "command", "grace"),
    [
        (["config.yml"], "run", 5.0),
        (["--grace", "7", "config.yml"], "run", 7.0),
        (["config.yml", "--grace", "7"], "run", 7.0),
        (["--grace=7", "config.yml"], "run", 7.0),
        (["run", "config.yml"], "run", 5.0),
        (["run", "--grace", "7", "config.yml"], "run", 7.0),
        (["check", "config.yml"], "check", None),
    ],
)
def test_command_lines_parse_to_their_command(
    argv: list[str], command: str, grace: float | None
) -> None:
    """A config alone (with --grace before or after it) runs; ``check`` checks."""
    invocation = cli.parse(argv)
    assert command == invocation.command.name
    assert Path("config.yml") == invocation.options.config
    assert grace == getattr(invocation.options, "grace", None)


def test_demo_parses_its_options() -> None:
    """``demo`` takes its own options, the format in any case."""
    invocation = cli.parse(
        ["demo", "--seconds", "3", "--format", "cef", "--rate-limit", "30"]
    )
    assert invocation.command.name == "demo"
    options = invocation.options
    assert (
        options.seconds,
        options.format,
        options.rate_limit,
        options.backlog,
    ) == (3.0, "CEF", 30.0, None)


@pytest.mark.parametrize("argv", [["./check"], ["run", "check"], ["--", "check"]])
def test_a_config_named_like_a_command_can_still_be_run(argv: list[str]) -> None:
    """A config file called ``check`` runs as ``./check`` or ``run check``."""
    invocation = cli.parse(argv)
    assert ("run", Path("check")) == (
        invocation.command.name,
        invocation.options.config,
    )


def test_main_dispatches_to_the_parsed_command(monkeypatch: pytest.MonkeyPatch) -> None:
    """``main`` runs the command the table maps the command line to."""
    calls: list[tuple[Path, float, object, object, object, object, float]] = []

    def fake_run(
        path: Path,
        *,
        grace: float,
        stderr: object,
        shard: object,
        log_level: object,
        log_format: object,
        progress: object,
        progress_interval: float,
    ) -> int:
        del stderr
        calls.append(
            (path, grace, shard, log_level, log_format, progress, progress_interval)
        )
        return 7

    monkeypatch.setattr(cli, "run", fake_run)
    monkeypatch.delenv("TRIO_DLS_SHARD", raising=False)
    argv = ["config.yml", "--grace", "2", "--shard", "1/2", "--log-level", "debug"]
    progress = ["--progress", "LINES", "--progress-interval", "5"]
    assert main([*argv, "--log-format", "json", *progress]) == 7
    assert main(["config.yml"]) == 7
    assert [
        (Path("config.yml"), 2.0, Shard(1, 2), logging.DEBUG, "json", "lines", 5.0),
        # No --log-level: the config's dls_settings.log_level decides.
        (Path("config.yml"), DEFAULT_GRACE, None, None, "text", "auto", 30.0),
    ] == calls


@pytest.mark.parametrize("interval", ["0", "0.5", "-1", "soon", "inf"])
def test_a_progress_interval_under_a_second_is_refused(
    interval: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--progress-interval`` takes seconds, at least one: else exit 2."""
    with pytest.raises(SystemExit) as exited:
        cli.parse(["--progress-interval", interval, "config.yml"])
    assert exited.value.code == 2
    assert "--progress-interval" in capsys.readouterr().err


def test_no_shard_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without --shard or TRIO_DLS_SHARD, the daemon owns every child."""
    monkeypatch.delenv("TRIO_DLS_SHARD", raising=False)
    assert cli.parse(["config.yml"]).options.shard is None


@pytest.mark.parametrize(
    "argv",
    [
        ["--shard", "1/2", "config.yml"],
        ["config.yml", "--shard=1/2"],
        ["run", "--shard", "1/2", "config.yml"],
    ],
)
def test_shard_reaches_the_run_command(
    argv: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--shard INDEX/COUNT`` is parsed into the run command's options."""
    monkeypatch.delenv("TRIO_DLS_SHARD", raising=False)
    assert Shard(1, 2) == cli.parse(argv).options.shard


def test_shard_from_the_environment_and_the_option_wins(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """TRIO_DLS_SHARD sets the shard; --shard, when given, takes precedence."""
    monkeypatch.setenv("TRIO_DLS_SHARD", "2/3")
    assert Shard(2, 3) == cli.parse(["config.yml"]).options.shard
    assert Shard(0, 3) == cli.parse(["--shard", "0/3", "config.yml"]).options.shard


def test_shard_auto_takes_the_pods_ordinal(monkeypatch: pytest.MonkeyPatch) -> None:
    """auto/COUNT reads INDEX from the host name, as a StatefulSet's pod's."""
    monkeypatch.setenv("TRIO_DLS_SHARD", "auto/4")
    monkeypatch.setattr("socket.gethostname", lambda: "trio-dls-3")
    assert Shard(3, 4) == cli.parse(["config.yml"]).options.shard


@pytest.mark.parametrize(
    ("option", "env", "message"),
    [
        ("2/2", None, "from 0 to 1 for 2 shards, not 2"),
        ("half", None, "'half' is not a shard"),
        (None, "x/2", "'x/2' is not a shard"),
    ],
)
def test_a_bad_shard_exits_2_with_one_line(
    option: str | None,
    env: str | None,
    message: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A wrong --shard or TRIO_DLS_SHARD is a command-line mistake: exit 2, one line."""
    if env is None:
        monkeypatch.delenv("TRIO_DLS_SHARD", raising=False)
    else:
        monkeypatch.setenv("TRIO_DLS_SHARD", env)
    argv = ["config.yml"] if option is None else ["--shard", option, "config.yml"]
    with pytest.raises(SystemExit) as exited:
        cli.parse(argv)
    assert exited.value.code == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert len(errors) == 1
    assert "argument --shard" in errors[0]
    assert message in errors[0]


def test_help_lists_every_command() -> None:
    """``--help`` shows each command of the table and how to name a config."""
    status, out, _ = run_cli("--help")
    assert status == 0
    for command in cli.COMMANDS:
        # A long synopsis has its summary on the lines below it.
        assert f"  {command.synopsis} " in out or f"  {command.synopsis}\n" in out
    assert "trio-dls run check" in out


@pytest.mark.parametrize("argv", [["--version"], ["check", "--version"]])
def test_version_anywhere_before_the_config(argv: list[str]) -> None:
    """``--version`` works before or after a command name, as it did."""
    status, out, _ = run_cli(*argv)
    assert (status, out) == (0, f"trio-dls {__version__}\n")


def test_an_unknown_option_exits_2_with_argparses_message() -> None:
    """An option no command knows exits 2, with usage and argparse's error."""
    status, out, err = run_cli("config.yml", "--bogus")
    assert (status, out) == (2, "")
    assert err.startswith("usage: trio-dls ")
    assert err.endswith("trio-dls: error: unrecognized arguments: --bogus\n")


def test_no_config_exits_2_asking_for_one() -> None:
    """``trio-dls`` alone exits 2 and says CONFIG is required."""
    status, _, err = run_cli()
    assert status == 2
    assert err.endswith("error: the following arguments are required: CONFIG\n")


def spawn(config: Path, *args: str) -> subprocess.Popen[str]:
    """Start the daemon as an operator would, stderr captured."""
    return subprocess.Popen(
        [sys.executable, "-m", "trio_dls", *args, str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


class Lines:
    """The lines a process writes to stderr, readable with a deadline."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        """Start reading *proc*'s stderr in a thread."""
        self.seen: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        assert proc.stderr is not None
        stream = proc.stderr

        def pump() -> None:
            for line in stream:
                self._queue.put(line)
            self._queue.put(None)

        threading.Thread(target=pump, daemon=True).start()

    def wait_for(self, text: str, timeout: float = 20, *, count: int = 1) -> None:
        """Return once *count* lines holding *text* were written; fail at *timeout*."""
        deadline = time.monotonic() + timeout
        while sum(text in line for line in self.seen) < count:
            line = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            if line is None:
                pytest.fail(f"exited before writing {text!r}: {self.seen}")
            self.seen.append(line)

    def rest(self) -> str:
        """Everything written, once the process has exited."""
        while (line := self._queue.get(timeout=10)) is not None:
            self.seen.append(line)
        return "".join(self.seen)


def test_ctrl_break_stops_the_daemon_where_the_platform_has_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Windows's SIGBREAK joins SIGTERM and SIGINT as a stop; elsewhere nothing.

    Linux has no SIGBREAK to send, so its presence is simulated: the stop
    signals are chosen from what the signal module has.
    """
    monkeypatch.delattr(signal, "SIGBREAK", raising=False)
    assert cli._platform_stops() == []
    monkeypatch.setattr(signal, "SIGBREAK", 21, raising=False)
    assert cli._platform_stops() == [21]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_daemon_stops_cleanly_on_signal(tmp_path: Path, signum: int) -> None:
    """SIGTERM or SIGINT stops the daemon with status 0 within the grace period."""
    with spawn(write_config(tmp_path), "--grace", "5") as proc:
        lines = Lines(proc)
        try:
            lines.wait_for("started:")
            proc.send_signal(signum)
            status = proc.wait(timeout=5)
        finally:
            proc.kill()
        output = lines.rest()
    assert status == 0
    assert f"received {signal.Signals(signum).name}" in output
    assert "stopped" in output
    assert "Traceback" not in output


def test_daemon_writes_its_log_file_without_the_skey(tmp_path: Path) -> None:
    """The daemon logs to log_filepath too, and the skey appears nowhere."""
    with spawn(write_config(tmp_path)) as proc:
        lines = Lines(proc)
        try:
            lines.wait_for("started:")
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=5)
        finally:
            proc.kill()
        output = lines.rest()
    logged = (tmp_path / "trio-dls.log").read_text()
    assert "started:" in logged
    assert SKEY not in output + logged


def test_daemon_with_a_broken_config_exits_2_without_traceback(
    tmp_path: Path,
) -> None:
    """A config mistake is reported in one line per problem, status 2."""
    path = write_config(tmp_path, log_format="XML", extra_account="  is_msp: maybe\n")
    proc = subprocess.run(
        [sys.executable, "-m", "trio_dls", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        f"{path}:4: dls_settings.log_format: expected one of JSON, CEF, got 'XML'",
        f"{path}:16: account.is_msp: expected true or false, got 'maybe'",
        f"trio-dls: 2 problems in {path}; nothing was started",
    ]
    assert SKEY not in proc.stdout + proc.stderr


def test_a_cursor_file_from_a_newer_release_exits_2_with_one_line(
    tmp_path: Path,
) -> None:
    """A cursor file in a newer format stops the start: one line, status 2."""
    state = tmp_path / "state"
    state.mkdir()
    cursor = state / "trio-dls_auth.cursor"
    cursor.write_text(
        '{"version": 2, "written_by": "trio-dls 9.0", "endpoint": "auth"}\n'
    )
    with spawn(write_config(tmp_path, endpoints="[auth]")) as proc:
        lines = Lines(proc)
        try:
            status = proc.wait(timeout=30)
        finally:
            proc.kill()
        output = lines.rest()
    assert status == 2
    refused = [line for line in output.splitlines() if "cannot start:" in line]
    assert [
        f"cannot start: {cursor}: written by trio-dls 9.0 (cursor format 2); this "
        f"is trio-dls {__version__} (format 1): upgrade trio-dls or move the file "
        "away"
    ] == [line.partition(" trio_dls: ")[2] for line in refused]
    assert "Traceback" not in output
    assert cursor.exists()


@pytest.mark.usefixtures("daemon_logger")
def test_a_newer_cursor_met_while_running_exits_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A newer cursor file found by a fetcher, not at start-up, is also status 2."""

    async def fetcher_meets_a_newer_file(*_: object) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(trio.sleep_forever)
            raise NewerCursorError(2, "trio-dls 9.0", "trio-dls_auth.cursor")

    monkeypatch.setattr(cli, "_serve_until_signalled", fetcher_meets_a_newer_file)
    stderr = io.StringIO()
    status = cli.run(write_config(tmp_path), grace=1, stderr=stderr)
    assert status == 2
    refused = [line for line in stderr.getvalue().splitlines() if "ERROR" in line]
    assert len(refused) == 1
    assert "cannot start: trio-dls_auth.cursor: written by trio-dls 9.0" in refused[0]
    assert "Traceback" not in stderr.getvalue()


def test_rejected_credentials_exit_1_with_one_line(tmp_path: Path) -> None:
    """Credentials Duo refuses stop the daemon: one clear line, status 1."""
    fake = FakeDuo(FakeDuoConfig(dataset=DatasetSpec(seed=1, admin_burst=0)))
    with serve_in_thread(fake):
        path = write_config(
            tmp_path,
            endpoints="[auth]",
            duo_host=f"localhost:{fake.port}\n  ca_certs: {fake.ca_certs}",
        )
        proc = subprocess.run(
            [sys.executable, "-m", "trio_dls", str(path)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert proc.returncode == 1
    fatal = [line for line in proc.stderr.splitlines() if "fatal:" in line]
    assert len(fatal) == 1
    assert (
        "account DIXXXXXXXXXXXXXXXXXX, endpoint auth: GET "
        "/admin/v2/logs/authentication: Duo rejected the credentials"
    ) in fatal[0]
    assert "Traceback" not in proc.stderr
    assert SKEY not in proc.stdout + proc.stderr


@pytest.mark.parametrize(
    ("fmt", "sample"), [("json", '{"'), ("cef", "CEF:0|Duo Security|DuoLogSync|")]
)
def test_demo_runs_the_pipeline_against_the_fake_duo_api(fmt: str, sample: str) -> None:
    """``trio-dls demo`` moves every record from the fake Duo API and exits 0."""
    proc = subprocess.run(
        [sys.executable, "-m", "trio_dls", "demo", "--seconds", "4", "--format", fmt],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "every record Duo held reached the SIEM." in proc.stdout
    lines = proc.stdout.splitlines()
    for endpoint in ("auth", "adminaction", "telephony", "trustmonitor", "activity"):
        shown = [line for line in lines if line.startswith(f"  {endpoint}: ")]
        assert len(shown) == 1
        assert sample in shown[0]
    assert "Traceback" not in proc.stdout + proc.stderr
