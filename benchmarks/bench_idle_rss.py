"""Benchmark: the daemon's resident memory once started and idle (issue 9).

``python -m trio_dls CONFIG`` runs as its own process, as an operator starts
it, against the fake Duo API (real HTTPS, in a thread of this script) holding
no records at all, so there is no backlog: every endpoint is caught up after
its first request.  All five endpoints go to one TCP listener on loopback.
Once the daemon has logged ``caught up`` for every endpoint, it is left idle
for ``--idle-seconds`` while its VmRSS (from /proc/<pid>/status) is sampled;
the report gives the largest sample and the last one against the goal, and
how much of the last one is the process's own memory (RssAnon) rather than
shared libraries' pages.

``--compare-ref REF`` (repeatable) measures the daemon of another commit the
same way, from a temporary ``git worktree`` put first on its PYTHONPATH (as
this checkout is for the "working tree" row), and prints a row for each.
c4ed47d made the CLI import the fake Duo API (and trustme, cryptography) only
for the demo; ``--compare-ref c4ed47d~1`` shows what that saved.

Run: ``python benchmarks/bench_idle_rss.py [--compare-ref c4ed47d~1]``.  It
reports and never fails on the numbers: benchmarks are not tests.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import queue
import re
import signal
import socketserver
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Final

import attrs

from trio_dls.endpoints import Endpoint
from trio_dls.fakeduo import DatasetSpec, FakeDuo, FakeDuoConfig, serve_in_thread

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping

GOAL_MIB: Final = 32.0
WAIT: Final = 60.0  # seconds; a bound on each wait for the daemon
SAMPLE_EVERY: Final = 0.1  # seconds between two VmRSS readings
REPOSITORY: Final = Path(__file__).resolve().parent.parent
CAUGHT_UP: Final = re.compile(r"/(\w+): caught up \(")


class Siem(socketserver.ThreadingTCPServer):
    """A loopback TCP listener that reads and discards whatever arrives."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        """Listen on a free loopback port."""
        super().__init__(("127.0.0.1", 0), _Discard)

    @property
    def port(self) -> int:
        """The port it listens on."""
        return int(self.server_address[1])


class _Discard(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        while self.rfile.read(65536):
            pass


@contextlib.contextmanager
def listening() -> Iterator[Siem]:
    """Serve a ``Siem`` from a thread for the duration of the block."""
    siem = Siem()
    thread = threading.Thread(target=siem.serve_forever, daemon=True)
    thread.start()
    try:
        yield siem
    finally:
        siem.shutdown()
        siem.server_close()


def mkdir(path: Path) -> Path:
    """Create the directory *path*; return it."""
    path.mkdir()
    return path


def write_config(directory: Path, fake: FakeDuo, siem: Siem) -> Path:
    """A config sending every endpoint to *siem*, with DLS's api defaults."""
    path = directory / "config.yml"
    endpoints = ", ".join(str(endpoint) for endpoint in Endpoint)
    path.write_text(
        f"""\
version: '1.0.0'
dls_settings:
  log_filepath: {directory / "trio-dls.log"}
  checkpointing: {{directory: {directory / "state"}}}
servers:
  - {{id: siem, hostname: 127.0.0.1, port: {siem.port}, protocol: TCP}}
account:
  ikey: {fake.ikey}
  skey: {fake.skey}
  hostname: localhost:{fake.port}
  ca_certs: {fake.ca_certs}
  endpoint_server_mappings:
    - endpoints: [{endpoints}]
      server: siem
""",
        encoding="utf-8",
    )
    return path


def rss_mib(pid: int, field: str = "VmRSS") -> float:
    """A memory *field* of /proc/<pid>/status (resident memory), in MiB."""
    status = Path(f"/proc/{pid}/status").read_text(encoding="ascii")
    for line in status.splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} in /proc/{pid}/status")


class StderrLines:
    """The lines a process writes to stderr, read by a thread, with deadlines."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        """Start reading *proc*'s stderr."""
        if proc.stderr is None:
            raise ValueError("the process's stderr is not a pipe")
        self.seen: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        stream = proc.stderr

        def pump() -> None:
            for line in stream:
                self._queue.put(line)
            self._queue.put(None)

        threading.Thread(target=pump, daemon=True).start()

    def wait_for_all_caught_up(self, timeout: float) -> None:
        """Return once every endpoint logged ``caught up``; raise at *timeout*."""
        deadline = time.monotonic() + timeout
        waiting = {str(endpoint) for endpoint in Endpoint}
        while waiting:
            try:
                line = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise TimeoutError(self._failure(f"still fetching {waiting}")) from None
            if line is None:
                raise RuntimeError(self._failure("the daemon exited"))
            self.seen.append(line)
            if match := CAUGHT_UP.search(line):
                waiting.discard(match.group(1))

    def _failure(self, what: str) -> str:
        return f"{what}; its stderr so far:\n{''.join(self.seen)}"


@attrs.frozen
class Measurement:
    """What one daemon's memory was while idle."""

    label: str
    max_mib: float
    end_mib: float
    anon_end_mib: float
    """The part of the last sample that is the process's own (heap, stacks)
    rather than pages of shared libraries and files."""
    seconds_to_caught_up: float
    exit_status: int


@attrs.frozen
class Failure:
    """Why one daemon could not be measured."""

    label: str
    reason: str


def start_daemon(config: Path, env: Mapping[str, str]) -> subprocess.Popen[str]:
    """``python -m trio_dls CONFIG``, its stderr a pipe."""
    # The working directory is the config's: ``python -m`` puts it first on
    # sys.path, where this repository's checkout would shadow PYTHONPATH.
    return subprocess.Popen(  # noqa: S603 - this interpreter, no shell
        [sys.executable, "-m", "trio_dls", str(config)],
        cwd=config.parent,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def measure(
    label: str, config: Path, env: Mapping[str, str], *, idle_seconds: float
) -> Measurement:
    """Start the daemon for *config*, let it catch up and idle, sample its RSS."""
    started = time.monotonic()
    with start_daemon(config, env) as proc:
        try:
            lines = StderrLines(proc)
            lines.wait_for_all_caught_up(WAIT)
            caught_up = time.monotonic() - started
            samples = [rss_mib(proc.pid)]
            idle_until = time.monotonic() + idle_seconds
            while time.monotonic() < idle_until:
                time.sleep(SAMPLE_EVERY)
                samples.append(rss_mib(proc.pid))
            anon = rss_mib(proc.pid, "RssAnon")
            proc.send_signal(signal.SIGTERM)
            status = proc.wait(timeout=WAIT)
        finally:
            proc.kill()
    return Measurement(label, max(samples), samples[-1], anon, caught_up, status)


def environment(pythonpath: Path, pycache: Path) -> dict[str, str]:
    """This process's environment, *pythonpath* first, bytecode kept in *pycache*.

    An installed daemon starts from compiled bytecode (pip compiles it): one
    compiling its modules as it imports them holds a few MiB more, which is
    not the daemon's.  With the cache in a directory of its own, nothing is
    written into the virtualenv or the checkout.
    """
    env = {
        key: value
        for key, value in os.environ.items()
        if key != "PYTHONDONTWRITEBYTECODE"
    }
    env |= {"PYTHONUNBUFFERED": "1", "PYTHONPYCACHEPREFIX": str(pycache)}
    env["PYTHONPATH"] = os.pathsep.join(
        [str(pythonpath), *filter(None, [os.environ.get("PYTHONPATH")])]
    )
    return env


def check_imports(env: Mapping[str, str], cwd: Path, tree: Path) -> None:
    """Make sure ``trio_dls`` imports with *env* in *cwd*, and from *tree*.

    This also fills the bytecode cache with everything the daemon imports.
    """
    done = subprocess.run(
        [sys.executable, "-c", "import trio_dls.cli; print(trio_dls.__file__)"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=WAIT,
        check=False,
    )
    if done.returncode:
        raise RuntimeError(f"cannot import trio_dls.cli:\n{done.stderr}")
    source = Path(done.stdout.strip()).resolve().parent.parent
    if source != tree.resolve():
        raise RuntimeError(f"trio_dls came from {source}, not {tree}")


@contextlib.contextmanager
def worktree(ref: str) -> Iterator[Path]:
    """A temporary, detached ``git worktree`` of *ref*, removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="trio-dls-bench-ref-") as parent:
        path = Path(parent) / "tree"
        git = ["git", "-C", str(REPOSITORY), "worktree"]
        subprocess.run(  # noqa: S603 - git from PATH, as a developer runs it
            [*git, "add", "--detach", "--quiet", str(path), ref],
            check=True,
            timeout=WAIT,
        )
        try:
            yield path
        finally:
            subprocess.run(  # noqa: S603
                [*git, "remove", "--force", str(path)],
                check=False,
                timeout=WAIT,
            )


def report(results: list[Measurement | Failure], idle_seconds: float) -> None:
    """Print one row per measured daemon."""
    width = max(len(item.label) for item in results)
    print(  # noqa: T201 - the benchmark's report
        f"idle RSS of python -m trio_dls CONFIG, no backlog, 5 endpoints, "
        f"{idle_seconds:g} s idle after caught up"
    )
    print(  # noqa: T201
        f"{'ref':<{width}}  {'max MiB':>8}  {'end MiB':>8}  {'goal MiB':>8}  met"
        f"  {'anon MiB':>8}  caught up  exit"
    )
    for item in results:
        if isinstance(item, Failure):
            print(f"{item.label:<{width}}  not measured: {item.reason}")  # noqa: T201
            continue
        met = "yes" if item.max_mib <= GOAL_MIB else "no"
        print(  # noqa: T201
            f"{item.label:<{width}}  {item.max_mib:8.1f}  {item.end_mib:8.1f}  "
            f"{GOAL_MIB:8g}  {met:<3}  {item.anon_end_mib:8.1f}  "
            f"{item.seconds_to_caught_up:7.1f} s  "
            f"{item.exit_status:4d}"
        )


def main(arguments: argparse.Namespace) -> None:
    """Measure each ``--compare-ref``'s daemon, then the working tree's."""
    spec = DatasetSpec(seed=9, counts=dict.fromkeys(Endpoint, 0), admin_burst=0)
    results: list[Measurement | Failure] = []
    with (
        serve_in_thread(FakeDuo(FakeDuoConfig(dataset=spec))) as fake,
        listening() as siem,
        tempfile.TemporaryDirectory(prefix="trio-dls-bench-rss-") as directory,
        contextlib.ExitStack() as stack,
    ):
        runs: list[tuple[str, Path]] = [
            (ref, stack.enter_context(worktree(ref))) for ref in arguments.compare_ref
        ]
        runs.append(("working tree", REPOSITORY))
        for number, (label, pythonpath) in enumerate(runs):
            # A directory per daemon: each starts without cursors.
            warm_up, measured = (
                write_config(mkdir(Path(directory) / f"{number}-{use}"), fake, siem)
                for use in ("warm-up", "measured")
            )
            env = environment(pythonpath, Path(directory) / "pycache")
            try:
                check_imports(env, warm_up.parent, pythonpath)
                # A first run until caught up caches the bytecode of what is
                # imported only once running (duo_client's, http.client);
                # without it the first tree measured would pay for compiling.
                measure(label, warm_up, env, idle_seconds=0)
                results.append(
                    measure(label, measured, env, idle_seconds=arguments.idle_seconds)
                )
            # One tree that does not start (another's edit in progress, an
            # old commit) leaves the other rows worth printing.
            except (RuntimeError, TimeoutError) as exc:
                results.append(Failure(label, str(exc).strip().splitlines()[-1]))
    report(results, arguments.idle_seconds)


def parse(argv: list[str]) -> argparse.Namespace:
    """Read the command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument(
        "--idle-seconds",
        type=float,
        default=5.0,
        help="how long the daemon idles, sampled, after it caught up",
    )
    parser.add_argument(
        "--compare-ref",
        metavar="REF",
        action="append",
        default=[],
        help="also measure the daemon of this git commit (e.g. c4ed47d~1); "
        "may be repeated",
    )
    return parser.parse_args(argv)


if __name__ == "__main__":
    main(parse(sys.argv[1:]))
