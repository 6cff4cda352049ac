"""Benchmark: memory stays flat while a SIEM accepts a connection and never reads.

A fetcher offers an endless stream of fresh pages (as a real fetcher with a
180-day backlog would) through the real ``serve`` and ``SiemSender`` to a TCP
receiver on loopback that reads for ``--read-seconds`` (to show the
throughput, and that memory after heavy traffic is the baseline), then keeps
every connection open and reads nothing more.  Every
second the script prints the process's resident memory (VmRSS from
/proc/self/status), the pages offered and the pages acknowledged.  With
backpressure working, the fetcher stops after the kernel's socket buffers are
full, and memory stays where it was; the sender's write timeout is short here
so that reconnections (and resending the stalled page on each new connection)
are measured too.

Run: ``python benchmarks/bench_backpressure.py [--seconds 30]``.  Exits 1 if
memory grew by more than ``--max-growth-mb`` between the end of the warm-up
(after the stall began) and the end.
"""

from __future__ import annotations

import argparse
import functools
import logging
import sys
from pathlib import Path
from typing import Any

import trio

from trio_dls.config import (
    Account,
    Config,
    EndpointServerMapping,
    NonEmptyStr,
    Port,
    Protocol,
    Secret,
    Server,
    TcpSettings,
)
from trio_dls.endpoints import Endpoint
from trio_dls.siem.senders import SiemSender, Timing
from trio_dls.supervisor import AccountRef, FetcherContext, Page, StopSignal, serve

ACCOUNT = AccountRef("bench")


def rss_mb() -> float:
    """This process's resident memory, in MiB."""
    for line in Path("/proc/self/status").read_text(encoding="ascii").splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def config_for(port: int) -> Config:
    """A config sending auth records to 127.0.0.1:*port* over TCP."""
    server = Server(
        id=NonEmptyStr("stalled"),
        hostname=NonEmptyStr("127.0.0.1"),
        port=Port(port),
        protocol=Protocol.TCP,
        transport=TcpSettings(),
    )
    return Config(
        version=NonEmptyStr("1.0.0"),
        servers=(server,),
        account=Account(
            ikey=NonEmptyStr("DIXXXXXXXXXXXXXXXXXX"),
            hostname=NonEmptyStr("api-bench.duosecurity.com"),
            endpoint_server_mappings=(
                EndpointServerMapping((Endpoint.AUTH,), server.id),
            ),
            skey=Secret("s" * 40),
        ),
    )


def record(n: int, padding: int) -> dict[str, Any]:
    """An auth record numbered *n*, made fresh each time."""
    return {
        "txid": f"tx-{n:012d}",
        "isotimestamp": "2024-05-01T12:00:00.123456+00:00",
        "timestamp": 1714564800,
        "event_type": "authentication",
        "result": "success",
        "user": {"name": f"user{n}", "key": "DU123"},
        "note": "x" * padding,
    }


async def main(arguments: argparse.Namespace) -> int:
    """Run the stalled receiver and the endless fetcher; print the samples."""
    offered = 0
    acknowledged = 0
    held: list[trio.SocketStream] = []

    read_until = trio.current_time() + arguments.read_seconds

    async def read_then_stall(stream: trio.SocketStream) -> None:
        # Reads like a healthy SIEM for a while, then stops reading for good
        # (the connection stays open, and so do later ones).
        held.append(stream)
        with trio.move_on_at(read_until):
            while await stream.receive_some():
                pass
        await trio.sleep_forever()

    async def endless(context: FetcherContext) -> None:
        nonlocal offered, acknowledged
        n = 0
        while True:
            page = Page(
                ACCOUNT,
                Endpoint.AUTH,
                tuple(
                    record(n + i, arguments.padding) for i in range(arguments.records)
                ),
            )
            n += arguments.records
            offered += 1
            await context.outputs.deliver(page)
            acknowledged += 1

    async def one_account(config: Config, stop: StopSignal) -> list[AccountRef]:
        del config, stop
        return [ACCOUNT]

    stop = trio.Event()
    samples: list[float] = []
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(
            functools.partial(trio.serve_tcp, host="127.0.0.1"), read_then_stall, 0
        )
        port = listeners[0].socket.getsockname()[1]
        sender = SiemSender(
            hostname=lambda: "bench-host",
            timing=Timing(write_timeout=arguments.write_timeout, reconnect_cap=1.0),
        )
        nursery.start_soon(
            functools.partial(
                serve,
                config_for(port),
                shutdown_trigger=stop.wait,
                fetcher=endless,
                sender=sender,
                discover_accounts=one_account,
                grace=1.0,
            )
        )
        print(f"{'s':>4} {'offered':>8} {'acked':>8} {'RSS MiB':>8}")  # noqa: T201
        for second in range(arguments.seconds + 1):
            samples.append(rss_mb())
            print(  # noqa: T201
                f"{second:4d} {offered:8d} {acknowledged:8d} {samples[-1]:8.1f}"
            )
            await trio.sleep(1)
        stop.set()
        await trio.sleep(2)
        nursery.cancel_scope.cancel()
    for stream in held:
        await trio.aclose_forcefully(stream)

    warm = samples[arguments.warmup]
    growth = max(samples[arguments.warmup :]) - warm
    page_mb = arguments.records * (arguments.padding + 250) / 2**20
    print(  # noqa: T201
        f"pages of {arguments.records} records (~{page_mb:.1f} MiB each):"
        f" {acknowledged} acknowledged, {offered} offered in {arguments.seconds} s;"
        f" RSS after warm-up {warm:.1f} MiB, growth since {growth:+.1f} MiB"
    )
    return 1 if growth > arguments.max_growth_mb else 0


def parse(argv: list[str]) -> argparse.Namespace:
    """Read the command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--seconds", type=int, default=30)
    parser.add_argument(
        "--read-seconds",
        type=float,
        default=5.0,
        help="the receiver reads, then stalls",
    )
    parser.add_argument("--warmup", type=int, default=8, help="seconds ignored")
    parser.add_argument("--records", type=int, default=1000, help="per page")
    parser.add_argument("--padding", type=int, default=500, help="bytes per record")
    parser.add_argument("--write-timeout", type=float, default=5.0)
    parser.add_argument("--max-growth-mb", type=float, default=16.0)
    return parser.parse_args(argv)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    sys.exit(trio.run(main, parse(sys.argv[1:])))
