"""Reloading the config (SIGHUP): applied without loss or duplicate, or refused whole.

Rules for these tests: the real tree (``serve``) and the real reload loop
(``serve_reloading``) run on trio's virtual clock against the in-process fake
Duo API (``tests.test_fetching``), with a sender that records what each server
was given and a real ``CheckpointStore``.  Configs are real files read by the
real loader, with DLS's defaults (offset 180 days, poll every 120 s) and a
backlog of several pages; records keep arriving at Duo meanwhile.  What the
signal handler adds (SIGHUP to a reload request) is tested on a real process
in ``tests/test_reload_process.py``.
"""

from __future__ import annotations

import collections
import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import attrs
import trio
import trio.testing

from tests.duo_inprocess import InProcessDuo
from tests.test_fetching import PATIENCE, Daemon, held, make_app
from trio_dls.config import Config, Environment, load_config
from trio_dls.duo.discovery import AccountDiscovery
from trio_dls.endpoints import Endpoint
from trio_dls.fakeduo import DatasetSpec, FakeDuoApp
from trio_dls.fakeduo.data import record_key
from trio_dls.observe import LogObserver
from trio_dls.reload import describe_changes, serve_reloading
from trio_dls.supervisor import AccountTree, SenderContext, serve

if TYPE_CHECKING:
    import pytest

    from trio_dls.supervisor import Trigger

AUTH, TELEPHONY = Endpoint.AUTH, Endpoint.TELEPHONY
DAY = 86_400.0
POLL = 120.0  # api.timeout's default
# Several pages of each (1,000 a page), over days, and live records after.
SPEC = DatasetSpec(
    seed=41,
    span=3 * DAY,
    end_before=600,
    admin_burst=0,
    counts={AUTH: 3500, TELEPHONY: 2200},
    live=True,
)
ServerKey = tuple[str, Endpoint, str]


def config_text(tmp_path: Path, mappings: dict[str, list[Endpoint]]) -> str:
    """A config mapping server id -> endpoints; no ``api`` key: DLS's defaults."""
    servers = "".join(
        f"  - {{id: {sid}, hostname: 127.0.0.1, port: 9000, protocol: TCP}}\n"
        for sid in mappings
    )
    maps = "".join(
        f"    - {{endpoints: [{', '.join(e.value for e in endpoints)}], "
        f"server: {sid}}}\n"
        for sid, endpoints in mappings.items()
    )
    return f"""\
version: '1.0.0'
dls_settings:
  checkpointing: {{directory: {tmp_path / "state"}}}
servers:
{servers}account:
  ikey: DIFAKEDUOINTEGRATION
  skey: fake-duo-secret-key-0123456789abcdefghij
  hostname: localhost
  endpoint_server_mappings:
{maps}"""


# Two mistakes at once, each with its key path: a port out of range and an
# endpoint that does not exist.
INVALID = """\
version: '1.0.0'
servers:
  - {id: s1, hostname: 127.0.0.1, port: 99999, protocol: TCP}
account:
  ikey: DIFAKEDUOINTEGRATION
  skey: fake-duo-secret-key-0123456789abcdefghij
  hostname: localhost
  endpoint_server_mappings:
    - {endpoints: [auth, bogus], server: s1}
"""


class ServerRecorder:
    """A sender that keeps, per server, every record it was given."""

    def __init__(self) -> None:
        """Start empty."""
        self.records: list[ServerKey] = []
        self.changed = trio.Event()

    async def __call__(self, context: SenderContext) -> None:
        """Record each delivery's records as its server's and acknowledge it."""
        async with context.deliveries:
            async for delivery in context.deliveries:
                page = delivery.page
                self.records += [
                    (context.server.id, page.endpoint, record_key(page.endpoint, r))
                    for r in page.records
                ]
                delivery.done.set()
                self.changed.set()
                self.changed = trio.Event()

    def of(self, server: str, endpoint: Endpoint) -> list[str]:
        """The keys *server* was given for *endpoint*, in order."""
        return [k for s, e, k in self.records if s == server and e is endpoint]

    async def wait_for(self, server: str, endpoint: Endpoint, keys: set[str]) -> None:
        """Return once *server* was given every one of *keys* for *endpoint*."""
        while not keys <= set(self.of(server, endpoint)):
            await self.changed.wait()


@attrs.define
class Reloading:
    """The reload loop over the real tree, its config file and its requests."""

    tmp_path: Path
    app: FakeDuoApp
    recorder: ServerRecorder = attrs.Factory(ServerRecorder)
    stop: trio.Event = attrs.Factory(trio.Event)
    applied: list[Config] = attrs.Factory(list)
    generations: int = 0
    # Called as the reload loop's on_reloading: as a new config is accepted.
    on_reloading: Callable[[Config], object] | None = None
    _asks: trio.MemorySendChannel[None] = attrs.field(init=False)
    _asked: trio.MemoryReceiveChannel[None] = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:  # noqa: D105 - attrs' hook
        self._asks, self._asked = trio.open_memory_channel[None](1)

    @property
    def path(self) -> Path:
        """The config file."""
        return self.tmp_path / "config.yml"

    def load(self) -> Config:
        """Read the config file as the daemon does."""
        env = Environment(base_directory=self.tmp_path, environ={}, euid=1000)
        return load_config(self.path, env)

    async def generation(
        self,
        config: Config,
        *,
        shutdown_trigger: Trigger,
        force_trigger: Trigger | None,
        task_status: trio.TaskStatus[AccountTree | None],
    ) -> None:
        """One run of the real tree for *config*, sending to the recorder."""
        self.generations += 1
        await serve(
            config,
            shutdown_trigger=shutdown_trigger,
            force_trigger=force_trigger,
            grace=30,
            fetcher=Daemon(self.app, config).fetching(),
            sender=self.recorder,
            discover_accounts=AccountDiscovery(
                InProcessDuo(self.app), observer=LogObserver()
            ),
            task_status=task_status,
        )

    async def run(self, *, task_status: trio.TaskStatus[AccountTree | None]) -> None:
        """Run the loop from the file's config until ``stop``."""
        await serve_reloading(
            self.load(),
            self.generation,
            shutdown_trigger=self.stop.wait,
            reload_trigger=self._asked.receive,
            load_config=self.load,
            on_reloading=self.on_reloading,
            on_applied=lambda config, _tree: self.applied.append(config),
            offload=read_inline,
            task_status=task_status,
        )

    async def reload(self, text: str) -> None:
        """Write *text* to the config file and ask for a reload (as SIGHUP)."""
        self.path.write_text(text)
        await self._asks.send(None)
        await trio.testing.wait_all_tasks_blocked()  # it is read


async def read_inline(load: Callable[[], Config]) -> Config:
    """Read the file on the event loop: the virtual clock must not jump meanwhile."""
    await trio.lowlevel.checkpoint()
    return load()


def keys(app: FakeDuoApp, endpoint: Endpoint) -> set[str]:
    """The keys of every record the fake serves for *endpoint* now."""
    return {key for _, _, key in held(app, [endpoint])}


def messages(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    """What was logged by the reload at *level*."""
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "trio_dls.reload" and r.levelno == level
    ]


async def test_a_reload_adds_an_endpoint_and_removes_a_server_losing_nothing(
    tmp_path: Path,
    autojump_clock: trio.testing.MockClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An invalid config is refused whole; a valid one applies with no loss or repeat.

    Reloads come mid-backlog: the invalid one after the first pages, the valid
    one (telephony added, s2 removed) while auth is still catching up.
    """
    del autojump_clock
    caplog.set_level(logging.INFO)
    app = make_app(SPEC)
    first = config_text(tmp_path, {"s1": [AUTH], "s2": [AUTH]})
    second = config_text(tmp_path, {"s1": [AUTH, TELEPHONY]})
    loop = Reloading(tmp_path, app)
    loop.path.write_text(first)
    recorder = loop.recorder
    with trio.fail_after(PATIENCE):
        async with trio.open_nursery() as nursery:
            await nursery.start(loop.run)
            while len(recorder.of("s2", AUTH)) < 1000:
                await recorder.changed.wait()

            await loop.reload(INVALID)
            refused_at = len(recorder.of("s2", AUTH))
            while len(recorder.of("s2", AUTH)) < refused_at + 1000:
                await recorder.changed.wait()  # still running, as it was
            await loop.reload(first)  # unchanged: nothing to apply

            await loop.reload(second)
            while not loop.applied:
                await recorder.changed.wait()
            s2_at_reload = len(recorder.of("s2", AUTH))
            # A first start for telephony, the backlog's rest for auth, then
            # the live records of a few polls.
            await recorder.wait_for("s1", TELEPHONY, keys(app, TELEPHONY))
            await trio.sleep(3 * POLL)
            due = {AUTH: keys(app, AUTH), TELEPHONY: keys(app, TELEPHONY)}
            await recorder.wait_for("s1", AUTH, due[AUTH])
            await recorder.wait_for("s1", TELEPHONY, due[TELEPHONY])
            loop.stop.set()

    # The invalid file: every problem, with its key path, and kept running.
    errors = messages(caplog, logging.ERROR)
    assert any("servers[0].port" in line for line in errors)
    assert any("endpoint_server_mappings[0].endpoints" in line for line in errors)
    assert any("the running config is kept" in line for line in errors)
    assert len(recorder.of("s2", AUTH)) > refused_at
    assert any("unchanged" in line for line in messages(caplog, logging.INFO))
    # Two generations only: the invalid and the unchanged files changed nothing.
    assert loop.generations == 2
    assert len(loop.applied) == 1
    # s1: every auth record (before, across and after the reload) once; every
    # telephony record once, from a first start at the reload.
    for endpoint in (AUTH, TELEPHONY):
        delivered = recorder.of("s1", endpoint)
        assert collections.Counter(delivered).most_common(1)[0][1] == 1
        # All that was due, and only what the fake serves (a poll may have
        # brought more since).
        assert due[endpoint] <= set(delivered) <= keys(app, endpoint)
    assert len(due[AUTH]) > 3 * 1000  # several pages, and live records
    # s2: nothing twice, and nothing after it was removed.
    s2 = recorder.of("s2", AUTH)
    assert len(s2) == len(set(s2)) == s2_at_reload
    assert s2_at_reload < len(due[AUTH])


async def test_a_stop_during_a_reload_starts_nothing_new(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """SIGTERM as a valid reload is applied: the loop ends, no new generation starts."""
    del autojump_clock
    app = make_app(SPEC)
    loop = Reloading(tmp_path, app)
    loop.on_reloading = lambda _config: loop.stop.set()
    loop.path.write_text(config_text(tmp_path, {"s1": [AUTH]}))
    with trio.fail_after(PATIENCE):
        async with trio.open_nursery() as nursery:
            await nursery.start(loop.run)
            while len(loop.recorder.records) < 1000:
                await loop.recorder.changed.wait()
            await loop.reload(config_text(tmp_path, {"s1": [AUTH, TELEPHONY]}))

    assert loop.generations == 1
    assert loop.applied == []
    delivered = loop.recorder.of("s1", AUTH)
    assert len(delivered) == len(set(delivered))


def test_changes_are_described_without_secrets(tmp_path: Path) -> None:
    """The reload's log line says what changed, and never the secret key."""
    loop = Reloading(tmp_path, make_app(SPEC))
    loop.path.write_text(config_text(tmp_path, {"s1": [AUTH], "s2": [AUTH]}))
    old = loop.load()
    text = config_text(tmp_path, {"s1": [AUTH, TELEPHONY], "s3": [AUTH]})
    loop.path.write_text(text.replace("0123456789", "9876543210"))
    new = loop.load()

    changes = describe_changes(old, new)

    assert changes == [
        "the Duo credentials or API host (every fetcher restarts)",
        "endpoints added: telephony",
        "servers added: s3",
        "servers removed: s2",
        "endpoint-to-server mappings",
    ]
    assert not any("fake-duo-secret" in line for line in changes)
