"""Pacing: the request budget and the backoff, as pure functions of time."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trio_dls.duo.pacing import (
    BACKOFF_CAP,
    INITIAL_INTERVAL,
    JITTER,
    MAX_INTERVAL,
    MAX_REMEMBERED,
    MIN_INTERVAL,
    RATE_WINDOW,
    SHARED_REMEMBERED,
    SLOWDOWN,
    Backoff,
    RateBudget,
)


def test_requests_are_spaced_by_the_interval() -> None:
    """The next request may go one interval after the last one."""
    budget = RateBudget(rng=random.Random(1))
    budget.sent(100.0)
    assert budget.next_request_at() == pytest.approx(100.0 + INITIAL_INTERVAL)


def test_repeated_429s_double_the_interval_up_to_the_cap() -> None:
    """Refused again and again, the pace halves each time, never below 1/120 s."""
    budget = RateBudget(rng=random.Random(1))
    intervals = []
    for now in range(20):
        budget.sent(float(now))
        budget.rate_limited(float(now))
        intervals.append(budget.interval)
    assert intervals[1] == pytest.approx(2 * intervals[0])
    assert max(intervals) == MAX_INTERVAL


def test_a_429_after_service_steps_back_to_the_served_pace() -> None:
    """Refused after requests were served, the interval is that served pace."""
    budget = RateBudget(rng=random.Random(1), interval=10.0)
    for now in (0.0, 10.0, 20.0, 30.0):  # served every 10 s
        budget.sent(now)
        budget.accepted(now)
    budget.sent(39.0)
    budget.rate_limited(39.0)
    assert budget.interval >= 39.0 / 4
    assert budget.interval >= 10.0 * (1 - 0.02) ** 4 * SLOWDOWN


def test_served_requests_probe_a_faster_pace() -> None:
    """Each served request shortens the interval a little."""
    budget = RateBudget(rng=random.Random(1), interval=10.0)
    budget.sent(0.0)
    budget.accepted(0.0)
    assert 9.0 < budget.interval < 10.0


def test_the_wait_after_a_429_has_bounded_jitter() -> None:
    """After a 429 the next request waits one interval plus at most 10%."""
    for seed in range(50):
        budget = RateBudget(rng=random.Random(seed))
        resume = budget.rate_limited(0.0)
        assert budget.interval <= resume <= budget.interval * (1 + JITTER)


def test_backoff_grows_to_its_cap_and_resets() -> None:
    """Transient failures wait 1, 2, 4... s up to the cap; a success resets it."""
    backoff = Backoff(rng=random.Random(3))
    waits = [backoff.failed() for _ in range(15)]
    assert 1.0 <= waits[0] <= 1.0 * (1 + JITTER)
    assert 2.0 <= waits[1] <= 2.0 * (1 + JITTER)
    assert BACKOFF_CAP <= waits[-1] <= BACKOFF_CAP * (1 + JITTER)
    backoff.succeeded()
    assert backoff.failed() <= 1.0 * (1 + JITTER)


def test_a_week_of_polling_keeps_the_budget_small() -> None:
    """Served requests are forgotten after a minute: a week holds no more than that."""
    budget = RateBudget(rng=random.Random(1))
    week = 7 * 86_400
    for now in range(0, week, 120):
        budget.sent(float(now))
        budget.accepted(float(now))
    assert budget.remembered == 1


def test_the_fastest_pace_remembers_at_most_a_minute_of_requests() -> None:
    """At the fastest pace the budget holds one minute's requests, not more."""
    budget = RateBudget(rng=random.Random(1), interval=MIN_INTERVAL)
    for step in range(100_000):
        now = step * MIN_INTERVAL / 4  # faster than the budget allows, even
        budget.accepted(now)
    assert budget.remembered <= MAX_REMEMBERED


def test_a_shared_budget_is_free_until_refused() -> None:
    """Shared by many children, a budget spaces nothing until Duo refuses."""
    budget = RateBudget.shared(random.Random(1))
    for now in range(100):
        budget.sent(float(now))
        budget.accepted(float(now))
    assert budget.free
    assert budget.next_request_at() == 99.0


def test_a_refused_shared_budget_steps_back_to_the_pace_served() -> None:
    """The first 429 sets the pace of all children to what Duo served them."""
    budget = RateBudget.shared(random.Random(1))
    for now in range(0, 60, 2):  # one request every 2 s for a minute
        budget.accepted(float(now))
    budget.rate_limited(60.0)
    assert budget.interval == pytest.approx(2.0)
    assert not budget.free


def test_a_shared_budget_refused_again_waits_longer_but_keeps_its_pace() -> None:
    """Refused again and again, a shared budget waits ever longer, its pace kept.

    A full window or empty buckets refuse everything until they let up:
    that says how long to wait, not how fast to go once they do.
    """
    budget = RateBudget.shared(random.Random(1))
    for second in range(0, 60, 2):  # one request every 2 s for a minute
        budget.accepted(float(second))
    budget.rate_limited(60.0)
    pace = budget.interval
    assert pace == pytest.approx(2.0)
    waits = []
    for _ in range(12):
        now = budget.next_request_at()
        budget.sent(now)
        waits.append(budget.rate_limited(now, sent=now) - now)
    assert budget.interval == pace
    assert waits[1] == pytest.approx(2 * waits[0], rel=JITTER * 3)
    assert max(waits) <= MAX_INTERVAL * (1 + JITTER)


def test_a_shared_budget_with_no_measured_pace_explores() -> None:
    """Refused while free, with no pace measured, a shared budget doubles its pace.

    A burst sent at one instant, one request served: nothing says how fast
    Duo serves, so the budget searches as any budget does, rather than
    waiting longer and longer at a pace of zero.
    """
    budget = RateBudget.shared(random.Random(1))
    budget.sent(0.0)
    budget.accepted(0.0)
    now = budget.rate_limited(0.0, sent=0.0)
    intervals = [budget.interval]
    for _ in range(6):
        budget.sent(now)
        now = budget.rate_limited(now, sent=now)
        intervals.append(budget.interval)
    assert intervals[0] > 0
    assert intervals[1:] == [2 * i for i in intervals[:-1]]


def test_429s_to_requests_sent_at_the_instant_of_a_change_teach_nothing() -> None:
    """Nine requests refused together count as one refusal, not nine in a row."""
    budget = RateBudget.shared(random.Random(1))
    budget.sent(0.0)
    budget.accepted(0.0)
    first = budget.rate_limited(0.0, sent=0.0)
    interval = budget.interval
    for _ in range(8):
        assert budget.rate_limited(0.0, sent=0.0) == first
    assert budget.interval == interval
    assert first > 0.0


def test_a_shared_budget_is_freed_again_by_probing() -> None:
    """Served again and again, a shared pace speeds up until it spaces nothing."""
    budget = RateBudget.shared(random.Random(1))
    budget.rate_limited(0.0)
    now = 0.0
    for _ in range(2000):
        now += budget.interval
        budget.sent(now)
        budget.accepted(now)
        if budget.free:
            break
    assert budget.free


def test_a_shared_budget_remembers_a_bounded_number_of_requests() -> None:
    """However fast the children are served, a shared budget holds at most 1000."""
    budget = RateBudget.shared(random.Random(1))
    for n in range(5000):
        budget.accepted(n / 1000)  # 1000 a second, all within one minute
    assert budget.remembered == SHARED_REMEMBERED


@given(
    gaps=st.lists(st.floats(0.0, 90.0), min_size=1, max_size=30),
    refused=st.sets(st.integers(0, 29)),
    park=st.floats(0.0, 300.0),
    shared=st.booleans(),
)
@settings(max_examples=200, deadline=None)
def test_parking_forgets_only_what_the_next_request_would(
    gaps: list[float], refused: set[int], park: float, *, shared: bool
) -> None:
    """A budget told it is parked decides as one that was not, and holds less.

    Two budgets see the same served and refused requests; one is told, after
    the last, that nothing goes before *park* seconds later.  From then on
    both answer the same served and refused requests alike.
    """

    def make() -> RateBudget:
        rng = random.Random(7)
        return RateBudget.shared(rng) if shared else RateBudget(rng=rng)

    kept, parked = make(), make()
    now = 0.0
    for index, gap in enumerate(gaps):
        now += gap
        for budget in (kept, parked):
            budget.sent(now)
            if index in refused:
                budget.rate_limited(now, sent=now)
            else:
                budget.accepted(now)
    until = now + park
    parked.parked(until)
    assert parked.remembered <= kept.remembered
    if park > RATE_WINDOW + 1:  # not at the boundary, where floats round
        assert parked.remembered == 0
    for budget in (kept, parked):
        budget.sent(until)
        budget.accepted(until)
        budget.sent(until + 1)
    assert kept.rate_limited(until + 1, sent=until + 1) == parked.rate_limited(
        until + 1, sent=until + 1
    )
    assert kept.interval == parked.interval
    assert kept.remembered == parked.remembered
