"""MSP children: a refused child is isolated, children come and go while running.

Rules for these tests: as in ``tests.test_fetching``, the fake Duo API's request
handler runs in-process on trio's virtual clock, the real ``serve`` tree runs
the real fetchers with a recording sender and a real ``CheckpointStore`` in
``tmp_path``, and what was delivered is compared with what the fake holds.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import trio
import trio.testing

from tests.observing import RecordingObserver
from tests.test_fetching import (
    DAY,
    PATIENCE,
    Daemon,
    assert_exactly_once,
    config_for,
    held,
    make_app,
)
from trio_dls.checkpoints import cursor_file_name
from trio_dls.duo.pacing import JITTER
from trio_dls.endpoints import Endpoint
from trio_dls.fakeduo import DatasetSpec, FakeDuoApp, Faults, make_children
from trio_dls.fetcher import REFUSED_RETRY_CAP, REFUSED_RETRY_FIRST
from trio_dls.observe import Fanout, LogObserver
from trio_dls.observe.events import (
    AccountListFailed,
    AccountsListed,
    ChildRefused,
    ChildrenChanged,
    Event,
    NoChildAccount,
)

if TYPE_CHECKING:
    from pathlib import Path

    import pytest

ENDPOINTS = [Endpoint.AUTH, Endpoint.TRUSTMONITOR]
SPEC = DatasetSpec(seed=3, span=DAY, end_before=600, admin_burst=0)


async def test_a_refused_child_is_isolated_and_resumes(
    tmp_path: Path,
    autojump_clock: trio.testing.MockClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A child answered 403 is told by id and name; the others, then it, arrive once."""
    del autojump_clock
    children = make_children(3, seed=5)
    app = make_app(SPEC, children=children)
    refused = children[1]
    app.refuse_child(refused.account_id)
    recording = RecordingObserver()
    daemon = Daemon(
        app,
        config_for(tmp_path, ENDPOINTS, msp=True),
        observer=Fanout(LogObserver(), recording),
    )
    others = [c.account_id for c in children if c is not refused]
    everyone = [c.account_id for c in children]
    records = daemon.recorder.records
    before_recovery: list[tuple[str | None, Endpoint, str]] = []

    async def until(expected: list[tuple[str | None, Endpoint, str]]) -> None:
        while not set(expected) <= set(records):
            await daemon.recorder.changed.wait()

    async def recover_then_finish() -> None:
        await until(held(app, ENDPOINTS, list(others)))
        # Long enough for several refusals, the backoff growing.
        await trio.sleep(10 * REFUSED_RETRY_FIRST)
        before_recovery.extend(records)
        app.refuse_child(refused.account_id, refused=False)
        await until(held(app, ENDPOINTS, list(everyone)))

    with trio.fail_after(PATIENCE):
        await daemon.run(recover_then_finish)

    assert_exactly_once(before_recovery, held(app, ENDPOINTS, list(others)))
    assert_exactly_once(records, held(app, ENDPOINTS, list(everyone)))
    refusals = recording.of(ChildRefused)
    assert {e.account.account_id for e in refusals} == {refused.account_id}
    assert {e.endpoint for e in refusals} == set(ENDPOINTS)
    assert max(e.failures for e in refusals) >= 2
    waits = [e.retry_in for e in refusals]
    assert all(
        REFUSED_RETRY_FIRST <= w <= (1 + JITTER) * REFUSED_RETRY_CAP for w in waits
    )
    lines = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert lines
    assert all(refused.account_id in line for line in lines)
    assert all(refused.name in line for line in lines)


REFRESH = 600.0  # seconds between listings in these tests
Key = tuple[str | None, Endpoint, str]


class Timeline:
    """An observer keeping when each child was added or removed by a listing."""

    def __init__(self) -> None:
        """Start with nothing seen."""
        self.added: list[tuple[float, str | None]] = []
        self.removed: list[tuple[float, str | None]] = []
        self.changed = trio.Event()

    def __call__(self, event: Event, /) -> None:
        """Keep the time of each child a ChildrenChanged adds or removes."""
        if isinstance(event, ChildrenChanged):
            now = trio.current_time()
            self.added.extend((now, a.account_id) for a in event.added)
            self.removed.extend((now, a.account_id) for a in event.removed)
        self.changed.set()
        self.changed = trio.Event()

    async def wait_removed(self, account_id: str) -> float:
        """Return when *account_id* was last removed, once it was (caller bounds it)."""
        while account_id not in {key for _, key in self.removed}:
            await self.changed.wait()
        return max(at for at, key in self.removed if key == account_id)


def msp_daemon(
    tmp_path: Path,
    app: FakeDuoApp,
    endpoints: list[Endpoint] = ENDPOINTS,
    *,
    block: tuple[str, ...] = (),
    refresh: float = REFRESH,
) -> tuple[Daemon, RecordingObserver, Timeline]:
    """A daemon for the MSP fake *app*, listing children every *refresh* s."""
    recording, timeline = RecordingObserver(), Timeline()
    daemon = Daemon(
        app,
        config_for(tmp_path, endpoints, msp=True, block=block, refresh=refresh),
        observer=Fanout(LogObserver(), recording, timeline),
    )
    return daemon, recording, timeline


async def until_delivered(daemon: Daemon, expected: list[Key]) -> float:
    """Return when every *expected* record was delivered (caller bounds it)."""
    while not set(expected) <= set(daemon.recorder.records):
        await daemon.recorder.changed.wait()
    return trio.current_time()


def requests_for(app: FakeDuoApp, account_id: str) -> int:
    """How many log requests named *account_id* so far."""
    return sum(
        n for (account, _), n in app.stats().requests.items() if account == account_id
    )


async def test_a_child_added_while_running_is_fetched_once(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """A child that joins the list is fetched from the next listing, whole and once."""
    del autojump_clock
    children = make_children(3, seed=6)
    app = make_app(SPEC, children=children)
    late = children[2].account_id
    app.list_children(late, listed=False)
    daemon, _, timeline = msp_daemon(tmp_path, app)
    first = [c.account_id for c in children[:2]]
    everyone = [c.account_id for c in children]
    before: list[int] = []
    shown: list[float] = []

    async def add_then_finish() -> None:
        await until_delivered(daemon, held(app, ENDPOINTS, list(first)))
        await trio.sleep(2.5 * REFRESH)  # listings without the late child
        before.append(requests_for(app, late))
        app.list_children(late)
        shown.append(trio.current_time())
        await until_delivered(daemon, held(app, ENDPOINTS, list(everyone)))

    with trio.fail_after(PATIENCE):
        await daemon.run(add_then_finish)

    assert before == [0]
    [added_at] = [at for at, key in timeline.added if key == late]
    assert shown[0] < added_at <= shown[0] + REFRESH
    assert_exactly_once(daemon.recorder.records, held(app, ENDPOINTS, list(everyone)))


# One child, several pages of authentication log, slow answers: a removal at
# the next listing lands in the middle of its backlog.
SLOW_BACKLOG = DatasetSpec(
    seed=8, span=DAY, end_before=600, admin_burst=0, counts={Endpoint.AUTH: 4500}
)


async def test_a_removed_child_stops_cleanly_and_resumes_when_back(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """A child leaving mid-backlog stops, keeps its cursor, resumes once back."""
    del autojump_clock
    [child] = make_children(1, seed=7)
    app = make_app(
        SLOW_BACKLOG,
        children=[child],
        faults=Faults(delay=40.0, endpoints=frozenset({Endpoint.AUTH})),
    )
    daemon, _, timeline = msp_daemon(tmp_path, app, [Endpoint.AUTH], refresh=60)
    key = child.account_id
    everything = held(app, [Endpoint.AUTH], [key])
    partial: list[int] = []
    calls_after_stop: list[int] = []

    async def remove_then_return() -> None:
        while daemon.recorder.pages < 1:
            await daemon.recorder.changed.wait()
        app.list_children(key, listed=False)
        await timeline.wait_removed(key)
        partial.append(len(daemon.recorder.records))
        calls = requests_for(app, key)
        await trio.sleep(3 * 60)
        calls_after_stop.append(requests_for(app, key) - calls)
        app.list_children(key)
        await until_delivered(daemon, everything)

    with trio.fail_after(PATIENCE):
        await daemon.run(remove_then_return)

    assert 0 < partial[0] < len(everything)
    assert calls_after_stop == [0]
    state = tmp_path / "state"
    assert (state / cursor_file_name(Endpoint.AUTH, key)).exists()
    assert [k for _, k in timeline.added] == [key]  # back at a listing
    assert_exactly_once(daemon.recorder.records, everything)


async def test_a_failed_listing_keeps_the_children(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """While listing fails, the running children go on; then the list applies again."""
    del autojump_clock
    children = make_children(2, seed=9)
    app = make_app(SPEC, children=children)
    daemon, recording, timeline = msp_daemon(tmp_path, app)
    ids = [c.account_id for c in children]
    gone = ids[1]
    calls: list[int] = []
    removed_while_failing: list[list[tuple[float, str | None]]] = []

    async def fail_then_recover() -> None:
        await until_delivered(daemon, held(app, ENDPOINTS, list(ids)))
        app.fail_account_list()
        # Were a failed listing taken for an empty one, this child would go.
        app.list_children(gone, listed=False)
        before = requests_for(app, gone)
        await trio.sleep(3 * REFRESH)
        calls.append(requests_for(app, gone) - before)
        removed_while_failing.append(list(timeline.removed))
        app.fail_account_list(failing=False)
        await timeline.wait_removed(gone)

    with trio.fail_after(PATIENCE):
        await daemon.run(fail_then_recover)

    assert removed_while_failing == [[]]
    assert calls[0] > 0  # still polled while the listing failed
    failures = recording.of(AccountListFailed)
    assert len(failures) >= 2
    assert [f.failures for f in failures] == list(range(1, len(failures) + 1))
    assert_exactly_once(daemon.recorder.records, held(app, ENDPOINTS, list(ids)))


async def test_block_list_applies_to_children_found_later(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """A blocked child that joins the list is never fetched; the others are."""
    del autojump_clock
    children = make_children(3, seed=10)
    app = make_app(SPEC, children=children)
    blocked, late = children[1].account_id, children[2].account_id
    app.list_children(blocked, late, listed=False)
    daemon, recording, timeline = msp_daemon(tmp_path, app, block=(blocked,))
    fetched: list[str | None] = [children[0].account_id, late]

    async def show_then_finish() -> None:
        await until_delivered(daemon, held(app, ENDPOINTS, fetched[:1]))
        app.list_children(blocked, late)
        await until_delivered(daemon, held(app, ENDPOINTS, list(fetched)))
        await trio.sleep(2 * REFRESH)

    with trio.fail_after(PATIENCE):
        await daemon.run(show_then_finish)

    assert requests_for(app, blocked) == 0
    assert blocked not in {key for _, key in timeline.added}
    assert recording.of(AccountsListed)[-1] == AccountsListed(children=2, blocked=1)
    assert_exactly_once(daemon.recorder.records, held(app, ENDPOINTS, list(fetched)))


async def test_a_parent_whose_children_all_leave_keeps_looking(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """With no child left the daemon runs on, says so, and fetches one that appears."""
    del autojump_clock
    children = make_children(2, seed=12)
    app = make_app(SPEC, children=children)
    first, second = (c.account_id for c in children)
    app.list_children(second, listed=False)
    daemon, recording, timeline = msp_daemon(tmp_path, app)

    async def empty_then_refill() -> None:
        await until_delivered(daemon, held(app, ENDPOINTS, [first]))
        app.list_children(first, listed=False)
        await timeline.wait_removed(first)
        await trio.sleep(2 * REFRESH)
        app.list_children(second)
        await until_delivered(daemon, held(app, ENDPOINTS, [first, second]))

    with trio.fail_after(PATIENCE):
        await daemon.run(empty_then_refill)

    assert len(recording.of(NoChildAccount)) >= 2
    assert_exactly_once(daemon.recorder.records, held(app, ENDPOINTS, [first, second]))
