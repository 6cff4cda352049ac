"""The log observer: which events become which lines, and when it stays quiet.

Rules for these tests: synthetic events go straight into a ``LogObserver``;
``caplog`` shows what it wrote, with logger names and levels.  That the real
fetchers, senders and store tell these events is shown in the other
``test_observe_*`` modules.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest

from trio_dls.endpoints import Endpoint
from trio_dls.observe import LogObserver
from trio_dls.observe.events import (
    AccountListFailed,
    AccountRemoved,
    AccountsListed,
    ApiFailed,
    ApiRecovered,
    Backlog,
    CaughtUp,
    ChildRefused,
    ChildrenChanged,
    ClockSkew,
    ClockState,
    ConnectionReplaced,
    CursorSaveFailed,
    CursorSaveRecovered,
    DatagramCut,
    DatagramDropped,
    NoChildAccount,
    PageDelivered,
    RateLimited,
    ResolveFailed,
    ServerConnected,
    ServerFailed,
    ServerRecovered,
    ServerRef,
)
from trio_dls.supervisor import AccountRef

ACCOUNT = AccountRef("acme")
OTHER = AccountRef("child", "DA0000000000000000001")
AUTH = Endpoint.AUTH
SIEM = ServerRef("siem", "127.0.0.1", 9000, "TCP")


def lines(caplog: pytest.LogCaptureFixture) -> list[tuple[str, int, str]]:
    """Every record logged, as (logger, level, message)."""
    return [(r.name, r.levelno, r.getMessage()) for r in caplog.records]


def messages(caplog: pytest.LogCaptureFixture, level: int | None = None) -> list[str]:
    """The messages logged, at *level* only if given."""
    return [
        r.getMessage() for r in caplog.records if level is None or r.levelno == level
    ]


def failed(n: int, at: float, kind: str = "TransientApiError 400") -> ApiFailed:
    """Failure number *n* of a run that began at 0, at time *at*."""
    return ApiFailed(
        ACCOUNT,
        AUTH,
        kind=kind,
        message="GET /admin/v2/logs/authentication: HTTP 400",
        failures=n,
        since=0.0,
        at=at,
        retry_in=300.0,
    )


@pytest.fixture(autouse=True)
def debug_logs(caplog: pytest.LogCaptureFixture) -> None:
    """Capture everything the trio_dls loggers write, debug lines included."""
    caplog.set_level(logging.DEBUG, logger="trio_dls")


def test_fetcher_states_are_said_once_per_change(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Repeated backlogs, polls and 429s are each said once, until another state."""
    observer = LogObserver()
    for event in (
        Backlog(ACCOUNT, AUTH),
        PageDelivered(ACCOUNT, AUTH, 1000, 1.0),
        Backlog(ACCOUNT, AUTH),
        CaughtUp(ACCOUNT, AUTH, 2000),
        CaughtUp(ACCOUNT, AUTH, 2000),
        RateLimited(ACCOUNT, AUTH, per_minute=30.0, retry_in=2.0),
        RateLimited(ACCOUNT, AUTH, per_minute=15.0, retry_in=4.0),
        CaughtUp(ACCOUNT, AUTH, 2001),
    ):
        observer(event)

    assert lines(caplog) == [
        ("trio_dls.fetcher", logging.INFO, "acme/auth: fetching a backlog"),
        ("trio_dls.fetcher", logging.INFO, "acme/auth: caught up (2000 records sent)"),
        (
            "trio_dls.fetcher",
            logging.INFO,
            "acme/auth: Duo's rate limit reached; pacing at 30.0 requests a minute",
        ),
        ("trio_dls.fetcher", logging.INFO, "acme/auth: caught up (2001 records sent)"),
    ]


def test_each_account_and_endpoint_has_its_own_state(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """One fetcher caught up says nothing of another's state."""
    observer = LogObserver()
    for event in (
        CaughtUp(ACCOUNT, AUTH, 1),
        CaughtUp(OTHER, AUTH, 2),
        CaughtUp(ACCOUNT, Endpoint.TELEPHONY, 3),
        CaughtUp(ACCOUNT, AUTH, 1),
    ):
        observer(event)

    assert messages(caplog) == [
        "acme/auth: caught up (1 records sent)",
        "child (DA0000000000000000001)/auth: caught up (2 records sent)",
        "acme/telephony: caught up (3 records sent)",
    ]


def test_a_run_of_failures_is_said_at_a_falling_rate_and_its_end_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Failures 1, 10, 100, then hourly are warnings; the recovery one info line."""
    observer = LogObserver()
    for n in range(1, 301):
        observer(failed(n, at=(n - 1) * 60.0))
    observer(ApiRecovered(ACCOUNT, AUTH, failures=300, lasted=18000.0, at=18000.0))

    warnings = messages(caplog, logging.WARNING)
    assert warnings[:2] == [
        "acme/auth: GET /admin/v2/logs/authentication: HTTP 400;"
        " retrying (next in 300 s, backing off)",
        "acme/auth: GET /admin/v2/logs/authentication: HTTP 400 (failed 10 times in"
        " a row over 9 min); retrying (next in 300 s, backing off)",
    ]
    # Then every 60th failure, an hour apart.
    assert [int(re.findall(r"failed (\d+) times", w)[0]) for w in warnings[2:]] == [
        100,
        160,
        220,
        280,
    ]
    assert messages(caplog, logging.INFO) == [
        "acme/auth: working again after 300 failure(s) over 5.0 h"
    ]


def test_another_kind_of_failure_is_said_at_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A failure of a new kind is a new run: its first occurrence is said."""
    observer = LogObserver()
    observer(failed(1, 0.0))
    observer(failed(2, 60.0))
    observer(failed(1, 120.0, kind="TransientApiError 503"))

    assert len(messages(caplog, logging.WARNING)) == 2


def test_after_failures_the_same_state_is_said_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Caught up, failing, caught up again: both polls are said."""
    observer = LogObserver()
    observer(CaughtUp(ACCOUNT, AUTH, 5))
    observer(failed(1, 0.0))
    observer(ApiRecovered(ACCOUNT, AUTH, failures=1, lasted=60.0, at=60.0))
    observer(CaughtUp(ACCOUNT, AUTH, 5))

    assert [m for m in messages(caplog) if "caught up" in m] == [
        "acme/auth: caught up (5 records sent)",
        "acme/auth: caught up (5 records sent)",
    ]


def test_a_removed_account_is_forgotten(caplog: pytest.LogCaptureFixture) -> None:
    """Once its account is removed, a fetcher's state and failures start afresh."""
    observer = LogObserver()
    observer(CaughtUp(OTHER, AUTH, 5))
    for n in range(1, 5):
        observer(failed(n, n * 60.0))
    observer(AccountRemoved(OTHER))
    observer(AccountRemoved(OTHER))  # removing twice is harmless
    observer(CaughtUp(OTHER, AUTH, 0))
    observer(AccountRemoved(OTHER))
    observer(
        ApiFailed(OTHER, AUTH, "TransientApiError 400", "boom", 5, 0.0, 300.0, 1.0)
    )

    assert [m for m in messages(caplog) if m.startswith("child (")] == [
        "child (DA0000000000000000001)/auth: caught up (5 records sent)",
        "child (DA0000000000000000001)/auth: caught up (0 records sent)",
        "child (DA0000000000000000001)/auth: boom; retrying (next in 1 s, backing off)",
    ]


def test_the_clocks_are_said_when_they_start_and_stop_disagreeing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """In step from the start is not news; ahead, behind and agreeing again are."""
    observer = LogObserver()
    for seconds, state in [
        (0.4, ClockState.IN_STEP),
        (90.2, ClockState.AHEAD),
        (91.0, ClockState.AHEAD),
        (7.0, ClockState.AHEAD),
        (1.0, ClockState.IN_STEP),
        (-30.0, ClockState.BEHIND),
    ]:
        observer(ClockSkew(seconds, state))

    assert [(level, message) for _, level, message in lines(caplog)] == [
        (
            logging.WARNING,
            "this host's clock is 90 s ahead of Duo's; windows end by Duo's clock"
            " (fix NTP: logs are stamped with this host's time)",
        ),
        (logging.INFO, "this host's clock and Duo's agree again"),
        (
            logging.INFO,
            "this host's clock is 30 s behind Duo's; windows end by this host's"
            " clock, a little later than they could",
        ),
    ]


def test_a_server_failure_is_a_warning_when_it_starts_or_changes(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The same reason again is a debug line; a new reason a warning; the end info."""
    observer = LogObserver()
    for n, reason in enumerate(["refused", "refused", "refused", "timed out"], 1):
        observer(ServerFailed(SIEM, reason, 0.5, n, AUTH, 3))
    observer(ServerRecovered(SIEM, 4))
    observer(ServerFailed(SIEM, "timed out", 1.0, 1, AUTH, 3))

    what = "server 'siem' (127.0.0.1:9000 TCP)"
    tail = " (until it works, further attempts are logged at debug level)"
    assert [
        (
            logging.WARNING,
            f"{what}: cannot deliver: refused; retrying in 0.5 s,"
            f" a page of 3 auth record(s) waiting{tail}",
        ),
        (logging.DEBUG, f"{what}: attempt 2 failed: refused; retrying in 0.5 s"),
        (logging.DEBUG, f"{what}: attempt 3 failed: refused; retrying in 0.5 s"),
        (
            logging.WARNING,
            f"{what}: cannot deliver: timed out; retrying in 0.5 s,"
            f" a page of 3 auth record(s) waiting{tail}",
        ),
        (logging.INFO, f"{what}: delivering again, after 4 failed attempt(s)"),
        (
            logging.WARNING,
            f"{what}: cannot deliver: timed out; retrying in 1.0 s,"
            f" a page of 3 auth record(s) waiting{tail}",
        ),
    ] == [(level, message) for name, level, message in lines(caplog)]
    assert {"trio_dls.senders"} == {name for name, _, _ in lines(caplog)}


def test_datagrams_cut_or_dropped_are_each_said(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Every datagram cut or dropped is a warning saying why."""
    udp = ServerRef("siem", "127.0.0.1", 514, "UDP")
    observer = LogObserver()
    observer(DatagramCut(udp, AUTH, size=3000, limit=2048, lost=952))
    observer(DatagramDropped(udp, AUTH, size=3000, limit=2048, why=""))
    observer(DatagramDropped(udp, AUTH, size=1800, limit=2048, why="EMSGSIZE"))

    what = "server 'siem' (127.0.0.1:514 UDP)"
    assert [
        f"{what}: a auth record of 3000 bytes is above udp_max_size (2048):"
        " truncated, 952 bytes cut",
        f"{what}: a auth record of 3000 bytes is above udp_max_size (2048): dropped",
        f"{what}: a auth record of 1800 bytes is refused by the system (EMSGSIZE),"
        " though within udp_max_size (2048): lower udp_max_size: dropped",
    ] == messages(caplog, logging.WARNING)


def test_a_failing_cursor_save_is_an_error_once_and_its_end_info(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Failed saves in a row make one error line; the first save again, one info."""
    observer = LogObserver()
    state = Path("/var/lib/trio-dls")
    for n in range(1, 4):
        observer(CursorSaveFailed(state, "No space left on device", n))
    observer(CursorSaveRecovered(state, 3))

    assert lines(caplog) == [
        (
            "trio_dls.checkpoints",
            logging.ERROR,
            "cannot save cursors in /var/lib/trio-dls: No space left on device;"
            " delivering on and saving again with the next page (a restart"
            " before then re-sends the records since the last saved cursor)",
        ),
        (
            "trio_dls.checkpoints",
            logging.INFO,
            "cursors are saved again in /var/lib/trio-dls",
        ),
    ]


def test_no_child_account_is_said_at_a_falling_rate_until_one_is_found(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An MSP parent without children warns at 1, 10, 100; found children, once."""
    observer = LogObserver()
    for n in range(1, 101):
        observer(AccountsListed(children=0, blocked=2))
        observer(NoChildAccount(2, 2, 3600.0, n, since=0.0, at=n * 3600.0))
    observer(AccountsListed(children=2, blocked=0))

    warnings = messages(caplog, logging.WARNING)
    assert len(warnings) == 3
    assert warnings[0] == (
        "MSP parent: no child account to fetch (2 listed, 2 in block_list);"
        " looking again in 3600 s"
    )
    assert messages(caplog, logging.INFO)[-2:] == [
        "MSP parent: 2 child accounts, 0 skipped by block_list",
        "MSP parent: child accounts found",
    ]


def test_a_failing_child_list_is_said_at_a_falling_rate(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Listing failures are warned of at 1 and 10; a listing ends the run."""
    observer = LogObserver()
    for n in range(1, 13):
        observer(
            AccountListFailed("TransientApiError 503", "HTTP 503", 60.0, n, 0.0, n)
        )
    observer(AccountsListed(children=1, blocked=0))
    observer(AccountListFailed("TransientApiError 503", "HTTP 503", 1.0, 1, 99, 99))

    assert messages(caplog, logging.WARNING) == [
        "listing MSP child accounts: HTTP 503; retrying in 60 s",
        "listing MSP child accounts: HTTP 503 (failed 10 times in a row over 9 s);"
        " retrying in 60 s",
        "listing MSP child accounts: HTTP 503; retrying in 1 s",
    ]


def test_connections_are_info_the_first_time_and_debug_after(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A first connection is info, later ones and idle replacements debug."""
    udp = ServerRef("siem", "siem.test", 514, "UDP")
    observer = LogObserver()
    observer(ServerConnected(udp, first=True, address="192.0.2.7"))
    observer(ConnectionReplaced(udp))
    observer(ServerConnected(udp, first=False, address="192.0.2.8"))
    observer(ResolveFailed(udp, "", "192.0.2.8"))

    what = "server 'siem' (siem.test:514 UDP)"
    assert lines(caplog) == [
        ("trio_dls.senders", logging.INFO, f"{what}: connected at 192.0.2.7"),
        (
            "trio_dls.senders",
            logging.DEBUG,
            f"{what}: the connection was closed; reopening",
        ),
        ("trio_dls.senders", logging.DEBUG, f"{what}: connected again at 192.0.2.8"),
        (
            "trio_dls.senders",
            logging.WARNING,
            f"{what}: the hostname did not resolve in time; still sending to 192.0.2.8",
        ),
    ]


def test_a_refused_child_is_named_by_id_and_name_at_a_falling_rate(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A child's refusals warn at 1, 10, 100 with its id and name; its end once."""
    observer = LogObserver()
    for n in range(1, 101):
        observer(
            ChildRefused(
                OTHER, AUTH, "AccountRefusedError 403", "HTTP 403", n, 0.0, n, 60.0
            )
        )
    observer(ApiRecovered(OTHER, AUTH, failures=100, lasted=100.0, at=101.0))

    warnings = messages(caplog, logging.WARNING)
    assert len(warnings) == 3
    assert warnings[0] == (
        "child (DA0000000000000000001)/auth: child account refused: HTTP 403;"
        " other accounts go on, this one retries in 60 s"
    )
    assert messages(caplog, logging.INFO) == [
        "child (DA0000000000000000001)/auth: working again after 100 failure(s)"
        " over 100 s"
    ]


def test_children_added_and_removed_are_said_with_their_ids(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A listing that changes the children says which, by name and id."""
    observer = LogObserver()
    observer(ChildrenChanged(added=(OTHER,), removed=()))
    observer(ChildrenChanged(added=(), removed=(OTHER, AccountRef("b", "DA2"))))
    assert messages(caplog, logging.INFO) == [
        "MSP parent: child account(s) added: child (DA0000000000000000001)",
        "MSP parent: child account(s) removed: child (DA0000000000000000001), b (DA2)",
    ]
