"""The status line systemd shows: kept from events, one line, bounded.

Rules for these tests: synthetic events go straight into a ``ServiceStatus``;
that the real tree tells them is shown by ``test_sdnotify``.
"""

from __future__ import annotations

from trio_dls.endpoints import Endpoint
from trio_dls.observe.events import (
    AccountAdded,
    AccountRemoved,
    ApiFailed,
    ApiRecovered,
    Backlog,
    CaughtUp,
    PageDelivered,
    RateLimited,
    ServerFailed,
    ServerRecovered,
    ServerRef,
)
from trio_dls.service import ServiceStatus
from trio_dls.supervisor import AccountRef

PARENT = AccountRef("DIPARENT")
CHILDREN = [AccountRef(f"child {n}", f"DA{n:018d}") for n in range(3)]
SIEM = ServerRef("siem", "127.0.0.1", 9000, "TCP")


def test_a_fresh_tree_is_starting() -> None:
    """Before any fetcher has answered, every fetcher is starting."""
    status = ServiceStatus(endpoints=5)
    status(AccountAdded(PARENT))
    assert status.summary() == "1 account, 5 fetchers: 5 starting; 0 records sent"


def test_fetcher_states_and_records_are_counted() -> None:
    """Each fetcher counts in its latest state; records are summed with commas."""
    status = ServiceStatus(endpoints=5)
    for child in CHILDREN:
        status(AccountAdded(child))
        for endpoint in Endpoint:
            status(CaughtUp(child, endpoint, 0))
    status(Backlog(CHILDREN[0], Endpoint.AUTH))
    status(Backlog(CHILDREN[1], Endpoint.AUTH))
    status(PageDelivered(CHILDREN[0], Endpoint.AUTH, 1000, 0.0))
    status(PageDelivered(CHILDREN[1], Endpoint.AUTH, 234, 0.0))
    assert status.summary() == (
        "3 accounts, 15 fetchers: 2 catching up, 13 caught up; 1,234 records sent"
    )


def test_failures_and_limits_come_first_and_end() -> None:
    """Failing and rate-limited fetchers are said first, until they recover."""
    status = ServiceStatus(endpoints=2)
    status(AccountAdded(PARENT))
    status(ApiFailed(PARENT, Endpoint.AUTH, "k", "m", 1, 0.0, 0.0, 60.0))
    status(RateLimited(PARENT, Endpoint.TELEPHONY, 30.0, 2.0))
    status(ServerFailed(SIEM, "refused", 1.0, 1, Endpoint.AUTH, 10))
    assert status.summary() == (
        "1 account, 2 fetchers: 1 failing, 1 rate limited; 0 records sent; "
        "1 server failing (siem)"
    )
    status(ApiRecovered(PARENT, Endpoint.AUTH, 1, 60.0, 60.0))
    status(CaughtUp(PARENT, Endpoint.TELEPHONY, 0))
    status(ServerRecovered(SIEM, 1))
    assert status.summary() == (
        "1 account, 2 fetchers: 1 catching up, 1 caught up; 0 records sent"
    )


def test_a_removed_account_is_forgotten() -> None:
    """A child removed from the tree leaves the line, and its fetchers' states."""
    status = ServiceStatus(endpoints=1)
    for child in CHILDREN[:2]:
        status(AccountAdded(child))
        status(CaughtUp(child, Endpoint.AUTH, 0))
    status(AccountRemoved(CHILDREN[0]))
    assert status.summary() == "1 account, 1 fetcher: 1 caught up; 0 records sent"


def test_stopping_is_said_first() -> None:
    """Once stopping, the line begins by saying so."""
    status = ServiceStatus(endpoints=1)
    status.stopping = True
    assert status.summary().startswith("stopping, finishing deliveries in flight; ")
