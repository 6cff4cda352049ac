"""``trio-dls demo``: the whole pipeline against the bundled fake Duo API.

For someone without a Duo account (or a SIEM) who wants to see trio-dls work:
this starts the fake Duo Admin API (real HTTPS on loopback, real signatures,
two days of generated logs, hard cases included), one local TCP listener per
endpoint standing in for a SIEM, writes a config for them into a temporary
directory, and runs ``trio_dls.daemon.run_daemon``, exactly what
``trio-dls CONFIG`` runs, with progress lines every few seconds
(``trio_dls.observe.progress``).  It prints a live count per endpoint, then a few of
the records the listeners received, and checks that every record the fake
holds arrived.  Nothing leaves 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Final, TextIO

import attrs
import trio
import trio.lowlevel

from trio_dls.config import Config, Environment, load_config_text
from trio_dls.daemon import run_daemon
from trio_dls.endpoints import Endpoint
from trio_dls.fakeduo import DatasetSpec, FakeDuo, FakeDuoConfig, Faults
from trio_dls.observe import logsetup
from trio_dls.observe.progress import ProgressMode

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

POLL: Final = 10  # the demo polls Duo every 10 s once caught up
# Progress lines every 5 s: a demo lasts seconds, not the hours of a real start.
PROGRESS_INTERVAL: Final = 5.0


@attrs.define
class Listener:
    """A stand-in SIEM for one endpoint: counts lines, keeps the first few."""

    endpoint: Endpoint
    port: int = 0
    count: int = 0
    samples: list[str] = attrs.Factory(list)

    async def serve(self, task_status: trio.TaskStatus[int]) -> None:
        """Accept connections on a loopback port; report the port."""
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        task_status.started(self.port)
        await trio.serve_listeners(self._connection, listeners)

    async def _connection(self, stream: trio.SocketStream) -> None:
        buffer = b""
        async with stream:
            async for data in stream:
                buffer += data
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    self.count += 1
                    if len(self.samples) < 2:  # noqa: PLR2004 - two per endpoint
                        self.samples.append(line.decode("utf-8", "replace"))


def demo_config(fake: FakeDuo, listeners: list[Listener], state: Path, fmt: str) -> str:
    """The config of a duo_log_sync user, pointed at the fake and the listeners."""
    servers = "\n".join(
        f"  - {{id: '{item.endpoint}-siem', hostname: 127.0.0.1, "
        f"port: {item.port}, protocol: TCP}}"
        for item in listeners
    )
    mappings = "\n".join(
        f"    - {{endpoints: [{item.endpoint}], server: '{item.endpoint}-siem'}}"
        for item in listeners
    )
    return f"""\
version: '1.0.0'
dls_settings:
  log_filepath: '{state / "trio-dls.log"}'
  log_format: '{fmt}'
  api: {{offset: 3, timeout: {POLL}}}
  checkpointing: {{enabled: true, directory: '{state / "checkpoints"}'}}
servers:
{servers}
account:
  ikey: '{fake.ikey}'
  skey: '{fake.skey}'
  hostname: 'localhost:{fake.port}'
  ca_certs: '{fake.ca_certs}'
  endpoint_server_mappings:
{mappings}
"""


async def run_demo(
    out: TextIO,
    *,
    seconds: float,
    log_format: str = "JSON",
    rate_limit: float | None = None,
    backlog: int | None = None,
    seed: int = 2026,
) -> bool:
    """Run the demo for *seconds*; return whether every record arrived.

    *backlog* records per endpoint (default: a few hundred); with
    *rate_limit*, the fake answers 429 beyond that many requests a minute per
    endpoint, without a burst allowance, so the pacing shows.
    """
    spec = DatasetSpec(seed=seed)
    if backlog is not None:
        spec = attrs.evolve(spec, counts=dict.fromkeys(Endpoint, backlog))
    faults = Faults(rate_limit=rate_limit, rate_burst=1 if rate_limit else None)
    async with stage(spec, faults, log_format) as scene:
        print(
            f"fake Duo API on https://localhost:{scene.fake.port}, five listening "
            f"'SIEMs' on 127.0.0.1; config in {scene.config_path}",
            file=out,
        )
        print(f"running trio-dls for {seconds:g} s ({log_format})...\n", file=out)
        stop = trio.Event()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_report, out, scene.listeners, stop)
            with trio.move_on_after(seconds):
                await run_daemon(
                    scene.config,
                    shutdown_trigger=stop.wait,
                    progress=ProgressMode.LINES,
                    progress_interval=PROGRESS_INTERVAL,
                )
            stop.set()
    return _summary(out, scene.fake, scene.listeners)


@attrs.frozen
class Stage:
    """The fake Duo API, the listeners, and the config that joins them."""

    fake: FakeDuo
    listeners: list[Listener]
    config: Config
    config_path: Path


@contextlib.asynccontextmanager
async def stage(
    spec: DatasetSpec, faults: Faults, log_format: str
) -> AsyncIterator[Stage]:
    """Serve the fake and one listener per endpoint, with their config."""
    fake = FakeDuo(FakeDuoConfig(dataset=spec, faults=faults))
    listeners = [Listener(endpoint) for endpoint in Endpoint]
    with tempfile.TemporaryDirectory(prefix="trio-dls-demo-") as directory:
        state = Path(directory)
        async with trio.open_nursery() as nursery:
            await nursery.start(fake.serve)
            for listener in listeners:
                await nursery.start(listener.serve)
            text = demo_config(fake, listeners, state, log_format)
            path = state / "config.yml"
            path.write_text(text)
            env = Environment(base_directory=state, environ={}, euid=1000)
            config = load_config_text(text, str(path), env)
            yield Stage(fake, listeners, config, path)
            nursery.cancel_scope.cancel()


async def _report(out: TextIO, listeners: list[Listener], stop: trio.Event) -> None:
    start = trio.current_time()
    while not stop.is_set():
        with trio.move_on_after(2):
            await stop.wait()
        counts = "  ".join(f"{item.endpoint} {item.count:>5}" for item in listeners)
        print(f"[{trio.current_time() - start:5.1f} s]  {counts}", file=out)


def _summary(out: TextIO, fake: FakeDuo, listeners: list[Listener]) -> bool:
    print("\nsample records, as the SIEM received them:", file=out)
    for listener in listeners:
        for line in listener.samples[:1]:
            shown = line if len(line) <= 400 else line[:400] + "..."  # noqa: PLR2004
            print(f"  {listener.endpoint}: {shown}", file=out)
    # Records that became available during the last poll interval (10 s)
    # are fetched at the next poll, after the demo ended: leave them out.
    now = time.time() - POLL - 5
    complete = True
    print("\nendpoint        received  Duo had (older than 2 min)", file=out)
    for listener in listeners:
        expected = len(fake.servable_records(listener.endpoint, as_of=now))
        mark = "ok" if listener.count >= expected else "MISSING"
        complete &= listener.count >= expected
        print(
            f"  {listener.endpoint:<13} {listener.count:>8}  {expected:>8}  {mark}",
            file=out,
        )
    return complete


def main(
    out: TextIO,
    *,
    seconds: float,
    log_format: str,
    rate_limit: float | None,
    backlog: int | None,
) -> int:
    """Run the demo from the command line; return the exit status."""
    logsetup.configure(stream=out, level=logging.INFO)
    complete = trio.run(
        lambda: run_demo(
            out,
            seconds=seconds,
            log_format=log_format,
            rate_limit=rate_limit,
            backlog=backlog,
        )
    )
    if complete:
        print("\nevery record Duo held reached the SIEM.", file=out)
        return 0
    print("\nsome records had not arrived yet; run longer with --seconds.", file=out)
    return 1
