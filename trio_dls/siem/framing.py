r"""Framing: where one message ends, on a stream or in a datagram.

Theory of operation: a formatted message (``trio_dls.siem.formats``) is bytes with
no framing. On TCP and TLS a receiver must find where each message ends:

- ``NEWLINE`` (duo_log_sync's only framing, the default): the message and
  ``\n``. This works because no message contains a raw LF: JSON escapes it,
  CEF escapes it, and the headers are checked. A message that did contain one
  would be split in two at the receiver, so it is refused with ValueError, a
  programming error, rather than sent.
- ``OCTET_COUNTING`` (RFC 6587, section 3.4.1): ``<length> <message>``, the
  length in octets and in decimal, which any byte sequence survives.

On UDP every message is one datagram (RFC 5426), with no framing, and a
datagram has a size limit. A message above the configured maximum is never
lost in silence: the policy either truncates it, on a UTF-8 character
boundary, with a visible ``...[truncated N bytes]`` marker inside the limit,
or drops it. Either way ``frame_datagram`` says what happened; the sender
tells its observer, whose log says so and whose ``trio_dls.observe.Counters``
keeps each UDP server's ``DatagramCounters``.

This module does no I/O and no logging; it only computes bytes and outcomes.
"""

from __future__ import annotations

import enum

import attrs


class Framing(enum.StrEnum):
    """How messages are delimited on a TCP or TLS stream."""

    NEWLINE = "newline"
    OCTET_COUNTING = "octet_counting"


class OversizePolicy(enum.StrEnum):
    """What happens to a message too large for one UDP datagram."""

    TRUNCATE = "truncate"
    DROP = "drop"


#: The default largest UDP datagram, in bytes: 2048, the size RFC 5426 (3.2)
#: says every syslog receiver SHOULD accept, so a default sender never exceeds
#: what a conforming receiver takes. It is above the unfragmented 1472 of a
#: 1500-byte Ethernet MTU, a deliberate trade: a typical Duo auth record in
#: JSON is 1-2 kB, and a lower default would cut many of them on the local
#: networks where syslog over UDP is used. Raise it for receivers that take
#: more (rsyslog's default maxMessageSize is 8k), lower it where fragments are
#: dropped.
DEFAULT_UDP_MAX_SIZE = 2048
#: The smallest maximum accepted: RFC 5426 requires every receiver to take 480
#: bytes, and a smaller limit could not hold the truncation marker and a
#: useful part of a message.
MIN_UDP_MAX_SIZE = 480
#: The default policy for oversize datagrams: a truncated message still
#: reaches the SIEM, where the marker shows what was lost (its header, time
#: and first fields survive); a dropped one is visible only in trio-dls's log.
DEFAULT_OVERSIZE_POLICY = OversizePolicy.TRUNCATE


class DatagramOutcome(enum.StrEnum):
    """What ``frame_datagram`` did with a message."""

    WHOLE = "whole"
    TRUNCATED = "truncated"
    DROPPED = "dropped"


@attrs.frozen
class Datagram:
    """The datagram to send (None when dropped) and what happened to get it."""

    payload: bytes | None
    outcome: DatagramOutcome
    #: Size of the message before any policy applied.
    message_size: int
    #: How many bytes of the message do not reach the receiver.
    lost_bytes: int = 0


@attrs.define
class DatagramCounters:
    """Running totals of what ``frame_datagram`` decided for one UDP server.

    ``trio_dls.observe.Counters`` keeps one per server from the senders'
    events; ``count`` adds one datagram's outcome directly.
    """

    whole: int = 0
    truncated: int = 0
    dropped: int = 0
    lost_bytes: int = 0

    def count(self, datagram: Datagram) -> None:
        """Add one datagram's outcome to the totals."""
        match datagram.outcome:
            case DatagramOutcome.WHOLE:
                self.whole += 1
            case DatagramOutcome.TRUNCATED:
                self.truncated += 1
            case DatagramOutcome.DROPPED:
                self.dropped += 1
        self.lost_bytes += datagram.lost_bytes


def frame_for_stream(message: bytes, framing: Framing) -> bytes:
    """Return ``message`` framed for a TCP or TLS stream.

    Raises ValueError if ``framing`` is ``NEWLINE`` and ``message`` contains
    a LF, which would make the receiver see two messages.
    """
    match framing:
        case Framing.NEWLINE:
            if b"\n" in message:
                raise ValueError("a newline-framed message must not contain LF")
            return message + b"\n"
        case Framing.OCTET_COUNTING:
            return b"%d %b" % (len(message), message)


def frame_batch(messages: list[bytes], framing: Framing) -> bytes:
    """Return ``messages`` each framed as ``frame_for_stream`` does, as one batch.

    With ``NEWLINE`` the LF check is one count over the batch, not one search
    per message; the error is the same.
    """
    match framing:
        case Framing.NEWLINE:
            if not messages:
                return b""
            # Joined with an empty last item: the batch's final LF without a
            # second copy of the batch.
            batch = b"\n".join([*messages, b""])
            if batch.count(b"\n") != len(messages):
                raise ValueError("a newline-framed message must not contain LF")
            return batch
        case Framing.OCTET_COUNTING:
            return b"".join([b"%d %b" % (len(m), m) for m in messages])


def _marker(removed: int) -> bytes:
    # ASCII, so that it is valid in every encoding a receiver may assume.
    return b"...[truncated %d bytes]" % removed


def _cut_point(message: bytes, limit: int) -> int:
    """Return the largest cut at or below ``limit`` that splits no character.

    ``limit`` must be below ``len(message)``. The cut also avoids separating a
    backslash from the character it escapes, which JSON and CEF both use, so
    the kept part never makes the marker look escaped.
    """
    cut = limit
    # UTF-8 continuation bytes are 0b10xxxxxx: never cut just before one.
    while cut > 0 and message[cut] & 0xC0 == 0x80:  # noqa: PLR2004
        cut -= 1
    backslashes = len(message[:cut]) - len(message[:cut].rstrip(b"\\"))
    if backslashes % 2:
        cut -= 1
    return cut


def _truncate(message: bytes, max_size: int) -> tuple[bytes, int]:
    # The marker's length depends on the count it reports, and the count on
    # where the cut falls: iterate to the fixed point. The count only grows,
    # so this ends, in two or three rounds.
    removed = len(message) - max_size
    while True:
        cut = _cut_point(message, max_size - len(_marker(removed)))
        if len(message) - cut == removed:
            return message[:cut] + _marker(removed), removed
        removed = len(message) - cut


def frame_datagram(
    message: bytes,
    *,
    max_size: int = DEFAULT_UDP_MAX_SIZE,
    policy: OversizePolicy = DEFAULT_OVERSIZE_POLICY,
) -> Datagram:
    """Return the UDP datagram for ``message`` under ``max_size`` and ``policy``.

    A message that fits is sent whole, with no framing (RFC 5426). A larger one
    is truncated to exactly fit, ending with ``...[truncated N bytes]`` where N
    is the number of message bytes left out, or dropped; the outcome says
    which, for the caller to log and count. Raises ValueError for a
    ``max_size`` below ``MIN_UDP_MAX_SIZE``.
    """
    if max_size < MIN_UDP_MAX_SIZE:
        raise ValueError(
            f"UDP max size {max_size} is below the minimum {MIN_UDP_MAX_SIZE}"
        )
    size = len(message)
    if size <= max_size:
        return Datagram(message, DatagramOutcome.WHOLE, size)
    match policy:
        case OversizePolicy.TRUNCATE:
            payload, removed = _truncate(message, max_size)
            return Datagram(payload, DatagramOutcome.TRUNCATED, size, removed)
        case OversizePolicy.DROP:
            return Datagram(None, DatagramOutcome.DROPPED, size, size)
