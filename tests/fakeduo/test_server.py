"""The real duo_client against the fake over HTTPS: endpoints, paging, auth, MSP."""

from __future__ import annotations

import email.utils
import hashlib
import json
import time
from typing import TYPE_CHECKING, Any

import duo_client
import duo_client.client
import pytest

from tests.fakeduo.fixtures import (
    IGNORE_DUO_CLIENT_SSL_WARNING,
    admin_client,
    page_v2,
    raw_request,
    small_config,
    small_spec,
    status_and_code,
    strip_added,
    visible,
    window,
)
from trio_dls.endpoints import Endpoint
from trio_dls.fakeduo import (
    PATHS,
    FakeDuo,
    Faults,
    make_children,
    record_key,
    serve_in_thread,
)

if TYPE_CHECKING:
    from collections.abc import Iterator

pytestmark = pytest.mark.filterwarnings(IGNORE_DUO_CLIENT_SSL_WARNING)

V2_LIKE = (Endpoint.AUTH, Endpoint.TELEPHONY, Endpoint.ACTIVITY, Endpoint.TRUSTMONITOR)
CHILDREN = make_children(2, seed=3)


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeDuo]:
    """One fake MSP deployment with a small data set, served from a thread."""
    with serve_in_thread(FakeDuo(small_config(children=CHILDREN))) as served:
        yield served


@pytest.mark.parametrize("endpoint", V2_LIKE)
@pytest.mark.parametrize("sort", ["ts:asc", "ts:desc"])
def test_json_api_call_pages_every_endpoint_to_the_end(
    fake: FakeDuo, admin: duo_client.Admin, endpoint: Endpoint, sort: str
) -> None:
    """Paging with json_api_call returns exactly the records the fake holds."""
    mintime, maxtime = window()
    expected = visible(fake.held_records(endpoint), mintime, maxtime)
    if sort == "ts:desc":
        expected.reverse()
    records, calls = page_v2(admin, endpoint, mintime, maxtime, limit=50, sort=sort)
    assert expected == records
    assert -(-len(expected) // 50) == calls


def test_authentication_log_helper_pages_with_the_list_cursor(
    fake: FakeDuo, admin: duo_client.Admin
) -> None:
    """get_authentication_log(api_version=2) pages via next_offset as a list."""
    mintime, maxtime = window()
    records: list[dict[str, Any]] = []
    next_offset = None
    while True:
        response = admin.get_authentication_log(
            api_version=2,
            mintime=mintime,
            maxtime=maxtime,
            limit="100",
            sort="ts:asc",
            next_offset=next_offset,
        )
        records.extend(response["authlogs"])
        next_offset = response["metadata"]["next_offset"]
        if next_offset is None:
            break
    expected = visible(fake.held_records(Endpoint.AUTH), mintime, maxtime)
    assert expected == strip_added(records)
    assert len(records) == 230


def test_telephony_and_activity_helpers_page_with_string_cursors(
    fake: FakeDuo, admin: duo_client.Admin
) -> None:
    """get_telephony_log(api_version=2) and get_activity_logs page to the end."""
    mintime, maxtime = window()
    telephony: list[dict[str, Any]] = []
    activity: list[dict[str, Any]] = []
    offset = None
    while True:
        response = admin.get_telephony_log(
            api_version=2,
            mintime=mintime,
            maxtime=maxtime,
            limit=40,
            sort="asc",
            next_offset=offset,
        )
        telephony.extend(response["items"])
        if not (offset := response["metadata"]["next_offset"]):
            break
    offset = None
    while True:
        response = admin.get_activity_logs(
            mintime=mintime, maxtime=maxtime, limit=40, next_offset=offset
        )
        activity.extend(response["items"])
        if not (offset := response["metadata"]["next_offset"]):
            break
    expected_telephony = visible(
        fake.held_records(Endpoint.TELEPHONY), mintime, maxtime
    )
    expected_activity = visible(fake.held_records(Endpoint.ACTIVITY), mintime, maxtime)
    assert expected_telephony == strip_added(telephony)
    assert list(reversed(expected_activity)) == strip_added(activity)


def test_trust_monitor_helpers_page_by_offset(
    fake: FakeDuo, admin: duo_client.Admin
) -> None:
    """duo_client's trust monitor iterator and by-offset call see every event."""
    mintime, maxtime = window()
    expected = visible(fake.held_records(Endpoint.TRUSTMONITOR), mintime, maxtime)
    by_iterator = list(admin.get_trust_monitor_events_iterator(mintime, maxtime))
    first = admin.get_trust_monitor_events_by_offset(mintime, maxtime, limit=500)
    assert list(reversed(expected)) == by_iterator
    assert list(reversed(expected)) == first["events"]


def test_administrator_log_helper_pages_by_mintime() -> None:
    """get_administrator_log pages 2500 events 1000 at a time, by mintime."""
    fake = FakeDuo(
        small_config(dataset=small_spec(counts={Endpoint.ADMINACTION: 2500}))
    )
    with serve_in_thread(fake):
        admin = admin_client(fake)
        seen: dict[str, dict[str, Any]] = {}
        mintime, pages = 0, 0
        while True:
            page = strip_added(admin.get_administrator_log(mintime=mintime))
            pages += 1
            fresh = [r for r in page if record_key(Endpoint.ADMINACTION, r) not in seen]
            if not fresh:
                break
            seen.update((record_key(Endpoint.ADMINACTION, r), r) for r in fresh)
            mintime = page[-1]["timestamp"]
        expected = [r.body for r in fake.held_records(Endpoint.ADMINACTION)]
    assert expected == list(seen.values())
    assert pages == 4


def test_account_list_names_the_children(fake: FakeDuo) -> None:
    """POST /accounts/v1/account/list (sig v5, JSON body) lists the children."""
    accounts = duo_client.Accounts(**fake.client_kwargs())
    expected = [
        {"account_id": c.account_id, "api_hostname": "localhost", "name": c.name}
        for c in CHILDREN
    ]
    assert expected == accounts.get_child_accounts()
    assert all(len(c["account_id"]) == 20 for c in expected)


def test_account_id_selects_the_childs_own_data(
    fake: FakeDuo, admin: duo_client.Admin
) -> None:
    """account_id on an Admin API call reads that child's records, not the parent's."""
    mintime, maxtime = window()
    child = CHILDREN[1].account_id
    records, _ = page_v2(
        admin, Endpoint.AUTH, mintime, maxtime, limit=1000, extra={"account_id": child}
    )
    expected = visible(fake.held_records(Endpoint.AUTH, child), mintime, maxtime)
    parent = visible(fake.held_records(Endpoint.AUTH), mintime, maxtime)
    assert expected == records
    assert not {r["txid"] for r in records} & {r["txid"] for r in parent}


def test_account_admin_on_the_childs_host_reads_the_child(fake: FakeDuo) -> None:
    """duo_client's AccountAdmin (child host plus account_id) reads the child."""
    child = CHILDREN[0].account_id
    account_admin = duo_client.admin.AccountAdmin(
        child, child_api_host="localhost", **fake.client_kwargs()
    )
    mintime, maxtime = window()
    response = account_admin.get_telephony_log(
        api_version=2, mintime=mintime, maxtime=maxtime, limit=1000, sort="asc"
    )
    expected = visible(fake.held_records(Endpoint.TELEPHONY, child), mintime, maxtime)
    assert expected == strip_added(response["items"])
    assert fake.stats().requests[child, Endpoint.TELEPHONY] == 1


def test_unknown_account_id_is_a_400(admin: duo_client.Admin) -> None:
    """An account_id that is not a child is refused with Duo's 400 / 40002."""
    mintime, maxtime = window()
    params = {
        "mintime": str(mintime),
        "maxtime": str(maxtime),
        "account_id": "DA" + "X" * 18,
    }
    with pytest.raises(RuntimeError) as caught:
        admin.json_api_call("GET", PATHS[Endpoint.AUTH], params)
    assert (caught.value.status, caught.value.data["code"]) == (400, 40002)  # type: ignore[attr-defined]


def test_account_list_is_forbidden_without_children() -> None:
    """A plain Admin API integration may not list child accounts."""
    plain = FakeDuo(small_config())
    with serve_in_thread(plain), pytest.raises(RuntimeError) as caught:
        duo_client.Accounts(**plain.client_kwargs()).get_child_accounts()
    assert status_and_code(caught.value)[0] == 403


def test_wrong_skey_is_401_40103(fake: FakeDuo) -> None:
    """A client with the wrong secret key gets Duo's invalid-signature 401."""
    client = admin_client(fake, skey="not-the-secret")
    with pytest.raises(RuntimeError) as caught:
        client.get_administrator_log()
    error = caught.value
    assert (error.status, error.data["code"]) == (401, 40103)  # type: ignore[attr-defined]


def test_wrong_ikey_is_401_invalid_integration_key(fake: FakeDuo) -> None:
    """A client with an unknown integration key gets Duo's invalid-ikey 401."""
    client = admin_client(fake, ikey="DINOSUCHINTEGRATION0")
    with pytest.raises(RuntimeError) as caught:
        client.get_administrator_log()
    error = caught.value
    assert (error.status, error.data["code"]) == (401, 40102)  # type: ignore[attr-defined]


def test_tampered_query_is_401_40103(fake: FakeDuo) -> None:
    """A request whose query differs from the signed one is refused."""
    date = email.utils.formatdate()
    path = PATHS[Endpoint.ADMINACTION]
    auth = duo_client.client.sign(
        fake.ikey,
        fake.skey,
        "GET",
        fake.host,
        path,
        date,
        5,
        duo_client.client.normalize_params({"mintime": "100"}),
        body="",
    )
    status, body = raw_request(
        fake, "GET", f"{path}?mintime=0", {"Authorization": auth, "Date": date}
    )
    assert (status, json.loads(body)["code"]) == (401, 40103)


@pytest.mark.parametrize(
    ("sig_version", "digestmod"),
    [(2, hashlib.sha1), (2, hashlib.sha512), (4, hashlib.sha512)],
)
def test_older_signature_versions_are_accepted(
    fake: FakeDuo, sig_version: int, digestmod: object
) -> None:
    """Signature v2 (SHA-1 and SHA-512) and v4 requests are served."""
    client = admin_client(fake, sig_version=sig_version, digestmod=digestmod)
    assert len(client.get_administrator_log()) == len(
        fake.held_records(Endpoint.ADMINACTION)
    )


def test_stale_date_retried_after_429_is_accepted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A 429 retried with its Date for over a minute is finally accepted."""
    elapsed = [0.0]
    start = time.time()

    def clock() -> float:
        return start + elapsed[0]

    def sleep(seconds: float) -> None:
        elapsed[0] += seconds

    monkeypatch.setattr(duo_client.client, "sleep", sleep)
    fake = FakeDuo(
        small_config(faults=Faults(rate_limit=1)), clock=clock, wall_clock=clock
    )
    with serve_in_thread(fake):
        client = duo_client.Admin(**fake.client_kwargs())
        client.get_administrator_log()
        records = client.get_administrator_log()
    stats = fake.stats()
    assert len(records) == 60
    assert elapsed[0] > 60
    assert stats.rate_limited[fake.account_id, Endpoint.ADMINACTION] >= 5


def test_date_far_from_the_wall_clock_is_refused() -> None:
    """A Date ten minutes off the server's wall clock is refused with a 401."""
    fake = FakeDuo(small_config(), wall_clock=lambda: time.time() + 600)
    with serve_in_thread(fake), pytest.raises(RuntimeError) as caught:
        admin_client(fake).get_administrator_log()
    assert (caught.value.status, caught.value.data["code"]) == (401, 40105)  # type: ignore[attr-defined]


def test_plain_http_through_a_connect_proxy_uses_absolute_targets() -> None:
    """Over plain HTTP through CONNECT, duo_client's absolute-form targets work."""
    fake = FakeDuo(small_config(tls=False))
    with serve_in_thread(fake):
        client = admin_client(fake)
        client.set_proxy("127.0.0.1", fake.port)
        records = client.get_administrator_log()
    assert len(records) == 60


def test_https_through_a_connect_proxy_tunnels_tls(fake: FakeDuo) -> None:
    """Over HTTPS, the fake accepts CONNECT and starts TLS inside the tunnel."""
    client = admin_client(fake)
    client.set_proxy("127.0.0.1", fake.port)
    assert len(client.get_administrator_log()) == len(
        fake.held_records(Endpoint.ADMINACTION)
    )
