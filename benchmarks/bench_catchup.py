"""Benchmark: how fast the whole pipeline catches up a backlog, end to end.

The daemon's own assembly (``trio_dls.daemon.run_daemon``) fetches with the
real duo_client over HTTPS from the fake Duo API (no rate limit) and sends
JSON over TCP to loopback listeners, one per endpoint; the clock runs from
the start of the daemon until every record the fake serves has arrived.  This
measures trio-dls's own cost per record (TLS, signing, JSON parsing,
formatting, framing, sending, atomic cursor saves), not Duo's: against the
real service the rate limit, not this, sets the pace.

Run: ``python benchmarks/bench_catchup.py [--records 20000] [--format CEF]``.
"""

from __future__ import annotations

import argparse
import logging
import time

import trio

from trio_dls.daemon import run_daemon
from trio_dls.demo import stage
from trio_dls.endpoints import Endpoint
from trio_dls.fakeduo import DatasetSpec, Faults
from trio_dls.observe import logsetup


async def catch_up(records: int, log_format: str) -> None:
    """Time the catch-up of *records* per endpoint; print the result."""
    spec = DatasetSpec(seed=5, counts=dict.fromkeys(Endpoint, records), admin_burst=0)
    async with stage(spec, Faults(), log_format) as scene:
        expected = {
            item.endpoint: len(scene.fake.servable_records(item.endpoint))
            for item in scene.listeners
        }
        total = sum(expected.values())

        async def all_arrived() -> None:
            # Polling costs the benchmark 50 ms at most; an event per
            # received line would cost every line.
            while any(item.count < expected[item.endpoint] for item in scene.listeners):  # noqa: ASYNC110
                await trio.sleep(0.05)

        started = time.perf_counter()
        await run_daemon(scene.config, shutdown_trigger=all_arrived)
        elapsed = time.perf_counter() - started
    print(  # noqa: T201 - the benchmark's report
        f"{total} records ({records} per endpoint, {log_format}) in {elapsed:.2f} s: "
        f"{total / elapsed:,.0f} records/s"
    )


def main() -> None:
    """Parse the options and run the benchmark."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--format", default="JSON", choices=["JSON", "CEF"])
    options = parser.parse_args()
    logsetup.configure(level=logging.WARNING)
    trio.run(catch_up, options.records, options.format)


if __name__ == "__main__":
    main()
