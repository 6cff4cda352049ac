"""Faults on demand, seen by the real duo_client as the real service's would be."""

from __future__ import annotations

import gc
import http.client
from typing import TYPE_CHECKING

import pytest

from tests.fakeduo.fixtures import (
    IGNORE_DUO_CLIENT_SSL_WARNING,
    admin_client,
    small_config,
    status_and_code,
    window,
)
from trio_dls.endpoints import Endpoint
from trio_dls.fakeduo import (
    DropPoint,
    FakeDuo,
    Faults,
    RateScope,
    RateShape,
    serve_in_thread,
)
from trio_dls.fakeduo.faults import (
    FixedWindowLimiter,
    RateLimiter,
    SlidingWindowLimiter,
    make_limiter,
)

if TYPE_CHECKING:
    from collections.abc import Iterator

    import duo_client

pytestmark = pytest.mark.filterwarnings(IGNORE_DUO_CLIENT_SSL_WARNING)


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeDuo]:
    """One fake served from a thread for the whole module."""
    with serve_in_thread(FakeDuo(small_config())) as served:
        yield served


def test_rate_limit_answers_429_42901_without_retry_after(
    fake: FakeDuo, admin: duo_client.Admin
) -> None:
    """Beyond R requests a minute, duo_client sees 429 / 42901 and no Retry-After."""
    fake.faults = Faults(rate_limit=2)
    admin.get_administrator_log()
    admin.get_administrator_log()
    with pytest.raises(RuntimeError) as caught:
        admin.get_administrator_log()
    response, _ = admin.api_call(
        "GET", "/admin/v1/logs/administrator", {"mintime": "0"}
    )
    assert status_and_code(caught.value) == (429, 42901)
    assert (response.status, response.getheader("Retry-After")) == (429, None)


def test_rate_limit_is_per_endpoint(fake: FakeDuo, admin: duo_client.Admin) -> None:
    """Spending one endpoint's budget leaves another endpoint's untouched."""
    fake.faults = Faults(rate_limit=1)
    admin.get_administrator_log()
    with pytest.raises(RuntimeError):
        admin.get_administrator_log()
    mintime, maxtime = window()
    assert admin.get_trust_monitor_events_by_offset(mintime, maxtime)["events"]


def test_counters_count_requests_and_429s_per_account_and_endpoint() -> None:
    """Stats count requests served and 429s per (account, endpoint)."""
    fake = FakeDuo(small_config(faults=Faults(rate_limit=1)))
    with serve_in_thread(fake):
        admin = admin_client(fake)
        admin.get_administrator_log()
        for _ in range(3):
            with pytest.raises(RuntimeError):
                admin.get_administrator_log()
    key = (fake.account_id, Endpoint.ADMINACTION)
    stats = fake.stats()
    assert (stats.requests[key], stats.rate_limited[key]) == (4, 3)


def test_server_errors_are_500s_and_503s(
    fake: FakeDuo, admin: duo_client.Admin
) -> None:
    """At error rate 1, every call fails with a 500 (Duo envelope) or a 503 (text)."""
    fake.faults = Faults(error_rate=1.0, seed=1)
    seen = set()
    for _ in range(12):
        with pytest.raises(RuntimeError) as caught:
            admin.get_administrator_log()
        seen.add(status_and_code(caught.value))
    assert {(500, 50000), (503, "Service Unavailable")} == seen


def test_faults_can_be_turned_off_while_serving(
    fake: FakeDuo, admin: duo_client.Admin
) -> None:
    """Clearing the faults makes the next call succeed."""
    fake.faults = Faults(error_rate=1.0)
    with pytest.raises(RuntimeError):
        admin.get_administrator_log()
    fake.faults = Faults()
    assert len(admin.get_administrator_log()) == 60


def test_faults_can_target_one_endpoint(fake: FakeDuo, admin: duo_client.Admin) -> None:
    """Faults limited to trust monitor leave the administrator log alone."""
    fake.faults = Faults(error_rate=1.0, endpoints=frozenset({Endpoint.TRUSTMONITOR}))
    assert len(admin.get_administrator_log()) == 60
    with pytest.raises(RuntimeError):
        admin.get_trust_monitor_events_by_offset(*window())


def test_malformed_json_is_a_bad_response(
    fake: FakeDuo, admin: duo_client.Admin
) -> None:
    """A 200 with truncated JSON makes duo_client raise 'Received bad response'."""
    fake.faults = Faults(malformed_rate=1.0)
    with pytest.raises(RuntimeError, match="bad response") as caught:
        admin.get_administrator_log()
    assert status_and_code(caught.value)[0] == 200


# duo_client does not close its connection when a call raises; the socket is
# reclaimed (with a ResourceWarning) by the collector, inside this test.
@pytest.mark.filterwarnings("ignore::ResourceWarning")
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_slow_response_times_out_a_client_with_a_small_timeout(fake: FakeDuo) -> None:
    """A long server delay trips a tiny client socket timeout."""
    fake.faults = Faults(delay=3600.0)
    client = admin_client(fake, timeout=0.2)
    with pytest.raises(TimeoutError) as caught:
        client.get_administrator_log()
    del caught
    gc.collect()


def test_connection_dropped_mid_body_is_an_incomplete_read(
    fake: FakeDuo, admin: duo_client.Admin
) -> None:
    """A connection cut after half the body surfaces as IncompleteRead."""
    fake.faults = Faults(drop_rate=1.0, drop_point=DropPoint.MID_BODY)
    with pytest.raises(http.client.IncompleteRead):
        admin.get_administrator_log()


def test_connection_dropped_before_the_answer_is_remote_disconnected(
    fake: FakeDuo, admin: duo_client.Admin
) -> None:
    """A connection cut before any answer surfaces as RemoteDisconnected."""
    fake.faults = Faults(drop_rate=1.0, drop_point=DropPoint.BEFORE_RESPONSE)
    with pytest.raises(http.client.RemoteDisconnected):
        admin.get_administrator_log()


def test_probabilities_outside_zero_to_one_are_refused() -> None:
    """A fault rate above 1 is a configuration error."""
    with pytest.raises(ValueError, match="error_rate"):
        Faults(error_rate=1.5)


@pytest.mark.parametrize("shape", [RateShape.SLIDING_WINDOW, RateShape.FIXED_WINDOW])
def test_window_limits_answer_429_42901_without_retry_after(
    shape: RateShape, fake: FakeDuo, admin: duo_client.Admin
) -> None:
    """A window limit refuses as the token bucket does: 429 / 42901, no Retry-After."""
    # One request per window, a window no boundary of which falls in the test
    # (the fake runs on the real clock).
    window = 1e10
    fake.faults = Faults(rate_limit=60 / window, rate_shape=shape, rate_window=window)
    admin.get_administrator_log()
    with pytest.raises(RuntimeError) as caught:
        admin.get_administrator_log()
    response, _ = admin.api_call(
        "GET", "/admin/v1/logs/administrator", {"mintime": "0"}
    )
    assert status_and_code(caught.value) == (429, 42901)
    assert (response.status, response.getheader("Retry-After")) == (429, None)


def served_at(
    limiter: SlidingWindowLimiter | FixedWindowLimiter, times: list[float]
) -> list[float]:
    """The times, of *times*, at which *limiter* served one key's request."""
    return [t for t in times if limiter.allow("key", t)]


def test_a_sliding_window_counts_the_served_requests_of_the_last_w_seconds() -> None:
    """Three per minute: a fourth waits until the first left the last minute."""
    limiter = SlidingWindowLimiter(3, window=60)
    times = [0.0, 1.0, 2.0, 3.0, 59.9, 60.0, 60.5, 61.0, 62.0]
    # A refused request (3.0, 59.9, 60.5) counts nothing.
    assert served_at(limiter, times) == [0.0, 1.0, 2.0, 60.0, 61.0, 62.0]
    assert not limiter.allow("key", 119.9)
    assert limiter.allow("other", 119.9)  # each key its own window


def test_a_fixed_window_resets_on_aligned_boundaries() -> None:
    """Three per aligned minute: six in a row across a boundary, then none."""
    limiter = FixedWindowLimiter(3, window=60)
    times = [57.0, 58.0, 59.0, 59.5, 60.0, 60.1, 60.2, 60.3, 119.9, 120.0]
    assert served_at(limiter, times) == [57.0, 58.0, 59.0, 60.0, 60.1, 60.2, 120.0]


def test_make_limiter_builds_the_shape_asked_for() -> None:
    """Each shape, whatever the scope; a window must hold a whole number."""
    assert make_limiter(Faults()) is None
    assert isinstance(make_limiter(Faults(rate_limit=2)), RateLimiter)
    sliding = make_limiter(
        Faults(
            rate_limit=2,
            rate_shape=RateShape.SLIDING_WINDOW,
            rate_window=180,
            rate_scope=RateScope.ENDPOINT,
        )
    )
    assert isinstance(sliding, SlidingWindowLimiter)
    assert sliding.allowed == 6
    fixed = make_limiter(Faults(rate_limit=2, rate_shape=RateShape.FIXED_WINDOW))
    assert isinstance(fixed, FixedWindowLimiter)
    assert fixed.allowed == 2
    with pytest.raises(ValueError, match="whole number"):
        make_limiter(
            Faults(rate_limit=2, rate_shape=RateShape.FIXED_WINDOW, rate_window=45)
        )
