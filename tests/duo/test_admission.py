"""Admission: the global bound on pages held, its fairness, and the shared pace.

Rules for these tests: trio's virtual clock; tasks stand in for fetchers and
hold their tickets as a fetcher holds one from request to acknowledgement.
"""

from __future__ import annotations

import itertools
import math
import random

import pytest
import trio
import trio.testing

from trio_dls.duo.admission import Admission, Ticket
from trio_dls.duo.pacing import INITIAL_INTERVAL, RateBudget
from trio_dls.endpoints import Endpoint

AUTH = Endpoint.AUTH


async def test_no_more_pages_than_allowed_are_held_at_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Fifty fetchers wanting pages hold at most four tickets at any moment."""
    del autojump_clock
    admission = Admission(pages=4)
    held, most = 0, 0

    async def fetcher() -> None:
        nonlocal held, most
        for _ in range(3):
            with await admission.admit(AUTH, ["siem"]):
                held += 1
                most = max(most, held)
                await trio.sleep(1)
                held -= 1

    async with trio.open_nursery() as nursery:
        for _ in range(50):
            nursery.start_soon(fetcher)

    assert most == 4
    assert admission.pages_held == 0
    # 150 pages of a second each, four at a time, no place ever left idle.
    assert trio.current_time() == math.ceil(50 * 3 / 4)


async def test_tickets_go_round_robin_first_come_first_served(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A fetcher that got a page queues behind every other waiting fetcher."""
    del autojump_clock
    admission = Admission(pages=1)
    order: list[str] = []

    async def fetcher(name: str, pages: int) -> None:
        for _ in range(pages):
            with await admission.admit(AUTH, ["siem"]):
                order.append(name)
                await trio.sleep(1)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(fetcher, "big", 4)
        await trio.sleep(0.1)  # the big one asks first, holding the place
        for name in ("a", "b", "c"):
            nursery.start_soon(fetcher, name, 1)

    # The big one's second page waits for every small one that was waiting
    # (started together, the small ones may queue in any order).
    assert order[0] == "big"
    assert sorted(order[1:4]) == ["a", "b", "c"]
    assert order[4:] == ["big", "big", "big"]


async def test_a_stalled_server_leaves_places_to_the_others(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Pages for a server that never acknowledges take at most half the places."""
    del autojump_clock
    admission = Admission(pages=6, servers=2)
    stuck: list[Ticket] = []

    async def stalled() -> None:
        stuck.append(await admission.admit(AUTH, ["stalled"]))
        await trio.sleep_forever()

    async with trio.open_nursery() as nursery:
        for _ in range(10):
            nursery.start_soon(stalled)
        await trio.sleep(1)
        served = 0
        for _ in range(20):
            with await admission.admit(Endpoint.TELEPHONY, ["healthy"]):
                served += 1
        nursery.cancel_scope.cancel()

    assert len(stuck) == 3
    assert served == 20


async def test_a_cancelled_wait_gives_back_what_it_took(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A fetcher stopped while waiting for the page place keeps no server place."""
    del autojump_clock
    admission = Admission(pages=1, servers=2)
    with await admission.admit(AUTH, ["other"]):
        with trio.move_on_after(5):
            await admission.admit(AUTH, ["siem"])  # has siem's place, waits for a page
    assert admission.pages_held == 0
    # Both places are free again: two tickets for siem in a row are given at once.
    with trio.fail_after(0.001):
        for _ in range(2):
            with await admission.admit(AUTH, ["siem"]):
                pass


def test_an_ordinary_account_has_no_shared_pace() -> None:
    """Without MSP children, every 429 is the fetcher's own to learn from."""
    admission = Admission()
    assert admission.shared(AUTH) is None
    assert admission.refused(AUTH, 100.0, sent=99.0) is None


def test_a_childs_refusal_teaches_its_endpoints_shared_pace() -> None:
    """An MSP child's 429 paces all children of that endpoint, and no other."""
    admission = Admission(shared_pacing=True, rng=random.Random(1))
    shared = admission.shared(AUTH)
    assert shared is not None
    assert shared.free

    assert admission.refused(AUTH, 100.0, sent=99.0) is shared
    assert shared.interval >= INITIAL_INTERVAL
    other = admission.shared(Endpoint.TELEPHONY)
    assert other is not None
    assert other.free


def test_refusals_of_requests_sent_before_the_pace_changed_teach_nothing() -> None:
    """Requests in flight together, refused together, slow the pace once."""
    admission = Admission(shared_pacing=True, rng=random.Random(1))
    shared = admission.shared(AUTH)
    assert shared is not None
    admission.refused(AUTH, 100.0, sent=99.0)
    after_one = shared.interval, shared.next_request_at()
    for n in range(7):  # sent before the first refusal came back
        admission.refused(AUTH, 100.0 + n / 10, sent=99.0 + n / 10)
    assert (shared.interval, shared.next_request_at()) == after_one


def taught_admission() -> tuple[Admission, RateBudget]:
    """An MSP parent's admission whose shared auth pace Duo taught: one a second."""
    admission = Admission(pages=8, shared_pacing=True, rng=random.Random(1))
    shared = admission.shared(AUTH)
    assert shared is not None
    for second in range(10):
        shared.accepted(float(second))
    shared.rate_limited(10.0)  # about one served request a second
    return admission, shared


async def test_a_shared_pace_spaces_every_childs_requests(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Once taught, the shared pace lets one child's request go at a time."""
    del autojump_clock
    admission, shared = taught_admission()
    interval = shared.interval
    sent: list[float] = []

    async def child() -> None:
        with await admission.admit(AUTH, ["siem"]):
            sent.append(trio.current_time())

    async with trio.open_nursery() as nursery:
        for _ in range(5):
            nursery.start_soon(child)

    gaps = [b - a for a, b in itertools.pairwise(sent)]
    assert len(sent) == 5
    assert min(gaps) == pytest.approx(interval)


async def test_a_ticket_now_is_only_one_nobody_waits_for(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """``admit_nowait`` takes a free place, never one a waiting fetcher is owed."""
    del autojump_clock
    admission = Admission(pages=2)
    first = await admission.admit(AUTH, ["siem"])
    ahead = admission.admit_nowait(AUTH, ["siem"])
    assert ahead is not None
    assert admission.pages_held == 2
    assert admission.admit_nowait(AUTH, ["siem"]) is None
    assert admission.pages_held == 2
    got: list[Ticket] = []

    async def waiting() -> None:
        got.append(await admission.admit(AUTH, ["siem"]))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(waiting)
        await trio.sleep(1)  # the waiter is in line
        ahead.release()
        # The place freed is the waiter's: asking now finds none.
        assert admission.admit_nowait(AUTH, ["siem"]) is None
    assert len(got) == 1
    first.release()
    got[0].release()
    assert admission.pages_held == 0


async def test_a_ticket_now_keeps_a_servers_share(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Pages asked ahead for one server take at most its half of the places."""
    del autojump_clock
    admission = Admission(pages=6, servers=2)
    tickets = [admission.admit_nowait(AUTH, ["stalled"]) for _ in range(4)]
    assert [t is not None for t in tickets] == [True, True, True, False]
    # The refused one took nothing: the other server still has its three.
    assert admission.pages_held == 3
    others = [admission.admit_nowait(AUTH, ["healthy"]) for _ in range(3)]
    assert all(t is not None for t in others)
    assert admission.pages_held == 6


async def test_a_ticket_now_keeps_the_shared_pace_and_its_turns(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """An MSP child gets a ticket now only on its pace, with no child in line."""
    del autojump_clock
    admission, shared = taught_admission()
    await trio.sleep_until(admission.next_request_at(AUTH))
    assert admission.admit_nowait(AUTH, ["siem"]) is not None
    # Sent now: the next may go one interval later, not at once.
    assert admission.next_request_at(AUTH) == trio.current_time() + shared.interval
    assert admission.admit_nowait(AUTH, ["siem"]) is None
    async with trio.open_nursery() as nursery:
        nursery.start_soon(admission.admit, AUTH, ["siem"])
        await trio.sleep(shared.interval / 2)  # a child waits its turn
        assert admission.admit_nowait(AUTH, ["siem"]) is None
    assert admission.next_request_at(Endpoint.TELEPHONY) <= trio.current_time()
    assert Admission().next_request_at(AUTH) == float("-inf")
