"""The supervision tree: start, deliver, stop gracefully, tear down on failure.

Rules for these tests: time is trio's virtual clock (``autojump_clock``), so
grace periods and slow senders cost nothing; fetchers and senders are small
fakes that record what happened, plugged into the real ``serve``.
"""

from __future__ import annotations

import pytest
import trio
import trio.testing

from trio_dls.config import Config, Environment, load_config_text
from trio_dls.endpoints import Endpoint
from trio_dls.errors import FatalError
from trio_dls.supervisor import (
    AccountRef,
    FetcherContext,
    Page,
    SenderContext,
    StopSignal,
    serve,
)

CONFIG = """\
version: '1.0.0'
servers:
  - {id: a, hostname: 127.0.0.1, port: 9001, protocol: TCP}
  - {id: b, hostname: 127.0.0.1, port: 9002, protocol: UDP}
account:
  ikey: DIXXXXXXXXXXXXXXXXXX
  skey: skeyskeyskeyskeyskeyskeyskeyskeyskeyskey
  hostname: api-test.duosecurity.com
  endpoint_server_mappings:
    - {endpoints: [auth, telephony], server: a}
    - {endpoints: auth, server: b}
"""


@pytest.fixture
def config(env: Environment) -> Config:
    """A config with two servers: auth goes to both, telephony to one."""
    return load_config_text(CONFIG, "c.yml", env)


def page(context: FetcherContext, n: int) -> Page:
    """A page of one record for the fetcher of *context*."""
    return Page(context.account, context.endpoint, ({"n": n},))


class Recorder:
    """Senders that record what they were given, acking after *delay*."""

    def __init__(self, delay: float = 0.0) -> None:
        """Ack each delivery *delay* seconds after receiving it."""
        self.delay = delay
        self.written: dict[str, list[Page]] = {}
        self.started: list[str] = []

    async def __call__(self, context: SenderContext) -> None:
        """Record deliveries for the server of *context* until the channel ends."""
        self.started.append(context.server.id)
        written = self.written.setdefault(context.server.id, [])
        async with context.deliveries:
            async for delivery in context.deliveries:
                await trio.sleep(self.delay)
                written.append(delivery.page)
                delivery.done.set()


async def single_account(config: Config, stop: StopSignal) -> list[AccountRef]:
    """Discover one account."""
    del config, stop
    return [AccountRef("acct")]


async def test_tree_runs_one_fetcher_per_endpoint_and_one_sender_per_server(
    config: Config,
) -> None:
    """Each mapped endpoint gets a fetcher; each server one sender."""
    seen: list[tuple[Endpoint, tuple[str, ...]]] = []
    stop_now = trio.Event()
    recorder = Recorder()

    async def fetcher(context: FetcherContext) -> None:
        seen.append((context.endpoint, context.outputs.server_ids))
        await context.stop.wait()

    async with trio.open_nursery() as nursery:
        await nursery.start(
            lambda task_status: serve(
                config,
                shutdown_trigger=stop_now.wait,
                fetcher=fetcher,
                sender=recorder,
                discover_accounts=single_account,
                task_status=task_status,
            )
        )
        await trio.testing.wait_all_tasks_blocked()
        stop_now.set()

    assert sorted(seen) == [(Endpoint.AUTH, ("a", "b")), (Endpoint.TELEPHONY, ("a",))]
    assert sorted(recorder.started) == ["a", "b"]


async def test_one_sender_per_server_is_shared_by_all_accounts(
    config: Config,
) -> None:
    """With many accounts, each server still has one sender receiving all pages."""
    stop_now = trio.Event()
    recorder = Recorder()

    async def three_accounts(config: Config, stop: StopSignal) -> list[AccountRef]:
        del config, stop
        return [AccountRef(f"child{i}", f"DA{i:018d}") for i in range(3)]

    async def fetcher(context: FetcherContext) -> None:
        await context.outputs.deliver(page(context, 1))
        await context.stop.wait()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(
            lambda: serve(
                config,
                shutdown_trigger=stop_now.wait,
                fetcher=fetcher,
                sender=recorder,
                discover_accounts=three_accounts,
            )
        )
        await trio.testing.wait_all_tasks_blocked()
        stop_now.set()

    assert sorted(recorder.started) == ["a", "b"]
    assert len(recorder.written["a"]) == 6  # 3 accounts x (auth, telephony)
    assert len(recorder.written["b"]) == 3  # 3 accounts x auth
    assert {p.account.account_id for p in recorder.written["b"]} == {
        f"DA{i:018d}" for i in range(3)
    }


async def test_stop_lets_the_delivery_in_flight_finish(
    config: Config, autojump_clock: trio.testing.MockClock
) -> None:
    """A stop cancels fetching but waits for the page being written."""
    del autojump_clock
    recorder = Recorder(delay=3.0)
    saved: list[int] = []
    stop_now = trio.Event()

    async def fetcher(context: FetcherContext) -> None:
        n = 0
        while True:
            with context.stop.cancels() as fetching:
                await trio.sleep(1)  # stands for a Duo call
                n += 1
            if fetching.cancelled_caught:
                return
            if context.endpoint is Endpoint.TELEPHONY:
                if n == 2:
                    stop_now.set()
                await context.outputs.deliver(page(context, n))
                saved.append(n)

    await serve(
        config,
        shutdown_trigger=stop_now.wait,
        grace=10,
        fetcher=fetcher,
        sender=recorder,
        discover_accounts=single_account,
    )

    assert saved == [1, 2]
    assert [p.records[0]["n"] for p in recorder.written["a"]] == [1, 2]
    # Stop at t=5 (two fetches of 1 s, one delivery of 3 s), then 3 s more.
    assert trio.current_time() == pytest.approx(8.0)


async def test_grace_period_bounds_a_stuck_delivery(
    config: Config, autojump_clock: trio.testing.MockClock
) -> None:
    """A sender that never finishes is cancelled when the grace period ends."""
    del autojump_clock
    saved: list[int] = []
    stop_now = trio.Event()

    async def stuck_sender(context: SenderContext) -> None:
        async with context.deliveries:
            async for _ in context.deliveries:
                await trio.sleep_forever()

    async def fetcher(context: FetcherContext) -> None:
        if context.endpoint is Endpoint.TELEPHONY:
            stop_now.set()
            await context.outputs.deliver(page(context, 1))
            saved.append(1)
        await context.stop.wait()

    await serve(
        config,
        shutdown_trigger=stop_now.wait,
        grace=7,
        fetcher=fetcher,
        sender=stuck_sender,
        discover_accounts=single_account,
    )

    assert saved == []
    assert trio.current_time() == pytest.approx(7.0)


async def test_second_signal_stops_at_once(
    config: Config, autojump_clock: trio.testing.MockClock
) -> None:
    """Asked twice, the tree is cancelled without waiting out the grace."""
    del autojump_clock
    stop_now = trio.Event()
    force_now = trio.Event()

    async def stuck_sender(context: SenderContext) -> None:
        async with context.deliveries:
            async for _ in context.deliveries:
                force_now.set()
                await trio.sleep_forever()

    async def fetcher(context: FetcherContext) -> None:
        await trio.sleep(2)
        stop_now.set()
        await context.outputs.deliver(page(context, 1))

    await serve(
        config,
        shutdown_trigger=stop_now.wait,
        force_trigger=force_now.wait,
        grace=60,
        fetcher=fetcher,
        sender=stuck_sender,
        discover_accounts=single_account,
    )

    assert trio.current_time() == pytest.approx(2.0)


async def test_a_fatal_error_tears_the_tree_down(config: Config) -> None:
    """A task that raises cancels the others and leaves serve with its error."""
    cancelled: list[Endpoint] = []

    async def fetcher(context: FetcherContext) -> None:
        if context.endpoint is Endpoint.AUTH:
            raise FatalError("credentials rejected")
        try:
            await trio.sleep_forever()
        finally:
            cancelled.append(context.endpoint)

    with pytest.RaisesGroup(
        pytest.RaisesExc(FatalError, match="credentials rejected"),
        flatten_subgroups=True,
    ):
        await serve(
            config,
            shutdown_trigger=trio.sleep_forever,
            fetcher=fetcher,
            sender=Recorder(),
            discover_accounts=single_account,
        )
    assert cancelled == [Endpoint.TELEPHONY]


async def test_a_stalled_server_stops_its_fetchers(
    config: Config, autojump_clock: trio.testing.MockClock
) -> None:
    """Channels have no buffer: a sender that stops reading blocks the fetcher."""
    del autojump_clock
    handed_over: list[int] = []

    async def not_reading(context: SenderContext) -> None:
        async with context.deliveries:
            await trio.sleep_forever()

    async def fetcher(context: FetcherContext) -> None:
        for n in range(100):
            await context.outputs.deliver(page(context, n))
            handed_over.append(n)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(
            lambda: serve(
                config,
                shutdown_trigger=trio.sleep_forever,
                fetcher=fetcher,
                sender=not_reading,
                discover_accounts=single_account,
            )
        )
        await trio.sleep(3600)
        nursery.cancel_scope.cancel()

    assert handed_over == []


async def test_stop_during_account_discovery(config: Config) -> None:
    """A stop while listing accounts returns without starting the tree."""
    stop_now = trio.Event()
    started: list[str] = []

    async def slow_discovery(config: Config, stop: StopSignal) -> list[AccountRef]:
        del config, stop
        stop_now.set()
        await trio.sleep_forever()
        raise AssertionError  # pragma: no cover

    async def fetcher(context: FetcherContext) -> None:
        started.append(str(context.endpoint))  # pragma: no cover

    await serve(
        config,
        shutdown_trigger=stop_now.wait,
        fetcher=fetcher,
        sender=Recorder(),
        discover_accounts=slow_discovery,
    )
    assert started == []


async def test_stop_signal_cancels_registered_scopes() -> None:
    """StopSignal.set cancels scopes registered before and after it."""
    stop = StopSignal()
    with stop.cancels() as before:
        stop.set()
    with stop.cancels() as after:
        pass
    assert (before.cancel_called, after.cancel_called) == (True, True)
