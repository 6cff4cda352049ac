"""The fake Duo service's request handling, without I/O.

This module owns what happens between a parsed request and the answer:
authentication (``signing``), routing to the Accounts API or a log endpoint
(``logs``), the choice of account from ``account_id``, the faults
(``faults``), the live data set (``data``) and the counters tests read.
``FakeDuoApp.handle`` takes a ``wire.Request`` and returns a ``Plan``: the
response plus what the I/O layer must do with it (wait first, cut the
connection). It reads time only through the clocks it was given.

State is shared with test threads (the server may run in a background
thread), so every public method holds one lock; no method waits while
holding it.
"""

from __future__ import annotations

import email.utils
import math
import threading
import time
import urllib.parse
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs

from trio_dls.endpoints import Endpoint
from trio_dls.fakeduo import envelope
from trio_dls.fakeduo.data import (
    ChildAccount,
    Dataset,
    DatasetSpec,
    FakeRecord,
    account_id_for,
)
from trio_dls.fakeduo.envelope import DuoError
from trio_dls.fakeduo.faults import (
    DropPoint,
    FaultDice,
    Faults,
    Outcome,
    make_limiter,
)
from trio_dls.fakeduo.logs import (
    ADMIN_PAGE,
    LogRules,
    answer_log_query,
    endpoint_for_path,
)
from trio_dls.fakeduo.signing import (
    AuthFailure,
    Credentials,
    SignedRequest,
    verify_request,
)
from trio_dls.fakeduo.wire import Request, Response

__all__ = ["ACCOUNT_LIST_PATH", "FakeDuoApp", "FakeDuoConfig", "Plan", "Stats"]

ACCOUNT_LIST_PATH = "/accounts/v1/account/list"
Clock = Callable[[], float]


@attrs.frozen
class FakeDuoConfig:
    """Everything about a fake Duo deployment that is fixed when it starts.

    ``ikey``/``skey`` is the one integration the fake knows. With
    ``children``, it is an Accounts API integration of an MSP parent: it may
    list the children and read each child's logs with ``account_id``;
    without, ``account_id`` is refused. Calls without ``account_id`` read the
    parent's (``account_id``'s) own logs either way. ``max_date_skew`` bounds
    how far the ``Date`` header may be from the wall clock (None: unchecked);
    keep it well above the 65 s duo_client spends retrying a 429 with one
    ``Date``.
    """

    ikey: str = "DIFAKEDUOINTEGRATION"
    skey: str = attrs.field(
        default="fake-duo-secret-key-0123456789abcdefghij", repr=False
    )
    account_id: str = attrs.field(factory=lambda: account_id_for(0, "parent"))
    children: tuple[ChildAccount, ...] = ()
    dataset: DatasetSpec = attrs.field(factory=DatasetSpec)
    rules: LogRules = attrs.field(factory=LogRules)
    faults: Faults = attrs.field(factory=Faults)
    tls: bool = True
    max_date_skew: float | None = 300.0


@attrs.frozen
class Stats:
    """Counters since the start, keyed by (account id, endpoint).

    ``requests`` counts every authenticated request routed to a log endpoint
    (those answered 429 included); ``rate_limited`` counts the 429s;
    ``account_list`` counts calls to the account list; ``auth_failures``
    counts 401s. ``hosts`` counts authenticated log requests by (account id,
    host): the host each was sent to and, since the signature is checked
    against it, signed for.
    """

    requests: Mapping[tuple[str, Endpoint], int]
    rate_limited: Mapping[tuple[str, Endpoint], int]
    account_list: int
    auth_failures: int
    hosts: Mapping[tuple[str, str], int] = attrs.field(factory=dict)


@attrs.frozen
class Plan:
    """A response and how to deliver it."""

    response: Response
    delay: float = 0.0
    drop: DropPoint | None = None


def _error(error: DuoError) -> Response:
    return Response(error.status, error.body())


def _host_of(request: Request) -> str:
    netloc = request.headers.get("host", "")
    if not netloc and "://" in request.target:
        netloc = urllib.parse.urlsplit(request.target).netloc
    if netloc.startswith("["):
        return netloc[: netloc.find("]") + 1]
    return netloc.rsplit(":", 1)[0] if ":" in netloc else netloc


def _params(encoded: str) -> dict[str, list[str]]:
    params: dict[str, list[str]] = {}
    for key, value in urllib.parse.parse_qsl(encoded, keep_blank_values=True):
        params.setdefault(key, []).append(value)
    return params


class FakeDuoApp:
    """The stateful, I/O-free heart of the fake Duo API."""

    def __init__(
        self,
        config: FakeDuoConfig,
        *,
        clock: Clock = time.time,
        wall_clock: Clock | None = time.time,
    ) -> None:
        """Generate the data set at ``clock()`` and get ready to answer.

        ``clock`` is the service's "now" (availability delay, 180 days, live
        data, rate limits); ``wall_clock`` judges ``Date`` headers (None: no
        check).
        """
        self.config = config
        self._clock = clock
        self._wall_clock = wall_clock
        self._lock = threading.Lock()
        self._integrations = {config.ikey: Credentials(config.ikey, config.skey)}
        self._children = {child.account_id: child for child in config.children}
        # Children can leave the account list and come back, or have their
        # calls refused (deleted, access revoked), while the fake runs.
        self._unlisted: set[str] = set()
        self._refused: set[str] = set()
        self._forbidden: set[Endpoint] = set()
        self._list_fails = False
        self._dataset = Dataset(
            config.dataset,
            [config.account_id, *self._children],
            start=clock(),
        )
        self._requests: Counter[tuple[str, Endpoint]] = Counter()
        self._rate_limited: Counter[tuple[str, Endpoint]] = Counter()
        self._hosts: Counter[tuple[str, str]] = Counter()
        self._account_list = 0
        self._auth_failures = 0
        self._apply_faults(config.faults)

    # -- the test-facing surface -------------------------------------------

    @property
    def faults(self) -> Faults:
        """The faults now in force."""
        return self._dice.faults

    @faults.setter
    def faults(self, faults: Faults) -> None:
        with self._lock:
            self._apply_faults(faults)

    def _apply_faults(self, faults: Faults) -> None:
        self._dice = FaultDice(faults)
        self._limiter = make_limiter(faults)

    def held_records(
        self, endpoint: Endpoint, account_id: str | None = None
    ) -> list[FakeRecord]:
        """Return every record held for ``endpoint``, ascending, as of now.

        ``account_id`` None means the parent's own account. Records newer
        than the availability delay are included: filter on ``ts_ms``.
        """
        with self._lock:
            self._dataset.advance(self._clock())
            return list(
                self._dataset.records(account_id or self.config.account_id, endpoint)
            )

    def servable_records(
        self,
        endpoint: Endpoint,
        account_id: str | None = None,
        *,
        as_of: float | None = None,
    ) -> list[FakeRecord]:
        """Return what a correct client fetches of ``endpoint`` by ``as_of``.

        That is every held record older than the availability delay at
        ``as_of`` (default: now), except, in the administrator log, the events
        of a second beyond its first 1000, which no client can fetch.  Tests
        and the demo compare what was delivered with this.
        """
        now = self._clock() if as_of is None else as_of
        horizon_ms = (now - self.config.rules.availability_delay) * 1000
        per_second: Counter[int] = Counter()
        servable = []
        for record in self.held_records(endpoint, account_id):
            if record.ts_ms >= horizon_ms:
                break
            second = record.ts_ms // 1000
            per_second[second] += 1
            if endpoint is Endpoint.ADMINACTION and per_second[second] > ADMIN_PAGE:
                continue
            servable.append(record)
        return servable

    def add_record(
        self,
        endpoint: Endpoint,
        body: Mapping[str, Any],
        ts_ms: int,
        account_id: str | None = None,
    ) -> FakeRecord:
        """Hold one more hand-made record (its sort time is ``ts_ms``)."""
        with self._lock:
            return self._dataset.add(
                account_id or self.config.account_id, endpoint, body, ts_ms
            )

    def list_children(self, *account_ids: str, listed: bool = True) -> None:
        """Show (or, *listed* False, hide) these children in the account list.

        A hidden child still answers calls naming it, as a child just removed
        from an MSP parent might: a client must stop calling it on its own.
        """
        with self._lock:
            if listed:
                self._unlisted.difference_update(account_ids)
            else:
                self._unlisted.update(account_ids)

    def refuse_child(self, account_id: str, *, refused: bool = True) -> None:
        """Answer (or stop answering) this child's log calls with 403."""
        with self._lock:
            if refused:
                self._refused.add(account_id)
            else:
                self._refused.discard(account_id)

    def forbid_endpoint(self, endpoint: Endpoint, *, forbidden: bool = True) -> None:
        """Answer (or stop answering) every call to this log endpoint with 403.

        Duo does so when the Admin API application lacks the permission the
        endpoint needs, whatever the account named.
        """
        with self._lock:
            if forbidden:
                self._forbidden.add(endpoint)
            else:
                self._forbidden.discard(endpoint)

    def fail_account_list(self, *, failing: bool = True) -> None:
        """Answer (or stop answering) the account list with 500."""
        with self._lock:
            self._list_fails = failing

    def stats(self) -> Stats:
        """Return a snapshot of the counters."""
        with self._lock:
            return Stats(
                requests=dict(self._requests),
                rate_limited=dict(self._rate_limited),
                account_list=self._account_list,
                auth_failures=self._auth_failures,
                hosts=dict(self._hosts),
            )

    # -- request handling --------------------------------------------------

    def handle(self, request: Request) -> Plan:
        """Answer one request, dated by the service's clock as Duo dates its answers.

        The ``Date`` is the service's "now" in whole seconds, rounded down, so a
        client learns the fake's clock exactly as it would learn Duo's.
        """
        with self._lock:
            plan = self._handle(request)
            date = email.utils.formatdate(math.floor(self._clock()), usegmt=True)
        response = attrs.evolve(
            plan.response, headers=(*plan.response.headers, ("Date", date))
        )
        return attrs.evolve(plan, response=response)

    def _handle(self, request: Request) -> Plan:
        split = urllib.parse.urlsplit(request.target)
        path = split.path or "/"
        method = request.method.upper()
        content_type = request.headers.get("content-type", "")
        if method in ("POST", "PUT", "PATCH") and content_type.startswith(
            "application/x-www-form-urlencoded"
        ):
            params = _params(request.body.decode("utf-8", "replace"))
        else:
            params = _params(split.query)
        signed = SignedRequest(
            method=method,
            host=_host_of(request),
            path=path,
            params=params,
            body=request.body,
            date=request.headers.get("date", ""),
            x_duo_headers={
                k: v for k, v in request.headers.items() if k.startswith("x-duo-")
            },
        )
        verdict = verify_request(
            signed,
            request.headers.get("authorization"),
            self._integrations,
            now=self._wall_clock() if self._wall_clock is not None else None,
            max_skew=self.config.max_date_skew,
        )
        if isinstance(verdict, AuthFailure):
            self._auth_failures += 1
            return Plan(_error(DuoError(401, verdict.code, verdict.message)))
        if path == ACCOUNT_LIST_PATH:
            return self._account_list_plan(method)
        return self._log_plan(verdict, method, path, params, signed.host)

    def _log_plan(
        self,
        credentials: Credentials,
        method: str,
        path: str,
        params: Mapping[str, Sequence[str]],
        host: str,
    ) -> Plan:
        endpoint = endpoint_for_path(path)
        if endpoint is None:
            return Plan(_error(envelope.NOT_FOUND))
        if method != "GET":
            return Plan(_error(envelope.METHOD_NOT_ALLOWED))
        if endpoint in self._forbidden:
            return Plan(_error(envelope.FORBIDDEN))
        account = self._account(params)
        if isinstance(account, DuoError):
            return Plan(_error(account))

        now = self._clock()
        self._requests[account, endpoint] += 1
        self._hosts[account, host] += 1
        scope = self._dice.faults.rate_scope
        if self._limiter is not None and not self._limiter.allow(
            scope.key(credentials.ikey, account, endpoint), now
        ):
            self._rate_limited[account, endpoint] += 1
            return Plan(_error(envelope.TOO_MANY_REQUESTS))
        self._dataset.advance(now)
        answer = answer_log_query(
            endpoint,
            params,
            self._dataset.records(account, endpoint),
            now,
            self.config.rules,
        )
        if isinstance(answer, DuoError):
            return Plan(_error(answer))
        return self._with_faults(endpoint, envelope.ok_body(answer))

    def _account(self, params: Mapping[str, Sequence[str]]) -> str | DuoError:
        requested = params.get("account_id")
        if not requested:
            return self.config.account_id
        account_id = requested[-1]
        if account_id not in self._children:
            # An ordinary Admin API integration may not name an account, and an
            # Accounts API one only its own children.
            return envelope.invalid_param("account_id")
        if account_id in self._refused:
            return envelope.FORBIDDEN
        return account_id

    def _account_list_plan(self, method: str) -> Plan:
        if not self._children:
            return Plan(_error(envelope.FORBIDDEN))
        if method != "POST":
            return Plan(_error(envelope.METHOD_NOT_ALLOWED))
        self._account_list += 1
        if self._list_fails:
            return Plan(_error(envelope.INTERNAL_ERROR))
        children = [
            {
                "account_id": child.account_id,
                "api_hostname": child.api_hostname,
                "name": child.name,
            }
            for child in self._children.values()
            if child.account_id not in self._unlisted
        ]
        return self._with_faults(None, envelope.ok_body(children))

    def _with_faults(self, endpoint: Endpoint | None, body: bytes) -> Plan:
        faults = self._dice.faults
        delay = faults.delay if faults.applies_to(endpoint) else 0.0
        match self._dice.roll(endpoint):
            case Outcome.ERROR_500:
                return Plan(_error(envelope.INTERNAL_ERROR), delay)
            case Outcome.ERROR_503:
                return Plan(
                    Response(503, b"Service Unavailable", content_type="text/html"),
                    delay,
                )
            case Outcome.MALFORMED:
                return Plan(Response(200, body[: max(1, len(body) // 2)]), delay)
            case Outcome.DROP:
                return Plan(Response(200, body), delay, faults.drop_point)
            case Outcome.NORMAL:
                return Plan(Response(200, body), delay)
