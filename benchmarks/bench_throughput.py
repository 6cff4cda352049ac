"""Benchmark: trio-dls against a minimal synchronous loop, same data, same run.

Unthrottled catch-up: the fake Duo API (real HTTPS on loopback, in a thread
of this script, no rate limit) holds a backlog; a loopback listener (TCP, or
TLS with a test CA) counts the lines that arrive.  Two contenders move it,
each as its own process, one after the other, in alternating order, for
``--rounds`` rounds:

* **trio-dls**: ``python -m trio_dls CONFIG`` from a first start (fresh
  checkpoint directory), JSON as DLS writes it, compact JSON
  (``json_style: compact``) or CEF;
* **reference**: ``benchmarks/reference_loop.py``, duo_client page →
  ``json.dumps`` per record → one ``sendall`` per page, and nothing else (no
  cursor, no retry, no repair).

For each case (format, transport, endpoints): *rec/s* is the records over
the time from the process's start to the last line's arrival; *CPU µs/rec*
is the process's user + system time (all threads, from /proc) at that
moment over the records; *peak MiB* the largest VmRSS sampled every 20 ms.
*steady µs/rec* is the CPU of the steady state alone: from the first sample
(every 20 ms) that found lines arrived to the last line, over the records
that arrived in between, so start-up (imports, config, TLS contexts, the
first page) is left out.  Each figure is the median over the rounds; the
ratios (*thr x*, *CPU x*, *steady x*) compare trio-dls with the reference of
the same transport and endpoints, in the same rounds.  The fake and the
listener run in this process and cost both contenders alike.

Both contenders start as an installed program does, from bytecode compiled
beforehand: the environment's ``PYTHONDONTWRITEBYTECODE`` is lifted for them
and ``PYTHONPYCACHEPREFIX`` points into this run's directory, which one
unmeasured start of each fills.  Compiling trio-dls's sources at every start
(a checkout run with ``PYTHONDONTWRITEBYTECODE=1``) cost 0.3 s of CPU, 6 µs a
record at 50,000, that no installed trio-dls pays; ``--no-bytecode`` measures
as the environment says instead.

Every run must deliver exactly the records the fake serves (counted by
line); one that delivers fewer within ``LIMIT`` seconds, or more, fails the
benchmark (exit 1).  The numbers are reported, never judged.

Run: ``python benchmarks/bench_throughput.py [--records 50000] [--rounds 3]
[--json out.json] [--no-bytecode]``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socketserver
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import attrs
import trustme

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.bench_idle_rss import rss_mib
from benchmarks.bench_msp_scale import cpu_seconds, serving
from trio_dls.endpoints import Endpoint
from trio_dls.fakeduo import DatasetSpec, FakeDuo, FakeDuoConfig, serve_in_thread

if TYPE_CHECKING:
    from collections.abc import Sequence

HERE: Final = Path(__file__).resolve().parent
SAMPLE_EVERY: Final = 0.02
LIMIT: Final = 600.0  # seconds: a bound on one run
ONE: Final = (Endpoint.AUTH,)
# What reading /proc raises once the process has ended (a zombie has no VmRSS).
GONE: Final = (FileNotFoundError, ProcessLookupError, RuntimeError)
FIVE: Final = tuple(Endpoint)


@attrs.frozen
class Case:
    """What is measured: how records are written, over what, from which logs."""

    log_format: str  # JSON or CEF
    json_style: str  # dls or compact
    tls: bool
    endpoints: tuple[Endpoint, ...]

    @property
    def label(self) -> str:
        """The case as the table names it."""
        style = "CEF" if self.log_format == "CEF" else f"JSON {self.json_style}"
        transport = "TLS" if self.tls else "TCP"
        return f"{style}, {transport}, {len(self.endpoints)} endpoint(s)"


CASES: Final = (
    Case("JSON", "dls", tls=False, endpoints=ONE),
    Case("JSON", "compact", tls=False, endpoints=ONE),
    Case("CEF", "dls", tls=False, endpoints=ONE),
    Case("JSON", "dls", tls=True, endpoints=ONE),
    Case("JSON", "compact", tls=True, endpoints=ONE),
    Case("JSON", "dls", tls=False, endpoints=FIVE),
)


# -- the listener -----------------------------------------------------------


class Listener(socketserver.ThreadingTCPServer):
    """A loopback listener counting lines, over TCP or TLS."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, context: ssl.SSLContext | None) -> None:
        """Listen on a free loopback port; with *context*, speak TLS."""
        super().__init__(("127.0.0.1", 0), _Count)
        self.context = context
        self.lock = threading.Lock()
        self.lines = 0
        self.last_at = 0.0

    @property
    def port(self) -> int:
        """The port it listens on."""
        return int(self.server_address[1])

    def get_request(self) -> tuple[Any, Any]:
        """Accept, and wrap in TLS if asked."""
        sock, address = super().get_request()
        if self.context is not None:
            sock = self.context.wrap_socket(sock, server_side=True)
        return sock, address

    def reset(self) -> None:
        """Count from zero."""
        with self.lock:
            self.lines, self.last_at = 0, 0.0


class _Count(socketserver.StreamRequestHandler):
    server: Listener

    def handle(self) -> None:
        while chunk := self.rfile.read1(262_144):
            count = chunk.count(b"\n")
            if count:
                with self.server.lock:
                    self.server.lines += count
                    self.server.last_at = time.monotonic()


def listening(
    context: ssl.SSLContext | None,
) -> contextlib.AbstractContextManager[Listener]:
    """Serve a ``Listener`` from a thread for the duration of the block."""
    return serving(Listener(context))


# -- the contenders -----------------------------------------------------------


@attrs.frozen
class Scene:
    """The fake, the listener, the test CA, and the records to expect."""

    fake: FakeDuo
    listener: Listener
    ca_file: Path
    expected: int
    directory: Path
    environ: dict[str, str]


def trio_dls_command(scene: Scene, case: Case, run: Path) -> list[str]:
    """``python -m trio_dls CONFIG`` for *case*, from a first start."""
    endpoints = ", ".join(str(e) for e in case.endpoints)
    protocol = "TCPSSL" if case.tls else "TCP"
    cert = f", cert_filepath: {scene.ca_file}" if case.tls else ""
    fake = scene.fake
    config = run / "config.yml"
    config.write_text(
        f"""\
version: '1.0.0'
dls_settings:
  log_filepath: {run / "trio-dls.log"}
  log_format: {case.log_format}
  json_style: {case.json_style}
  api: {{offset: 2, timeout: 120}}
  checkpointing: {{directory: {run / "state"}}}
servers:
  - {{id: siem, hostname: 127.0.0.1, port: {scene.listener.port},
     protocol: {protocol}{cert}}}
account:
  ikey: {fake.ikey}
  skey: {fake.skey}
  hostname: {fake.host}:{fake.port}
  ca_certs: {fake.ca_certs}
  endpoint_server_mappings:
    - endpoints: [{endpoints}]
      server: siem
""",
        encoding="utf-8",
    )
    return [sys.executable, "-m", "trio_dls", str(config)]


def reference_command(scene: Scene, case: Case, run: Path) -> list[str]:
    """``benchmarks/reference_loop.py SETTINGS`` for *case*."""
    now_ms = int(time.time() * 1000)
    fake = scene.fake
    settings = {
        "ikey": fake.ikey,
        "skey": fake.skey,
        "duo_host": fake.host,
        "duo_port": fake.port,
        "ca_certs": fake.ca_certs,
        "siem_host": "127.0.0.1",
        "siem_port": scene.listener.port,
        "siem_ca": str(scene.ca_file) if case.tls else None,
        "endpoints": [str(e) for e in case.endpoints],
        "mintime_ms": now_ms - 2 * 86_400_000,
        "maxtime_ms": now_ms - 120_000,
    }
    path = run / "reference.json"
    path.write_text(json.dumps(settings), encoding="utf-8")
    return [sys.executable, str(HERE / "reference_loop.py"), str(path)]


@attrs.frozen
class Result:
    """One run of one contender."""

    contender: str
    case: Case
    records: int
    seconds: float
    cpu_seconds: float
    peak_mib: float
    steady_cpu_seconds: float
    steady_records: int

    @property
    def per_second(self) -> float:
        """Records a second."""
        return self.records / self.seconds

    @property
    def cpu_us(self) -> float:
        """CPU microseconds a record."""
        return self.cpu_seconds / self.records * 1e6

    @property
    def steady_us(self) -> float:
        """CPU microseconds a record of the steady state (see the docstring)."""
        return self.steady_cpu_seconds / max(1, self.steady_records) * 1e6


def run_one(scene: Scene, case: Case, contender: str) -> Result:
    """Run *contender* on *case* until every record arrived; measure it."""
    listener = scene.listener
    listener.reset()
    with tempfile.TemporaryDirectory(dir=scene.directory) as name:
        run = Path(name)
        make = trio_dls_command if contender == "trio-dls" else reference_command
        command = make(scene, case, run)
        started = time.monotonic()
        proc = subprocess.Popen(  # noqa: S603 - this interpreter, no shell
            command,
            cwd=run,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=scene.environ,
        )
        peak, cpu = 0.0, 0.0
        first: tuple[float, int] | None = None  # CPU and lines at the first lines
        try:
            while listener.lines < scene.expected:
                if time.monotonic() - started > LIMIT:
                    msg = f"{contender}, {case.label}: {listener.lines} records"
                    raise RuntimeError(msg)
                with contextlib.suppress(*GONE):
                    lines = listener.lines
                    peak = max(peak, rss_mib(proc.pid))
                    cpu = cpu_seconds(proc.pid)
                    if first is None and lines:
                        first = (cpu, lines)
                if proc.poll() is not None and listener.lines < scene.expected:
                    time.sleep(0.5)  # the last lines may still be in flight
                    if listener.lines < scene.expected:
                        err = proc.stderr.read() if proc.stderr else ""
                        msg = f"{contender} exited early: {err[-2000:]}"
                        raise RuntimeError(msg)
                time.sleep(SAMPLE_EVERY)
            with contextlib.suppress(*GONE):
                cpu = cpu_seconds(proc.pid)
                peak = max(peak, rss_mib(proc.pid))
            seconds = listener.last_at - started
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        # Nothing twice: give stragglers a moment, then count again.
        time.sleep(0.3)
        if listener.lines != scene.expected:
            msg = f"{contender}, {case.label}: {listener.lines} != {scene.expected}"
            raise RuntimeError(msg)
        first_cpu, first_lines = first or (0.0, 0)
        return Result(
            contender,
            case,
            scene.expected,
            seconds,
            cpu,
            peak,
            steady_cpu_seconds=cpu - first_cpu,
            steady_records=scene.expected - first_lines,
        )


# -- the report ---------------------------------------------------------------


def median(results: Sequence[Result], field: str) -> float:
    """The median of *field* over *results*."""
    return float(statistics.median(getattr(r, field) for r in results))


def table(results: Sequence[Result]) -> list[dict[str, Any]]:
    """One row per (case, contender), with trio-dls's ratios to the reference."""
    rows = []
    for case in dict.fromkeys(r.case for r in results):
        reference = [
            r
            for r in results
            if r.contender == "reference"
            and (r.case.tls, r.case.endpoints) == (case.tls, case.endpoints)
        ]
        for contender in ("reference", "trio-dls"):
            mine = [r for r in results if r.case == case and r.contender == contender]
            if not mine or (contender == "reference" and case.log_format == "CEF"):
                continue
            if contender == "reference" and case.json_style != "dls":
                continue
            row: dict[str, Any] = {
                "case": case.label,
                "contender": contender,
                "records": mine[0].records,
                "records_per_s": median(mine, "per_second"),
                "cpu_us_per_record": median(mine, "cpu_us"),
                "peak_mib": median(mine, "peak_mib"),
                "steady_cpu_us_per_record": median(mine, "steady_us"),
            }
            if reference and contender == "trio-dls":
                row["throughput_ratio"] = row["records_per_s"] / median(
                    reference, "per_second"
                )
                row["cpu_ratio"] = row["cpu_us_per_record"] / median(
                    reference, "cpu_us"
                )
                row["steady_cpu_ratio"] = row["steady_cpu_us_per_record"] / median(
                    reference, "steady_us"
                )
            rows.append(row)
    return rows


def report(rows: Sequence[dict[str, Any]], rounds: int) -> None:
    """Print the table."""
    print(  # noqa: T201 - the benchmark's report
        f"Unthrottled catch-up, medians of {rounds} interleaved rounds; "
        "ratios are trio-dls / the reference loop of the same transport and "
        "endpoints (throughput: higher is better; CPU: lower is better)"
    )
    header = (
        f"{'case':<34} {'contender':<10} {'records':>8} {'rec/s':>8} "
        f"{'CPU µs/rec':>10} {'peak MiB':>8} {'thr x':>6} {'CPU x':>6} "
        f"{'steady µs/rec':>13} {'steady x':>8}"
    )
    print(header)  # noqa: T201
    for row in rows:
        ratios = (
            f"{row['throughput_ratio']:>6.2f} {row['cpu_ratio']:>6.2f}"
            if "cpu_ratio" in row
            else f"{'':>6} {'':>6}"
        )
        steady = f"{row['steady_cpu_ratio']:>8.2f}" if "steady_cpu_ratio" in row else ""
        print(  # noqa: T201
            f"{row['case']:<34} {row['contender']:<10} {row['records']:>8} "
            f"{row['records_per_s']:>8,.0f} {row['cpu_us_per_record']:>10.1f} "
            f"{row['peak_mib']:>8.1f} {ratios} "
            f"{row['steady_cpu_us_per_record']:>13.1f} {steady}"
        )


# -- the run ------------------------------------------------------------------


def scene_for(
    directory: Path, endpoints: tuple[Endpoint, ...], records: int
) -> contextlib.AbstractContextManager[FakeDuo]:
    """Serve a fake holding *records* records split over *endpoints*."""
    each = records // len(endpoints)
    spec = DatasetSpec(
        seed=12,
        counts=dict.fromkeys(endpoints, each),
        end=time.time() - 600,
        span=86_400.0,
        admin_burst=0,
        hard_cases=False,
    )
    del directory
    return serve_in_thread(FakeDuo(FakeDuoConfig(dataset=spec)))


def child_environment(directory: Path, *, bytecode: bool) -> dict[str, str]:
    """The contenders' environment: with *bytecode*, compiled once, then loaded."""
    environ = dict(os.environ)
    if bytecode:
        environ.pop("PYTHONDONTWRITEBYTECODE", None)
        environ["PYTHONPYCACHEPREFIX"] = str(directory / "pycache")
    return environ


def compile_beforehand(scene: Scene) -> None:
    """Start each contender once, unmeasured, so that its bytecode is written."""
    for contender in ("reference", "trio-dls"):
        with contextlib.suppress(RuntimeError):
            run_one(scene, CASES[0], contender)


def main(arguments: argparse.Namespace) -> int:
    """Run every case for every round; print the table; 1 if a run failed."""
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_context)
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="trio-dls-bench-throughput-") as name:
        directory = Path(name)
        ca_file = directory / "ca.pem"
        ca.cert_pem.write_to_path(str(ca_file))
        environ = child_environment(directory, bytecode=arguments.bytecode)
        compiled = not arguments.bytecode
        for endpoints in dict.fromkeys(c.endpoints for c in CASES):
            cases = [c for c in CASES if c.endpoints == endpoints]
            with scene_for(directory, endpoints, arguments.records) as fake:
                expected = sum(len(fake.servable_records(e)) for e in endpoints)
                for tls in (False, True):
                    mine = [c for c in cases if c.tls == tls]
                    if not mine:
                        continue
                    context = server_context if tls else None
                    with listening(context) as listener:
                        scene = Scene(
                            fake, listener, ca_file, expected, directory, environ
                        )
                        if not compiled and not tls:
                            compile_beforehand(scene)
                            compiled = True
                        for round_ in range(arguments.rounds):
                            for case in mine:
                                order = ["reference", "trio-dls"]
                                if round_ % 2:
                                    order.reverse()
                                for contender in order:
                                    if contender == "reference" and (
                                        case.log_format == "CEF"
                                        or case.json_style != "dls"
                                    ):
                                        continue
                                    try:
                                        results.append(run_one(scene, case, contender))
                                    except RuntimeError as exc:
                                        print(f"FAILED: {exc}")  # noqa: T201
                                        return 1
    rows = table(results)
    report(rows, arguments.rounds)
    if arguments.json is not None:
        arguments.json.write_text(json.dumps(rows, indent=2), encoding="utf-8")
    return 0


def parse(argv: list[str]) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--json", metavar="PATH", type=Path, help="also write the results here"
    )
    parser.add_argument(
        "--no-bytecode",
        dest="bytecode",
        action="store_false",
        help="compile as the environment says (see the docstring), not beforehand",
    )
    return parser.parse_args(argv)


if __name__ == "__main__":
    sys.exit(main(parse(sys.argv[1:])))
