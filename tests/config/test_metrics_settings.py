"""``dls_settings.metrics``: the metrics endpoint's address and health threshold.

Rules for these tests: config text goes through the real loader, as in
``test_config``; problems are read as the operator reads them, with their
key paths.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from tests.config.test_config import BASE, edit, load, problems_of
from trio_dls.config import Config
from trio_dls.config.model import PositiveSeconds, split_listen_address

if TYPE_CHECKING:
    from trio_dls.config import Environment


def with_metrics(block: str) -> str:
    """BASE with *block* as its ``dls_settings.metrics``."""
    return edit("dls_settings:\n", f"dls_settings:\n  metrics: {block}\n")


def test_metrics_are_off_by_default(env: Environment) -> None:
    """Without the key, nothing listens and the threshold is derived."""
    config = load(BASE, env)

    assert isinstance(config, Config)
    assert (
        config.dls_settings.metrics.listen,
        config.dls_settings.metrics.stall_after,
    ) == ("", None)


@pytest.mark.parametrize(
    ("listen", "expected"),
    [
        ("127.0.0.1:9464", ("127.0.0.1", 9464)),
        ("'[::1]:9464'", ("::1", 9464)),
        ("'[::]:9464'", ("::", 9464)),
        ("localhost:9464", ("localhost", 9464)),
        ("':9464'", (None, 9464)),
    ],
)
def test_listen_takes_host_and_port(
    env: Environment, listen: str, expected: tuple[str | None, int]
) -> None:
    """IPv4, IPv6 in brackets, a name, or no host (every interface)."""
    config = load(with_metrics(f"{{listen: {listen}, stall_after: 900}}"), env)

    assert isinstance(config, Config)
    metrics = config.dls_settings.metrics
    assert expected == split_listen_address(metrics.listen)
    assert metrics.stall_after == PositiveSeconds(900)


@pytest.mark.parametrize(
    ("listen", "detail"),
    [
        ("'9464'", "expected HOST:PORT (a port from 1 to 65535), got '9464'"),
        ("'host:0'", "expected HOST:PORT (a port from 1 to 65535), got 'host:0'"),
        ("'host:70000'", "expected HOST:PORT (a port from 1 to 65535), got"),
        ("'::1:9464'", "write an IPv6 address in brackets: [::1]:9464"),
        ("'[]:9464'", "expected an IPv6 address in the brackets"),
    ],
)
def test_a_bad_listen_address_is_named_with_its_key_path(
    env: Environment, listen: str, detail: str
) -> None:
    """Each mistake is reported at dls_settings.metrics.listen."""
    problems = problems_of(with_metrics(f"{{listen: {listen}}}"), env)

    assert len(problems) == 1
    assert "dls_settings.metrics.listen: " in problems[0]
    assert detail in problems[0]


def test_a_threshold_must_be_positive(env: Environment) -> None:
    """stall_after is a number of seconds above 0."""
    problems = problems_of(with_metrics("{stall_after: 0}"), env)

    assert [p.split(": ", 1)[1].split(", got")[0] for p in problems] == [
        "dls_settings.metrics.stall_after: must be a number of seconds above 0"
    ]
