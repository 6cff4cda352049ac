"""The Duo side's I/O: duo_client in worker threads, and what its errors mean.

duo_client is synchronous (``http.client``, a new connection per call), so each
call runs in a worker thread taken from a dedicated ``CapacityLimiter``, under
a deadline and duo_client's own socket timeout, so that a thread abandoned by a
cancelled call still ends.  Abandoning is safe because every call made here
only reads.  The deadline times the call, not the wait for a free thread: at
scale calls queue for threads, and a call that timed out in the queue must not
be reported as Duo being slow.  The queue has its own, longer, deadline, and
the error says which one passed.

Each answer comes back with its ``Date`` (``DuoAnswer.date``): Duo's clock,
which bounds how far a window may reach (``trio_dls.duo.clock``).  That is why
calls go through duo_client's ``api_call`` (which returns the HTTP response)
and ``parse_json_response``, exactly what its ``json_api_call`` does.

Errors are translated at this edge into five kinds, and nothing else leaves
this module:

* ``CredentialsRejectedError`` (a ``FatalError``): HTTP 401 or 403 to the
  parent's own calls (the account list, or logs without ``account_id``), and
  HTTP 401 to any call.  No retry can fix an ikey/skey pair Duo refuses; the
  daemon stops with one line.
* ``AccountRefusedError``: HTTP 403 or 404 to an MSP child's call (with
  ``account_id``).  A 401 is authentication, which Duo does with the parent's
  ikey and signature whatever account is named (its codes 40101-40105: no
  credentials, unknown ikey, bad signature, bad date), so it stays the
  parent's; a 403 or 404 once authenticated is about the account named: the
  child was deleted, or the parent's access to it revoked.  That child is
  retried later; the others go on.
* ``RateLimitedError``: HTTP 429.  duo_client's own sleeping retry loop is
  turned off (``_MAX_BACKOFF_WAIT_SECS = 0``) so that pacing stays with the
  fetcher, where it can be cancelled and shared knowledge of the limit lives.
* ``ProxyCredentialsRejectedError`` (a ``FatalError``): the HTTP proxy
  refused the CONNECT for want of credentials (``trio_dls.duo.proxy``, which
  also names the proxy in the errors that are its fault).
* ``TransientApiError``: everything else (timeouts, resets, DNS, TLS, 5xx,
  400s, malformed JSON).  Retried with backoff for ever.

The skey is handed to duo_client and nowhere else; no message built here
contains it.
"""

from __future__ import annotations

import http.client
import json
import logging
import socket
import ssl
from typing import Any, Final, Protocol, cast

import attrs
import duo_client
import orjson
import trio

from trio_dls.config.model import (
    DEFAULT_REQUEST_TIMEOUT,
    Account,
    split_host_port,
)
from trio_dls.config.model import Proxy as ProxySettings
from trio_dls.duo.clock import parse_http_date
from trio_dls.duo.proxy import (
    ProxyCredentialsRejectedError,
    proxy_failure,
    tunnel_headers,
)
from trio_dls.errors import FatalError

log = logging.getLogger(__name__)

# Per call (``dls_settings.api.request_timeout``, see its default's comment).
CALL_TIMEOUT: Final = DEFAULT_REQUEST_TIMEOUT
# How long a call may wait for a free worker thread before it is given up
# (and retried later): long, since a queue is normal at scale, but bounded.
QUEUE_TIMEOUT: Final = 300.0
ACCOUNT_LIST_PATH: Final = "/accounts/v1/account/list"


class TransientApiError(Exception):
    """A Duo call failed in a way that a later retry may not."""


class RateLimitedError(TransientApiError):
    """Duo answered 429: too many requests."""


class CredentialsRejectedError(FatalError):
    """Duo refused the integration key or the signature (401/403)."""


class AccountRefusedError(TransientApiError):
    """Duo refused the calls for one MSP child account (403/404)."""


@attrs.frozen
class DuoAnswer:
    """The ``response`` part of an answer of Duo's, and when Duo wrote it."""

    body: object
    date: float | None = None
    """Duo's ``Date`` header as UTC epoch seconds; None if missing or unreadable."""


class DuoApi(Protocol):
    """What a fetcher needs from Duo: signed GETs, and the MSP children."""

    async def get(self, path: str, params: dict[str, str]) -> DuoAnswer:
        """Return the ``response`` part of a signed GET's answer, with its date."""

    async def list_child_accounts(self) -> list[dict[str, Any]]:
        """Return the Accounts API's list of child accounts."""


def classify(exc: BaseException, what: str, *, child: bool = False) -> Exception:
    """Translate what duo_client raised during *what* into one of our errors.

    *child* says that *what* named an MSP child (``account_id``): its 403 or
    404 is about that child alone (see the module docstring).
    """
    status = getattr(exc, "status", None)
    if isinstance(exc, RuntimeError) and isinstance(status, int):
        detail = _duo_message(exc)
        if child and status in {403, 404}:
            return AccountRefusedError(
                f"{what}: Duo refused the calls for this child account "
                f"(HTTP {status}: {detail}); deleted, or access revoked?"
            )
        if status in {401, 403}:
            return CredentialsRejectedError(
                f"{what}: Duo rejected the credentials (HTTP {status}: {detail}); "
                "check the ikey, the skey and the API hostname"
            )
        if status == 429:  # noqa: PLR2004 - HTTP's Too Many Requests
            return RateLimitedError(f"{what}: HTTP 429 ({detail})")
        return TransientApiError(f"{what}: HTTP {status} ({detail})")
    if isinstance(exc, socket.gaierror):
        return TransientApiError(f"{what}: cannot resolve the API hostname ({exc})")
    if isinstance(exc, ssl.SSLCertVerificationError):
        return TransientApiError(f"{what}: TLS certificate not trusted ({exc})")
    if isinstance(exc, (OSError, http.client.HTTPException, ValueError)):
        text = str(exc) or type(exc).__name__
        return TransientApiError(f"{what}: {text}")
    if isinstance(exc, RuntimeError):  # duo_client's "bad response" without status
        return TransientApiError(f"{what}: {exc}")
    raise exc


def failure_kind(exc: Exception) -> str:
    """Return what makes two failures the same one, for reporting.

    Messages vary within one kind of failure (a malformed answer cut at a
    different byte each time), so the kind is the error's class and, for
    Duo's refusals, the HTTP status, never the whole text.
    """
    text = str(exc)
    status = text.partition(": HTTP ")[2].partition(" ")[0]
    return f"{type(exc).__name__} {status}".strip()


def _duo_message(exc: RuntimeError) -> str:
    data = getattr(exc, "data", None)
    if isinstance(data, dict):
        code = data.get("code")
        message = data.get("message", "")
        return f"{code} {message}".strip()
    return str(getattr(exc, "reason", "") or exc)


class ThreadedDuoApi:
    """``DuoApi`` with duo_client, for one account (and MSP child).

    It holds settings only: the duo_client object of a call is made for that
    call, in its worker thread, and dropped with it.  duo_client opens a new
    connection per call anyway, and making the object costs microseconds
    against a round trip to Duo, while keeping two (Admin, Accounts) per MSP
    child was a large part of what an idle child cost (``docs/scale.md``).
    """

    __slots__ = (
        "__weakref__",  # the daemon keeps its clients in a WeakValueDictionary
        "_child",
        "_limiter",
        "_proxy",
        "_queue_timeout",
        "_settings",
        "_timeout",
        "host",
    )

    def __init__(
        self,
        account: Account,
        proxy: ProxySettings,
        *,
        limiter: trio.CapacityLimiter,
        child_account_id: str | None = None,
        api_hostname: str | None = None,
        call_timeout: float = CALL_TIMEOUT,
        queue_timeout: float = QUEUE_TIMEOUT,
    ) -> None:
        """Prepare calls for *account* (and *child_account_id* for MSP).

        *api_hostname* (``host[:port]``) replaces the account's hostname as the
        host called and signed for: an MSP child's own, for the child route.
        """
        if account.skey is None:  # the loader always resolves it
            msg = "the account has no skey"
            raise ValueError(msg)
        self._child = child_account_id
        self._limiter = limiter
        self._timeout = call_timeout
        self._queue_timeout = queue_timeout
        self._proxy = proxy
        # duo_client signs for the host it connects to, and Duo checks that
        # signature against the host it was sent to: host and signature go
        # together, a child's to its own deployment.
        host, port = split_host_port(api_hostname or account.hostname)
        self._settings = _ClientSettings(account, host, port, call_timeout, proxy)
        self.host = host

    async def get(self, path: str, params: dict[str, str]) -> DuoAnswer:
        """Return the ``response`` of ``GET path?params`` (plus the child id)."""
        if self._child is not None:
            params = {**params, "account_id": self._child}
        return await self._call(
            _Admin, "GET", path, params, child=self._child is not None
        )

    async def list_child_accounts(self) -> list[dict[str, Any]]:
        """Return the MSP parent's child accounts."""
        answer = await self._call(_Accounts, "POST", ACCOUNT_LIST_PATH, {})
        response = answer.body
        if not isinstance(response, list) or not all(
            isinstance(child, dict) and isinstance(child.get("account_id"), str)
            for child in response
        ):
            msg = f"POST {ACCOUNT_LIST_PATH}: not a list of accounts"
            raise TransientApiError(msg)
        return response

    async def _call(
        self,
        kind: type[_Admin | _Accounts],
        method: str,
        path: str,
        params: dict[str, str],
        *,
        child: bool = False,
    ) -> DuoAnswer:
        what = f"{method} {path}"
        with trio.CancelScope() as scope:
            gate = _TimedGate(self._limiter, scope, self._timeout)
            scope.deadline = trio.current_time() + self._queue_timeout
            try:
                return await trio.to_thread.run_sync(
                    _answer,
                    self._settings,
                    kind,
                    method,
                    path,
                    params,
                    # A limiter-like object is what trio takes (its docs say so).
                    limiter=cast("trio.CapacityLimiter", gate),
                    abandon_on_cancel=True,
                )
            except (
                RuntimeError,
                OSError,
                http.client.HTTPException,
                ValueError,
            ) as exc:
                failure = proxy_failure(exc, what, self._proxy)
                if failure is None:
                    raise classify(exc, what, child=child) from None
                if failure.fatal:
                    raise ProxyCredentialsRejectedError(failure.message) from None
                raise TransientApiError(failure.message) from None
        if gate.started:
            msg = f"{what}: no answer within {self._timeout:g} s"
        else:
            msg = (
                f"{what}: not sent: no worker thread became free within "
                f"{self._queue_timeout:g} s (all {self._limiter.total_tokens} busy)"
            )
        raise TransientApiError(msg)


class _TimedGate:
    """The thread limiter of one call, which starts the call's deadline.

    trio takes a limiter-like object; this one waits for a token of the shared
    limiter, then moves the call's cancel scope to "now + timeout", so that the
    deadline counts from when a thread runs the call.  The token is released
    when the thread really ends, even one abandoned by a timeout, so the number
    of threads stays bounded.
    """

    def __init__(
        self, limiter: trio.CapacityLimiter, scope: trio.CancelScope, timeout: float
    ) -> None:
        self._limiter = limiter
        self._scope = scope
        self._timeout = timeout
        self.started = False

    async def acquire_on_behalf_of(self, borrower: object) -> None:
        await self._limiter.acquire_on_behalf_of(borrower)
        self.started = True
        self._scope.deadline = trio.current_time() + self._timeout

    def release_on_behalf_of(self, borrower: object) -> None:
        self._limiter.release_on_behalf_of(borrower)


@attrs.frozen
class _ClientSettings:
    """What a call's duo_client object is made from: one per ThreadedDuoApi."""

    account: Account
    host: str
    port: int | None
    timeout: float
    proxy: ProxySettings

    def client(self, kind: type[_Admin | _Accounts]) -> _Admin | _Accounts:
        """A new duo_client object of *kind*, for one call."""
        assert self.account.skey is not None  # checked by ThreadedDuoApi
        kwargs: dict[str, Any] = {
            "ikey": self.account.ikey,
            "skey": self.account.skey.reveal(),
            "host": self.host,
            "timeout": self.timeout,
        }
        if self.port is not None:
            kwargs["port"] = self.port
        if self.account.ca_certs:
            kwargs["ca_certs"] = self.account.ca_certs
        client = kind(**kwargs)
        # Pacing is the fetcher's: a 429 comes straight back (DUO_API.md).
        client._MAX_BACKOFF_WAIT_SECS = 0  # noqa: SLF001 - set by its __init__
        if self.proxy.enabled:
            client.set_proxy(
                host=self.proxy.proxy_server,
                port=self.proxy.proxy_port,
                headers=tunnel_headers(self.proxy),
            )
        return client


class _ClosingConnections:
    """A duo_client client that notes the connections it opens, to close them.

    duo_client closes its connection after a response only: a socket timeout
    or a reset leaves it open until the garbage collector finds it (held the
    while by the exception's traceback), one file descriptor per failed call.
    ``_connect`` is the one seam duo_client has; ``_answer`` closes what it
    noted on every path.
    """

    def _connect(self) -> Any:  # noqa: ANN401 - duo_client's connection
        conn = super()._connect()  # type: ignore[misc]
        self.opened.append(conn)
        return conn

    @property
    def opened(self) -> list[Any]:
        """The connections this client opened."""
        opened: list[Any] = self.__dict__.setdefault("_opened", [])
        return opened


class _Admin(_ClosingConnections, duo_client.Admin):  # type: ignore[misc]
    """duo_client's Admin API client, for one call."""


class _Accounts(_ClosingConnections, duo_client.Accounts):  # type: ignore[misc]
    """duo_client's Accounts API client, for one call."""


def _answer(
    settings: _ClientSettings,
    kind: type[_Admin | _Accounts],
    method: str,
    path: str,
    params: dict[str, str],
) -> DuoAnswer:
    """Make one call in a worker thread, closing every connection it opened."""
    client = settings.client(kind)
    try:
        return _decoded(client, method, path, params)
    finally:
        for conn in client.opened:
            conn.close()  # again after a success: harmless


def _decoded(
    client: Any,  # noqa: ANN401 - duo_client is untyped
    method: str,
    path: str,
    params: dict[str, str],
) -> DuoAnswer:
    """Make one call in a worker thread; what ``json_api_call`` does, plus the Date.

    Errors (any status but 200) are duo_client's to parse and raise.  A success is
    decoded here, so that one record holding an integer too long for Python's
    int/str conversion limit is forwarded (as its digits) instead of failing the
    whole page for ever.
    """
    response, data = client.api_call(method, path, params)
    date = parse_http_date(response.getheader("Date"))
    if response.status != 200:  # noqa: PLR2004 - HTTP's OK
        client.parse_json_response(response, data)  # raises duo_client's error
    document = parse_json(data)
    if not isinstance(document, dict) or document.get("stat") != "OK":
        msg = f"not a Duo success answer: {str(document)[:200]}"
        raise ValueError(msg)
    if "response" not in document:
        msg = "a Duo success answer without a response"
        raise ValueError(msg)
    return DuoAnswer(document["response"], date)


# Python refuses to convert longer decimal strings to int (a guard against
# quadratic-time parsing); 4300 is its default limit.
_LONGEST_INTEGER: Final = 4300
# orjson reads an integer beyond 64 bits as a float, silently: its shortest
# is -9223372036854775809, 19 digits.  Any run of 19 digits in a page (a
# number, or digits in a string) sends the page to the standard parser.
# The run is found by writing every digit as 0 and searching for nineteen
# 0s: bytes.translate and the substring search run at memory speed, where
# the regular expression [0-9]{19} took twice as long as orjson's decoding
# itself (8 ms for a page of 1,000 auth records, against 0.7 ms).
_DIGITS_AS_ZERO: Final = bytes.maketrans(b"123456789", b"000000000")
_NINETEEN_DIGITS: Final = b"0" * 19


def parse_json(data: bytes) -> Any:  # noqa: ANN401 - any JSON document
    """Decode *data* as ``json.loads`` does (integers of over 4,300 digits as text).

    orjson decodes most pages in a third of the time; what it refuses (NaN,
    an infinite number, a lone surrogate, a byte-order mark, nesting over
    1,024 levels, malformed JSON) and a page that may hold an integer beyond
    64 bits go to ``json.loads``, which decides as it always did: the result
    is the same either way (``tests/duo/test_parse_json.py``).
    """
    if _NINETEEN_DIGITS not in data.translate(_DIGITS_AS_ZERO):
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:
            pass
    return json.loads(data, parse_int=_integer)


def _integer(text: str) -> int | str:
    return int(text) if len(text.lstrip("-")) <= _LONGEST_INTEGER else text


def enrich(
    record: dict[str, Any],
    endpoint_eventtype: str | None,
    host: str,
    child_account_id: str | None,
) -> dict[str, Any]:
    """Add what DLS's records carried: ``eventtype``, ``host``, ``child_account_id``.

    duo_client's log helpers add ``eventtype`` and ``host`` to each record;
    calling ``json_api_call`` directly (to avoid the helpers' traps) means
    adding them here so that the JSON output matches DLS's.
    """
    enriched = dict(record)
    if endpoint_eventtype is not None:
        enriched["eventtype"] = endpoint_eventtype
        enriched["host"] = host
    if child_account_id is not None:
        enriched["child_account_id"] = child_account_id
    return enriched
