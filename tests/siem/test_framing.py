"""Framing: messages delimited on streams, and fitted into UDP datagrams.

Rules for these tests: stream frames are parsed back by ``parse_octet_counted``
below, written from RFC 6587 (3.4.1) and not from the code under test; a
datagram's size limit is checked on the bytes actually returned.
"""

from __future__ import annotations

import re

import hypothesis
import pytest
from hypothesis import strategies as st

from trio_dls.siem.framing import (
    DEFAULT_UDP_MAX_SIZE,
    MIN_UDP_MAX_SIZE,
    Datagram,
    DatagramCounters,
    DatagramOutcome,
    Framing,
    OversizePolicy,
    frame_batch,
    frame_datagram,
    frame_for_stream,
)

_MARKER = re.compile(rb"\.\.\.\[truncated (\d+) bytes\]\Z")


def parse_octet_counted(stream: bytes) -> list[bytes]:
    """Split a stream of ``MSG-LEN SP SYSLOG-MSG`` frames into the messages."""
    messages: list[bytes] = []
    while stream:
        length, space, rest = stream.partition(b" ")
        if not space or not length.isdigit() or length.startswith(b"0"):
            raise ValueError(f"bad frame at {stream[:20]!r}")
        size = int(length)
        if len(rest) < size:
            raise ValueError("truncated frame")
        messages.append(rest[:size])
        stream = rest[size:]
    return messages


def test_newline_framing_appends_lf() -> None:
    """Newline framing is the message and one LF, as DLS writes."""
    assert frame_for_stream(b"CEF:0|a|b", Framing.NEWLINE) == b"CEF:0|a|b\n"


def test_newline_framing_refuses_a_raw_lf() -> None:
    """A message with a raw LF would be split by the receiver: it is refused."""
    with pytest.raises(ValueError, match="LF"):
        frame_for_stream(b"one\ntwo", Framing.NEWLINE)


@pytest.mark.parametrize("framing", list(Framing))
@hypothesis.given(st.lists(st.binary().filter(lambda m: b"\n" not in m)))
def test_a_batch_is_its_messages_framed_one_by_one(
    framing: Framing, messages: list[bytes]
) -> None:
    """``frame_batch`` is the messages each framed by ``frame_for_stream``, joined."""
    expected = b"".join(frame_for_stream(m, framing) for m in messages)
    assert expected == frame_batch(messages, framing)


def test_a_batch_with_a_raw_lf_is_refused() -> None:
    """One message with a raw LF makes the whole batch refused, as one message."""
    with pytest.raises(ValueError, match="LF"):
        frame_batch([b"one", b"two\nthree", b"four"], Framing.NEWLINE)
    assert frame_batch([b"a\nb"], Framing.OCTET_COUNTING) == b"3 a\nb"


def test_octet_counting_counts_bytes_not_characters() -> None:
    """The RFC 6587 length is in octets of the UTF-8 message."""
    assert (
        frame_for_stream("ü\nab\r\n".encode(), Framing.OCTET_COUNTING)
        == b"7 \xc3\xbc\nab\r\n"
    )


@hypothesis.given(st.lists(st.binary(min_size=1)))
def test_octet_counted_stream_parses_back(messages: list[bytes]) -> None:
    """Any messages, newlines included, are recovered from an octet-counted stream."""
    stream = b"".join(frame_for_stream(m, Framing.OCTET_COUNTING) for m in messages)
    assert messages == parse_octet_counted(stream)


def test_datagram_that_fits_is_sent_whole() -> None:
    """A message within the limit is the datagram, unframed and unchanged."""
    message = b"x" * DEFAULT_UDP_MAX_SIZE
    expected = Datagram(message, DatagramOutcome.WHOLE, DEFAULT_UDP_MAX_SIZE, 0)
    assert expected == frame_datagram(message)


def test_oversize_datagram_is_truncated_with_a_marker() -> None:
    """Truncation fills the limit exactly and reports the bytes left out."""
    message = bytes(range(48, 58)) * 100
    datagram = frame_datagram(message, max_size=500, policy=OversizePolicy.TRUNCATE)
    expected_payload = message[:476] + b"...[truncated 524 bytes]"
    expected = Datagram(expected_payload, DatagramOutcome.TRUNCATED, 1000, 524)
    assert expected == datagram


def test_oversize_datagram_is_dropped() -> None:
    """The drop policy sends nothing and reports the whole message lost."""
    expected = Datagram(None, DatagramOutcome.DROPPED, 2049, 2049)
    assert expected == frame_datagram(b"y" * 2049, policy=OversizePolicy.DROP)


def test_truncation_never_splits_a_utf8_character() -> None:
    """A cut that would fall inside a character moves back to its start."""
    message = "€".encode() * 400  # three bytes each
    datagram = frame_datagram(message, max_size=500)
    assert datagram.payload is not None
    kept = datagram.payload.removesuffix(b"...[truncated 726 bytes]")
    assert ("€" * 158).encode() == kept


def test_truncation_keeps_escapes_whole() -> None:
    """A cut never leaves a lone escaping backslash before the marker."""
    message = b"a" * 475 + b"\\\\" * 100
    datagram = frame_datagram(message, max_size=500)
    expected = b"a" * 475 + b"...[truncated 200 bytes]"
    assert expected == datagram.payload


def test_oversize_datagrams_are_counted() -> None:
    """Counters add up each outcome and the bytes that never arrived."""
    counters = DatagramCounters()
    for message, policy in [
        (b"small", OversizePolicy.DROP),
        (b"z" * 600, OversizePolicy.DROP),
        (b"z" * 600, OversizePolicy.TRUNCATE),
        (b"z" * 700, OversizePolicy.TRUNCATE),
    ]:
        counters.count(frame_datagram(message, max_size=500, policy=policy))
    expected = DatagramCounters(
        whole=1, truncated=2, dropped=1, lost_bytes=600 + 124 + 224
    )
    assert expected == counters


def test_max_size_below_the_rfc_minimum_is_refused() -> None:
    """A limit under RFC 5426's 480 bytes raises ValueError."""
    with pytest.raises(ValueError, match="480"):
        frame_datagram(b"x", max_size=MIN_UDP_MAX_SIZE - 1)


def test_enum_values_are_lower_case() -> None:
    """Config matches these names case-insensitively against lower-case values."""
    values = [*Framing, *OversizePolicy]
    assert [v.lower() for v in values] == [v.value for v in values]


@hypothesis.given(
    st.text(min_size=1, max_size=3000),
    st.integers(min_value=MIN_UDP_MAX_SIZE, max_value=4000),
)
def test_truncated_datagram_fits_and_is_valid_utf8(text: str, max_size: int) -> None:
    """Any oversize UTF-8 message becomes a prefix plus a true marker within limit."""
    message = text.encode()
    datagram = frame_datagram(message, max_size=max_size)
    assert datagram.payload is not None
    assert len(datagram.payload) <= max_size
    datagram.payload.decode()
    if datagram.outcome is DatagramOutcome.WHOLE:
        assert message == datagram.payload
        return
    marker = _MARKER.search(datagram.payload)
    assert marker is not None
    kept = datagram.payload[: marker.start()]
    assert message.startswith(kept)
    assert len(message) - len(kept) == int(marker.group(1)) == datagram.lost_bytes
