"""Duo's JSON envelope: ``{"stat": "OK", ...}`` and ``{"stat": "FAIL", ...}``.

This module owns the shape of every answer body and the error values the pure
parts of the fake return instead of raising. It does no I/O.
"""

from __future__ import annotations

import json
from typing import Any

import attrs

__all__ = ["DuoError", "fail_body", "ok_body"]


@attrs.frozen
class DuoError:
    """An error as Duo reports it: HTTP status, 5-digit code, message, detail."""

    status: int
    code: int
    message: str
    detail: str | None = None

    def body(self) -> bytes:
        """Return the error's JSON envelope."""
        return fail_body(self.code, self.message, self.detail)


def ok_body(response: object) -> bytes:
    """Return a success envelope around ``response``."""
    return json.dumps({"stat": "OK", "response": response}).encode("utf-8")


def fail_body(code: int, message: str, detail: str | None = None) -> bytes:
    """Return a failure envelope."""
    envelope: dict[str, Any] = {"stat": "FAIL", "code": code, "message": message}
    if detail is not None:
        envelope["message_detail"] = detail
    return json.dumps(envelope).encode("utf-8")


def missing_param(name: str) -> DuoError:
    """Return Duo's 400 for a required parameter that was not sent."""
    return DuoError(400, 40001, "Missing required request parameters", name)


def invalid_param(name: str) -> DuoError:
    """Return Duo's 400 for a parameter with an unacceptable value."""
    return DuoError(400, 40002, "Invalid request parameters", name)


NOT_FOUND = DuoError(404, 40401, "Resource not found")
METHOD_NOT_ALLOWED = DuoError(405, 40501, "Method not allowed")
FORBIDDEN = DuoError(403, 40301, "Access forbidden")
TOO_MANY_REQUESTS = DuoError(429, 42901, "Too Many Requests")
INTERNAL_ERROR = DuoError(500, 50000, "Internal server error")
