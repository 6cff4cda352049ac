"""Sharding: each MSP child is owned by exactly one shard, and few move.

Rules for these tests: ``trio_dls.duo.shards`` is pure, so they call it
directly, with hypothesis choosing the counts and the account ids.
"""

from __future__ import annotations

from typing import Final

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trio_dls.duo.shards import Shard, owns, parse_shard

account_ids = st.sets(
    st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", min_size=1, max_size=20),
    max_size=50,
)


# Owners of DA0000000000000000 .. DA0000000000000007 among 4 shards.
PINNED_OWNERS: Final = [2, 2, 0, 2, 2, 3, 0, 2]


def owner(account_id: str, count: int) -> int:
    """The one shard of *count* that owns *account_id*."""
    (index,) = [i for i in range(count) if owns(Shard(i, count), account_id)]
    return index


@given(count=st.integers(min_value=1, max_value=20), children=account_ids)
def test_every_child_is_owned_by_exactly_one_shard(
    count: int, children: set[str]
) -> None:
    """Whatever the count and the ids, each child has one owner, no more, no less."""
    for child in children:
        owners = [i for i in range(count) if owns(Shard(i, count), child)]
        assert len(owners) == 1


@given(children=account_ids)
def test_one_shard_owns_every_child(children: set[str]) -> None:
    """A single shard is today's behaviour: it owns everything."""
    assert all(owns(Shard(0, 1), child) for child in children)


def test_going_from_two_to_three_shards_moves_a_third_to_the_new_one() -> None:
    """Of 3000 children, about a third move, every one of them to shard 2."""
    children = [f"D{n:019d}" for n in range(3000)]
    moved = {c: owner(c, 3) for c in children if owner(c, 2) != owner(c, 3)}
    assert 0.25 <= len(moved) / len(children) <= 0.42
    assert set(moved.values()) == {2}


def test_ownership_is_the_same_in_every_process() -> None:
    """The weights are BLAKE2b, not ``hash()``: these owners never change."""
    owners = [owner(f"DA{n:016d}", 4) for n in range(8)]
    assert owners == [owner(f"DA{n:016d}", 4) for n in range(8)]
    # Pinned, so that a change of hash (which would move every child of
    # every deployment on upgrade) fails here.
    assert owners == PINNED_OWNERS


@pytest.mark.parametrize(
    ("text", "hostname", "expected"),
    [
        ("0/1", "anything", Shard(0, 1)),
        ("1/2", "host", Shard(1, 2)),
        (" 2/3 ", "host", Shard(2, 3)),
        ("auto/4", "trio-dls-3", Shard(3, 4)),
        ("auto/2", "trio-dls-0", Shard(0, 2)),
        ("auto/12", "trio-dls-11.trio-dls.default.svc.cluster.local", Shard(11, 12)),
    ],
)
def test_a_shard_parses_from_index_or_the_pods_ordinal(
    text: str, hostname: str, expected: Shard
) -> None:
    """INDEX/COUNT as written; auto takes INDEX from a StatefulSet pod's name."""
    assert expected == parse_shard(text, hostname)


@pytest.mark.parametrize(
    ("text", "hostname", "message"),
    [
        ("", "host", "expected INDEX/COUNT or auto/COUNT"),
        ("1", "host", "expected INDEX/COUNT or auto/COUNT"),
        ("a/2", "host", "expected INDEX/COUNT or auto/COUNT"),
        ("-1/2", "host", "expected INDEX/COUNT or auto/COUNT"),
        ("2/2", "host", "from 0 to 1 for 2 shards, not 2"),
        ("0/0", "host", "at least 1, not 0"),
        ("auto/2", "trio-dls", "does not end in a number"),
        ("auto/2", "trio-dls-2", "is number 2, but there are only 2 shards"),
    ],
)
def test_a_wrong_shard_says_what_is_wrong(
    text: str, hostname: str, message: str
) -> None:
    """A malformed shard, an index too high, a host without ordinal: a ValueError."""
    with pytest.raises(ValueError, match=message):
        parse_shard(text, hostname)


def test_a_shard_is_validated_when_made() -> None:
    """``Shard`` itself refuses an index outside 0..count-1 and a count below 1."""
    with pytest.raises(ValueError, match="not 3"):
        Shard(3, 3)
    with pytest.raises(ValueError, match="at least 1"):
        Shard(0, 0)
    assert str(Shard(1, 3)) == "1/3"
