"""Metrics and health: events in, sample values and verdicts out.

Rules for these tests: synthetic events go straight into a ``Metrics`` (or
its ``Health`` rules) with a clock the test sets, so time is whatever the
test says and nothing sleeps; samples are read back with the registry's
``get_sample_value`` or by parsing the exposition as Prometheus would.  That
the real pipeline tells these events, and that the endpoint serves them, is
``tests/test_metrics_http.py``'s.
"""

from __future__ import annotations

from pathlib import Path

import attrs
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.test_fetching import config_for
from trio_dls.config.model import PositiveSeconds
from trio_dls.endpoints import Endpoint
from trio_dls.observe.events import (
    AccountAdded,
    AccountRemoved,
    ApiFailed,
    ApiRecovered,
    Behind,
    CaughtUp,
    ChildRefused,
    ConnectionReplaced,
    CursorSaveFailed,
    DatagramCut,
    DatagramDropped,
    PageDelivered,
    PageWritten,
    RateLimited,
    RecordRepaired,
    RequestServed,
    ServerConnected,
    ServerFailed,
    ServerRecovered,
    ServerRef,
)
from trio_dls.observe.health import MAX_REASONS, Health
from trio_dls.observe.metrics import STALL_FLOOR, Metrics, stall_after
from trio_dls.supervisor import AccountRef

ACCOUNT = AccountRef("acme")
AUTH = Endpoint.AUTH
TELEPHONY = Endpoint.TELEPHONY
TCP = ServerRef("siem", "10.0.0.1", 514, "TCP")
UDP = ServerRef("udp", "10.0.0.2", 514, "UDP")
STALL = 600.0


def child(n: int) -> AccountRef:
    """The MSP child number *n*."""
    return AccountRef(f"child {n}", f"DA{n:019d}")


class Clock:
    """Trio's clock as the test sets it."""

    def __init__(self) -> None:
        """Start at 0."""
        self.now = 0.0

    def __call__(self) -> float:
        """The time now."""
        return self.now


def make_metrics() -> tuple[Metrics, Clock]:
    """Metrics fetching auth and telephony, at a clock the test sets."""
    clock = Clock()
    metrics = Metrics(
        stall_after=STALL,
        endpoints=(AUTH, TELEPHONY),
        routes=(("siem", AUTH), ("siem", TELEPHONY)),
        clock=clock,
        process=False,
    )
    return metrics, clock


def value(metrics: Metrics, name: str, **labels: str) -> float | None:
    """The sample *name* with *labels*, or None if there is none."""
    return metrics.registry.get_sample_value(name, labels)


def requests_served(metrics: Metrics, endpoint: Endpoint) -> float:
    """Requests of *endpoint* Duo answered with a 200."""
    served = value(
        metrics, "trio_dls_api_requests_total", endpoint=endpoint, status="200"
    )
    assert served is not None
    return served


def error(
    account: AccountRef, at: float, kind: str = "TransientApiError 503"
) -> ApiFailed:
    """A failed request of (account, auth) at *at*."""
    return ApiFailed(account, AUTH, kind, "Service Unavailable", 1, at, at, 1.0)


# --------------------------------------------------------------------------
# Counters
# --------------------------------------------------------------------------


def test_records_fetched_and_sent_are_counted_by_endpoint_and_server() -> None:
    """Delivered pages count per endpoint, written ones per server and endpoint."""
    metrics, _ = make_metrics()
    for records in (1000, 17):
        metrics(PageDelivered(ACCOUNT, AUTH, records, 0.0))
        metrics(PageWritten(TCP, ACCOUNT, AUTH, records, size=records * 100))
    metrics(PageDelivered(child(1), AUTH, 3, 0.0))

    assert value(metrics, "trio_dls_records_fetched_total", endpoint="auth") == 1020
    assert value(metrics, "trio_dls_pages_fetched_total", endpoint="auth") == 3
    assert (
        value(metrics, "trio_dls_records_sent_total", server="siem", endpoint="auth")
        == 1017
    )
    assert (
        value(metrics, "trio_dls_pages_sent_total", server="siem", endpoint="auth") == 2
    )
    assert value(metrics, "trio_dls_sent_bytes_total", server="siem") == 101700


def test_every_mapped_route_starts_at_zero() -> None:
    """Routes of the config are exposed before any record, so rates are defined."""
    metrics, _ = make_metrics()

    assert (
        value(
            metrics, "trio_dls_records_sent_total", server="siem", endpoint="telephony"
        )
        == 0
    )
    assert value(metrics, "trio_dls_records_fetched_total", endpoint="telephony") == 0


def test_api_requests_are_counted_by_status() -> None:
    """Served requests count as 200, 429s as 429, failures by the status they carry."""
    metrics, _ = make_metrics()
    metrics(RequestServed(ACCOUNT, AUTH))
    metrics(RequestServed(ACCOUNT, AUTH))
    metrics(RateLimited(ACCOUNT, AUTH, per_minute=30.0, retry_in=2.0))
    metrics(error(ACCOUNT, 1.0))
    metrics(error(ACCOUNT, 2.0, kind="TransientApiError"))
    metrics(ChildRefused(child(1), AUTH, "AccountRefusedError 403", "no", 1, 0, 0, 60))

    def requests(status: str) -> float | None:
        return value(
            metrics, "trio_dls_api_requests_total", endpoint="auth", status=status
        )

    assert [requests(s) for s in ("200", "429", "503", "none", "403")] == [
        2,
        1,
        1,
        1,
        1,
    ]
    assert value(metrics, "trio_dls_rate_limited_total", endpoint="auth") == 1
    assert (
        value(
            metrics,
            "trio_dls_api_errors_total",
            endpoint="auth",
            kind="TransientApiError 503",
        )
        == 1
    )


def test_sender_troubles_are_counted_per_server() -> None:
    """Failures, reconnects, replaced connections, repairs, cuts and drops."""
    metrics, _ = make_metrics()
    metrics(ServerConnected(TCP, first=True))
    metrics(ServerFailed(TCP, "connection refused", 1.0, 1, AUTH, 10))
    metrics(ServerConnected(TCP, first=False))
    metrics(ConnectionReplaced(TCP))
    metrics(RecordRepaired(TCP, AUTH, {}, ("escaped",)))
    metrics(DatagramCut(UDP, AUTH, size=3000, limit=2048, lost=952))
    metrics(DatagramDropped(UDP, AUTH, size=70000, limit=2048, why=""))
    metrics(CursorSaveFailed(Path("/state"), "disk full", 1))

    assert value(metrics, "trio_dls_server_failures_total", server="siem") == 1
    assert value(metrics, "trio_dls_server_reconnects_total", server="siem") == 1
    assert (
        value(metrics, "trio_dls_server_connections_replaced_total", server="siem") == 1
    )
    assert (
        value(
            metrics, "trio_dls_records_repaired_total", server="siem", endpoint="auth"
        )
        == 1
    )
    assert (
        value(metrics, "trio_dls_datagrams_cut_total", server="udp", endpoint="auth")
        == 1
    )
    assert (
        value(
            metrics, "trio_dls_datagrams_dropped_total", server="udp", endpoint="auth"
        )
        == 1
    )
    assert (
        value(metrics, "trio_dls_datagram_lost_bytes_total", server="udp")
        == 952 + 70000
    )
    assert value(metrics, "trio_dls_cursor_save_failures_total") == 1


# --------------------------------------------------------------------------
# Gauges
# --------------------------------------------------------------------------


def test_server_up_follows_connections_failures_and_recovery() -> None:
    """A server is up once connected, down at a failed write, up at recovery."""
    metrics, _ = make_metrics()
    seen = []
    for event in (
        ServerConnected(TCP, first=True),
        ServerFailed(TCP, "connection refused", 1.0, 1, AUTH, 10),
        ServerRecovered(TCP, 1),
    ):
        metrics(event)
        seen.append(value(metrics, "trio_dls_server_up", server="siem"))

    assert seen == [1, 0, 1]


def test_lag_cursor_age_and_pace_per_account_and_endpoint() -> None:
    """Lag is the latest ``Behind``; the cursor's age grows from its save."""
    metrics, clock = make_metrics()
    labels = {"account": "acme", "account_id": "", "endpoint": "auth"}
    clock.now = 100.0
    metrics(Behind(ACCOUNT, AUTH, 3600.0))
    metrics(RateLimited(ACCOUNT, AUTH, per_minute=42.0, retry_in=2.0))
    clock.now = 130.0

    assert value(metrics, "trio_dls_lag_seconds", **labels) == 3600
    assert value(metrics, "trio_dls_cursor_age_seconds", **labels) == 30
    assert value(metrics, "trio_dls_pace_requests_per_minute", **labels) == 42


def test_a_removed_child_takes_its_series_with_it() -> None:
    """After ``AccountRemoved`` no series names the child, and memory is back."""
    metrics, clock = make_metrics()
    children = [child(n) for n in range(1000)]
    for account in children:
        metrics(AccountAdded(account))
        for endpoint in (AUTH, TELEPHONY):
            metrics(Behind(account, endpoint, 10.0))
            metrics(RequestServed(account, endpoint))
    full = metrics.series()
    clock.now = 5.0
    for account in children[1:]:
        metrics(AccountRemoved(account))

    families = {
        family.name: family
        for family in text_string_to_metric_families(metrics.exposition().decode())
    }
    named = {
        sample.labels["account_id"]
        for family in families.values()
        for sample in family.samples
        if "account_id" in sample.labels
    }
    assert full == 2000
    assert metrics.series() == 2
    assert {children[0].account_id} == named
    assert value(metrics, "trio_dls_accounts") == 1
    # The counters keep what the removed children did: a counter never goes down.
    assert requests_served(metrics, AUTH) + requests_served(metrics, TELEPHONY) == 2000


def test_the_exposition_parses_with_help_and_units() -> None:
    """Every family is prefixed and has HELP text; process metrics are there too."""
    clock = Clock()
    metrics = Metrics(stall_after=STALL, endpoints=(AUTH,), clock=clock)
    metrics(Behind(ACCOUNT, AUTH, 1.0))

    families = list(text_string_to_metric_families(metrics.exposition().decode()))
    ours = [f for f in families if f.name.startswith("trio_dls_")]
    names = {f.name for f in families}

    assert all(f.documentation for f in ours)
    assert {
        "trio_dls_lag_seconds",
        "trio_dls_records_fetched",
        "trio_dls_healthy",
    } <= names
    assert "process_resident_memory_bytes" in names


def test_registries_are_private_to_each_daemon() -> None:
    """Two daemons in one process keep separate totals."""
    one, _ = make_metrics()
    two, _ = make_metrics()
    one(PageDelivered(ACCOUNT, AUTH, 5, 0.0))

    assert value(one, "trio_dls_records_fetched_total", endpoint="auth") == 5
    assert value(two, "trio_dls_records_fetched_total", endpoint="auth") == 0


# --------------------------------------------------------------------------
# Health
# --------------------------------------------------------------------------


def make_health() -> Health:
    """Health rules over auth and telephony, stall after 600 s."""
    return Health(STALL, (AUTH, TELEPHONY))


def test_a_fetcher_that_keeps_progressing_is_healthy() -> None:
    """Caught-up polls, pages and answers within the threshold keep it healthy."""
    health = make_health()
    health.note(AccountAdded(ACCOUNT), 0.0)
    for at in range(0, 3600, 120):
        health.note(CaughtUp(ACCOUNT, AUTH, 0), float(at))
        health.note(RequestServed(ACCOUNT, TELEPHONY), float(at))

    assert health.verdict(3600.0).healthy


def test_a_fetcher_without_progress_beyond_the_threshold_is_named() -> None:
    """No progress for more than stall_after: a reason naming it and the last error."""
    health = make_health()
    health.note(AccountAdded(ACCOUNT), 0.0)
    health.note(CaughtUp(ACCOUNT, TELEPHONY, 0), 0.0)
    for at in (100.0, 300.0, 700.0):
        health.note(error(ACCOUNT, at), at)
        health.note(CaughtUp(ACCOUNT, TELEPHONY, 0), at)

    assert health.verdict(600.0).healthy
    verdict = health.verdict(612.0)
    assert verdict.reasons == (
        "auth of account acme: no progress for 612 s "
        "(last: TransientApiError 503: Service Unavailable)",
    )
    assert "auth of account acme: no progress for 612 s" in verdict.text()


def test_a_fetcher_that_never_told_anything_is_watched_from_its_start() -> None:
    """An account's every mapped endpoint is watched from ``AccountAdded``."""
    health = make_health()
    health.note(AccountAdded(ACCOUNT), 10.0)
    health.note(CaughtUp(ACCOUNT, AUTH, 0), 500.0)

    assert health.verdict(611.0).reasons == (
        "telephony of account acme: no progress for 601 s",
    )


def test_health_comes_back_with_progress() -> None:
    """One served request after a stall makes the fetcher healthy again."""
    health = make_health()
    health.note(error(ACCOUNT, 0.0), 0.0)
    stalled = health.verdict(700.0).healthy
    health.note(ApiRecovered(ACCOUNT, AUTH, 5, 700.0, 700.0), 700.0)
    health.note(RequestServed(ACCOUNT, AUTH), 700.0)

    assert (stalled, health.verdict(700.0).healthy) == (False, True)


def test_a_child_waiting_its_turn_on_the_shared_pace_is_healthy() -> None:
    """A 429'd MSP child is healthy while its siblings on the endpoint are served."""
    health = make_health()
    waiting, served = child(1), child(2)
    health.note(RateLimited(waiting, AUTH, 1.0, 60.0, shared=True), 0.0)
    for at in range(0, 1800, 60):
        health.note(RequestServed(served, AUTH), float(at))

    assert health.verdict(1800.0).healthy


def test_a_pace_that_serves_no_one_is_a_stall() -> None:
    """When 429s stop every child of an endpoint, each is named, last: 429."""
    health = make_health()
    health.note(RequestServed(child(1), AUTH), 0.0)
    health.note(RateLimited(child(1), AUTH, 1.0, 60.0, shared=True), 1.0)

    assert health.verdict(612.0).reasons == (
        "auth of account child 1 (child DA0000000000000000001): no progress "
        "for 612 s (last: 429 rate limited)",
    )


def test_a_failing_child_is_not_covered_by_its_siblings() -> None:
    """A child whose requests fail is judged on its own progress alone."""
    health = make_health()
    health.note(
        ChildRefused(child(1), AUTH, "AccountRefusedError 403", "gone", 1, 0, 0, 60),
        0.0,
    )
    for at in range(0, 1800, 60):
        health.note(RequestServed(child(2), AUTH), float(at))

    reasons = health.verdict(1800.0).reasons
    assert len(reasons) == 1
    assert "(last: refused: AccountRefusedError 403: gone)" in reasons[0]


def test_a_server_unreachable_beyond_the_threshold_is_named() -> None:
    """From its first failed write to its recovery, a server counts as down."""
    health = make_health()
    health.note(ServerFailed(TCP, "connection refused", 1.0, 1, AUTH, 10), 0.0)
    health.note(ServerFailed(TCP, "timed out", 60.0, 9, AUTH, 10), 650.0)
    before = health.verdict(600.0).reasons
    during = health.verdict(700.0).reasons
    health.note(ServerRecovered(TCP, 10), 710.0)

    assert before == ()
    assert during == ("server siem (10.0.0.1:514): unreachable for 700 s: timed out",)
    assert health.verdict(2000.0).healthy


def test_a_removed_account_is_forgotten_by_health() -> None:
    """A stalled child that is removed is no reason any more, and holds no memory."""
    health = make_health()
    health.note(AccountAdded(child(1)), 0.0)
    health.note(AccountRemoved(child(1)), 10.0)

    assert health.verdict(5000.0).healthy
    assert len(health) == 0


def test_the_reasons_are_bounded() -> None:
    """With thousands stalled, the body names the first ones and counts the rest."""
    health = make_health()
    for n in range(1000):
        health.note(AccountAdded(child(n)), 0.0)

    verdict = health.verdict(1000.0)
    assert (len(verdict.reasons), verdict.more) == (MAX_REASONS, 2000 - MAX_REASONS)
    assert verdict.text().endswith(f"... and {2000 - MAX_REASONS} more\n")


@pytest.mark.parametrize(
    ("timeout", "configured", "expected"),
    [(120, None, STALL_FLOOR), (300, None, 900.0), (120, PositiveSeconds(90.0), 90.0)],
)
def test_the_threshold_defaults_to_three_polls_and_ten_minutes(
    tmp_path: Path, timeout: float, configured: PositiveSeconds | None, expected: float
) -> None:
    """stall_after: as configured, else the larger of 3 polls and 600 s."""
    config = config_for(tmp_path, [AUTH], timeout=timeout)
    settings = config.dls_settings
    config = attrs.evolve(
        config,
        dls_settings=attrs.evolve(
            settings, metrics=attrs.evolve(settings.metrics, stall_after=configured)
        ),
    )

    assert expected == stall_after(config)
