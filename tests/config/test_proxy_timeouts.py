"""The proxy credentials and the timeout extensions: read, defaulted, checked.

Rules for these tests: as in ``test_config`` (whose ``BASE`` text, with its
line numbers, they edit): the environment is injected, and every broken config
is checked for its key path, its line and its message.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from tests.config.test_config import BASE, edit, problems_of
from trio_dls.config import Config, load_config_text
from trio_dls.duo.client import CALL_TIMEOUT
from trio_dls.siem.senders import CONNECT_TIMEOUT, WRITE_TIMEOUT, Timing, server_timing

if TYPE_CHECKING:
    from trio_dls.config import Environment

PASSWORD = "pr0xy-s3cret-pw"
PROXY = (
    "  checkpointing:",
    "  proxy:\n    proxy_server: proxy.corp\n    proxy_port: 3128\n"
    f"    proxy_username: dls\n    proxy_password: '{PASSWORD}'\n  checkpointing:",
)


def load(text: str, env: Environment) -> Config:
    """Load *text* as config.yml."""
    return load_config_text(text, "config.yml", env)


def test_proxy_credentials_are_read(env: Environment) -> None:
    """proxy_username and proxy_password are kept, the password as a Secret."""
    proxy = load(edit(*PROXY), env).dls_settings.proxy
    assert proxy.proxy_password is not None
    assert (proxy.proxy_username, proxy.proxy_password.reveal()) == ("dls", PASSWORD)


def test_the_proxy_password_never_shows_in_the_config_repr(env: Environment) -> None:
    """The whole config's repr masks the proxy password."""
    config = load(edit(*PROXY), env)
    assert PASSWORD not in repr(config)
    assert "proxy_password=Secret('********')" in repr(config)


def test_without_credentials_the_proxy_has_none(env: Environment) -> None:
    """Credentials are optional: a proxy without them sends none."""
    proxy = load(BASE, env).dls_settings.proxy
    assert (proxy.proxy_username, proxy.proxy_password) == ("", None)


BROKEN = {
    "username without password": (
        edit(*PROXY).replace(f"    proxy_password: '{PASSWORD}'\n", ""),
        "config.yml:7: dls_settings.proxy.proxy_password: proxy_username is set, so "
        "proxy_password is required",
    ),
    "password without username": (
        edit(*PROXY).replace("    proxy_username: dls\n", ""),
        "config.yml:7: dls_settings.proxy.proxy_username: proxy_password is set, so "
        "proxy_username is required",
    ),
    "username with a colon": (
        edit(*PROXY).replace("proxy_username: dls", "proxy_username: 'a:b'"),
        "config.yml:10: dls_settings.proxy.proxy_username: must not contain ':'",
    ),
    "credentials without a proxy": (
        edit(*PROXY)
        .replace("    proxy_server: proxy.corp\n", "")
        .replace("    proxy_port: 3128\n", ""),
        "config.yml:7: dls_settings.proxy.proxy_server: proxy credentials are set, so "
        "proxy_server is required",
    ),
    "proxy port out of range": (
        edit(*PROXY).replace("proxy_port: 3128", "proxy_port: 70000"),
        "config.yml:9: dls_settings.proxy.proxy_port: must be a port from 1 to "
        "65535, got 70000",
    ),
    "a request timeout of zero": (
        edit("timeout: 120", "timeout: 120\n    request_timeout: 0"),
        "config.yml:7: dls_settings.api.request_timeout: must be a number of "
        "seconds above 0, got 0",
    ),
    "a negative connect timeout": (
        edit("protocol: TCP", "protocol: TCP\n    connect_timeout: -1"),
        "config.yml:15: servers[0].connect_timeout: must be a number of seconds "
        "above 0, got -1",
    ),
    "a write timeout that is not a number": (
        edit("protocol: TCP", "protocol: TCP\n    write_timeout: soon"),
        "config.yml:15: servers[0].write_timeout: expected a number, got 'soon'",
    ),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_broken_proxy_and_timeout_settings(case: str, env: Environment) -> None:
    """Each mistake is reported at its key path and line, with what to do."""
    text, expected = BROKEN[case]
    problems = problems_of(text, env)
    assert expected in problems, problems
    assert not any(PASSWORD in line for line in problems)


def test_a_password_pasted_into_the_wrong_key_is_masked(env: Environment) -> None:
    """A config error never echoes the proxy password, wherever it was put."""
    text = edit(*PROXY).replace("proxy_port: 3128", f"proxy_port: '{PASSWORD}'")
    problems = problems_of(text, env)
    assert any("dls_settings.proxy.proxy_port" in line for line in problems)
    assert not any(PASSWORD in line for line in problems)


def test_timeouts_default_to_todays_values(env: Environment) -> None:
    """Left out, the timeouts are what trio-dls always used: 60, 30 and 60 s."""
    config = load(BASE, env)
    assert (config.dls_settings.api.request_timeout, CALL_TIMEOUT) == (60.0, 60.0)
    server = config.servers[0]
    assert (server.connect_timeout, server.write_timeout) == (None, None)
    timing = server_timing(Timing(), server)
    assert (timing.connect_timeout, timing.write_timeout) == (30.0, 60.0)
    assert (CONNECT_TIMEOUT, WRITE_TIMEOUT) == (30.0, 60.0)


def test_timeouts_are_read(env: Environment) -> None:
    """request_timeout, connect_timeout and write_timeout take the given seconds."""
    text = edit("timeout: 120", "timeout: 120\n    request_timeout: 90").replace(
        "protocol: TCP", "protocol: TCP\n    connect_timeout: 5\n    write_timeout: 7.5"
    )
    config = load(text, env)
    assert config.dls_settings.api.request_timeout == 90.0
    timing = server_timing(Timing(), config.servers[0])
    assert (timing.connect_timeout, timing.write_timeout) == (5.0, 7.5)
