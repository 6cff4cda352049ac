"""Which accounts to fetch for: the account itself, or an MSP parent's children.

The supervisor's ``AccountDiscovery``: for an ordinary account, the account; for an
MSP parent (``is_msp``), its children from the Accounts API, minus ``block_list``.
A failure to list is retried with backoff; a parent with no child to fetch keeps
looking.  What happens is told to the observer, never logged here.

It is also the supervisor's ``AccountRefresh``: children come and go while the
daemon runs, so the list is read again every ``account.msp_refresh_interval``
seconds and the running tree is made to match it (``block_list`` applied each
time): new children are added, children gone from the list are removed, as a
clean stop does, their cursors left for when they come back.  A listing that
fails changes nothing; it is retried with backoff, the children running
meanwhile.  The account list is the parent's own call: its credentials being
refused there is fatal, as at start-up.

With a ``shard`` (``--shard INDEX/COUNT``), only the children that shard owns
are kept, after ``block_list``, at start and at every refresh: processes
sharing a parent fetch each child exactly once between them.  An ordinary
account ignores the shard; without one, every child is fetched.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any, Final

import attrs
import trio

from trio_dls.duo.client import DuoApi, TransientApiError, failure_kind
from trio_dls.duo.pacing import Backoff
from trio_dls.duo.shards import Shard, owns
from trio_dls.observe import LogObserver, Observer
from trio_dls.observe.events import (
    AccountListFailed,
    AccountsListed,
    ChildrenChanged,
    NoChildAccount,
    ShardOwned,
)
from trio_dls.observe.reporting import Streak
from trio_dls.supervisor import AccountRef

if TYPE_CHECKING:
    from trio_dls.config import Config
    from trio_dls.supervisor import AccountTree, StopSignal

__all__ = ["AccountDiscovery"]


# An MSP parent with no child to fetch looks again after this long, growing
# to the cap: a new child is picked up within the hour at the latest.
NO_CHILD_RETRY_FIRST: Final = 60.0
NO_CHILD_RETRY_CAP: Final = 3600.0


@attrs.define
class AccountDiscovery:
    """The supervisor's ``AccountDiscovery``: the account, or its MSP children.

    An MSP parent with no child account (or only blocked ones) is not done:
    exiting would leave a ``Restart=on-failure`` service down for good, so it
    keeps looking, at a falling rate, until a child appears or a stop comes.
    Each listing, each list without a child to fetch and each failure to list
    is told to ``observer``.
    """

    api: DuoApi
    rng: random.Random = attrs.field(factory=random.Random)
    observer: Observer = attrs.Factory(LogObserver)
    shard: Shard | None = None
    """The children this process fetches among several; None: all of them."""

    async def __call__(self, config: Config, stop: StopSignal) -> list[AccountRef]:
        """Return the accounts to fetch for (each child of an MSP parent)."""
        account = config.account
        if not account.is_msp:
            return [AccountRef(name=account.ikey)]
        none_yet = Backoff(
            rng=self.rng, first=NO_CHILD_RETRY_FIRST, cap=NO_CHILD_RETRY_CAP
        )
        streak = Streak()
        told_shard = False
        while True:
            children = await self._list(stop)
            if stop.is_set:
                return []
            unblocked = _children(children, account.block_list)
            blocked = len(children) - len(unblocked)
            refs = self._owned(unblocked)
            self.observer(AccountsListed(children=len(refs), blocked=blocked))
            if self.shard is not None and not told_shard:
                told_shard = True
                self.observer(
                    ShardOwned(
                        index=self.shard.index,
                        count=self.shard.count,
                        owned=len(refs),
                        children=len(unblocked),
                    )
                )
            if refs:
                return refs
            delay = none_yet.failed()
            now = trio.current_time()
            streak.failed("no child", now)
            self.observer(
                NoChildAccount(
                    listed=len(children),
                    blocked=blocked,
                    retry_in=delay,
                    failures=streak.failures,
                    since=streak.since,
                    at=now,
                )
            )
            if not await stop.sleep(delay):
                return []

    async def refresh(
        self, config: Config, tree: AccountTree, stop: StopSignal
    ) -> None:
        """Keep *tree*'s accounts the MSP parent's unblocked children, until a stop."""
        account = config.account
        if not account.is_msp:
            return
        streak = Streak()
        interval = account.msp_refresh_interval
        while await stop.sleep(interval):
            children = await self._list(stop)
            if stop.is_set:
                return
            unblocked = _children(children, account.block_list)
            blocked = len(children) - len(unblocked)
            refs = self._owned(unblocked)
            self.observer(AccountsListed(children=len(refs), blocked=blocked))
            await self._apply(tree, refs)
            if refs:
                streak.succeeded()
                continue
            now = trio.current_time()
            streak.failed("no child", now)
            self.observer(
                NoChildAccount(
                    listed=len(children),
                    blocked=blocked,
                    retry_in=interval,
                    failures=streak.failures,
                    since=streak.since,
                    at=now,
                )
            )

    def _owned(self, refs: list[AccountRef]) -> list[AccountRef]:
        """The children of *refs* this process's shard owns."""
        shard = self.shard
        if shard is None:
            return refs
        return [
            ref
            for ref in refs
            if ref.account_id is not None and owns(shard, ref.account_id)
        ]

    async def _apply(self, tree: AccountTree, refs: list[AccountRef]) -> None:
        """Add the children of *refs* not running, remove those running not in it."""
        wanted = {ref.account_id: ref for ref in refs}
        running = {ref.account_id: ref for ref in tree.accounts}
        removed = tuple(ref for key, ref in running.items() if key not in wanted)
        # Each removal may wait out a delivery's grace: side by side, a
        # thousand children leaving cost one grace, not a thousand.
        async with trio.open_nursery() as removing:
            for ref in removed:
                removing.start_soon(tree.remove, ref.account_id)
        added = tuple(ref for ref in refs if tree.add(ref))
        if added or removed:
            self.observer(ChildrenChanged(added=added, removed=removed))

    async def _list(self, stop: StopSignal) -> list[dict[str, Any]]:
        """Return the Accounts API's list, retrying failures; [] on a stop."""
        backoff = Backoff(rng=self.rng)
        streak = Streak()
        while True:
            try:
                with stop.cancels():
                    children = await self.api.list_child_accounts()
            except TransientApiError as exc:
                delay = backoff.failed()
                now = trio.current_time()
                streak.failed(failure_kind(exc), now)
                self.observer(
                    AccountListFailed(
                        kind=streak.kind,
                        message=str(exc),
                        retry_in=delay,
                        failures=streak.failures,
                        since=streak.since,
                        at=now,
                    )
                )
                if not await stop.sleep(delay):
                    return []
                continue
            return [] if stop.is_set else children


def _children(
    children: list[dict[str, Any]], block_list: tuple[str, ...]
) -> list[AccountRef]:
    blocked = set(block_list)
    return [
        AccountRef(
            name=str(child.get("name") or child["account_id"]),
            account_id=child["account_id"],
            api_hostname=_api_hostname(child),
        )
        for child in children
        if child["account_id"] not in blocked
    ]


def _api_hostname(child: dict[str, Any]) -> str | None:
    # Duo lists one for every child; a listing without it leaves the child to
    # the parent's host, which serves every child of its own deployment.
    hostname = child.get("api_hostname")
    if not isinstance(hostname, str) or not hostname.strip():
        return None
    return hostname.strip()
