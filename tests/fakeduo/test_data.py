"""The fake's data set: seeded, ordered, and full of hard cases (pure)."""

from __future__ import annotations

import json
from collections import Counter

from tests.fakeduo.fixtures import small_spec
from trio_dls.endpoints import Endpoint
from trio_dls.fakeduo.data import (
    TRICKY_STRINGS,
    Dataset,
    generate_live_bucket,
    generate_records,
    record_key,
)

END = 1_790_000_000.0


def test_same_seed_gives_the_same_records() -> None:
    """Two generations from one seed and end hold identical records."""
    spec = small_spec()
    for endpoint in Endpoint:
        first = generate_records(spec, "DA1", endpoint, END)
        second = generate_records(spec, "DA1", endpoint, END)
        assert [r.body for r in first] == [r.body for r in second]


def test_ids_do_not_depend_on_when_the_data_ends() -> None:
    """Moving the end time shifts timestamps but keeps every record's id."""
    spec = small_spec()
    earlier = generate_records(spec, "DA1", Endpoint.AUTH, END - 3600)
    later = generate_records(spec, "DA1", Endpoint.AUTH, END)
    assert [r.key for r in earlier] == [r.key for r in later]


def test_accounts_and_seeds_get_different_records() -> None:
    """Another account or another seed yields other ids."""
    base = {r.key for r in generate_records(small_spec(), "DA1", Endpoint.AUTH, END)}
    other_account = generate_records(small_spec(), "DA2", Endpoint.AUTH, END)
    other_seed = generate_records(small_spec(seed=4), "DA1", Endpoint.AUTH, END)
    assert not base & {r.key for r in other_account}
    assert not base & {r.key for r in other_seed}


def test_records_are_sorted_and_unique_with_their_keys() -> None:
    """Every endpoint's records are in (ts_ms, key) order with unique keys."""
    for endpoint in Endpoint:
        records = generate_records(small_spec(), "DA1", endpoint, END)
        assert sorted(records, key=lambda r: r.sort_key) == records
        assert len(records) == len({r.key for r in records})
        assert [record_key(endpoint, r.body) for r in records] == [
            r.key for r in records
        ]


def test_runs_share_a_millisecond_and_straddle_page_edges() -> None:
    """Records share milliseconds, including across the 100-record page edges."""
    records = generate_records(small_spec(), "DA1", Endpoint.AUTH, END)
    per_ms = Counter(r.ts_ms for r in records)
    assert max(per_ms.values()) >= 5
    assert records[99].ts_ms == records[100].ts_ms
    assert records[-100].ts_ms == records[-101].ts_ms


def test_admin_burst_puts_more_than_1000_events_in_one_second() -> None:
    """The administrator-log burst exceeds one v1 page inside a single second."""
    spec = small_spec(admin_burst=1005)
    records = generate_records(spec, "DA1", Endpoint.ADMINACTION, END)
    per_second = Counter(r.body["timestamp"] for r in records)
    assert max(per_second.values()) > 1000


def test_awkward_strings_appear_in_records() -> None:
    """Pipes, equals signs, backslashes, newlines, quotes and non-ASCII occur."""
    text = json.dumps(
        [r.body for r in generate_records(small_spec(), "DA1", Endpoint.AUTH, END)],
        ensure_ascii=False,
    )
    found = {s for s in TRICKY_STRINGS if json.dumps(s, ensure_ascii=False) in text}
    assert len(found) >= 5
    for needle in ("|", "=", "\\\\", "\\n", '\\"', "ö"):
        assert needle in text


def test_record_shapes_carry_duo_field_names() -> None:
    """Each endpoint's records carry the fields Duo's records carry."""
    expected = {
        Endpoint.AUTH: {"txid", "timestamp", "isotimestamp", "user", "access_device"},
        Endpoint.ADMINACTION: {"action", "description", "object", "timestamp"},
        Endpoint.TELEPHONY: {"telephony_id", "txid", "ts", "context", "credits"},
        Endpoint.ACTIVITY: {"activity_id", "ts", "action", "actor", "target", "akey"},
        Endpoint.TRUSTMONITOR: {"sekey", "surfaced_timestamp", "type", "explanations"},
    }
    for endpoint, fields in expected.items():
        body = generate_records(small_spec(), "DA1", endpoint, END)[0].body
        assert fields <= set(body)


def test_live_mode_adds_the_same_records_for_a_bucket_every_time() -> None:
    """A live bucket's records depend only on the seed and the bucket number."""
    spec = small_spec(live=True)
    first = generate_live_bucket(spec, "DA1", Endpoint.TELEPHONY, 29_833_340)
    again = generate_live_bucket(spec, "DA1", Endpoint.TELEPHONY, 29_833_340)
    assert [r.body for r in first] == [r.body for r in again]


def test_dataset_advance_appends_complete_buckets_in_order() -> None:
    """Advancing a live data set adds records after the base ones, in order."""
    spec = small_spec(live=True, live_per_bucket=3)
    dataset = Dataset(spec, ["DA1"], start=END)
    before = len(dataset.records("DA1", Endpoint.AUTH))
    dataset.advance(END + 600)
    records = dataset.records("DA1", Endpoint.AUTH)
    assert before + 3 * 9 == len(records)
    assert sorted(records, key=lambda r: r.sort_key) == list(records)
    assert records[-1].ts_ms < (END + 600) * 1000
