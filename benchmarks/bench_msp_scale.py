"""Benchmark: an MSP parent with many children: catch-up, fairness, idle memory.

``python -m trio_dls CONFIG`` runs as its own process, as an operator starts
it, for an MSP parent (``is_msp: true``) whose N children (``--children N``,
repeatable; default 100 and 1000) each have the five log endpoints.  The fake
Duo API (real HTTPS on loopback, in a thread of this script, no rate limit)
lists every child in one Accounts API call, as Duo does.  All five endpoints
go, as JSON lines, to one TCP listener on loopback, which keeps each line with
the time its chunk arrived; lines are parsed only after the run.

Data set.  Every child holds a small backlog (``SMALL`` records per endpoint,
one page each); one child in ``BIG_EVERY`` (2 %) is *big*: it holds
``BIG_FACTOR`` (20) times as many, two pages or more on most endpoints.  The
records end ten minutes before the start, within the daemon's first window.

Phases, for each daemon measured:

1. Catch-up.  From the daemon's start until every record the fake serves has
   arrived: *wall s* (start to the arrival of the last record), *CPU s* (the
   daemon's user + system time from /proc/<pid>/stat, all threads, at that
   moment), *peak MiB* (the largest VmRSS sampled every 50 ms), and *HWM MiB*
   (VmHWM, the kernel's own peak, read at the end).
2. Fairness.  A child's *completion time* is the arrival time (seconds since
   the daemon's start) of the last of its records.  Over the small children:
   ``small_median_s`` (their median completion time), ``small_all_s`` (the
   largest: when every small child was complete); over the big ones,
   ``big_median_s`` and ``big_all_s`` likewise.  Two ratios:

   * ``median/all`` = ``small_median_s / small_all_s``: near 1, the small
     children complete together; near 0, a few small ones lag far behind the
     typical one (a tail of starved children).
   * ``slow/med`` = ``wall_s / all_median_s``: the slowest child's catch-up
     time over the median child's, over every child (the issue's measure).
   * ``small/big`` = ``small_all_s / big_all_s``: under 1, every small child
     was complete before the last big one; at or over 1, some small child
     waited as long as the big ones did (a starving design: small children
     served only after, or behind, the big backlogs).

3. Idle.  Once everything arrived and every fetcher logged ``caught up`` (the
   poll interval, ``api.timeout``, is 120 s, DLS's default, so nothing is
   polled again), the daemon settles for ``--settle-seconds`` then VmRSS is
   sampled every 50 ms for ``--idle-seconds``: *idle MiB* is the median
   sample, *anon MiB* the process's own part (RssAnon) at the end.  With two
   or more sizes, *KiB/child* is (idle RSS at the largest N - idle RSS at the
   smallest N) / (difference in N), in KiB: the memory each child costs.
4. Restarted idle.  The daemon is stopped (SIGTERM) and started again on the
   same cursors, with nothing left to fetch: once every fetcher logged
   ``caught up`` and it settled, *rst MiB* is its median RSS over the idle
   samples and *rst KiB/ch* the same slope over N.  This is the cost of idle
   children without the catch-up's high-water mark, which Python's allocator
   keeps after a first start.  *rst recs* counts records it sent (a clean
   restart with nothing new sends none).

Every record received is identified (child, endpoint, Duo's id); the run
*fails* (exit 1) if one the fake serves is missing (or has not arrived after
``CATCH_UP_LIMIT`` seconds), one arrived twice, or one arrived that the fake
does not serve.  A daemon that does not start (a tree that does not import)
is reported as not measured, without failing the run.  The numbers
themselves are reported, never judged: benchmarks are not tests.

``--compare-ref REF`` (repeatable) measures another commit's daemon the same
way, from a temporary ``git worktree`` put first on its PYTHONPATH
(``bench_idle_rss``'s mechanism), against the same fake; ``--json PATH``
writes the results as JSON.

Run: ``python benchmarks/bench_msp_scale.py [--children 100] [--compare-ref
HEAD] [--json out.json]``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socketserver
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TypeVar

import attrs

# Run as a script, this file's directory is first on sys.path, not the
# repository: put the repository there too, to reach the shared helpers.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.bench_idle_rss import (
    CAUGHT_UP,
    REPOSITORY,
    check_imports,
    environment,
    mkdir,
    rss_mib,
    start_daemon,
    worktree,
)
from trio_dls.endpoints import Endpoint
from trio_dls.fakeduo import (
    ChildAccount,
    DatasetSpec,
    FakeDuo,
    FakeDuoConfig,
    make_children,
    record_key,
    serve_in_thread,
)
from trio_dls.fakeduo.data import generate_records

if TYPE_CHECKING:
    import subprocess
    from collections.abc import Iterator, Mapping, Sequence

SIZES: Final = (100, 1000)
SMALL: Final = {
    Endpoint.AUTH: 40,
    Endpoint.ADMINACTION: 10,
    Endpoint.TELEPHONY: 8,
    Endpoint.ACTIVITY: 30,
    Endpoint.TRUSTMONITOR: 30,
}
BIG_EVERY: Final = 50  # one child in 50 (2 %) is big
BIG_FACTOR: Final = 20
SAMPLE_EVERY: Final = 0.05  # seconds between two /proc readings
CATCH_UP_LIMIT: Final = 900.0  # seconds; a bound on one daemon's catch-up
WAIT: Final = 60.0  # seconds; a bound on the daemon's start and stop
POLL: Final = 120  # api.timeout: the poll interval once caught up
TICK: Final = os.sysconf("SC_CLK_TCK")
Key = tuple[str, Endpoint, str]
S = TypeVar("S", bound=socketserver.BaseServer)


# -- the SIEM ---------------------------------------------------------------


class Siem(socketserver.ThreadingTCPServer):
    """A loopback TCP listener keeping every line with its arrival time."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        """Listen on a free loopback port."""
        super().__init__(("127.0.0.1", 0), _Keep)
        self.lock = threading.Lock()
        self.chunks: list[tuple[float, list[bytes]]] = []
        self.lines = 0

    @property
    def port(self) -> int:
        """The port it listens on."""
        return int(self.server_address[1])

    def keep(self, at: float, lines: list[bytes]) -> None:
        """Keep *lines*, complete at monotonic time *at*."""
        with self.lock:
            self.chunks.append((at, lines))
            self.lines += len(lines)

    def take(self) -> list[tuple[float, list[bytes]]]:
        """Return every line kept so far, and forget them."""
        with self.lock:
            chunks, self.chunks, self.lines = self.chunks, [], 0
        return chunks


class _Keep(socketserver.StreamRequestHandler):
    server: Siem

    def handle(self) -> None:
        pending = b""
        while chunk := self.rfile.read1(65536):
            *lines, pending = (pending + chunk).split(b"\n")
            if lines:
                self.server.keep(time.monotonic(), lines)


@contextlib.contextmanager
def serving(server: S) -> Iterator[S]:
    """Serve *server* from a thread for the duration of the block."""
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def listening() -> contextlib.AbstractContextManager[Siem]:
    """Serve a ``Siem`` from a thread for the duration of the block."""
    return serving(Siem())


# -- the fake Duo -------------------------------------------------------------


def endpoint_of(record: Mapping[str, Any]) -> Endpoint:
    """Which log a delivered JSON record came from."""
    if "sekey" in record:
        return Endpoint.TRUSTMONITOR
    if "telephony_id" in record:
        return Endpoint.TELEPHONY
    if "activity_id" in record:
        return Endpoint.ACTIVITY
    if "txid" in record:
        return Endpoint.AUTH
    return Endpoint.ADMINACTION


@attrs.frozen
class Scene:
    """A fake MSP parent, its children, and what a correct client delivers."""

    fake: FakeDuo
    children: tuple[ChildAccount, ...]
    big: frozenset[str]
    expected: frozenset[Key]
    build_seconds: float


@contextlib.contextmanager
def msp_fake(count: int, small: Mapping[Endpoint, int]) -> Iterator[Scene]:
    """Serve a fake MSP parent with *count* children; one in 50 is big."""
    started = time.monotonic()
    end = time.time() - 600
    children = make_children(count, seed=count)
    spec = DatasetSpec(seed=1, counts=small, end=end, span=86_400.0, admin_burst=0)
    config = FakeDuoConfig(children=children, dataset=spec)
    big = frozenset(c.account_id for c in children[::BIG_EVERY])
    extra = attrs.evolve(
        spec,
        seed=2,
        counts={e: n * (BIG_FACTOR - 1) for e, n in small.items()},
        hard_cases=False,
    )
    fake = FakeDuo(config)
    for account_id in sorted(big):
        for endpoint in Endpoint:
            for record in generate_records(extra, account_id, endpoint, end):
                fake.add_record(endpoint, record.body, record.ts_ms, account_id)
    with serve_in_thread(fake):
        expected = frozenset(
            (child.account_id, endpoint, record.key)
            for child in children
            for endpoint in Endpoint
            for record in fake.servable_records(endpoint, child.account_id)
        )
        yield Scene(fake, children, big, expected, time.monotonic() - started)


def write_config(directory: Path, fake: FakeDuo, siem: Siem) -> Path:
    """An MSP config sending every endpoint to *siem*, polling every 120 s."""
    path = directory / "config.yml"
    endpoints = ", ".join(str(endpoint) for endpoint in Endpoint)
    path.write_text(
        f"""\
version: '1.0.0'
dls_settings:
  log_filepath: {directory / "trio-dls.log"}
  api: {{offset: 2, timeout: {POLL}}}
  checkpointing: {{directory: {directory / "state"}}}
servers:
  - {{id: siem, hostname: 127.0.0.1, port: {siem.port}, protocol: TCP}}
account:
  ikey: {fake.ikey}
  skey: {fake.skey}
  hostname: localhost:{fake.port}
  ca_certs: {fake.ca_certs}
  is_msp: true
  endpoint_server_mappings:
    - endpoints: [{endpoints}]
      server: siem
""",
        encoding="utf-8",
    )
    return path


# -- the daemon -------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User + system time of every thread of *pid* so far, in seconds."""
    stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii")
    # The command name, in parentheses, may hold spaces: count after it.
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


class Stderr:
    """A thread reading the daemon's stderr: the fetchers caught up, the tail."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        """Start reading *proc*'s stderr."""
        if proc.stderr is None:
            raise ValueError("the process's stderr is not a pipe")
        self.caught_up: set[str] = set()
        self.tail: list[str] = []
        self.ended = threading.Event()
        stream = proc.stderr

        def pump() -> None:
            for line in stream:
                if match := CAUGHT_UP.search(line):
                    # The fetcher's name: "<child name>/<endpoint>".
                    self.caught_up.add(line[: match.end(1)].rsplit(": ", 1)[-1])
                self.tail = [*self.tail[-19:], line]
            self.ended.set()

        threading.Thread(target=pump, daemon=True).start()

    def failure(self, what: str) -> str:
        """*what*, with the last lines the daemon wrote."""
        return f"{what}; the daemon's last stderr lines:\n{''.join(self.tail)}"


@attrs.frozen
class Run:
    """What one daemon did for one size."""

    label: str
    children: int
    expected: int
    received: int
    missing: int
    duplicated: int
    unexpected: int
    wall_s: float
    cpu_s: float
    idle_cpu_s: float
    """CPU seconds spent from the end of catch-up to the end of the idle phase."""
    peak_mib: float
    hwm_mib: float
    idle_mib: float
    anon_mib: float
    idle_fds: int
    """File descriptors the idle daemon holds (sockets, mostly)."""
    idle_threads: int
    all_median_s: float
    """The median completion time over every child."""
    small_median_s: float
    small_all_s: float
    big_median_s: float
    big_all_s: float
    exit_status: int
    restarted_idle_mib: float = 0.0
    """The median idle RSS after a clean restart with nothing to fetch."""
    restarted_received: int = 0
    """Records sent after that restart (a clean restart sends none)."""

    @property
    def exact(self) -> bool:
        """Whether every record arrived exactly once, and nothing else."""
        return not (self.missing or self.duplicated or self.unexpected)


@attrs.frozen
class Failure:
    """Why one daemon could not be measured for one size."""

    label: str
    children: int
    reason: str
    incomplete: bool = False
    """Whether records the fake serves never arrived (a failure of the run)."""


class IncompleteError(TimeoutError):
    """The daemon did not deliver every record within ``CATCH_UP_LIMIT``."""


@attrs.frozen
class Timing:
    """The options of one measurement."""

    settle_seconds: float
    idle_seconds: float


def tally(
    scene: Scene, chunks: Sequence[tuple[float, list[bytes]]], started: float
) -> tuple[int, int, int, int, dict[str, float]]:
    """Received, missing, duplicated, unexpected; each child's completion time."""
    seen: set[Key] = set()
    received = duplicated = 0
    done: dict[str, float] = {}
    for at, lines in chunks:
        for line in lines:
            record = json.loads(line)
            endpoint = endpoint_of(record)
            child = str(record.get("child_account_id"))
            key = (child, endpoint, record_key(endpoint, record))
            received += 1
            if key in seen:
                duplicated += 1
            seen.add(key)
            done[child] = max(done.get(child, 0.0), at - started)
    missing = len(scene.expected - seen)
    unexpected = len(seen - scene.expected)
    return received, missing, duplicated, unexpected, done


def measure(
    label: str,
    scene: Scene,
    siem: Siem,
    config: Path,
    *,
    env: Mapping[str, str],
    timing: Timing,
) -> Run:
    """Run the daemon for *config* through catch-up and idle; measure it."""
    siem.take()
    fetchers = len(scene.children) * len(Endpoint)
    started = time.monotonic()
    with start_daemon(config, env) as proc:
        try:
            stderr = Stderr(proc)
            peak, cpu, deadline = 0.0, 0.0, started + CATCH_UP_LIMIT
            while siem.lines < len(scene.expected) or len(stderr.caught_up) < fetchers:
                if stderr.ended.is_set():
                    raise RuntimeError(stderr.failure("the daemon exited"))
                if time.monotonic() > deadline:
                    raise IncompleteError(
                        stderr.failure(
                            f"{siem.lines} of {len(scene.expected)} records and "
                            f"{len(stderr.caught_up)} of {fetchers} fetchers "
                            f"caught up after {CATCH_UP_LIMIT:g} s"
                        )
                    )
                peak = max(peak, rss_mib(proc.pid))
                if siem.lines < len(scene.expected):
                    cpu = cpu_seconds(proc.pid)
                time.sleep(SAMPLE_EVERY)
            caught_up_cpu = cpu_seconds(proc.pid)
            idle = idle_rss(proc.pid, timing)
            idle_cpu = cpu_seconds(proc.pid) - caught_up_cpu
            hwm, anon = rss_mib(proc.pid, "VmHWM"), rss_mib(proc.pid, "RssAnon")
            fds = sum(1 for _ in Path(f"/proc/{proc.pid}/fd").iterdir())
            threads = sum(1 for _ in Path(f"/proc/{proc.pid}/task").iterdir())
            proc.send_signal(signal.SIGTERM)
            status = proc.wait(timeout=WAIT)
        finally:
            proc.kill()
    chunks = siem.take()
    received, missing, duplicated, unexpected, done = tally(scene, chunks, started)
    restarted_mib = restarted_idle(config, env=env, timing=timing, fetchers=fetchers)
    restarted_received = sum(len(lines) for _, lines in siem.take())
    small = [t for child, t in done.items() if child not in scene.big]
    big = [t for child, t in done.items() if child in scene.big]
    return Run(
        label=label,
        children=len(scene.children),
        expected=len(scene.expected),
        received=received,
        missing=missing,
        duplicated=duplicated,
        unexpected=unexpected,
        wall_s=max(done.values(), default=0.0),
        cpu_s=cpu,
        idle_cpu_s=idle_cpu,
        peak_mib=max(peak, *idle),
        hwm_mib=hwm,
        idle_mib=statistics.median(idle),
        anon_mib=anon,
        idle_fds=fds,
        idle_threads=threads,
        all_median_s=statistics.median(done.values()) if done else 0.0,
        small_median_s=statistics.median(small) if small else 0.0,
        small_all_s=max(small, default=0.0),
        big_median_s=statistics.median(big) if big else 0.0,
        big_all_s=max(big, default=0.0),
        exit_status=status,
        restarted_idle_mib=restarted_mib,
        restarted_received=restarted_received,
    )


def idle_rss(pid: int, timing: Timing) -> list[float]:
    """Settle, then sample *pid*'s VmRSS (MiB) every 50 ms for the idle phase."""
    time.sleep(timing.settle_seconds)
    idle = [rss_mib(pid)]
    idle_until = time.monotonic() + timing.idle_seconds
    while time.monotonic() < idle_until:
        time.sleep(SAMPLE_EVERY)
        idle.append(rss_mib(pid))
    return idle


def restarted_idle(
    config: Path, *, env: Mapping[str, str], timing: Timing, fetchers: int
) -> float:
    """Start the daemon again on its cursors; its median idle RSS, MiB."""
    deadline = time.monotonic() + CATCH_UP_LIMIT
    with start_daemon(config, env) as proc:
        try:
            stderr = Stderr(proc)
            while len(stderr.caught_up) < fetchers:
                if stderr.ended.is_set():
                    raise RuntimeError(stderr.failure("the restarted daemon exited"))
                if time.monotonic() > deadline:
                    raise IncompleteError(
                        stderr.failure("the restarted daemon did not catch up")
                    )
                time.sleep(SAMPLE_EVERY)
            idle = idle_rss(proc.pid, timing)
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=WAIT)
        finally:
            proc.kill()
    return statistics.median(idle)


# -- the report ---------------------------------------------------------------


def per_child_kib(
    runs: Sequence[Run], label: str, field: str = "idle_mib"
) -> float | None:
    """(*field* MiB at the largest N - at the smallest) / (difference in N), KiB."""
    mine = sorted((r for r in runs if r.label == label), key=lambda r: r.children)
    if len(mine) < 2 or mine[-1].children == mine[0].children:  # noqa: PLR2004
        return None
    grown: float = (getattr(mine[-1], field) - getattr(mine[0], field)) * 1024
    return grown / (mine[-1].children - mine[0].children)


def report(results: Sequence[Run | Failure]) -> None:
    """Print one row per (daemon, size), then any lost or doubled records."""
    runs = [r for r in results if isinstance(r, Run)]
    width = max(len(item.label) for item in results)
    print(  # noqa: T201 - the benchmark's report
        "MSP parent, N children x 5 endpoints, python -m trio_dls over HTTPS, "
        f"JSON to one TCP listener; {100 // BIG_EVERY}% of children hold "
        f"{BIG_FACTOR}x the records"
    )
    print(  # noqa: T201
        f"{'ref':<{width}}  {'N':>5}  {'records':>7}  {'wall s':>6}  {'CPU s':>6}"
        f"  {'peak MiB':>8}  {'HWM MiB':>7}  {'idle MiB':>8}  {'anon MiB':>8}"
        f"  {'KiB/child':>9}  {'sm med s':>8}  {'sm all s':>8}  {'big all s':>9}"
        f"  {'med/all':>7}  {'sm/big':>6}  {'slow/med':>8}  {'idle CPU':>8}"
        f"  {'fds':>5}  {'thr':>4}"
        f"  {'rst MiB':>7}  {'rst KiB/ch':>10}  {'rst recs':>8}"
        "  exit"
    )
    for item in results:
        if isinstance(item, Failure):
            print(  # noqa: T201
                f"{item.label:<{width}}  {item.children:5d}  not measured: "
                f"{item.reason}"
            )
            continue
        kib = per_child_kib(runs, item.label)
        restarted = per_child_kib(runs, item.label, "restarted_idle_mib")
        median_all = item.small_median_s / item.small_all_s if item.small_all_s else 0
        small_big = item.small_all_s / item.big_all_s if item.big_all_s else 0
        slow_median = item.wall_s / item.all_median_s if item.all_median_s else 0
        print(  # noqa: T201
            f"{item.label:<{width}}  {item.children:5d}  {item.received:7d}"
            f"  {item.wall_s:6.1f}  {item.cpu_s:6.1f}  {item.peak_mib:8.1f}"
            f"  {item.hwm_mib:7.1f}  {item.idle_mib:8.1f}  {item.anon_mib:8.1f}"
            f"  {'n/a' if kib is None else f'{kib:.1f}':>9}"
            f"  {item.small_median_s:8.1f}  {item.small_all_s:8.1f}"
            f"  {item.big_all_s:9.1f}  {median_all:7.2f}  {small_big:6.2f}"
            f"  {slow_median:8.2f}"
            f"  {item.idle_cpu_s:7.2f}s  {item.idle_fds:5d}  {item.idle_threads:4d}"
            f"  {item.restarted_idle_mib:7.1f}"
            f"  {'n/a' if restarted is None else f'{restarted:.1f}':>10}"
            f"  {item.restarted_received:8d}"
            f"  {item.exit_status:4d}"
        )
    for run in runs:
        if not run.exact:
            print(  # noqa: T201
                f"RECORDS WRONG: {run.label}, N={run.children}: {run.expected} "
                f"served, {run.received} received: {run.missing} missing, "
                f"{run.duplicated} duplicated, {run.unexpected} not served by "
                "the fake",
                file=sys.stderr,
            )


def as_json(results: Sequence[Run | Failure]) -> list[dict[str, Any]]:
    """The results as JSON values, with the derived numbers."""
    runs = [r for r in results if isinstance(r, Run)]
    rows: list[dict[str, Any]] = []
    for item in results:
        row = attrs.asdict(item)
        if isinstance(item, Run):
            row |= {
                "kib_per_child": per_child_kib(runs, item.label),
                "restarted_kib_per_child": per_child_kib(
                    runs, item.label, "restarted_idle_mib"
                ),
                "median_over_all": (
                    item.small_median_s / item.small_all_s if item.small_all_s else None
                ),
                "slowest_over_median": (
                    item.wall_s / item.all_median_s if item.all_median_s else None
                ),
                "small_over_big": (
                    item.small_all_s / item.big_all_s if item.big_all_s else None
                ),
                "exact": item.exact,
            }
        rows.append(row)
    return rows


# -- the whole --------------------------------------------------------------


def warm_up(directory: Path, siem: Siem, env: Mapping[str, str], tree: Path) -> None:
    """Fill the bytecode cache with what the daemon imports, running included.

    A daemon compiling its modules as it imports them holds a few MiB more and
    spends more CPU, which is not the daemon's: one short MSP run against a
    fake with two children and no records is made before the measured ones.
    """
    empty = dict.fromkeys(Endpoint, 0)
    with msp_fake(2, empty) as scene:
        config = write_config(mkdir(directory), scene.fake, siem)
        check_imports(env, config.parent, tree)
        measure("warm-up", scene, siem, config, env=env, timing=Timing(0, 0))


def main(arguments: argparse.Namespace) -> int:
    """Measure every size, each ``--compare-ref``'s daemon then the working tree's."""
    results: list[Run | Failure] = []
    timing = Timing(arguments.settle_seconds, arguments.idle_seconds)
    sizes = arguments.children or list(SIZES)
    with (
        listening() as siem,
        tempfile.TemporaryDirectory(prefix="trio-dls-bench-msp-") as directory,
        contextlib.ExitStack() as stack,
    ):
        trees: list[tuple[str, Path]] = [
            (ref, stack.enter_context(worktree(ref))) for ref in arguments.compare_ref
        ]
        trees.append(("working tree", REPOSITORY))
        envs: dict[str, dict[str, str]] = {}
        for number, (label, tree) in enumerate(trees):
            env = environment(tree, Path(directory) / "pycache")
            try:
                warm_up(Path(directory) / f"warm-up-{number}", siem, env, tree)
                envs[label] = env
            except (RuntimeError, TimeoutError) as exc:
                for count in sizes:
                    reason = str(exc).strip().splitlines()[-1]
                    results.append(Failure(label, count, reason))
        for count in sizes:
            with msp_fake(count, SMALL) as scene:
                print(  # noqa: T201 - progress, to stderr
                    f"N={count}: {len(scene.expected)} records in "
                    f"{scene.build_seconds:.1f} s",
                    file=sys.stderr,
                )
                for number, (label, _) in enumerate(trees):
                    if label not in envs:
                        continue
                    run_dir = mkdir(Path(directory) / f"{count}-{number}")
                    config = write_config(run_dir, scene.fake, siem)
                    try:
                        results.append(
                            measure(
                                label,
                                scene,
                                siem,
                                config,
                                env=envs[label],
                                timing=timing,
                            )
                        )
                    except (RuntimeError, TimeoutError) as exc:
                        reason = str(exc).strip().splitlines()[-1]
                        lost = isinstance(exc, IncompleteError)
                        results.append(Failure(label, count, reason, incomplete=lost))
                        print(str(exc), file=sys.stderr)  # noqa: T201
    order = {label: i for i, (label, _) in enumerate(trees)}
    results.sort(key=lambda item: (order[item.label], item.children))
    report(results)
    if arguments.json is not None:
        arguments.json.write_text(
            json.dumps(as_json(results), indent=2) + "\n", encoding="utf-8"
        )
    wrong = any(
        r.incomplete if isinstance(r, Failure) else not r.exact for r in results
    )
    return 1 if wrong else 0


def parse(argv: list[str]) -> argparse.Namespace:
    """Read the command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument(
        "--children",
        metavar="N",
        type=int,
        action="append",
        default=[],
        help="number of MSP children; may be repeated (default: 100 and 1000)",
    )
    parser.add_argument(
        "--idle-seconds",
        type=float,
        default=10.0,
        help="how long the daemon idles, sampled, once caught up",
    )
    parser.add_argument(
        "--settle-seconds",
        type=float,
        default=3.0,
        help="how long the daemon is left alone between catch-up and idle samples",
    )
    parser.add_argument(
        "--compare-ref",
        metavar="REF",
        action="append",
        default=[],
        help="also measure the daemon of this git commit (e.g. HEAD); may be repeated",
    )
    parser.add_argument(
        "--json", metavar="PATH", type=Path, help="also write the results here"
    )
    return parser.parse_args(argv)


if __name__ == "__main__":
    sys.exit(main(parse(sys.argv[1:])))
