"""Just enough HTTP/1.1 for duo_client, without I/O.

This module owns the bytes on the wire: it turns received bytes into
``Request`` values (``RequestReader``) and ``Response`` values into bytes
(``render_response``). It knows nothing of Duo, sockets or trio. It supports
what ``http.client`` sends: a request line (origin-form, absolute-form through
a proxy, or ``CONNECT host:port``), headers, and a ``Content-Length`` body.
Chunked request bodies are refused; duo_client never sends them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from http import HTTPStatus

import attrs

__all__ = ["Request", "RequestReader", "Response", "WireError", "render_response"]

MAX_HEAD = 64 * 1024
MAX_BODY = 1024 * 1024
_REQUEST_LINE_PARTS = 3


class WireError(Exception):
    """The peer sent something that is not an HTTP/1.1 request we accept."""


@attrs.frozen
class Request:
    """One parsed request; header names are lower-case."""

    method: str
    target: str
    version: str
    headers: Mapping[str, str]
    body: bytes = b""

    @property
    def keep_alive(self) -> bool:
        """Whether the client expects the connection to stay open."""
        connection = self.headers.get("connection", "").lower()
        if self.version == "HTTP/1.0":
            return connection == "keep-alive"
        return connection != "close"


@attrs.frozen
class Response:
    """One answer to render."""

    status: int
    body: bytes = b""
    content_type: str = "application/json"
    headers: Sequence[tuple[str, str]] = ()


def render_response(response: Response, *, keep_alive: bool) -> bytes:
    """Return the bytes of ``response`` (head and body)."""
    try:
        reason = HTTPStatus(response.status).phrase
    except ValueError:
        reason = "Unknown"
    lines = [f"HTTP/1.1 {response.status} {reason}"]
    lines.append(f"Content-Type: {response.content_type}")
    lines.append(f"Content-Length: {len(response.body)}")
    lines.append("Connection: " + ("keep-alive" if keep_alive else "close"))
    lines.extend(f"{name}: {value}" for name, value in response.headers)
    head = "\r\n".join(lines) + "\r\n\r\n"
    return head.encode("latin-1") + response.body


def _parse_headers(lines: Sequence[str]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for line in lines:
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            raise WireError(f"bad header line {line!r}")
        key = name.lower()
        value = value.strip()
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    return headers


class RequestReader:
    """Accumulates received bytes and yields complete requests."""

    def __init__(self) -> None:
        """Start with an empty buffer."""
        self._buffer = bytearray()

    def feed(self, data: bytes) -> None:
        """Add received bytes."""
        self._buffer += data

    def take_buffer(self) -> bytes:
        """Remove and return the bytes not yet parsed (after a CONNECT)."""
        data = bytes(self._buffer)
        self._buffer.clear()
        return data

    def next_request(self) -> Request | None:
        """Return the next complete request, or None if more bytes are needed.

        Raises ``WireError`` on a malformed or oversized request.
        """
        end = self._buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(self._buffer) > MAX_HEAD:
                raise WireError("request head too large")
            return None
        try:
            head = self._buffer[:end].decode("latin-1")
        except UnicodeDecodeError as exc:  # pragma: no cover - latin-1 decodes all
            raise WireError("undecodable head") from exc
        request_line, *header_lines = head.split("\r\n")
        parts = request_line.split(" ")
        if len(parts) != _REQUEST_LINE_PARTS or not parts[2].startswith("HTTP/1."):
            raise WireError(f"bad request line {request_line!r}")
        method, target, version = parts
        headers = _parse_headers(header_lines)
        if "chunked" in headers.get("transfer-encoding", "").lower():
            raise WireError("chunked request bodies are not supported")
        try:
            length = int(headers.get("content-length", "0"))
        except ValueError as exc:
            raise WireError("bad Content-Length") from exc
        if not 0 <= length <= MAX_BODY:
            raise WireError("bad Content-Length")
        body_start = end + 4
        if len(self._buffer) < body_start + length:
            return None
        body = bytes(self._buffer[body_start : body_start + length])
        del self._buffer[: body_start + length]
        return Request(method, target, version, headers, body)
