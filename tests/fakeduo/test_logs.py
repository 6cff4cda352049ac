"""The five log endpoints' contracts, checked on the pure query function."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.fakeduo.fixtures import RECORDS_UNDER, small_spec
from trio_dls.endpoints import Endpoint
from trio_dls.fakeduo.data import FakeRecord, generate_records, record_key
from trio_dls.fakeduo.envelope import DuoError
from trio_dls.fakeduo.logs import answer_log_query

NOW = 1_790_000_000.0
NOW_MS = int(NOW * 1000)
DAY_MS = 86_400_000
V2_LIKE = (Endpoint.AUTH, Endpoint.TELEPHONY, Endpoint.ACTIVITY, Endpoint.TRUSTMONITOR)
RECORDS = {
    endpoint: generate_records(small_spec(admin_burst=1005), "DA1", endpoint, NOW - 600)
    for endpoint in Endpoint
}


def _params(**values: str | list[str]) -> dict[str, list[str]]:
    return {k: v if isinstance(v, list) else [v] for k, v in values.items()}


def _ask(endpoint: Endpoint, **params: str | list[str]) -> Any:
    return answer_log_query(endpoint, _params(**params), RECORDS[endpoint], NOW)


def _page_all(endpoint: Endpoint, limit: int, sort: str) -> list[str]:
    params: dict[str, Any] = {
        "mintime": str(NOW_MS - 2 * DAY_MS),
        "maxtime": str(NOW_MS),
        "limit": str(limit),
        "sort": sort,
    }
    keys: list[str] = []
    while True:
        answer = _ask(endpoint, **params)
        assert not isinstance(answer, DuoError)
        keys.extend(record_key(endpoint, r) for r in answer[RECORDS_UNDER[endpoint]])
        next_offset = answer["metadata"].get("next_offset")
        if next_offset is None:
            return keys
        if endpoint is Endpoint.TRUSTMONITOR:
            params["offset"] = next_offset
        elif endpoint is Endpoint.AUTH:
            params["next_offset"] = list(next_offset)
        else:
            params["next_offset"] = next_offset


@settings(max_examples=25, deadline=None)
@given(
    st.sampled_from(V2_LIKE),
    st.integers(min_value=1, max_value=60),
    st.sampled_from(["ts:asc", "ts:desc"]),
)
def test_paging_delivers_every_record_once_in_order(
    endpoint: Endpoint, limit: int, sort: str
) -> None:
    """Whatever the page size and order, paging yields each record once, in order."""
    expected = [r.key for r in RECORDS[endpoint]]
    if sort == "ts:desc":
        expected.reverse()
    assert expected == _page_all(endpoint, limit, sort)


def test_default_sort_is_descending_and_default_limit_100() -> None:
    """Without sort and limit, a page is the 100 newest records, newest first."""
    answer = _ask(
        Endpoint.TELEPHONY, mintime=str(NOW_MS - 2 * DAY_MS), maxtime=str(NOW_MS)
    )
    expected = [r.body for r in reversed(RECORDS[Endpoint.TELEPHONY][-100:])]
    assert expected == answer["items"]


def test_auth_cursor_is_a_list_and_accepts_a_comma_string() -> None:
    """Auth's next_offset is [ms, txid]; sent back as "ms,txid" it continues."""
    first = _ask(
        Endpoint.AUTH, mintime=str(NOW_MS - 2 * DAY_MS), maxtime=str(NOW_MS), limit="10"
    )
    ms, txid = first["metadata"]["next_offset"]
    assert [str(first["authlogs"][-1]["timestamp"]), txid] == [
        ms[:10],
        first["authlogs"][-1]["txid"],
    ]
    by_string = _ask(
        Endpoint.AUTH,
        mintime=str(NOW_MS - 2 * DAY_MS),
        maxtime=str(NOW_MS),
        limit="10",
        next_offset=f"{ms},{txid}",
    )
    by_list = _ask(
        Endpoint.AUTH,
        mintime=str(NOW_MS - 2 * DAY_MS),
        maxtime=str(NOW_MS),
        limit="10",
        next_offset=[ms, txid],
    )
    assert by_string == by_list


def test_last_page_has_null_or_no_next_offset() -> None:
    """The last page's next_offset is null (v2) or absent (trust monitor)."""
    window = {
        "mintime": str(NOW_MS - 2 * DAY_MS),
        "maxtime": str(NOW_MS),
        "limit": "1000",
    }
    assert _ask(Endpoint.AUTH, **window)["metadata"]["next_offset"] is None
    assert _ask(Endpoint.ACTIVITY, **window)["metadata"]["next_offset"] is None
    tm = _ask(Endpoint.TRUSTMONITOR, **{**window, "limit": "500"})
    assert "next_offset" not in tm["metadata"]


def test_limits_above_the_maximum_are_refused() -> None:
    """Limit may be at most 1000, or 500 on trust monitor."""
    window = {"mintime": str(NOW_MS - DAY_MS), "maxtime": str(NOW_MS)}
    assert DuoError(400, 40002, "Invalid request parameters", "limit") == _ask(
        Endpoint.AUTH, **window, limit="1001"
    )
    assert DuoError(400, 40002, "Invalid request parameters", "limit") == _ask(
        Endpoint.TRUSTMONITOR, **window, limit="501"
    )
    assert not isinstance(_ask(Endpoint.TRUSTMONITOR, **window, limit="500"), DuoError)


def test_mintime_and_maxtime_are_required() -> None:
    """v2 and trust monitor queries without mintime or maxtime get a 400."""
    for endpoint in V2_LIKE:
        answer = _ask(endpoint, mintime=str(NOW_MS - DAY_MS))
        assert isinstance(answer, DuoError)
        assert (answer.status, answer.detail) == (400, "maxtime")


def test_maxtime_not_after_mintime_is_a_400() -> None:
    """Maxtime equal to mintime is refused."""
    answer = _ask(
        Endpoint.AUTH, mintime=str(NOW_MS - DAY_MS), maxtime=str(NOW_MS - DAY_MS)
    )
    assert DuoError(400, 40002, "Invalid request parameters", "maxtime") == answer


def test_window_older_than_180_days_is_a_400() -> None:
    """A mintime 181 days back is refused; 179 days back is fine."""
    old = _ask(
        Endpoint.ACTIVITY, mintime=str(NOW_MS - 181 * DAY_MS), maxtime=str(NOW_MS)
    )
    fine = _ask(
        Endpoint.ACTIVITY, mintime=str(NOW_MS - 179 * DAY_MS), maxtime=str(NOW_MS)
    )
    assert DuoError(400, 40002, "Invalid request parameters", "mintime") == old
    assert not isinstance(fine, DuoError)


def test_records_younger_than_two_minutes_are_not_returned() -> None:
    """A record 119 s old is withheld; one 121 s old is returned."""
    young = FakeRecord(NOW_MS - 119_000, "young", {"telephony_id": "young"})
    old = FakeRecord(NOW_MS - 121_000, "old", {"telephony_id": "old"})
    answer = answer_log_query(
        Endpoint.TELEPHONY,
        _params(mintime=str(NOW_MS - DAY_MS), maxtime=str(NOW_MS)),
        [old, young],
        NOW,
    )
    assert isinstance(answer, dict)
    assert answer["items"] == [{"telephony_id": "old"}]


def test_admin_log_pages_are_the_1000_earliest_from_mintime_in_seconds() -> None:
    """The administrator log returns at most 1000 events with timestamp >= mintime."""
    records = RECORDS[Endpoint.ADMINACTION]
    mintime = records[10].body["timestamp"]
    answer = _ask(Endpoint.ADMINACTION, mintime=str(mintime))
    expected = [r.body for r in records if r.body["timestamp"] >= mintime][:1000]
    assert expected == answer


def test_admin_burst_second_repeats_the_same_page() -> None:
    """Asking again from a burst second returns the same first 1000 events."""
    records = RECORDS[Endpoint.ADMINACTION]
    burst = max(
        {r.body["timestamp"] for r in records},
        key=lambda s: sum(1 for r in records if r.body["timestamp"] == s),
    )
    first = _ask(Endpoint.ADMINACTION, mintime=str(burst))
    again = _ask(Endpoint.ADMINACTION, mintime=str(burst))
    assert len(first) == 1000
    assert {burst} == {r["timestamp"] for r in first}
    assert first == again
