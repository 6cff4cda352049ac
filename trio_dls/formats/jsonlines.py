r"""Records as JSON, byte for byte as duo_log_sync writes them.

Theory of operation: duo_log_sync sends ``json.dumps(log).encode()`` followed
by a newline. This module produces the first part only; the newline (or an
RFC 6587 octet count) is framing, and belongs to ``trio_dls.framing``.

``json.dumps`` keeps its defaults on purpose (``ensure_ascii=True``, the
``", "`` and ``": "`` separators, key order as received): a SIEM rule or a
de-duplication hash written against duo_log_sync's output keeps matching.
With ``ensure_ascii`` every non-ASCII character and every control character,
newlines included, is written as a ``\\u`` or backslash escape, so a message
never contains a raw newline.

The record is the already-enriched one (``eventtype``/``host`` from the Duo
client helpers, ``child_account_id`` for an MSP child); it is only read.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from trio_dls.formats.eventtime import Record


def json_message(record: Record) -> bytes:
    """Return ``record`` as one line of JSON, without the line ending."""
    return json.dumps(record).encode("ascii")
