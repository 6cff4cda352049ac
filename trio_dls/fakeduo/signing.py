"""Duo's request signatures, checked the way Duo checks them.

This module owns the canonical request string (signature versions 2, 4 and 5),
the HMAC comparison and the parsing of the ``Authorization`` and ``Date``
headers. It is pure: bytes and strings in, a verdict out. It knows nothing of
sockets, endpoints or data sets, and it never reads a clock: callers pass the
time against which a ``Date`` header is judged.

Theory of operation: duo_client signs ``Basic base64(ikey:hex(hmac))``. The
server cannot tell from the request which signature version the client used,
so it tries each candidate that fits the signature's length (128 hex digits:
SHA-512 over v5, v4 or v2; 40 hex digits: SHA-1 over v2) and accepts the
request when any of them matches.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import email.utils
import hashlib
import hmac
import urllib.parse
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import attrs

if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = [
    "AuthFailure",
    "Credentials",
    "SignedRequest",
    "canonical_params",
    "canonical_request",
    "canonical_x_duo_headers",
    "parse_authorization",
    "parse_date",
    "sign",
    "verify_request",
]

# The characters urllib.parse.quote always leaves alone, plus "~": Duo's
# canonical form (as in OAuth 1.0) escapes everything else, "/" included.
_SAFE = "~"
_VERSIONS = frozenset({2, 4, 5})
_HASHES_BODY = frozenset({4, 5})
_HASHES_HEADERS = frozenset({5})


@attrs.frozen
class Credentials:
    """The ``ikey`` and ``skey`` pair of one integration."""

    ikey: str
    skey: str = attrs.field(repr=False)


@attrs.frozen
class SignedRequest:
    """What signature verification needs to know about a request.

    ``params`` are the decoded query parameters (or form fields), each key with
    its values in the order they arrived. ``x_duo_headers`` maps lower-case
    ``x-duo-*`` header names to their values.
    """

    method: str
    host: str
    path: str
    params: Mapping[str, Sequence[str]]
    body: bytes
    date: str
    x_duo_headers: Mapping[str, str] = attrs.field(factory=dict)


@attrs.frozen
class AuthFailure:
    """Why a request's credentials were refused: Duo's 401 code and message."""

    code: int
    message: str


MISSING_CREDENTIALS = AuthFailure(40101, "Missing request credentials")
UNKNOWN_IKEY = AuthFailure(40102, "Invalid integration key in request credentials")
BAD_SIGNATURE = AuthFailure(40103, "Invalid signature in request credentials")
MISSING_DATE = AuthFailure(40104, "Missing request date")
BAD_DATE = AuthFailure(40105, "Invalid request date")


def _quote(value: str) -> str:
    return urllib.parse.quote(value.encode("utf-8"), safe=_SAFE)


def canonical_params(params: Mapping[str, Sequence[str]]) -> str:
    """Return Duo's canonical form of request parameters.

    Keys and values are percent-encoded (only ``A-Z a-z 0-9 - . _ ~`` left
    literal), sorted by key, the values of a repeated key sorted too, and the
    ``k=v`` pairs joined with ``&``.
    """
    pairs: list[str] = []
    for key, values in sorted((_quote(k), v) for k, v in params.items()):
        pairs.extend(f"{key}={value}" for value in sorted(_quote(v) for v in values))
    return "&".join(pairs)


def canonical_x_duo_headers(headers: Mapping[str, str]) -> str:
    """Return the SHA-512 hex digest of the ``X-Duo-*`` headers (v5 only)."""
    lowered = {name.lower(): value for name, value in headers.items()}
    parts: list[str] = []
    for name in sorted(lowered):
        parts.extend((name, lowered[name]))
    return hashlib.sha512("\x00".join(parts).encode("utf-8")).hexdigest()


def canonical_request(request: SignedRequest, sig_version: int) -> str:
    """Return the string duo_client signs for ``request`` at ``sig_version``."""
    lines = [
        request.date,
        request.method.upper(),
        request.host.lower(),
        request.path,
        canonical_params(request.params),
    ]
    if sig_version not in _VERSIONS:
        raise ValueError(f"unsupported signature version {sig_version}")
    if sig_version in _HASHES_BODY:
        lines.append(hashlib.sha512(request.body).hexdigest())
    if sig_version in _HASHES_HEADERS:
        lines.append(canonical_x_duo_headers(request.x_duo_headers))
    return "\n".join(lines)


def sign(
    credentials: Credentials,
    request: SignedRequest,
    sig_version: int = 5,
    digestmod: str = "sha512",
) -> str:
    """Return the ``Authorization`` header value for ``request``.

    The fake never needs to sign; tests use this to build requests by hand
    (tampered ones, or ones with a chosen ``Date``).
    """
    mac = hmac.new(
        credentials.skey.encode("utf-8"),
        canonical_request(request, sig_version).encode("utf-8"),
        digestmod,
    )
    token = f"{credentials.ikey}:{mac.hexdigest()}".encode()
    return "Basic " + base64.b64encode(token).decode("ascii")


def parse_authorization(header: str | None) -> tuple[str, str] | None:
    """Return ``(ikey, hex signature)`` from a Basic header, or None if malformed."""
    if header is None:
        return None
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(token.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    ikey, sep, signature = decoded.partition(":")
    if not sep or not ikey or not signature:
        return None
    return ikey, signature.lower()


def parse_date(header: str) -> float | None:
    """Return the epoch seconds of an RFC 2822 ``Date`` header, or None."""
    try:
        parsed = email.utils.parsedate_to_datetime(header)
    except (TypeError, ValueError):
        return None
    if parsed.tzinfo is None:
        # "-0000" means UTC with no claim about local time (RFC 2822).
        return parsed.replace(tzinfo=dt.UTC).timestamp()
    return parsed.timestamp()


def _candidates(signature: str) -> Iterable[tuple[int, str]]:
    if len(signature) == hashlib.sha512().digest_size * 2:
        yield from ((5, "sha512"), (4, "sha512"), (2, "sha512"))
    # SHA-1 is what Duo's v2 signatures allow, not a choice of ours.
    elif len(signature) == hashlib.sha1().digest_size * 2:  # noqa: S324
        yield (2, "sha1")


def _check_date(
    header: str, now: float | None, max_skew: float | None
) -> AuthFailure | None:
    if not header:
        return MISSING_DATE
    date = parse_date(header)
    if date is None:
        return BAD_DATE
    if now is not None and max_skew is not None and abs(now - date) > max_skew:
        return BAD_DATE
    return None


def verify_request(
    request: SignedRequest,
    authorization: str | None,
    integrations: Mapping[str, Credentials],
    *,
    now: float | None,
    max_skew: float | None,
) -> Credentials | AuthFailure:
    """Check a request's credentials as Duo does.

    Returns the integration's credentials when the signature matches one of
    the versions duo_client can produce, else the failure Duo reports. When
    both ``now`` and ``max_skew`` are given, a ``Date`` further than
    ``max_skew`` seconds from ``now`` is refused. duo_client retries a 429
    with the same ``Date`` for about 65 seconds, so ``max_skew`` must be
    comfortably larger than that.
    """
    parsed = parse_authorization(authorization)
    if parsed is None:
        return MISSING_CREDENTIALS
    ikey, signature = parsed
    credentials = integrations.get(ikey)
    if credentials is None:
        return UNKNOWN_IKEY
    date_failure = _check_date(request.date, now, max_skew)
    if date_failure is not None:
        return date_failure
    for version, digestmod in _candidates(signature):
        expected = hmac.new(
            credentials.skey.encode("utf-8"),
            canonical_request(request, version).encode("utf-8"),
            digestmod,
        ).hexdigest()
        if hmac.compare_digest(expected, signature):
            return credentials
    return BAD_SIGNATURE
