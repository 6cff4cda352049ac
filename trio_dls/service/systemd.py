"""The supervision tree, run under systemd's ``Type=notify``: when to say what.

Theory of operation
-------------------
``serve_notifying`` runs the tree (``trio_dls.supervisor.serve``, or anything
started like it) in a nursery of its own, beside one more task, and tells the
service manager, through a ``trio_dls.service.sdnotify.Notifier``:

* ``STATUS=starting...`` at once, while accounts are listed;
* ``READY=1``, with the first ``STATUS=``, when the tree reports through its
  ``task_status`` that it runs (not if it was stopped before that);
* ``WATCHDOG=1`` every half ``WatchdogSec=``, from a task of the event loop:
  if the loop blocks (a synchronous call that hangs, a busy loop), the pings
  stop and systemd restarts trio-dls, which is the watchdog's whole point;
* ``STATUS=`` again when the line of ``trio_dls.service.status`` changes,
  looked at every ``STATUS_EVERY`` seconds, so that a busy catch-up is not a
  datagram per page;
* ``STOPPING=1`` when the shutdown trigger returns (SIGTERM), before the
  tree begins its graceful stop; or, if the tree ends by itself (a fatal
  error), when it ends.

Every wait is a sleep to the next deadline; nothing waits on the manager.
Without ``$NOTIFY_SOCKET`` the notifier sends nothing and this is the tree
alone with one sleeping task.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Final, Protocol

import attrs
import trio

from trio_dls.service.sdnotify import Notifier
from trio_dls.service.status import ServiceStatus

if TYPE_CHECKING:
    from trio_dls.supervisor import AccountTree, Trigger

__all__ = ["STATUS_EVERY", "Serve", "serve_notifying"]

#: Seconds between two looks at the status line (so at most one STATUS per).
STATUS_EVERY: Final = 5.0
STARTING: Final = "starting: listing the accounts to fetch for"


class Serve(Protocol):
    """The tree to run: ``serve`` with everything but the trigger given."""

    async def __call__(
        self,
        *,
        shutdown_trigger: Trigger,
        task_status: trio.TaskStatus[AccountTree | None],
    ) -> None:
        """Run until *shutdown_trigger* returns; report the tree when it runs."""


async def serve_notifying(
    serve: Serve,
    *,
    shutdown_trigger: Trigger,
    notifier: Notifier,
    status: ServiceStatus,
    status_every: float = STATUS_EVERY,
    task_status: trio.TaskStatus[AccountTree | None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run *serve* until *shutdown_trigger* returns, telling *notifier* of it."""
    telling = _Telling(notifier, status)

    async def trigger() -> None:
        await shutdown_trigger()
        telling.stopping()

    notifier.send(STATUS=STARTING)
    async with trio.open_nursery() as nursery:

        async def run_tree(*, task_status: trio.TaskStatus[AccountTree | None]) -> None:
            try:
                await serve(shutdown_trigger=trigger, task_status=task_status)
            finally:
                telling.stopping()
                nursery.cancel_scope.cancel()

        tree = await nursery.start(run_tree)
        if tree is not None:
            telling.ready()
            nursery.start_soon(telling.keep_alive, status_every)
        task_status.started(tree)


@attrs.define
class _Telling:
    """What was told the manager, so that a STATUS is sent only when new."""

    notifier: Notifier
    status: ServiceStatus
    said: str = STARTING

    def ready(self) -> None:
        self.said = self.status.summary()
        self.notifier.send(READY="1", STATUS=self.said)

    def stopping(self) -> None:
        if not self.status.stopping:
            self.status.stopping = True
            self.said = self.status.summary()
            self.notifier.send(STOPPING="1", STATUS=self.said)

    def tell_status(self) -> None:
        line = self.status.summary()
        if line != self.said:
            self.said = line
            self.notifier.send(STATUS=line)

    async def keep_alive(self, status_every: float) -> None:
        interval = self.notifier.watchdog
        now = trio.current_time()
        # systemd arms the watchdog at READY=1: the first ping is due after
        # one interval, not at once.
        next_ping = now + interval if interval is not None else math.inf
        next_look = now + status_every
        while True:
            await trio.sleep_until(min(next_ping, next_look))
            now = trio.current_time()
            if now >= next_ping and interval is not None:
                self.notifier.send(WATCHDOG="1")
                next_ping = now + interval
            if now >= next_look:
                self.tell_status()
                next_look = now + status_every
