"""Counters: the running totals one object keeps from the pipeline's events.

Rules for these tests: synthetic events go straight into a ``Counters``; that
the real fetchers and senders tell them is shown in ``test_observe_fetcher``
and ``test_observe_senders``, which also read these totals.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from trio_dls.endpoints import Endpoint
from trio_dls.observe import Counters, Fanout
from trio_dls.observe.events import (
    AccountListFailed,
    AccountRemoved,
    ApiFailed,
    Behind,
    CaughtUp,
    ChildRefused,
    CursorSaveFailed,
    DatagramCut,
    DatagramDropped,
    PageDelivered,
    PageWritten,
    RateLimited,
    RecordRepaired,
    ServerConnected,
    ServerFailed,
    ServerRef,
)
from trio_dls.siem.framing import DatagramCounters
from trio_dls.supervisor import AccountRef

ACCOUNT = AccountRef("acme")
CHILD = AccountRef("child", "DA0000000000000000001")
AUTH = Endpoint.AUTH
TCP = ServerRef("siem", "127.0.0.1", 9000, "TCP")
UDP = ServerRef("udp", "127.0.0.1", 514, "UDP")


def test_pages_and_records_are_counted_per_account_and_endpoint() -> None:
    """Each delivered page adds one page and its records to its pair's totals."""
    counters = Counters()
    for account, endpoint, records in [
        (ACCOUNT, AUTH, 1000),
        (ACCOUNT, AUTH, 17),
        (CHILD, AUTH, 3),
        (ACCOUNT, Endpoint.TELEPHONY, 5),
    ]:
        counters(PageDelivered(account, endpoint, records, 0.0))

    assert (
        Counter(
            {(ACCOUNT, AUTH): 2, (CHILD, AUTH): 1, (ACCOUNT, Endpoint.TELEPHONY): 1}
        )
        == counters.pages_delivered
    )
    assert (
        Counter(
            {(ACCOUNT, AUTH): 1017, (CHILD, AUTH): 3, (ACCOUNT, Endpoint.TELEPHONY): 5}
        )
        == counters.records_delivered
    )


def test_the_lag_is_the_latest_told() -> None:
    """``behind`` holds each cursor's latest lag, not a sum."""
    counters = Counters()
    counters(Behind(ACCOUNT, AUTH, 86_400.0))
    counters(Behind(ACCOUNT, AUTH, 90.0))
    assert counters.behind == {(ACCOUNT, AUTH): 90.0}


def test_failures_are_counted_by_kind_and_429s_apart() -> None:
    """API failures (children's refusals too) add up by kind; 429s, listings apart."""
    counters = Counters()
    for kind in ["TransientApiError 503", "TransientApiError 503", "Malformed"]:
        counters(ApiFailed(ACCOUNT, AUTH, kind, "m", 1, 0.0, 0.0, 1.0))
    counters(RateLimited(ACCOUNT, AUTH, 30.0, 2.0))
    counters(AccountListFailed("TransientApiError 500", "m", 1.0, 1, 0.0, 0.0))
    counters(ChildRefused(ACCOUNT, AUTH, "AccountRefusedError 403", "m", 1, 0, 0, 60))

    assert (
        Counter(
            {"TransientApiError 503": 2, "Malformed": 1, "AccountRefusedError 403": 1}
        )
        == counters.api_failures
    )
    assert (counters.rate_limited, counters.account_list_failures) == (1, 1)


def test_servers_count_pages_records_bytes_failures_and_reconnections() -> None:
    """A sender's pages, records and bytes add up; only later connections count."""
    counters = Counters()
    counters(ServerConnected(TCP, first=True))
    counters(PageWritten(TCP, ACCOUNT, AUTH, records=10, size=4000))
    counters(ServerFailed(TCP, "refused", 1.0, 1, AUTH, 5))
    counters(ServerConnected(TCP, first=False))
    counters(PageWritten(TCP, ACCOUNT, AUTH, records=5, size=2000))
    counters(RecordRepaired(TCP, AUTH, {"txid": "t"}, ("repaired",)))

    assert (
        Counter({"siem": 2}),
        Counter({"siem": 15}),
        Counter({"siem": 6000}),
        Counter({"siem": 1}),
        Counter({"siem": 1}),
        Counter({"siem": 1}),
    ) == (
        counters.pages_written,
        counters.records_written,
        counters.bytes_written,
        counters.server_failures,
        counters.reconnects,
        counters.repaired,
    )
    assert counters.datagrams == {}


def test_datagrams_whole_cut_and_dropped_are_counted_with_the_bytes_lost() -> None:
    """A UDP server's datagrams add up as ``frame_datagram`` outcomes do."""
    counters = Counters()
    counters(DatagramCut(UDP, AUTH, size=3000, limit=2048, lost=952))
    counters(DatagramDropped(UDP, AUTH, size=4000, limit=2048, why=""))
    counters(PageWritten(UDP, ACCOUNT, AUTH, records=5, size=9000, datagrams=3))

    assert {
        "udp": DatagramCounters(whole=3, truncated=1, dropped=1, lost_bytes=4952)
    } == counters.datagrams


def test_cursor_save_failures_are_counted() -> None:
    """Every failed save counts, not only the first of a run."""
    counters = Counters()
    for n in range(1, 4):
        counters(CursorSaveFailed(Path("state"), "ENOSPC", n))
    assert counters.cursor_save_failures == 3


def test_a_removed_account_is_forgotten() -> None:
    """Removing an account drops its pairs' entries, and only theirs."""
    counters = Counters()
    for account in (ACCOUNT, CHILD):
        counters(PageDelivered(account, AUTH, 7, 0.0))
        counters(Behind(account, AUTH, 1.0))
    counters(AccountRemoved(CHILD))

    assert Counter({(ACCOUNT, AUTH): 7}) == counters.records_delivered
    assert Counter({(ACCOUNT, AUTH): 1}) == counters.pages_delivered
    assert counters.behind == {(ACCOUNT, AUTH): 1.0}


def totals(counters: Counters) -> dict[str, object]:
    """Every total *counters* keeps, by name."""
    return {k: v for k, v in vars(counters).items() if not k.startswith("_")}


def test_an_event_that_is_not_counted_changes_nothing() -> None:
    """A caught-up poll and a first connection leave every total at zero."""
    counters = Counters()
    counters(CaughtUp(ACCOUNT, AUTH, 3))
    counters(ServerConnected(TCP, first=True))
    assert totals(Counters()) == totals(counters)


def test_a_fanout_tells_each_observer_each_event_in_order() -> None:
    """Fanout(a, b) calls a, then b, with every event."""
    told: list[tuple[str, object]] = []
    both = Fanout(
        lambda event: told.append(("a", event)),
        lambda event: told.append(("b", event)),
    )
    first, second = CaughtUp(ACCOUNT, AUTH, 3), RateLimited(ACCOUNT, AUTH, 30.0, 2.0)
    both(first)
    both(second)
    assert [("a", first), ("b", first), ("a", second), ("b", second)] == told
