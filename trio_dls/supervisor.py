"""The supervision tree: who runs, who feeds whom, and how it all stops.

Theory of operation
-------------------
``serve`` opens the only root nursery.  Inside it:

* one **sender** task per server that some endpoint is mapped to; it owns the
  connection to that server and reads ``Delivery`` items from one bounded
  memory channel, shared (by ``clone``) by every fetcher mapped to it;
* one **account** nursery per Duo account (the account itself, or each MSP
  child), holding one **fetcher** task per mapped endpoint.

A fetcher hands each page to ``Outputs.deliver``, which puts one ``Delivery``
into the channel of every mapped sender and returns only when each of them has
set ``Delivery.done`` (the page is fully written).  Only then may the fetcher
save its cursor and ask Duo for more.  Channels have no buffer, so a stalled
server stops its fetchers and memory stays flat.

Stopping (SIGTERM, SIGINT, or any ``shutdown_trigger``) is graceful: the
``StopSignal`` cancels what fetchers registered with ``StopSignal.cancels``
(their Duo calls and waits; reads have no side effects), while deliveries
already under way are left to finish.  Fetchers return, their channel ends
close, senders drain and return, and ``serve`` returns.  A grace deadline
bounds all of this; when it passes, whatever is still running is cancelled and
the page it held is sent again at the next start (the cursor was not saved).
A second signal cancels at once.

A task that meets a failure it cannot handle raises; the exception cancels the
whole tree and leaves ``serve`` in an exception group for the CLI to report.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import Any, Final

import attrs
import trio

from trio_dls.config import Config, Server
from trio_dls.endpoints import Endpoint

log = logging.getLogger(__name__)

DEFAULT_GRACE: Final = 5.0  # seconds; below Docker's 10 s before SIGKILL


class StopSignal:
    """The request to stop fetching, and the cancel scopes it ends."""

    def __init__(self) -> None:
        """Start unset, with no scopes registered."""
        self._event = trio.Event()
        self._scopes: set[trio.CancelScope] = set()

    @property
    def is_set(self) -> bool:
        """Whether a stop was asked for."""
        return self._event.is_set()

    def set(self) -> None:
        """Ask to stop: cancel every registered scope, wake every waiter."""
        self._event.set()
        for scope in self._scopes:
            scope.cancel()

    async def wait(self) -> None:
        """Return once a stop was asked for."""
        await self._event.wait()

    @contextlib.contextmanager
    def cancels(self) -> Iterator[trio.CancelScope]:
        """Run the body in a scope that a stop cancels (at once if already set)."""
        scope = trio.CancelScope()
        if self.is_set:
            scope.cancel()
        self._scopes.add(scope)
        try:
            with scope:
                yield scope
        finally:
            self._scopes.discard(scope)


@attrs.frozen
class AccountRef:
    """The Duo account a fetcher works for."""

    name: str
    # The MSP child's account id, sent as ``account_id`` with every call;
    # None for the account whose credentials are in the config.
    account_id: str | None = None


@attrs.frozen
class Page:
    """Records of one (account, endpoint), shipped and acknowledged as a unit."""

    account: AccountRef
    endpoint: Endpoint
    records: tuple[Mapping[str, Any], ...]


@attrs.define(eq=False)
class Delivery:
    """One page on its way to one sender; ``done`` is set once fully written."""

    page: Page
    done: trio.Event = attrs.Factory(trio.Event)


class Outputs:
    """A fetcher's channels to the senders its endpoint is mapped to."""

    def __init__(
        self, channels: Mapping[str, trio.MemorySendChannel[Delivery]]
    ) -> None:
        """Own *channels* (server id → channel end), closing them at the end."""
        self._channels = dict(channels)

    @property
    def server_ids(self) -> tuple[str, ...]:
        """The ids of the servers this fetcher feeds."""
        return tuple(self._channels)

    async def deliver(self, page: Page) -> None:
        """Hand *page* to every sender; return once each has fully written it."""
        deliveries = [Delivery(page) for _ in self._channels]
        for channel, delivery in zip(self._channels.values(), deliveries, strict=True):
            try:
                await channel.send(delivery)
            except trio.BrokenResourceError:
                # A sender only closes its end by raising; its error is
                # already cancelling the tree and is the one worth reporting.
                await trio.sleep_forever()
        for delivery in deliveries:
            await delivery.done.wait()

    async def aclose(self) -> None:
        """Close every channel end, so senders see the fetcher is gone."""
        for channel in self._channels.values():
            await channel.aclose()


@attrs.frozen
class FetcherContext:
    """What a fetcher task is given."""

    config: Config
    account: AccountRef
    endpoint: Endpoint
    outputs: Outputs
    stop: StopSignal


@attrs.frozen
class SenderContext:
    """What a sender task is given."""

    config: Config
    server: Server
    deliveries: trio.MemoryReceiveChannel[Delivery]


Fetcher = Callable[[FetcherContext], Awaitable[None]]
Sender = Callable[[SenderContext], Awaitable[None]]
AccountDiscovery = Callable[[Config, StopSignal], Awaitable[list[AccountRef]]]
Trigger = Callable[[], Awaitable[object]]


async def serve(
    config: Config,
    *,
    shutdown_trigger: Trigger,
    force_trigger: Trigger | None = None,
    grace: float = DEFAULT_GRACE,
    fetcher: Fetcher,
    sender: Sender,
    discover_accounts: AccountDiscovery,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run the tree for *config* until *shutdown_trigger* returns.

    *force_trigger*, awaited after the shutdown began, cancels at once when it
    returns; *grace* bounds the graceful part.  Reports readiness through
    *task_status* once every task is running.
    """
    stop = StopSignal()
    finished = False

    async with trio.open_nursery() as root:

        async def stop_when_triggered() -> None:
            await shutdown_trigger()
            log.info("stopping: finishing deliveries in flight (up to %gs)", grace)
            stop.set()
            root.cancel_scope.deadline = min(
                root.cancel_scope.deadline, trio.current_time() + grace
            )
            if force_trigger is not None:
                await force_trigger()
                log.warning("stopping now, as asked a second time")
                root.cancel_scope.cancel()

        root.start_soon(stop_when_triggered)
        accounts: list[AccountRef] = []
        with stop.cancels():
            accounts = await discover_accounts(config, stop)
        if stop.is_set:
            task_status.started()
        else:
            await _run_tree(config, accounts, stop, fetcher, sender, task_status)
        finished = True
        # The tree is done: stop listening for signals.
        root.cancel_scope.cancel()

    if not finished:
        log.warning(
            "stopped before deliveries in flight were acknowledged; their pages "
            "will be sent again at the next start"
        )
    log.info("stopped")


async def _run_tree(  # noqa: PLR0917 - a private step of serve
    config: Config,
    accounts: list[AccountRef],
    stop: StopSignal,
    fetcher: Fetcher,
    sender: Sender,
    task_status: trio.TaskStatus[None],
) -> None:
    mapped = {
        server_id
        for endpoint in config.account.endpoints
        for server_id in config.account.servers_for(endpoint)
    }
    async with trio.open_nursery() as tree:
        inputs: dict[str, trio.MemorySendChannel[Delivery]] = {}
        for server in config.servers:
            if server.id not in mapped:
                log.warning("server %r: no endpoint is mapped to it", server.id)
                continue
            send, receive = trio.open_memory_channel[Delivery](0)
            inputs[server.id] = send
            tree.start_soon(
                sender,
                SenderContext(config=config, server=server, deliveries=receive),
                name=f"sender {server.id}",
            )
        for account in accounts:
            fetchers = [
                FetcherContext(
                    config=config,
                    account=account,
                    endpoint=endpoint,
                    outputs=Outputs(
                        {
                            server_id: inputs[server_id].clone()
                            for server_id in config.account.servers_for(endpoint)
                        }
                    ),
                    stop=stop,
                )
                for endpoint in config.account.endpoints
            ]
            tree.start_soon(
                _run_account, fetcher, fetchers, name=f"account {account.name}"
            )
        # Fetchers hold clones; once they all close theirs, senders see the end.
        for send in inputs.values():
            await send.aclose()
        log.info(
            "started: %d account(s), %d endpoint(s), %d server(s)",
            len(accounts),
            len(config.account.endpoints),
            len(inputs),
        )
        task_status.started()


async def _run_account(fetcher: Fetcher, contexts: list[FetcherContext]) -> None:
    async with trio.open_nursery() as account:
        for context in contexts:
            account.start_soon(
                _run_fetcher,
                fetcher,
                context,
                name=f"fetcher {context.account.name}/{context.endpoint}",
            )


async def _run_fetcher(fetcher: Fetcher, context: FetcherContext) -> None:
    try:
        await fetcher(context)
    finally:
        with trio.CancelScope(shield=True):
            await context.outputs.aclose()
