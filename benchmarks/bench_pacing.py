"""Benchmark: catch-up time against Duo limits of several shapes, over the optimum.

Duo publishes neither its rate limits nor their shape, so the pace trio-dls
finds is measured against several plausible ones, as the fake Duo API
implements them (``trio_dls.fakeduo.faults``): token buckets with and without
burst, sliding windows (at most N served in the last W seconds) and fixed
windows (at most N in each W seconds aligned on the epoch).  Each case is one
account with one endpoint (auth) holding PAGES pages of 1,000 records, with
DLS's defaults otherwise (offset 180 days, poll 120 s).

The real supervision tree and fetcher run on trio's virtual clock (a
``MockClock`` that jumps whenever every task waits), against the fake's
request handler called in-process (``tests.duo_inprocess``, signatures
checked), with a sender that counts records; a run of hours takes a second.
*catch-up s* is the virtual time from the start until the last record was
delivered; *optimum s* the time a client knowing the limit would need
(its first request at the start, every next one as soon as the limit serves
it); *ratio* the first over the second (1.0 is perfect), as the median and the
worst over ``--seeds`` seeded runs (the seed drives the budgets' jitter);
*429s* the refused requests (median, worst) against *pages*, the requests
that were needed.  Every record is checked delivered exactly once.

Run: ``python benchmarks/bench_pacing.py [--seeds 5] [--json out.json]``.
"""

from __future__ import annotations

import argparse
import collections
import json
import random
import statistics
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
import trio
import trio.testing

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.duo_inprocess import InProcessDuo
from trio_dls.checkpoints import CheckpointStore
from trio_dls.config import Environment, load_config_text
from trio_dls.duo.admission import Admission
from trio_dls.duo.discovery import AccountDiscovery
from trio_dls.duo.paging import Limits
from trio_dls.duo.window import INITIAL_SPACING
from trio_dls.endpoints import Endpoint
from trio_dls.fakeduo import (
    DatasetSpec,
    FakeDuoApp,
    FakeDuoConfig,
    Faults,
    RateScope,
    RateShape,
)
from trio_dls.fakeduo.data import record_key
from trio_dls.fakeduo.logs import ADMIN_PAGE
from trio_dls.fetcher import Fetching, FetchSettings
from trio_dls.observe.events import CaughtUp, Event, RateLimited, RequestServed
from trio_dls.supervisor import SenderContext, serve

if TYPE_CHECKING:
    from collections.abc import Sequence

    from trio_dls.observe import Observer

BASE = 1_790_000_000.0  # any fixed UTC epoch
PAGE = 1000
DAY = 86_400.0


@attrs.frozen
class Shape:
    """One limit: its shape, its rate, its burst or window; and the backlog."""

    name: str
    shape: RateShape
    per_minute: float
    pages: int
    burst: int | None = None
    window: float = 60.0
    scope: RateScope = RateScope.ACCOUNT_ENDPOINT
    endpoints: tuple[Endpoint, ...] = (Endpoint.AUTH,)
    """The endpoints with a backlog; the pages are shared out among them."""

    def faults(self) -> Faults:
        """The fake's setting for this limit."""
        return Faults(
            rate_limit=self.per_minute,
            rate_burst=self.burst,
            rate_shape=self.shape,
            rate_window=self.window,
            rate_scope=self.scope,
        )

    def optimum(self, start: float = BASE) -> float:
        """Seconds from the first request (at *start*) to the last page, at best.

        At best under the limit, and at no more than trio-dls's own pace
        before any 429, four requests a second (``INITIAL_SPACING``): a limit
        looser than that is never reached.
        """
        under_limit = self.faults().least_time(self.pages, start)
        return max(under_limit, (self.pages - 1) * INITIAL_SPACING)


def limits(pages: int) -> list[Shape]:
    """Every limit the pacing must meet, each with a backlog of *pages* pages.

    Sliding windows of 10 and 60 s, short and long; a fixed window; token
    buckets without and with a burst; and one limit that every endpoint of
    the integration shares (their backlogs add up to *pages*).
    """
    sliding, fixed = RateShape.SLIDING_WINDOW, RateShape.FIXED_WINDOW
    bucket = RateShape.TOKEN_BUCKET
    return [
        Shape("sliding window 5 per 10 s", sliding, 30, pages, window=10),
        Shape("sliding window 2 per 60 s", sliding, 2, pages),
        Shape("sliding window 50 per 60 s", sliding, 50, pages),
        Shape("fixed window 10 per 60 s", fixed, 10, pages),
        Shape("token bucket 2/min, no burst", bucket, 2, pages, burst=1),
        Shape("token bucket 1/s, burst 10", bucket, 60, pages, burst=10),
        Shape(
            "sliding 10 per 60 s, 5 endpoints",
            sliding,
            10,
            pages,
            scope=RateScope.INTEGRATION,
            endpoints=tuple(Endpoint),
        ),
    ]


SHAPES = limits(20) + limits(200)
# Records per page of the endpoints that take a limit: the pace counts
# requests, so small pages measure it as well as Duo's 1000, for less work.
BENCH_PAGE = 10


def config_text(state: Path, endpoints: Sequence[Endpoint] = (Endpoint.AUTH,)) -> str:
    """One account, *endpoints* only, no ``api`` settings: DLS's defaults."""
    mapped = ", ".join(e.value for e in endpoints)
    return f"""\
version: '1.0.0'
dls_settings:
  checkpointing: {{directory: {state}}}
servers:
  - {{id: siem, hostname: 127.0.0.1, port: 9000, protocol: TCP}}
account:
  ikey: DIFAKEDUOINTEGRATION
  skey: fake-duo-secret-key-0123456789abcdefghij
  hostname: localhost
  endpoint_server_mappings:
    - {{endpoints: [{mapped}], server: siem}}
"""


@attrs.define
class Watch:
    """An observer counting 429s, and telling when the fetcher caught up."""

    endpoints: frozenset[Endpoint]
    refused: int = 0
    requests: int = 0
    caught_up: trio.Event = attrs.Factory(trio.Event)
    _done: set[Endpoint] = attrs.Factory(set)

    def __call__(self, event: Event, /) -> None:
        """Count requests and 429s; note when every endpoint caught up."""
        if isinstance(event, RateLimited):
            self.refused += 1
            self.requests += 1
        elif isinstance(event, RequestServed):
            self.requests += 1
        elif isinstance(event, CaughtUp):
            self._done.add(event.endpoint)
            if self._done >= self.endpoints:
                self.caught_up.set()


@attrs.define
class Received:
    """The sender: every record's key, and when the last one came."""

    keys: collections.Counter[str] = attrs.Factory(collections.Counter)
    last_at: float = 0.0

    async def __call__(self, context: SenderContext) -> None:
        """Count each delivery's records and acknowledge it."""
        async with context.deliveries:
            async for delivery in context.deliveries:
                endpoint = delivery.page.endpoint
                for record in delivery.page.records:
                    self.keys[record_key(endpoint, record)] += 1
                self.last_at = trio.current_time()
                delivery.done.set()


async def offload(function: Any, *args: Any) -> Any:  # noqa: ANN401
    """File work on the event loop: the virtual clock must not jump meanwhile."""
    await trio.lowlevel.checkpoint()
    return function(*args)


def start_of(seed: int) -> float:
    """The epoch a seed's run starts at: 0 to 59 s into a minute, by seed."""
    return BASE + (seed * 23) % 60


@attrs.frozen
class Run:
    """What one catch-up took: virtual seconds, requests, 429s, records once."""

    seconds: float
    requests: int
    refused: int
    exact: bool


def backlog(shape: Shape, page: int) -> dict[Endpoint, int]:
    """Records per endpoint: ``shape.pages`` pages in all, the last one short.

    The administrator log's pages hold 1000 records, but each next page
    starts again at the second the last one ended in (its records are not
    sent twice): 999 new records each, so its records are counted in 999s.
    """
    per_endpoint = shape.pages // len(shape.endpoints)
    return {
        e: per_endpoint * (ADMIN_PAGE - 1 if e is Endpoint.ADMINACTION else page) - 1
        for e in shape.endpoints
    }


async def one_run(shape: Shape, seed: int, state: Path, page: int = PAGE) -> Run:
    """Catch up one backlog under *shape*, *page* records a page (auth and the like).

    The administrator log has no page size: its pages are Duo's 1000.  The
    run starts at ``start_of(seed)``: a fixed window's edges fall elsewhere
    in each seed's first window.
    """
    start = start_of(seed)

    def now() -> float:
        try:
            return start + trio.current_time()
        except RuntimeError:  # outside trio: when the data set is generated
            return start

    spec = DatasetSpec(
        seed=seed,
        span=2 * DAY,
        end_before=600,
        admin_burst=0,
        hard_cases=False,
        counts=backlog(shape, page),
    )
    app = FakeDuoApp(
        FakeDuoConfig(dataset=spec, faults=shape.faults()), clock=now, wall_clock=None
    )
    env = Environment(base_directory=state, environ={}, euid=1000)
    text = config_text(state / "cursors", shape.endpoints)
    config = load_config_text(text, "c.yml", env)
    watch = Watch(frozenset(shape.endpoints))
    observer: Observer = watch
    received = Received()
    rng = random.Random(seed)  # noqa: S311 - jitter, replayable by seed
    fetching = Fetching(
        api_for=lambda account: InProcessDuo(app, account.account_id),
        store=CheckpointStore(state / "cursors", offload=offload, observer=observer),
        settings=attrs.evolve(
            FetchSettings.from_config(config), limits=Limits(page_size=page)
        ),
        host="localhost",
        clock=lambda: start + trio.current_time(),
        rng=rng,
        observer=observer,
        admission=Admission.from_config(config, rng),
    )
    with trio.fail_after(30 * DAY):
        await serve(
            config,
            shutdown_trigger=watch.caught_up.wait,
            fetcher=fetching,
            sender=received,
            discover_accounts=AccountDiscovery(InProcessDuo(app)),
        )
    expected = {r.key for e in shape.endpoints for r in app.servable_records(e, None)}
    exact = set(received.keys) == expected and max(received.keys.values()) == 1
    return Run(received.last_at, watch.requests, watch.refused, exact)


def catch_up(shape: Shape, seed: int, page: int = BENCH_PAGE) -> Run:
    """One run of *shape* from *seed*, on a fresh virtual clock and directory."""
    with tempfile.TemporaryDirectory() as directory:
        return trio.run(
            one_run,
            shape,
            seed,
            Path(directory),
            page,
            clock=trio.testing.MockClock(autojump_threshold=0),
        )


def run_shape(shape: Shape, seeds: int) -> dict[str, Any]:
    """Every seed of *shape*, each on a fresh virtual clock and directory."""
    ratios: list[float] = []
    refusals: list[int] = []
    shares: list[float] = []
    exact = True
    for seed in range(1, seeds + 1):
        run = catch_up(shape, seed)
        ratios.append(run.seconds / shape.optimum(start_of(seed)))
        refusals.append(run.refused)
        shares.append(run.refused / max(1, run.requests))
        exact = exact and run.exact
    return {
        "shape": shape.name,
        "pages": shape.pages,
        "optimum_s": shape.optimum(),
        "ratio_median": statistics.median(ratios),
        "ratio_worst": max(ratios),
        "refused_median": statistics.median(refusals),
        "refused_worst": max(refusals),
        "refused_share_worst": max(shares),
        "exact": exact,
    }


def main() -> int:
    """Measure every shape; print one table (and JSON if asked)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--json", type=Path, default=None)
    options = parser.parse_args()
    rows = [run_shape(shape, options.seeds) for shape in SHAPES]
    print(  # noqa: T201 - the benchmark's report
        f"{'limit':<30}{'pages':>6}{'optimum s':>10}{'ratio med':>10}"
        f"{'worst':>7}{'429s med':>9}{'worst':>7}{'share':>7}  records"
    )
    for row in rows:
        print(  # noqa: T201
            f"{row['shape']:<30}{row['pages']:>6}{row['optimum_s']:>10.0f}"
            f"{row['ratio_median']:>10.2f}{row['ratio_worst']:>7.2f}"
            f"{row['refused_median']:>9.0f}{row['refused_worst']:>7}"
            f"{row['refused_share_worst']:>7.1%}"
            f"  {'once' if row['exact'] else 'WRONG'}"
        )
    if options.json is not None:
        options.json.write_text(json.dumps(rows, indent=2))
    return 0 if all(row["exact"] for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
