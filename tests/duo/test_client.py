"""duo_client in threads against the fake Duo API over HTTPS: calls and errors.

Rules for these tests: the fake runs in the test's trio loop on loopback with
a trustme certificate; calls go through the real duo_client in worker threads
(``ThreadedDuoApi``), on the real clock, each bounded by its call timeout.
"""

from __future__ import annotations

import json
import threading
import time
from typing import TYPE_CHECKING, Any

import attrs
import pytest
import trio
import trio.testing

from tests.duo_inprocess import duo_client_error
from tests.fakeduo.fixtures import IGNORE_DUO_CLIENT_SSL_WARNING, small_config
from trio_dls.config import (
    Account,
    Config,
    Environment,
    MspApiHost,
    Proxy,
    load_config_text,
)
from trio_dls.daemon import duo_api_for
from trio_dls.duo.client import (
    AccountRefusedError,
    CredentialsRejectedError,
    DuoAnswer,
    RateLimitedError,
    ThreadedDuoApi,
    TransientApiError,
    classify,
)
from trio_dls.duo.discovery import AccountDiscovery
from trio_dls.endpoints import Endpoint
from trio_dls.fakeduo import FakeDuo, Faults, make_children
from trio_dls.supervisor import AccountRef, StopSignal

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

pytestmark = pytest.mark.filterwarnings(IGNORE_DUO_CLIENT_SSL_WARNING)

AUTH = "/admin/v2/logs/authentication"


def account_for(fake: FakeDuo, tmp_path: Path, *, skey: str | None = None) -> Config:
    """A config whose account is the fake's integration."""
    text = f"""\
version: '1.0.0'
servers: [{{id: s, hostname: 127.0.0.1, port: 9, protocol: UDP}}]
account:
  ikey: {fake.ikey}
  skey: {skey or fake.skey}
  hostname: localhost:{fake.port}
  ca_certs: {fake.ca_certs}
  endpoint_server_mappings: [{{endpoints: auth, server: s}}]
"""
    env = Environment(base_directory=tmp_path, environ={}, euid=1000)
    return load_config_text(text, "c.yml", env)


@pytest.fixture
async def fake() -> AsyncIterator[FakeDuo]:
    """The fake Duo API with two MSP children, serving in the test's loop."""
    server = FakeDuo(small_config(children=make_children(2, seed=9)))
    async with trio.open_nursery() as nursery:
        await nursery.start(server.serve)
        yield server
        nursery.cancel_scope.cancel()


NO_PROXY = Proxy()


def api(account: Account, proxy: Proxy = NO_PROXY, **kwargs: object) -> ThreadedDuoApi:
    """A ThreadedDuoApi with its own limiter."""
    return ThreadedDuoApi(
        account,
        proxy,
        limiter=trio.CapacityLimiter(4),
        **kwargs,  # type: ignore[arg-type]
    )


def window(fake: FakeDuo) -> dict[str, str]:
    """The params of a request for the whole auth log of the fake."""
    records = fake.held_records(Endpoint.AUTH)
    return {
        "mintime": str(records[0].ts_ms),
        "maxtime": str(records[-1].ts_ms),
        "limit": "1000",
        "sort": "ts:asc",
    }


async def test_a_signed_get_returns_the_response(fake: FakeDuo, tmp_path: Path) -> None:
    """A GET through duo_client returns Duo's ``response`` part."""
    config = account_for(fake, tmp_path)
    response = (await api(config.account).get(AUTH, window(fake))).body
    assert isinstance(response, dict)
    assert len(response["authlogs"]) == len(fake.held_records(Endpoint.AUTH))


async def test_requests_go_through_the_configured_proxy(
    fake: FakeDuo, tmp_path: Path
) -> None:
    """With dls_settings.proxy set, duo_client tunnels through CONNECT."""
    config = account_for(fake, tmp_path)
    proxy = Proxy(proxy_server="localhost", proxy_port=fake.port)
    response = (await api(config.account, proxy).get(AUTH, window(fake))).body
    assert isinstance(response, dict)
    assert response["authlogs"]


async def test_msp_children_are_listed_and_read(fake: FakeDuo, tmp_path: Path) -> None:
    """The Accounts API lists children; account_id reads a child's own logs."""
    config = account_for(fake, tmp_path)
    children = await api(config.account).list_child_accounts()
    assert [c["account_id"] for c in children] == [c.account_id for c in fake.children]
    child = fake.children[0].account_id
    answer = await api(config.account, child_account_id=child).get(AUTH, window(fake))
    response = answer.body
    assert isinstance(response, dict)


async def test_a_wrong_skey_is_fatal(fake: FakeDuo, tmp_path: Path) -> None:
    """Duo's 401 becomes CredentialsRejectedError, without the skey in it."""
    wrong = "wrong-secret-key-wrong-secret-key-wrong-1"
    config = account_for(fake, tmp_path, skey=wrong)
    with pytest.raises(CredentialsRejectedError) as info:
        await api(config.account).get(AUTH, window(fake))
    assert "HTTP 401" in str(info.value)
    assert wrong not in str(info.value)


async def test_a_429_comes_straight_back(fake: FakeDuo, tmp_path: Path) -> None:
    """duo_client's own sleeping retries are off: a 429 is raised at once."""
    fake.faults = Faults(rate_limit=1, rate_burst=1)
    client = api(account_for(fake, tmp_path).account)
    await client.get(AUTH, window(fake))
    with trio.fail_after(10), pytest.raises(RateLimitedError, match="42901"):
        await client.get(AUTH, window(fake))


@pytest.mark.parametrize(
    "faults",
    [
        Faults(error_rate=1.0),
        Faults(drop_rate=1.0),
        Faults(malformed_rate=1.0),
    ],
    ids=["5xx", "dropped", "malformed"],
)
async def test_transient_failures_are_translated(
    faults: Faults, fake: FakeDuo, tmp_path: Path
) -> None:
    """5xx, dropped and malformed answers become TransientApiError."""
    fake.faults = faults
    with pytest.raises(TransientApiError):
        await api(account_for(fake, tmp_path).account).get(AUTH, window(fake))


async def test_a_slow_answer_times_out(fake: FakeDuo, tmp_path: Path) -> None:
    """An answer slower than the call timeout is a TransientApiError."""
    fake.faults = Faults(delay=1.5)
    limiter = trio.CapacityLimiter(1)
    client = ThreadedDuoApi(
        account_for(fake, tmp_path).account,
        NO_PROXY,
        limiter=limiter,
        call_timeout=0.5,
    )
    with pytest.raises(TransientApiError, match="no answer within"):
        await client.get(AUTH, window(fake))
    # The abandoned thread ends, and gives its token back, once the fake
    # answers; duo_client closes its connection then.  A fake stopped
    # before (at the test's end) would leave the socket to a later test's GC.
    with trio.fail_after(10):
        async with limiter:
            pass


async def test_an_unreachable_duo_is_transient(tmp_path: Path) -> None:
    """A refused connection is retried later, not fatal."""
    fake = FakeDuo(small_config())
    async with trio.open_nursery() as nursery:
        await nursery.start(fake.serve)
        config = account_for(fake, tmp_path)
        nursery.cancel_scope.cancel()
    with pytest.raises(TransientApiError):
        await api(config.account).get(AUTH, {"mintime": "1", "maxtime": "2"})


async def test_an_answer_carries_duos_clock(tmp_path: Path) -> None:
    """Each answer has the Date of Duo's clock, however far it is from ours."""
    skewed = FakeDuo(small_config(), clock=lambda: time.time() - 90)
    async with trio.open_nursery() as nursery:
        await nursery.start(skewed.serve)
        answer = await api(account_for(skewed, tmp_path).account).get(
            AUTH, window(skewed)
        )
        nursery.cancel_scope.cancel()
    assert answer.date is not None
    assert time.time() - 92 <= answer.date <= time.time() - 89


class BlockedClient:
    """A stand-in for duo_client whose calls block until the test releases them."""

    def __init__(self) -> None:
        """No call has started."""
        self.release: dict[str, threading.Event] = {}
        self.entered: dict[str, threading.Event] = {}
        self.opened: list[Any] = []  # connections, as ours note them: none

    def prepare(self, name: str) -> None:
        """Expect a call whose ``mintime`` is *name*."""
        self.release[name] = threading.Event()
        self.entered[name] = threading.Event()

    def json_api_call(self, method: str, path: str, params: dict[str, str]) -> Any:
        """Block until released, then answer with the call's name."""
        del method, path
        name = params["mintime"]
        self.entered[name].set()
        self.release[name].wait(timeout=30)
        return {"name": name}

    def api_call(
        self, method: str, path: str, params: dict[str, str]
    ) -> tuple[Any, bytes]:
        """As duo_client's api_call: the HTTP response and its body."""
        body = self.json_api_call(method, path, params)
        return _Response(), json.dumps({"stat": "OK", "response": body}).encode()


class _Response:
    status = 200

    @staticmethod
    def getheader(name: str) -> str | None:
        del name
        return None


def blocked_api(tmp_path: Path, client: BlockedClient) -> ThreadedDuoApi:
    """A ThreadedDuoApi with one worker thread, calling *client*."""
    text = """\
version: '1.0.0'
servers: [{id: s, hostname: 127.0.0.1, port: 9, protocol: UDP}]
account:
  ikey: DIFAKEDUOINTEGRATION
  skey: fake-duo-secret-key-0123456789abcdefghij
  hostname: localhost:9
  endpoint_server_mappings: [{endpoints: auth, server: s}]
"""
    env = Environment(base_directory=tmp_path, environ={}, euid=1000)
    config = load_config_text(text, "c.yml", env)
    threaded = ThreadedDuoApi(
        config.account,
        NO_PROXY,
        limiter=trio.CapacityLimiter(1),
        call_timeout=60,
        queue_timeout=300,
    )
    threaded._settings = _Always(client)  # type: ignore[assignment]
    return threaded


@attrs.frozen
class _Always:
    """Stands for the settings a call's duo_client is made from: always *client*."""

    given: BlockedClient

    def client(self, kind: object) -> BlockedClient:
        """The one stand-in, whatever kind of client is asked for."""
        del kind
        return self.given


async def wait_entered(client: BlockedClient, name: str) -> None:
    """Return once the call *name* runs in its thread."""
    await trio.to_thread.run_sync(client.entered[name].wait, 30)


async def test_the_call_deadline_does_not_count_the_wait_for_a_thread(
    tmp_path: Path, mock_clock: trio.testing.MockClock
) -> None:
    """A call queued behind a busy thread gets its whole timeout once it runs."""
    client = BlockedClient()
    threaded = blocked_api(tmp_path, client)
    answers: dict[str, DuoAnswer] = {}

    async def call(name: str) -> None:
        answers[name] = await threaded.get(AUTH, {"mintime": name})

    client.prepare("first")
    client.prepare("queued")
    async with trio.open_nursery() as nursery:
        nursery.start_soon(call, "first")
        await wait_entered(client, "first")
        nursery.start_soon(call, "queued")
        await trio.testing.wait_all_tasks_blocked()
        mock_clock.jump(50)
        client.release["first"].set()
        await wait_entered(client, "queued")
        # 90 s after it was asked for, 40 s after it started: within its 60 s.
        mock_clock.jump(40)
        await trio.testing.wait_all_tasks_blocked()
        client.release["queued"].set()
    assert answers["queued"].body == {"name": "queued"}


async def test_a_timeout_says_whether_duo_or_the_thread_queue_was_slow(
    tmp_path: Path, mock_clock: trio.testing.MockClock
) -> None:
    """A call Duo did not answer and one that never got a thread fail differently."""
    client = BlockedClient()
    threaded = blocked_api(tmp_path, client)
    errors: dict[str, str] = {}

    async def call(name: str) -> None:
        try:
            await threaded.get(AUTH, {"mintime": name})
        except TransientApiError as exc:
            errors[name] = str(exc)

    client.prepare("stuck")
    client.prepare("queued")
    async with trio.open_nursery() as nursery:
        nursery.start_soon(call, "stuck")
        await wait_entered(client, "stuck")
        nursery.start_soon(call, "queued")
        await trio.testing.wait_all_tasks_blocked()
        mock_clock.jump(301)
        await trio.testing.wait_all_tasks_blocked()
    client.release["stuck"].set()
    assert errors == {
        "stuck": f"GET {AUTH}: no answer within 60 s",
        "queued": f"GET {AUTH}: not sent: no worker thread became free within "
        "300 s (all 1 busy)",
    }


class HugeNumberClient(BlockedClient):
    """A stand-in for duo_client whose answer holds a 5000-digit number."""

    def api_call(
        self, method: str, path: str, params: dict[str, str]
    ) -> tuple[Any, bytes]:
        """Answer one record with an integer longer than Python converts."""
        del method, path, params
        digits = "7" * 5000
        return _Response(), (
            b'{"stat":"OK","response":{"authlogs":[{"txid":"t","n":%b}]}}'
            % digits.encode()
        )


async def test_a_number_too_long_for_python_is_forwarded_as_its_digits(
    tmp_path: Path,
) -> None:
    """An integer json cannot convert does not fail the page: it arrives as text."""
    threaded = blocked_api(tmp_path, HugeNumberClient())

    answer = await threaded.get(AUTH, {"mintime": "1"})

    assert answer.body == {"authlogs": [{"txid": "t", "n": "7" * 5000}]}


@pytest.mark.parametrize(
    ("status", "code", "child", "expected"),
    [
        (403, 40301, True, AccountRefusedError),
        (404, 40401, True, AccountRefusedError),
        (401, 40103, True, CredentialsRejectedError),
        (401, 40102, True, CredentialsRejectedError),
        (403, 40301, False, CredentialsRejectedError),
        (401, 40103, False, CredentialsRejectedError),
        (404, 40401, False, TransientApiError),
    ],
)
def test_only_a_childs_403_or_404_is_the_childs_alone(
    status: int, code: int, *, child: bool, expected: type[Exception]
) -> None:
    """A child's 403/404 is its own refusal; a 401, or the parent's 403, is fatal."""
    error = duo_client_error(
        status, "Error", json.dumps({"stat": "FAIL", "code": code}).encode()
    )
    assert type(classify(error, "GET /x", child=child)) is expected


# A child in another Duo deployment: a name no DNS knows, reached through the
# fake's CONNECT (its certificate names every child's api_hostname).
ELSEWHERE = "api-elsewhere.duo.test"


@pytest.fixture
async def cross_deployment() -> AsyncIterator[FakeDuo]:
    """The fake Duo API with one MSP child whose api_hostname is not the parent's."""
    children = make_children(1, seed=9, api_hostname=ELSEWHERE)
    server = FakeDuo(small_config(children=children))
    async with trio.open_nursery() as nursery:
        await nursery.start(server.serve)
        yield server
        nursery.cancel_scope.cancel()


async def child_answer(fake: FakeDuo, config: Config) -> DuoAnswer:
    """Discover the fake's child as the daemon does and read its auth log."""
    limiter = trio.CapacityLimiter(4)
    parent = duo_api_for(config, AccountRef(config.account.ikey), limiter)
    (child,) = await AccountDiscovery(parent)(config, StopSignal())
    return await duo_api_for(config, child, limiter).get(AUTH, window(fake))


def routed_config(fake: FakeDuo, tmp_path: Path, msp_api_host: str | None) -> Config:
    """The fake's MSP parent, through the fake as proxy, with *msp_api_host*."""
    config = account_for(fake, tmp_path)
    account = attrs.evolve(config.account, is_msp=True)
    if msp_api_host is not None:
        account = attrs.evolve(account, msp_api_host=MspApiHost(msp_api_host))
    proxy = Proxy(proxy_server="localhost", proxy_port=fake.port)
    settings = attrs.evolve(config.dls_settings, proxy=proxy)
    return attrs.evolve(config, account=account, dls_settings=settings)


async def test_the_child_route_calls_the_childs_own_host(
    cross_deployment: FakeDuo, tmp_path: Path
) -> None:
    """With msp_api_host: child, a child's calls are signed for and sent to its host."""
    fake = cross_deployment
    child = fake.children[0].account_id
    answer = await child_answer(fake, routed_config(fake, tmp_path, "child"))
    assert {(child, ELSEWHERE): 1} == fake.stats().hosts
    assert isinstance(answer.body, dict)
    # account_id is still sent: the child's records, not the parent's.
    held = fake.held_records(Endpoint.AUTH, child)
    assert [r.body for r in held] == answer.body["authlogs"]


async def test_the_parent_route_is_the_default(
    cross_deployment: FakeDuo, tmp_path: Path
) -> None:
    """By default a child's calls go to the parent's host, with account_id."""
    fake = cross_deployment
    child = fake.children[0].account_id
    answer = await child_answer(fake, routed_config(fake, tmp_path, None))
    assert {(child, "localhost"): 1} == fake.stats().hosts
    assert isinstance(answer.body, dict)
    held = fake.held_records(Endpoint.AUTH, child)
    assert [r.body for r in held] == answer.body["authlogs"]
