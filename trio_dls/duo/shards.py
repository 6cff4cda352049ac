"""Which of an MSP parent's children this process fetches, when several share them.

Pure: a ``Shard`` is an index among a count of processes, read from
``--shard INDEX/COUNT`` or ``TRIO_DLS_SHARD`` by ``parse_shard``; ``owns``
says whether a child account belongs to it.  This module knows nothing of
Duo, trio or the supervision tree, and does no I/O: the host name ``auto``
needs is handed in.

Children are split by rendezvous (highest random weight) hashing on their
``account_id``: each shard index weighs each child, and the heaviest index
owns it.  Each child is owned by exactly one shard, and changing the count
moves only the children whose heaviest index changes (going from 2 to 3
shards, about a third of them, all to the new shard), so with the checkpoint
directory on a shared volume only those continue elsewhere from their cursor.
The weights come from BLAKE2b, never ``hash()``: every process, whatever its
Python version or ``PYTHONHASHSEED``, must agree on who owns what.
"""

from __future__ import annotations

import hashlib
import re
from typing import Final

import attrs

__all__ = ["Shard", "owns", "parse_shard"]

_SHARD: Final = re.compile(r"(?P<index>auto|\d+)/(?P<count>\d+)")
# A Kubernetes StatefulSet names its pods NAME-0, NAME-1, ...; a host name may
# also carry a domain (``trio-dls-1.trio-dls.default.svc``).
_ORDINAL: Final = re.compile(r"-(?P<ordinal>\d+)$")


def _check_count(instance: Shard, attribute: attrs.Attribute[int], value: int) -> None:
    del instance, attribute
    if value < 1:
        msg = f"a shard count must be at least 1, not {value}"
        raise ValueError(msg)


@attrs.frozen
class Shard:
    """Shard *index* of *count*: the children this process fetches."""

    index: int = attrs.field()
    count: int = attrs.field(validator=_check_count)

    @index.validator
    def _check_index(self, attribute: attrs.Attribute[int], value: int) -> None:
        del attribute
        # A count below 1 is the count's own validator's to report.
        if self.count >= 1 and not 0 <= value < self.count:
            msg = (
                f"a shard index must be from 0 to {self.count - 1} "
                f"for {self.count} shards, not {value}"
            )
            raise ValueError(msg)

    def __str__(self) -> str:
        """The shard as it is written: ``INDEX/COUNT``."""
        return f"{self.index}/{self.count}"


def parse_shard(text: str, hostname: str) -> Shard:
    """Return the shard *text* names: ``INDEX/COUNT`` or ``auto/COUNT``.

    ``auto`` takes the index from the trailing ordinal of *hostname*, as a
    StatefulSet's pod ``trio-dls-3`` is shard 3.  A ValueError says what is
    wrong, in a sentence for the operator.
    """
    match = _SHARD.fullmatch(text.strip())
    if match is None:
        msg = f"{text!r} is not a shard: expected INDEX/COUNT or auto/COUNT, e.g. 0/2"
        raise ValueError(msg)
    count = int(match["count"])
    if match["index"] != "auto":
        return Shard(int(match["index"]), count)
    name = hostname.split(".", 1)[0]
    ordinal = _ORDINAL.search(name)
    if ordinal is None:
        msg = (
            f"{text}: the host name {hostname!r} does not end in a number "
            "(as a StatefulSet's pods, NAME-0, NAME-1, ... do); give INDEX/COUNT"
        )
        raise ValueError(msg)
    index = int(ordinal["ordinal"])
    if index >= count:
        msg = (
            f"{text}: the host name {hostname!r} is number {index}, "
            f"but there are only {count} shards (0 to {count - 1})"
        )
        raise ValueError(msg)
    return Shard(index, count)


def owns(shard: Shard, account_id: str) -> bool:
    """Whether the child *account_id* is *shard*'s: its heaviest index is ours."""
    return _owner(account_id, shard.count) == shard.index


def _owner(account_id: str, count: int) -> int:
    # max() keeps the first of equal weights: a tie (in 64 bits, never in
    # practice) still goes to one index only, the same in every process.
    return max(range(count), key=lambda index: _weight(account_id, index))


def _weight(account_id: str, index: int) -> int:
    digest = hashlib.blake2b(f"{account_id}\0{index}".encode(), digest_size=8)
    return int.from_bytes(digest.digest(), "big")
