"""The global bounds of the Duo side: pages held, calls in flight, a shared pace.

Theory of operation
-------------------
Memory is (pages held) x (a page), and at scale the number of fetchers is
large: an MSP parent with 1,000 children has 5,000.  So a page is not held by
right but by ticket.  A fetcher takes a ticket from ``Admission`` before it
asks Duo for a page and gives it back once every mapped sender acknowledged
the page (or the request failed): at most ``max_pages_in_memory`` pages exist
at any time, whatever the number of accounts, and calls in flight are fewer
still (each holds a ticket, and the threads that make them are
``max_calls_in_flight``, ``trio_dls.duo.client``).  Between polls a fetcher
holds no ticket, no page and no thread: an idle child costs its tasks and
cursors, a few KB.

A fetcher may hold a second ticket, for the page after the one being
delivered (fetching ahead, ``trio_dls.fetcher``), but only one it gets
without waiting (``admit_nowait``): a place free at once, and for an MSP
parent no child waiting for its turn and the shared pace due.  Holding one
ticket it never waits for another, so tickets cannot deadlock, and the bound
is the same: ``max_pages_in_memory`` pages in all, two per fetcher at most.

Fair: trio's semaphores and locks serve their waiters first come, first served,
so a fetcher that got a page queues behind every fetcher already waiting
before it gets another; a ticket taken without waiting is one that nobody
waits for (a released place goes to the first waiter).  Between two pages of
one (child, endpoint), every other (child, endpoint) that was waiting gets
one: a child with a 180-day backlog cannot starve a small one.

A stalled server stops its own fetchers only: a ticket holds a place with each
server the page goes to, and when there are several servers none of them may
hold more than half of the places, so the fetchers of the other servers keep
at least half of them.  The places are taken in one global order (the
servers', then the pages' own), so two fetchers never wait for each other.

Shared limits.  Duo does not say whether a limit counts the requests of each
child or of the whole parent, so for an MSP parent the children of one
endpoint are paced as one flow, by one budget (``RateBudget.shared``), free
until Duo first refuses: every 429 to a child teaches it.  That works either
way because the children take their turns in order (the lock above):

* A limit shared by the children is one limit for one flow: the budget finds
  it as a single fetcher's budget finds its own (``trio_dls.duo.pacing``),
  and the exploration that costs a few 429s is paid once, not per child.
* A limit per child, with N children busy in turn, is refused only once the
  flow goes faster than N times that limit: the budget settles there, which
  is every child at its own limit.  When children catch up, the next 429s
  step the flow back to the pace the others can take.

So no child explores on its own (at 1,000 children, nine 429s each would be
9,000), and the children of a shared limit do not fight over it.  The
per-(child, endpoint) budgets stay, but are not taught; an ordinary account
has no shared budget and its fetchers learn as they always did.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Final, Self

import trio

from trio_dls.config.model import DEFAULT_MAX_PAGES_IN_MEMORY
from trio_dls.duo.pacing import RateBudget
from trio_dls.endpoints import Endpoint
from trio_dls.supervisor import Routing

if TYPE_CHECKING:
    from collections.abc import Iterable
    from types import TracebackType

    from trio_dls.config import Config

__all__ = ["Admission", "Ticket"]

# No server holds more than this share of the page places when there are others.
SERVER_SHARE: Final = 0.5


class Ticket:
    """The places one page holds until it is acknowledged (a context manager)."""

    def __init__(self, held: list[trio.Semaphore]) -> None:
        """Hold *held*, released in reverse at the end."""
        self._held = held

    def release(self) -> None:
        """Give every place back (twice is harmless)."""
        held, self._held = self._held, []
        for semaphore in reversed(held):
            semaphore.release()

    def __enter__(self) -> Self:
        """Hold the places for the body."""
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Give the places back."""
        self.release()


class Admission:
    """Tickets for pages, and the shared pace of an MSP parent's children."""

    def __init__(
        self,
        *,
        pages: int = DEFAULT_MAX_PAGES_IN_MEMORY,
        servers: int = 1,
        shared_pacing: bool = False,
        rng: random.Random | None = None,
    ) -> None:
        """Allow *pages* pages at once, fed to *servers* servers.

        With *shared_pacing* (an MSP parent), each endpoint also has a budget
        shared by every child.
        """
        if pages < 1:
            msg = "at least one page must be allowed"
            raise ValueError(msg)
        self.pages = pages
        self._slots = trio.Semaphore(pages)
        self._server_places = (
            pages if servers <= 1 else max(1, int(pages * SERVER_SHARE))
        )
        self._servers: dict[str, trio.Semaphore] = {}
        rng = rng or random.Random()  # noqa: S311 - jitter, not secrets
        self._shared: dict[Endpoint, RateBudget] = (
            {e: RateBudget.shared(rng) for e in Endpoint} if shared_pacing else {}
        )
        self._turns = {endpoint: trio.Lock() for endpoint in self._shared}

    @classmethod
    def from_config(cls, config: Config, rng: random.Random | None = None) -> Admission:
        """Return the admission *config* asks for."""
        return cls(
            pages=config.dls_settings.api.max_pages_in_memory,
            # The servers some endpoint is mapped to, as the tree runs them.
            servers=len(Routing.from_config(config).servers),
            shared_pacing=config.account.is_msp,
            rng=rng,
        )

    @property
    def pages_held(self) -> int:
        """How many pages hold a ticket now (for tests and status)."""
        return self.pages - self._slots.value

    def shared(self, endpoint: Endpoint) -> RateBudget | None:
        """Return the budget *endpoint*'s children share, if there is one."""
        return self._shared.get(endpoint)

    async def admit(self, endpoint: Endpoint, server_ids: Iterable[str]) -> Ticket:
        """Wait for a page's places (and its turn in a shared pace); return them.

        Cancellation while waiting gives back whatever was taken.
        """
        held: list[trio.Semaphore] = []
        try:
            shared = self._shared.get(endpoint)
            if shared is None:
                await self._take(server_ids, held)
            else:
                # One child at a time waits out the shared pace, in the order
                # they came: the pace spaces requests, not wake-ups.
                async with self._turns[endpoint]:
                    await trio.sleep_until(max(0.0, shared.next_request_at()))
                    await self._take(server_ids, held)
                    shared.sent(trio.current_time())
        except BaseException:
            Ticket(held).release()
            raise
        return Ticket(held)

    def admit_nowait(
        self, endpoint: Endpoint, server_ids: Iterable[str]
    ) -> Ticket | None:
        """Return a page's places if free now, else None (nothing is taken).

        For a page asked ahead (``trio_dls.fetcher``): it waits for nothing,
        so a fetcher that already holds a ticket never waits for another.  It
        takes only what no one waits for (a trio semaphore has a free place
        only while nobody waits), and for an MSP parent only while no child
        waits for its turn and the shared pace lets a request go now: the
        order of ``admit`` is kept.
        """
        shared = self._shared.get(endpoint)
        now = 0.0
        if shared is not None:
            now = trio.current_time()
            if self._turns[endpoint].locked() or shared.next_request_at() > now:
                return None
        held: list[trio.Semaphore] = []
        try:
            for place in self._places(server_ids):
                place.acquire_nowait()
                held.append(place)
        except trio.WouldBlock:
            Ticket(held).release()
            return None
        if shared is not None:
            shared.sent(now)
        return Ticket(held)

    def next_request_at(self, endpoint: Endpoint) -> float:
        """When the shared pace lets *endpoint*'s next request go (-inf: none)."""
        shared = self._shared.get(endpoint)
        return float("-inf") if shared is None else shared.next_request_at()

    def _places(self, server_ids: Iterable[str]) -> list[trio.Semaphore]:
        """The places a page for *server_ids* takes, in the one global order."""
        places = []
        for server_id in sorted(server_ids):
            place = self._servers.get(server_id)
            if place is None:
                place = self._servers[server_id] = trio.Semaphore(self._server_places)
            places.append(place)
        places.append(self._slots)
        return places

    async def _take(
        self, server_ids: Iterable[str], held: list[trio.Semaphore]
    ) -> None:
        for place in self._places(server_ids):
            await place.acquire()
            held.append(place)

    def served(self, endpoint: Endpoint, now: float) -> None:
        """Note that a request to *endpoint* was served at *now*."""
        shared = self._shared.get(endpoint)
        if shared is not None:
            shared.accepted(now)

    def refused(
        self, endpoint: Endpoint, now: float, *, sent: float
    ) -> RateBudget | None:
        """Note a 429 at *now* to a request sent at *sent*; return the budget taught.

        None without a shared budget (an ordinary account): the fetcher's own
        budget learns.
        """
        shared = self._shared.get(endpoint)
        if shared is not None:
            shared.rate_limited(now, sent=sent)
        return shared
