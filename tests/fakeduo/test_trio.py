"""The fake as a trio service on the virtual clock: delay, live data, refill."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
import trio
import trio.testing

from tests.fakeduo.fixtures import (
    IGNORE_DUO_CLIENT_SSL_WARNING,
    RECORDS_UNDER,
    admin_client,
    small_config,
    small_spec,
    status_and_code,
)
from trio_dls.endpoints import Endpoint
from trio_dls.fakeduo import PATHS, FakeDuo, Faults

if TYPE_CHECKING:
    import duo_client

pytestmark = pytest.mark.filterwarnings(IGNORE_DUO_CLIENT_SSL_WARNING)

BASE = 1_790_000_000.0


def _virtual_fake(**changes: Any) -> FakeDuo:
    return FakeDuo(
        small_config(**changes),
        clock=lambda: BASE + trio.current_time(),
        wall_clock=None,
    )


async def _query(
    admin: duo_client.Admin, endpoint: Endpoint, mintime: int, maxtime: int
) -> list[dict[str, Any]]:
    params = {"mintime": str(mintime), "maxtime": str(maxtime), "limit": "1000"}
    response = await trio.to_thread.run_sync(
        admin.json_api_call, "GET", PATHS[endpoint], params
    )
    records: list[dict[str, Any]] = response[RECORDS_UNDER[endpoint]]
    return records


def _now_ms() -> int:
    return int((BASE + trio.current_time()) * 1000)


async def test_nursery_start_reports_the_bound_port() -> None:
    """Await nursery.start(fake.serve) returns the port the fake listens on."""
    fake = _virtual_fake()
    async with trio.open_nursery() as nursery:
        port = await nursery.start(fake.serve)
        admin = admin_client(fake)
        records = await trio.to_thread.run_sync(admin.get_administrator_log)
        nursery.cancel_scope.cancel()
    assert (port, 60) == (admin.port, len(records))


async def test_two_minute_delay_follows_the_injected_clock(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A record 60 s old is withheld until the virtual clock passes two minutes."""
    del autojump_clock  # requested for its effect: virtual time
    fake = _virtual_fake()
    async with trio.open_nursery() as nursery:
        await nursery.start(fake.serve)
        admin = admin_client(fake)
        record = fake.add_record(
            Endpoint.TELEPHONY, {"telephony_id": "late-arrival"}, _now_ms() - 60_000
        )
        window = (_now_ms() - 90_000, _now_ms() + 3_600_000)
        before = await _query(admin, Endpoint.TELEPHONY, *window)
        await trio.sleep(61)
        after = await _query(admin, Endpoint.TELEPHONY, *window)
        nursery.cancel_scope.cancel()
    assert before == []
    assert [dict(record.body)] == after


async def test_live_mode_adds_records_as_virtual_time_passes(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """In live mode, ten virtual minutes bring new, visible auth records."""
    del autojump_clock  # requested for its effect: virtual time
    fake = _virtual_fake(dataset=small_spec(live=True, live_per_bucket=2))
    async with trio.open_nursery() as nursery:
        await nursery.start(fake.serve)
        admin = admin_client(fake)
        start_ms = _now_ms()
        await trio.sleep(600)
        fresh = await _query(admin, Endpoint.AUTH, start_ms, _now_ms())
        held = [
            r.body
            for r in fake.held_records(Endpoint.AUTH)
            if start_ms <= r.ts_ms <= _now_ms() - 120_000
        ]
        nursery.cancel_scope.cancel()
    assert len(fresh) >= 12
    assert list(reversed(held)) == fresh


async def test_rate_limit_refills_on_the_virtual_clock(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """At 2 requests a minute, a third is refused until 30 virtual seconds pass."""
    del autojump_clock  # requested for its effect: virtual time
    fake = _virtual_fake(faults=Faults(rate_limit=2))
    async with trio.open_nursery() as nursery:
        await nursery.start(fake.serve)
        admin = admin_client(fake)
        for _ in range(2):
            await trio.to_thread.run_sync(admin.get_administrator_log)
        with pytest.raises(RuntimeError) as caught:
            await trio.to_thread.run_sync(admin.get_administrator_log)
        await trio.sleep(30)
        records = await trio.to_thread.run_sync(admin.get_administrator_log)
        nursery.cancel_scope.cancel()
    assert status_and_code(caught.value)[0] == 429
    assert len(records) == 60


async def test_slow_response_waits_on_the_virtual_clock(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A 10-minute server delay passes instantly in virtual time and then answers."""
    del autojump_clock  # requested for its effect: virtual time
    fake = _virtual_fake(faults=Faults(delay=600))
    async with trio.open_nursery() as nursery:
        await nursery.start(fake.serve)
        admin = admin_client(fake)
        started = trio.current_time()
        records = await trio.to_thread.run_sync(admin.get_administrator_log)
        waited = trio.current_time() - started
        nursery.cancel_scope.cancel()
    assert (len(records), waited >= 600) == (60, True)
