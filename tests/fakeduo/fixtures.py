"""Helpers shared by the fake Duo API tests: small data sets, clients, pagers.

Rules every fakeduo test follows: loopback only (127.0.0.1 / localhost), port
0, no real-time sleeps (virtual time via ``autojump_clock`` or an injected
clock; a "slow" test uses a tiny client timeout against a long server delay),
small data sets except where a >1000-event burst is the point.
"""

from __future__ import annotations

import http.client
import ssl
import time
from typing import TYPE_CHECKING, Any

import duo_client

from trio_dls.endpoints import Endpoint
from trio_dls.fakeduo import PATHS, DatasetSpec, FakeDuo, FakeDuoConfig, FakeRecord

if TYPE_CHECKING:
    from collections.abc import Mapping

# duo_client builds its TLS context with the deprecated ssl.PROTOCOL_TLS.
IGNORE_DUO_CLIENT_SSL_WARNING = (
    "ignore:ssl.PROTOCOL_TLS is deprecated:DeprecationWarning"
)

SMALL_COUNTS = {
    Endpoint.AUTH: 230,
    Endpoint.ADMINACTION: 60,
    Endpoint.TELEPHONY: 120,
    Endpoint.ACTIVITY: 110,
    Endpoint.TRUSTMONITOR: 130,
}
DAY_MS = 86_400_000

RECORDS_UNDER = {
    Endpoint.AUTH: "authlogs",
    Endpoint.TELEPHONY: "items",
    Endpoint.ACTIVITY: "items",
    Endpoint.TRUSTMONITOR: "events",
}


def small_spec(**changes: Any) -> DatasetSpec:
    """Return a small data set spec (one day, no admin burst) with changes."""
    fields: dict[str, Any] = {
        "seed": 3,
        "counts": SMALL_COUNTS,
        "span": 86_400.0,
        "admin_burst": 0,
    }
    fields.update(changes)
    return DatasetSpec(**fields)


def small_config(**changes: Any) -> FakeDuoConfig:
    """Return a config holding a small data set, with changes."""
    changes.setdefault("dataset", small_spec())
    return FakeDuoConfig(**changes)


def admin_client(fake: FakeDuo, **kwargs: Any) -> duo_client.Admin:
    """Return a real duo_client Admin pointed at ``fake``, never sleep-retrying."""
    client = duo_client.Admin(**{**fake.client_kwargs(), **kwargs})
    client._MAX_BACKOFF_WAIT_SECS = 0
    return client


def window(now: float | None = None) -> tuple[int, int]:
    """Return a (mintime, maxtime) in ms covering the small data sets."""
    now_ms = int((time.time() if now is None else now) * 1000)
    return now_ms - 2 * DAY_MS, now_ms - 120_000


def visible(
    records: list[FakeRecord], mintime: int, maxtime: int
) -> list[Mapping[str, Any]]:
    """Return the bodies of ``records`` within [mintime, maxtime] ms."""
    return [r.body for r in records if mintime <= r.ts_ms <= maxtime]


def strip_added(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Drop the fields duo_client's log helpers add to each record."""
    return [
        {k: v for k, v in r.items() if k not in {"eventtype", "host"}} for r in records
    ]


def page_v2(
    client: duo_client.Admin,
    endpoint: Endpoint,
    mintime: int,
    maxtime: int,
    *,
    limit: int,
    sort: str = "ts:asc",
    extra: Mapping[str, str] | None = None,
) -> tuple[list[dict[str, Any]], int]:
    """Page a v2 or trust monitor endpoint to the end; return records and calls."""
    params: dict[str, str] = {
        "mintime": str(mintime),
        "maxtime": str(maxtime),
        "limit": str(limit),
        "sort": sort,
        **(extra or {}),
    }
    records: list[dict[str, Any]] = []
    calls = 0
    while True:
        response = client.json_api_call("GET", PATHS[endpoint], dict(params))
        calls += 1
        records.extend(response[RECORDS_UNDER[endpoint]])
        next_offset = response["metadata"].get("next_offset")
        if not next_offset:
            return records, calls
        if endpoint is Endpoint.AUTH:
            params["next_offset"] = ",".join(next_offset)
        elif endpoint is Endpoint.TRUSTMONITOR:
            params["offset"] = next_offset
        else:
            params["next_offset"] = next_offset


def status_and_code(error: BaseException) -> tuple[int, object]:
    """Return duo_client's error status and Duo code (or the raw body text)."""
    status: int = getattr(error, "status", 0)
    data = getattr(error, "data", None)
    return status, data["code"] if isinstance(data, dict) else data


def raw_request(
    fake: FakeDuo,
    method: str,
    target: str,
    headers: Mapping[str, str],
    body: bytes | None = None,
) -> tuple[int, bytes]:
    """Send one hand-made request to ``fake``; return status and body."""
    connection: http.client.HTTPConnection
    if fake.config.tls:
        context = ssl.create_default_context(cafile=fake.ca_certs)
        connection = http.client.HTTPSConnection(
            fake.host, fake.port, context=context, timeout=10
        )
    else:
        connection = http.client.HTTPConnection(fake.host, fake.port, timeout=10)
    try:
        connection.request(method, target, body, dict(headers))
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()
