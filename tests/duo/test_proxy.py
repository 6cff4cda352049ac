"""The Duo client through a real HTTP proxy (tinyproxy), with and without auth.

Rules for these tests: the fake Duo API serves HTTPS in the test's trio loop
on loopback; tinyproxy runs as its own process on loopback, tunnelling only
to the fake's port (``tests.tinyproxy_fixtures``); calls go through the real
duo_client in worker threads (``ThreadedDuoApi``), on the real clock, each
bounded by its call timeout.  What tinyproxy logged shows that the call
really went through it.  Without tinyproxy they skip, except in CI.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import pytest
import trio

from tests.duo.test_client import AUTH, account_for, api, window
from tests.fakeduo.fixtures import IGNORE_DUO_CLIENT_SSL_WARNING, small_config
from tests.tinyproxy_fixtures import (
    Tinyproxy,
    free_port,
    require_tinyproxy,
    running_tinyproxy,
)
from trio_dls.config import Proxy, Secret
from trio_dls.duo.client import TransientApiError
from trio_dls.duo.proxy import (
    ProxyCredentialsRejectedError,
    proxy_secrets,
    tunnel_headers,
)
from trio_dls.endpoints import Endpoint
from trio_dls.fakeduo import FakeDuo, make_children
from trio_dls.observe.logsetup import RedactingFormatter

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator
    from pathlib import Path

pytestmark = pytest.mark.filterwarnings(IGNORE_DUO_CLIENT_SSL_WARNING)

USER = "dls"
PASSWORD = "pr0xy-s3cret-pw"


@pytest.fixture
def tinyproxy() -> str:
    """Tinyproxy's path (skips or, in CI, fails without it)."""
    return require_tinyproxy()


@pytest.fixture
async def fake() -> AsyncIterator[FakeDuo]:
    """The fake Duo API with two MSP children, serving in the test's loop."""
    server = FakeDuo(small_config(children=make_children(2, seed=9)))
    async with trio.open_nursery() as nursery:
        await nursery.start(server.serve)
        yield server
        nursery.cancel_scope.cancel()


@pytest.fixture
def open_proxy(tinyproxy: str, fake: FakeDuo, tmp_path: Path) -> Iterator[Tinyproxy]:
    """Tinyproxy without authentication, tunnelling to the fake's port only."""
    with running_tinyproxy(tinyproxy, tmp_path, connect_port=fake.port) as running:
        yield running


@pytest.fixture
def auth_proxy(tinyproxy: str, fake: FakeDuo, tmp_path: Path) -> Iterator[Tinyproxy]:
    """Tinyproxy that wants ``USER``/``PASSWORD`` by HTTP Basic."""
    with running_tinyproxy(
        tinyproxy, tmp_path, connect_port=fake.port, basic_auth=(USER, PASSWORD)
    ) as running:
        yield running


def settings(
    proxy: Tinyproxy | int, user: str = "", password: str | None = None
) -> Proxy:
    """``dls_settings.proxy`` for *proxy* (or a bare port), with credentials."""
    port = proxy if isinstance(proxy, int) else proxy.port
    return Proxy(
        proxy_server="127.0.0.1",
        proxy_port=port,
        proxy_username=user,
        proxy_password=None if password is None else Secret(password),
    )


async def test_calls_go_through_tinyproxy(
    fake: FakeDuo, open_proxy: Tinyproxy, tmp_path: Path
) -> None:
    """A log call tunnels through tinyproxy: its log holds the CONNECT to Duo."""
    config = account_for(fake, tmp_path)
    answer = await api(config.account, settings(open_proxy)).get(AUTH, window(fake))
    assert isinstance(answer.body, dict)
    expected = [r.body["txid"] for r in fake.held_records(Endpoint.AUTH)]
    assert expected == [r["txid"] for r in answer.body["authlogs"]]
    target = f"localhost:{fake.port}"
    assert [target] == open_proxy.wait_for_connect(target)


async def test_the_msp_account_list_goes_through_the_proxy(
    fake: FakeDuo, open_proxy: Tinyproxy, tmp_path: Path
) -> None:
    """The Accounts API's child list (discovery's call) tunnels through tinyproxy."""
    config = account_for(fake, tmp_path)
    children = await api(config.account, settings(open_proxy)).list_child_accounts()
    assert [c.account_id for c in fake.children] == [c["account_id"] for c in children]
    target = f"localhost:{fake.port}"
    assert [target] == open_proxy.wait_for_connect(target)


async def test_proxy_credentials_are_sent_on_the_connect(
    fake: FakeDuo, auth_proxy: Tinyproxy, tmp_path: Path
) -> None:
    """With proxy_username and proxy_password, tinyproxy's BasicAuth lets calls by."""
    config = account_for(fake, tmp_path)
    proxy = settings(auth_proxy, USER, PASSWORD)
    answer = await api(config.account, proxy).get(AUTH, window(fake))
    assert isinstance(answer.body, dict)
    assert len(fake.held_records(Endpoint.AUTH)) == len(answer.body["authlogs"])
    target = f"localhost:{fake.port}"
    assert [target] == auth_proxy.wait_for_connect(target)


async def test_wrong_proxy_credentials_are_fatal_and_name_the_proxy(
    fake: FakeDuo, auth_proxy: Tinyproxy, tmp_path: Path
) -> None:
    """A wrong password stops with one clear error naming the proxy, no secret."""
    config = account_for(fake, tmp_path)
    wrong = "not-" + PASSWORD
    with pytest.raises(ProxyCredentialsRejectedError) as caught:
        await api(config.account, settings(auth_proxy, USER, wrong)).get(
            AUTH, window(fake)
        )
    message = str(caught.value)
    # tinyproxy answers wrong credentials with 401, missing ones with 407.
    expected = f"proxy 127.0.0.1:{auth_proxy.port} refused the credentials (401)"
    assert expected in message
    assert wrong not in message
    assert fake.skey not in message
    assert fake.stats().requests == {}


async def test_missing_proxy_credentials_say_the_proxy_wants_them(
    fake: FakeDuo, auth_proxy: Tinyproxy, tmp_path: Path
) -> None:
    """A proxy that requires authentication, given none, answers 407: said so."""
    config = account_for(fake, tmp_path)
    with pytest.raises(ProxyCredentialsRejectedError) as caught:
        await api(config.account, settings(auth_proxy)).get(AUTH, window(fake))
    message = str(caught.value)
    assert f"proxy 127.0.0.1:{auth_proxy.port} refused the credentials (407)" in (
        message
    )
    assert "set dls_settings.proxy.proxy_username and proxy_password" in message


async def test_a_port_the_proxy_does_not_allow_is_a_transient_error(
    fake: FakeDuo, tinyproxy: str, tmp_path: Path
) -> None:
    """A proxy refusing the tunnel (ConnectPort) gives a retried error naming it."""
    config = account_for(fake, tmp_path)
    with (
        running_tinyproxy(
            tinyproxy, tmp_path, connect_port=fake.port + 1 if fake.port < 65535 else 1
        ) as proxy,
        pytest.raises(TransientApiError) as caught,
    ):
        await api(config.account, settings(proxy)).get(AUTH, window(fake))
    assert f"proxy 127.0.0.1:{proxy.port} refused the tunnel to Duo (HTTP 403" in str(
        caught.value
    )


async def test_no_proxy_listening_is_a_transient_error_naming_it(
    fake: FakeDuo, tmp_path: Path
) -> None:
    """Nothing at the proxy's address: a retried error naming it, and no secret."""
    config = account_for(fake, tmp_path)
    port = free_port()
    with pytest.raises(TransientApiError) as caught:
        await api(config.account, settings(port, USER, PASSWORD)).get(
            AUTH, window(fake)
        )
    message = str(caught.value)
    assert f"cannot connect to the proxy 127.0.0.1:{port}: connection refused" in (
        message
    )
    assert PASSWORD not in message
    assert fake.skey not in message


def test_the_proxy_password_is_masked_in_reprs() -> None:
    """The password never shows in the settings' repr or str."""
    proxy = settings(3128, USER, PASSWORD)
    assert PASSWORD not in repr(proxy)
    assert PASSWORD not in str(proxy)
    assert "proxy_password=Secret('********')" in repr(proxy)


def test_the_log_masks_the_password_and_its_basic_token() -> None:
    """The daemon's log formatter hides the password and its base64 form."""
    proxy = settings(3128, USER, PASSWORD)
    [header] = (tunnel_headers(proxy) or {}).values()
    formatter = RedactingFormatter(proxy_secrets(proxy))
    record = logging.LogRecord(
        "trio_dls", logging.ERROR, __file__, 1, "%s %s", (PASSWORD, header), None
    )
    text = formatter.format(record)
    assert "Basic ********" in text
    assert PASSWORD not in text
    assert header.removeprefix("Basic ") not in text
