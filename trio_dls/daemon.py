"""The daemon assembled: the supervision tree with the real parts plugged in.

The CLI and the demo both run exactly this; tests plug fakes into
``trio_dls.supervisor.serve`` directly.
"""

from __future__ import annotations

import functools
import time
import weakref
from pathlib import Path
from typing import TYPE_CHECKING

import trio

from trio_dls.checkpoints import CheckpointStore
from trio_dls.config import MspApiHost
from trio_dls.duo.admission import Admission
from trio_dls.duo.client import ThreadedDuoApi
from trio_dls.duo.discovery import AccountDiscovery
from trio_dls.fetcher import Fetching, FetchSettings
from trio_dls.observe import Counters, Fanout, LogObserver, Observer
from trio_dls.observe.metrics import Metrics
from trio_dls.observe.metrics_http import open_listeners, serve_metrics
from trio_dls.observe.progress import (
    DEFAULT_INTERVAL,
    Progress,
    ProgressMode,
    serve_progress,
)
from trio_dls.reload import serve_reloading
from trio_dls.service import Notifier, ServiceStatus, serve_notifying
from trio_dls.siem.senders import SiemSender
from trio_dls.supervisor import (
    DEFAULT_GRACE,
    AccountRef,
    AccountTree,
    Trigger,
    serve,
)

if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import TextIO

    from trio_dls.config import Config
    from trio_dls.duo.shards import Shard


def duo_api_for(
    config: Config, account: AccountRef, limiter: trio.CapacityLimiter
) -> ThreadedDuoApi:
    """Return the Duo client of *account*, calling the host ``msp_api_host`` says.

    Either way a child's calls name it with ``account_id``, signed with the
    parent's keys; ``child`` only moves them to the child's own deployment.
    """
    hostname = None
    if config.account.msp_api_host is MspApiHost.CHILD:
        hostname = account.api_hostname
    return ThreadedDuoApi(
        config.account,
        config.dls_settings.proxy,
        limiter=limiter,
        child_account_id=account.account_id,
        api_hostname=hostname,
        call_timeout=config.dls_settings.api.request_timeout,
    )


async def run_daemon(
    config: Config,
    *,
    shutdown_trigger: Trigger,
    force_trigger: Trigger | None = None,
    grace: float = DEFAULT_GRACE,
    shard: Shard | None = None,
    reload_trigger: Trigger | None = None,
    load_config: Callable[[], Config] | None = None,
    on_reloading: Callable[[Config], object] | None = None,
    progress: ProgressMode = ProgressMode.OFF,
    progress_interval: float = DEFAULT_INTERVAL,
    progress_stream: TextIO | None = None,
    task_status: trio.TaskStatus[AccountTree | None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Fetch from Duo and send to the servers of *config* until triggered.

    With a *shard*, an MSP parent's children are fetched only if it owns them.
    Each time *reload_trigger* returns, the config is read again with
    *load_config* and, if valid and changed, applied (``trio_dls.reload``);
    *on_reloading* is told of it first.  *progress* (lines or live, not
    auto) is said every *progress_interval* seconds, live on
    *progress_stream* (stderr).
    """
    # The service manager hears of the daemon as a whole: READY once, then
    # RELOADING=1 and READY=1 around each reload; so does the progress.
    status = ServiceStatus(endpoints=len(config.account.endpoints))
    notifier = Notifier.from_environ()
    watching = None
    if progress in {ProgressMode.LINES, ProgressMode.LIVE}:
        watching = Progress(progress_interval)
    lasting: list[Observer] = [status] if watching is None else [status, watching]

    def reloading(new: Config) -> None:
        if on_reloading is not None:
            on_reloading(new)
        status.endpoints = len(new.account.endpoints)
        notifier.send(
            RELOADING="1",
            MONOTONIC_USEC=str(time.monotonic_ns() // 1000),
            STATUS="reloading the config",
        )

    def applied(_config: Config, _tree: AccountTree | None) -> None:
        notifier.send(READY="1", STATUS=status.summary())

    try:
        async with trio.open_nursery() as nursery:
            if watching is not None:
                await nursery.start(
                    functools.partial(
                        serve_progress, watching, progress, stream=progress_stream
                    )
                )
            await serve_notifying(
                functools.partial(
                    serve_reloading,
                    config,
                    functools.partial(
                        _run_generation, grace=grace, shard=shard, lasting=lasting
                    ),
                    force_trigger=force_trigger,
                    reload_trigger=reload_trigger,
                    load_config=load_config,
                    on_reloading=reloading,
                    on_applied=applied,
                ),
                shutdown_trigger=shutdown_trigger,
                notifier=notifier,
                status=status,
                task_status=task_status,
            )
            # The progress ends with the tree.
            nursery.cancel_scope.cancel()
    finally:
        notifier.close()


async def _run_generation(
    config: Config,
    *,
    shutdown_trigger: Trigger,
    force_trigger: Trigger | None,
    grace: float,
    shard: Shard | None,
    lasting: list[Observer],
    task_status: trio.TaskStatus[AccountTree | None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run the tree for *config*, every part built from it, until triggered.

    *lasting* are the observers that outlive it (the service status, the
    progress), told beside this generation's own.
    """
    checkpointing = config.dls_settings.checkpointing
    # One set of observers for the whole pipeline: the log, the totals, the
    # status line systemd shows, and the metrics when they are served
    # (dls_settings.metrics.listen).
    observers: list[Observer] = [LogObserver(), Counters(), *lasting]
    listen = config.dls_settings.metrics.listen
    metrics = Metrics.from_config(config) if listen else None
    if metrics is not None:
        observers.append(metrics)
    observer = Fanout(*observers)
    store = CheckpointStore(
        Path(checkpointing.directory),
        enabled=checkpointing.enabled,
        offset_days=config.dls_settings.api.offset,
        observer=observer,
    )
    await store.prepare()
    # The global bounds: Duo calls in flight (worker threads), and pages held.
    limiter = trio.CapacityLimiter(config.dls_settings.api.max_calls_in_flight)
    admission = Admission.from_config(config)

    # One client per account, shared by its fetchers (duo_client's clients
    # may be, as long as no params dict is shared between calls), and
    # forgotten with the account's last fetcher: a child costs one, not five.
    clients: weakref.WeakValueDictionary[
        tuple[str | None, str | None], ThreadedDuoApi
    ] = weakref.WeakValueDictionary()

    def api_for(account: AccountRef) -> ThreadedDuoApi:
        key = (account.account_id, account.api_hostname)
        client = clients.get(key)
        if client is None:
            client = clients[key] = duo_api_for(config, account, limiter)
        return client

    # The parent's own client: it lists the children, at start and after.
    discovery = AccountDiscovery(
        api_for(AccountRef(config.account.ikey)), observer=observer, shard=shard
    )
    async with trio.open_nursery() as nursery:
        if metrics is not None:
            # Before the tree starts: a port in use is fatal at once.
            listeners = await open_listeners(listen)
            await nursery.start(serve_metrics, metrics, listeners)
        await serve(
            config,
            shutdown_trigger=shutdown_trigger,
            force_trigger=force_trigger,
            grace=grace,
            fetcher=Fetching(
                api_for=api_for,
                store=store,
                settings=FetchSettings.from_config(config),
                host=config.account.api_host,
                observer=observer,
                admission=admission,
            ),
            sender=SiemSender(observer=observer),
            discover_accounts=discovery,
            refresh_accounts=discovery.refresh,
            observer=observer,
            task_status=task_status,
        )
        # The metrics endpoint ends with the tree.
        nursery.cancel_scope.cancel()
