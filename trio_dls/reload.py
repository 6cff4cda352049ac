"""SIGHUP: read the config again and apply it without losing or resending a record.

Theory of operation
-------------------
``serve_reloading`` runs the daemon as a sequence of *generations*: one run of
the whole tree (``trio_dls.supervisor.serve`` with everything built from one
config) per config.  A reload request (SIGHUP, or any ``reload_trigger``)
reads the config file again, in a worker thread, while the running generation
goes on:

* If the file has problems, every one is logged, with its key path, and the
  running generation is kept, untouched.  So is it when the file says exactly
  what runs already.
* Otherwise the running generation is stopped as SIGTERM stops the daemon
  (deliveries in flight finish within the grace, every cursor is saved), and a
  new one starts from the new config, which reads those cursors.  A reload is
  thus a clean restart inside the process: what the delivery contract
  promises across a clean restart, it promises across a reload, whatever
  changed (endpoints, servers, mappings, intervals, credentials, limits).

What this costs, by design: connections to the servers are made again, and
fetchers start over from their cursors (a few requests).  What it does not
do: backfill a server added by the reload with what other servers received
before it; an endpoint's cursor is one for all its servers, so a new server
gets that endpoint's records from the cursor on.  An endpoint added by the
reload starts as a first start does (``api.offset`` back).

A stop that arrives during a reload wins: no new generation starts.  A second
reload while one is being applied is read once the new generation runs.

Every wait is bounded: the file read by the load itself (a local file), the
stop by the grace, as any stop.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Protocol

import trio

from trio_dls.config import ConfigError, warnings_for

if TYPE_CHECKING:
    from trio_dls.config import Config
    from trio_dls.supervisor import AccountTree, Trigger

__all__ = ["Generation", "describe_changes", "serve_reloading"]

log = logging.getLogger(__name__)


class Generation(Protocol):
    """Runs the whole daemon for one config until *shutdown_trigger* returns."""

    async def __call__(
        self,
        config: Config,
        *,
        shutdown_trigger: Trigger,
        force_trigger: Trigger | None,
        task_status: trio.TaskStatus[AccountTree | None],
    ) -> None:
        """Report the tree through *task_status* once it runs."""


Offload = Callable[[Callable[[], "Config"]], Awaitable["Config"]]


async def _in_thread(load: Callable[[], Config]) -> Config:
    # A file on a hung network share must not hold up a stop: abandoned.
    return await trio.to_thread.run_sync(load, abandon_on_cancel=True)


def describe_changes(old: Config, new: Config) -> list[str]:
    """Say, one item each, what differs between *old* and *new* (never a secret)."""
    changes: list[str] = []
    before, after = old.account, new.account
    if (before.ikey, before.skey, before.hostname) != (
        after.ikey,
        after.skey,
        after.hostname,
    ):
        changes.append("the Duo credentials or API host (every fetcher restarts)")
    if before.endpoints != after.endpoints:
        added = [str(e) for e in after.endpoints if e not in before.endpoints]
        removed = [str(e) for e in before.endpoints if e not in after.endpoints]
        if added:
            changes.append("endpoints added: " + ", ".join(added))
        if removed:
            changes.append("endpoints removed: " + ", ".join(removed))
    old_servers = {server.id: server for server in old.servers}
    new_servers = {server.id: server for server in new.servers}
    added = [i for i in new_servers if i not in old_servers]
    removed = [i for i in old_servers if i not in new_servers]
    changed = [
        i for i in new_servers if i in old_servers and old_servers[i] != new_servers[i]
    ]
    for words, ids in (
        ("servers added", added),
        ("servers removed", removed),
        ("servers changed", changed),
    ):
        if ids:
            changes.append(f"{words}: " + ", ".join(ids))
    if {e: before.servers_for(e) for e in after.endpoints if e in before.endpoints} != {
        e: after.servers_for(e) for e in after.endpoints if e in before.endpoints
    }:
        changes.append("endpoint-to-server mappings")
    if before != after and not changes:
        changes.append("account settings")
    if old.dls_settings != new.dls_settings:
        changes.append("dls_settings")
    return changes


async def serve_reloading(  # noqa: C901 - one loop and its two watchers
    config: Config,
    generation: Generation,
    *,
    shutdown_trigger: Trigger,
    force_trigger: Trigger | None = None,
    reload_trigger: Trigger | None = None,
    load_config: Callable[[], Config] | None = None,
    on_reloading: Callable[[Config], object] | None = None,
    on_applied: Callable[[Config, AccountTree | None], object] | None = None,
    offload: Offload = _in_thread,
    task_status: trio.TaskStatus[AccountTree | None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run *generation* for *config*, then for each valid new config, until the stop.

    Each time *reload_trigger* returns, *load_config* is called (by
    *offload*: in a thread) for the new config; it raises ``ConfigError`` for a bad one.
    *on_reloading* is called with a new config about to replace the running
    one (before anything runs with it: the log must know its secrets),
    *on_applied* once its generation runs.  *task_status* reports the
    first generation's tree.
    """
    shutdown = trio.Event()
    forced = trio.Event()
    current = config
    pending: Config | None = None
    stop_generation = trio.Event()

    async def watch_shutdown() -> None:
        await shutdown_trigger()
        shutdown.set()
        stop_generation.set()
        if force_trigger is not None:
            await force_trigger()
            forced.set()

    async def watch_reloads(trigger: Trigger, load: Callable[[], Config]) -> None:
        nonlocal pending
        while True:
            await trigger()
            if shutdown.is_set():
                return
            new = await _read_again(load, offload)
            if new is None:
                continue
            if new == (pending or current):
                log.info("config unchanged: nothing to apply")
                continue
            for warning in warnings_for(new):
                log.warning("%s", warning)
            log.info(
                "applying the new config (%s): stopping the running tree as a "
                "clean stop does, then starting from the saved cursors",
                "; ".join(describe_changes(pending or current, new)),
            )
            pending = new
            if on_reloading is not None:
                on_reloading(new)
            stop_generation.set()

    first = True
    async with trio.open_nursery() as control:
        control.start_soon(watch_shutdown)
        if reload_trigger is not None and load_config is not None:
            control.start_soon(watch_reloads, reload_trigger, load_config)
        while True:
            async with trio.open_nursery() as running:
                tree = await running.start(
                    _run_generation,
                    generation,
                    current,
                    stop_generation,
                    forced,
                )
                if first:
                    task_status.started(tree)
                    first = False
                elif on_applied is not None:
                    on_applied(current, tree)
            # The generation ended: a stop, a reload, or by itself (nothing
            # left to fetch).  Only a reload goes on.
            if shutdown.is_set() or pending is None:
                break
            current, pending = pending, None
            stop_generation = trio.Event()
        control.cancel_scope.cancel()


async def _read_again(load: Callable[[], Config], offload: Offload) -> Config | None:
    """Load the config by *offload*; None, every problem logged, if it is bad."""
    log.info("reload asked: reading the config again")
    try:
        return await offload(load)
    except ConfigError as exc:
        for problem in exc.problems:
            log.error("%s", problem.render(exc.filename))  # noqa: TRY400
        count = len(exc.problems)
        log.error(  # noqa: TRY400 - the problems are the message
            "config not reloaded: %d problem%s in %s; the running config is kept",
            count,
            "s" if count != 1 else "",
            exc.filename,
        )
        return None


async def _run_generation(
    generation: Generation,
    config: Config,
    stop: trio.Event,
    forced: trio.Event,
    *,
    task_status: trio.TaskStatus[AccountTree | None],
) -> None:
    await generation(
        config,
        shutdown_trigger=stop.wait,
        force_trigger=forced.wait,
        task_status=task_status,
    )
