"""The fetcher task of one (account, endpoint), and MSP account discovery.

Theory of operation
-------------------
A fetcher runs the pure paging rules (``trio_dls.paging``) against Duo:

1. Its cursor comes from the store (or a DLS checkpoint, or the configured
   offset on a first start).
2. ``plan_request`` says what to ask; nothing to ask means caught up: wait
   ``api.timeout`` seconds and plan again.
3. The ``RateBudget`` says when; the request goes out through ``DuoApi``.
   A 429 teaches the budget Duo's limit; any other failure waits out a
   ``Backoff``.  Neither is ever fatal; only rejected credentials are.
4. ``apply_response`` turns the answer into records and the next cursor; the
   records go to every mapped sender as one page (``Outputs.deliver`` returns
   once all of them wrote it), and only then is the cursor saved.

While a backlog exists the fetcher loops without waiting beyond the budget, so
catching up takes as long as Duo's rate limit requires and no longer.

A stop cancels the waits and the Duo call (reads have no side effects) but
never a delivery or a save: a clean stop resends nothing at the next start.

Times: the paging rules take the wall clock (UTC epoch seconds, ``clock``);
waits use trio's clock.  Tests inject a ``clock`` tied to trio's virtual one.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import attrs
import trio

from trio_dls.checkpoints import CheckpointStore
from trio_dls.cursors import Cursor, initial_cursor
from trio_dls.duo import (
    CredentialsRejectedError,
    DuoApi,
    RateLimitedError,
    TransientApiError,
    enrich,
)
from trio_dls.endpoints import EVENTTYPES
from trio_dls.pacing import Backoff, RateBudget
from trio_dls.paging import (
    Limits,
    MalformedResponseError,
    Request,
    Step,
    apply_response,
    plan_request,
)
from trio_dls.supervisor import AccountRef, FetcherContext, Page, StopSignal

if TYPE_CHECKING:
    from trio_dls.config import Config

log = logging.getLogger(__name__)

ApiFactory = Callable[[AccountRef], DuoApi]


@attrs.frozen
class FetchSettings:
    """How fetchers pace themselves and where a first start begins."""

    poll_interval: float
    offset_days: int
    limits: Limits = attrs.Factory(Limits)

    @classmethod
    def from_config(cls, config: Config) -> FetchSettings:
        """Read the settings of *config*."""
        api = config.dls_settings.api
        return cls(poll_interval=api.timeout, offset_days=api.offset)


class _StateLog:
    """Logs a fetcher's state only when it changes, not on every retry."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.state = ""

    def enter(self, state: str, level: int, message: str, *args: object) -> None:
        if state != self.state:
            log.log(level, "%s: %s", self.name, message % args)
        self.state = state


@attrs.define
class Fetching:
    """The fetcher task, as the supervisor's ``Fetcher`` callable."""

    api_for: ApiFactory
    store: CheckpointStore
    settings: FetchSettings
    host: str
    clock: Callable[[], float] = time.time
    rng: random.Random = attrs.field(factory=random.Random)

    async def __call__(self, context: FetcherContext) -> None:
        """Fetch (account, endpoint) of *context* until told to stop."""
        account, endpoint = context.account, context.endpoint
        run = _Run(
            context=context,
            api=self.api_for(account),
            status=_StateLog(f"{account.name}/{endpoint}"),
            budget=RateBudget(rng=self.rng),
            backoff=Backoff(rng=self.rng),
        )
        # A first start goes back the configured offset, but no further than
        # Duo serves (with its margin): asking for 180 days would only earn a
        # warning that the oldest day cannot be had.
        days = min(self.settings.offset_days, self.settings.limits.retention_days)
        cursor: Cursor = await self.store.load(
            endpoint, account.account_id
        ) or initial_cursor(endpoint, self.clock(), days)
        poll = self.settings.poll_interval

        while not context.stop.is_set:
            request = plan_request(endpoint, cursor, self.clock(), self.settings.limits)
            if request is None:
                run.caught_up()
                await _wait(context.stop, poll)
                continue
            for warning in request.warnings:
                log.warning("%s: %s", run.status.name, warning)
            step = await run.ask(request)
            if step is None:
                continue  # failed and waited, or stopped
            for warning in step.warnings:
                log.warning("%s: %s", run.status.name, warning)
            if step.records:
                await run.deliver(step.records, self.host)
            await self.store.save(endpoint, account.account_id, step.cursor)
            cursor = step.cursor
            if step.caught_up:
                run.caught_up()
                await _wait(context.stop, poll)


@attrs.define
class _Run:
    """The state of one fetcher between requests."""

    context: FetcherContext
    api: DuoApi
    status: _StateLog
    budget: RateBudget
    backoff: Backoff
    sent: int = 0

    def caught_up(self) -> None:
        self.status.enter(
            "idle", logging.INFO, "caught up (%d records sent)", self.sent
        )

    async def ask(self, request: Request) -> Step | None:
        """Send *request* when the budget allows; None if it failed or a stop came."""
        stop = self.context.stop
        if not await _wait(stop, self.budget.next_request_at() - trio.current_time()):
            return None
        self.budget.sent(trio.current_time())
        try:
            with stop.cancels():
                response = await self.api.get(request.path, request.params_dict())
                step = apply_response(request, response)
        except CredentialsRejectedError as exc:
            account = self.context.account
            who = f"account {account.name}" + (
                f" (child {account.account_id})" if account.account_id else ""
            )
            msg = f"{who}, endpoint {self.context.endpoint}: {exc}"
            raise CredentialsRejectedError(msg) from None
        except RateLimitedError:
            resume = self.budget.rate_limited(trio.current_time())
            self.status.enter(
                "limited",
                logging.INFO,
                "Duo's rate limit reached; pacing at %.1f requests a minute",
                self.budget.requests_per_minute,
            )
            await _wait(stop, resume - trio.current_time())
            return None
        except (TransientApiError, MalformedResponseError) as exc:
            delay = self.backoff.failed()
            self.status.enter(
                f"failing {type(exc).__name__} {exc}",
                logging.WARNING,
                "%s; retrying (next in %.0f s, backing off)",
                exc,
                delay,
            )
            await _wait(stop, delay)
            return None
        if stop.is_set:
            return None
        self.budget.accepted(trio.current_time())
        self.backoff.succeeded()
        return step

    async def deliver(self, records: tuple[dict[str, Any], ...], host: str) -> None:
        """Enrich *records* as DLS did and hand them to every mapped sender."""
        context = self.context
        self.status.enter("busy", logging.INFO, "fetching a backlog")
        eventtype = EVENTTYPES[context.endpoint]
        child = context.account.account_id
        page = tuple(enrich(record, eventtype, host, child) for record in records)
        await context.outputs.deliver(Page(context.account, context.endpoint, page))
        self.sent += len(page)


async def _wait(stop: StopSignal, seconds: float) -> bool:
    """Sleep *seconds* unless a stop comes first; return whether to go on."""
    with stop.cancels():
        await trio.sleep(max(0.0, seconds))
    return not stop.is_set


@attrs.define
class AccountDiscovery:
    """The supervisor's ``AccountDiscovery``: the account, or its MSP children."""

    api: DuoApi
    rng: random.Random = attrs.field(factory=random.Random)

    async def __call__(self, config: Config, stop: StopSignal) -> list[AccountRef]:
        """Return the accounts to fetch for (each child of an MSP parent)."""
        account = config.account
        if not account.is_msp:
            return [AccountRef(name=account.ikey)]
        backoff = Backoff(rng=self.rng)
        while True:
            try:
                with stop.cancels():
                    children = await self.api.list_child_accounts()
            except TransientApiError as exc:
                delay = backoff.failed()
                log.warning(
                    "listing MSP child accounts: %s; retrying in %.0f s", exc, delay
                )
                if not await _wait(stop, delay):
                    return []
                continue
            if stop.is_set:
                return []
            return _children(children, account.block_list)


def _children(
    children: list[dict[str, Any]], block_list: tuple[str, ...]
) -> list[AccountRef]:
    blocked = set(block_list)
    refs = [
        AccountRef(
            name=str(child.get("name") or child["account_id"]),
            account_id=child["account_id"],
        )
        for child in children
        if child["account_id"] not in blocked
    ]
    log.info(
        "MSP parent: %d child accounts, %d skipped by block_list",
        len(refs),
        len(children) - len(refs),
    )
    return refs
