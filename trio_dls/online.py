"""``trio-dls check --online``: try each real part of a config once, one line each.

Theory of operation
-------------------
``check`` proves a config well formed; this module shows whether it works, by
doing once, with the daemon's own code, what the daemon will do:

* For each mapped endpoint, one signed GET as a fetcher plans it
  (`trio_dls.duo.paging.plan_request` from a cursor one minute before the
  horizon, page size 1), sent through `ThreadedDuoApi` and read with
  `apply_response`.  That exercises the API host, its certificate, the proxy,
  the ikey and skey, the permission for that endpoint and the shape of the
  answer.  The answer's ``Date`` gives the clock skew.
* For an MSP parent, the Accounts API listing first.  The endpoint calls are
  then made for the first child not in ``block_list``, as the daemon makes
  them (``account_id``, on the host ``msp_api_host`` names).  One child
  stands for all: they share the parent's credentials and permission, and
  probing every child would spend each one's share of Duo's rate limit.
* For each server, a connection opened by `trio_dls.siem.transports` as a
  sender opens it: TCP connect; for TLS the handshake with the server's own
  context (CA bundle, name, client certificate), then the certificate's
  subject and expiry.  UDP cannot be verified (nothing answers a datagram):
  its name is resolved, and that is all.

Nothing is written anywhere: the GETs only read, and no byte is sent to a
server, so checking next to a running daemon is harmless (each call costs
one request of Duo's rate limit).

What counts as working:

* A 429 is a failure.  It proves Duo reachable, but Duo may refuse a request
  for its rate before it checks the signature, so the credentials and the
  permission are unverified, and exit 0 promises that they were verified.
  The line says so and suggests trying again in a minute (another client,
  e.g. a DLS still running, may be spending the limit).
* A clock skew above ``CLOCK_SKEW_WARNING`` is a warning, not a failure:
  trio-dls ends its windows by the earlier of the two clocks, so a skewed
  clock loses nothing (``docs/fetching.md``); it only delays records when the
  host is behind.  A skew large enough for Duo to refuse the signature's
  date shows as rejected credentials, with a hint about the clock.
* An MSP parent with no child to fetch passes, its endpoints "not tried": the
  daemon runs and waits for a child, which is not a mistake.

Every probe runs concurrently with the others, each under its own deadline
(``PROBE_TIMEOUT``), and each returns a `ProbeResult` instead of raising.
Planning a probe, the skew, the certificate's description and the lines are
plain functions; the I/O is in the ``_probe_*`` coroutines.  No message
built here contains the skey.
"""

from __future__ import annotations

import datetime as dt
import math
import re
import ssl
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final, TextIO

import attrs
import trio

from trio_dls.config import Config, MspApiHost, TlsSettings, UdpSettings
from trio_dls.duo.client import (
    CredentialsRejectedError,
    RateLimitedError,
    ThreadedDuoApi,
    TransientApiError,
)
from trio_dls.duo.cursors import AdminCursor, WindowCursor, units_per_second
from trio_dls.duo.paging import (
    DUO_DELAY_SECONDS,
    Limits,
    MalformedResponseError,
    Request,
    apply_response,
    plan_request,
)
from trio_dls.endpoints import Endpoint
from trio_dls.errors import FatalError
from trio_dls.fetcher import CLOCK_SKEW_WARNING
from trio_dls.siem.transports import (
    TransportError,
    open_datagram,
    open_stream,
    tls_context,
)

if TYPE_CHECKING:
    from collections.abc import Awaitable, Mapping, Sequence

    from trio_dls.config import Server
    from trio_dls.duo.client import DuoApi

__all__ = [
    "PROBE_TIMEOUT",
    "ProbeResult",
    "check_online",
    "describe_certificate",
    "describe_skew",
    "explain_duo_failure",
    "probe_all",
    "probe_request",
    "render",
    "skew_of",
    "skew_warning",
]

# Long enough for a slow Duo or a far SIEM, short enough that a check of a
# dozen parts that all hang still ends within a quarter of a minute.
PROBE_TIMEOUT: Final = 15.0
# The width of the window each log probe asks for.
PROBE_WINDOW_SECONDS: Final = 60
# A server certificate expiring sooner than this is worth a warning.
CERTIFICATE_WARNING_DAYS: Final = 30

# Where the HTTP status stands in the messages of trio_dls.duo.client.classify.
_HTTP_STATUS: Final = re.compile(r"\bHTTP (\d{3})\b")
_REFUSAL: Final = re.compile(r"\((HTTP \d{3}[^)]*)\)")

Clock = Callable[[], float]


@attrs.frozen
class ProbeResult:
    """What one probe found: which part, whether it works, and what it saw."""

    name: str
    """The part tried, e.g. ``duo auth`` or ``server siem1``."""
    ok: bool
    detail: str
    skew: float | None = None
    """This host's clock minus Duo's, in seconds, when Duo answered with a Date."""
    warnings: tuple[str, ...] = ()
    """Problems that do not stop trio-dls, each naming the part."""

    def line(self) -> str:
        """The line shown for this probe."""
        if self.ok:
            return f"{self.name}: ok, {self.detail}"
        return f"{self.name}: FAILED: {self.detail}"


# --------------------------------------------------------------------------
# Pure parts
# --------------------------------------------------------------------------


def probe_request(endpoint: Endpoint, now: float) -> Request:
    """Return the request a fetcher would send for the last settled minute, limit 1.

    The cursor starts a minute before the horizon (Duo's two-minute delay), so
    the window is one a running daemon could ask for at *now*, and every
    parameter (``mintime``, ``maxtime``, ``sort``, ``limit``) is the planner's.
    """
    unit = units_per_second(endpoint)
    start = math.floor((now - DUO_DELAY_SECONDS - PROBE_WINDOW_SECONDS) * unit)
    cursor = (
        AdminCursor(start) if endpoint is Endpoint.ADMINACTION else WindowCursor(start)
    )
    request = plan_request(endpoint, cursor, now, Limits(page_size=1))
    if request is None:  # the cursor is a minute before the horizon
        msg = f"{endpoint}: no request planned from {cursor!r} at {now}"
        raise RuntimeError(msg)
    return request


def skew_of(sent: float, received: float, date: float) -> float:
    """Return this host's clock minus Duo's, from one answer dated *date*.

    Duo wrote the answer between *sent* and *received* (this host's clock),
    and its ``Date`` is rounded down to the second: the middles of both spans
    are the best guess, within half a second plus half the round trip.
    """
    return (sent + received) / 2 - (date + 0.5)


def describe_skew(skew: float) -> str:
    """Say how Duo's clock compares with this host's, to the second.

    ``Date`` has whole seconds, so one answer tells the skew to about half a
    second: finer figures would be noise.
    """
    if abs(skew) < 1:
        return "Duo's clock within 1 s of this host's"
    side = "behind" if skew > 0 else "ahead of"
    return f"Duo's clock {abs(skew):.0f} s {side} this host"


def skew_warning(skew: float) -> str | None:
    """Return the warning a skew above ``CLOCK_SKEW_WARNING`` deserves, or None."""
    if abs(skew) <= CLOCK_SKEW_WARNING:
        return None
    if skew > 0:
        effect = (
            "trio-dls ends its windows by Duo's clock, so nothing is lost, "
            "but Duo may refuse requests once the gap reaches a few minutes"
        )
        where = "ahead of"
    else:
        effect = (
            "trio-dls ends its windows by this host's clock, so nothing is lost, "
            "but records reach the SIEM that much later"
        )
        where = "behind"
    return (
        f"this host's clock is {abs(skew):.0f} s {where} Duo's; {effect}; "
        "set the host's time right (NTP)"
    )


def describe_certificate(certificate: Mapping[str, Any], now: float) -> tuple[str, int]:
    """Describe a certificate ``ssl`` decoded; return the text and its days left."""
    subject = {
        key: value for rdn in certificate.get("subject", ()) for key, value in rdn
    }
    names = ", ".join(
        f"{kind}:{value}" for kind, value in certificate.get("subjectAltName", ())
    )
    expires = ssl.cert_time_to_seconds(certificate["notAfter"])
    days = math.floor((expires - now) / 86_400)
    day = dt.datetime.fromtimestamp(expires, tz=dt.UTC).date().isoformat()
    common = subject.get("commonName")
    text = f"certificate CN={common}" if common else "certificate without a CN"
    if names:
        text += f" ({names})"
    text += f", expires {day} ({days} days)"
    return text, days


def explain_duo_failure(exc: Exception, *, listing: bool = False) -> str:
    """Say what a failed Duo call means for the check, and what to look at."""
    text = str(exc)
    found = _HTTP_STATUS.search(text)
    status = found.group(1) if found else ""
    if isinstance(exc, RateLimitedError):
        return (
            f"{text}: Duo is reachable but rate-limited this call, so the "
            "credentials and the permission are not verified; is another client "
            "(DLS?) using this integration? Try again in a minute"
        )
    if isinstance(exc, CredentialsRejectedError):
        if "40105" in text:
            return (
                f"{text}; Duo refused the request's date: is this host's clock right?"
            )
        if status == "403" and listing:
            return (
                f"{text}; is_msp needs the credentials of an Accounts API "
                "application, which may list the child accounts"
            )
        refusal = _REFUSAL.search(text)
        if status == "403" and refusal:
            # Duo authenticates first (its 401s); a 403 after that is about
            # what the application may do, not about the keys.
            what = text.partition(": ")[0]
            return (
                f"{what}: Duo refused the call ({refusal.group(1)}): the keys "
                "were accepted, but the Admin API application lacks the "
                "permission for this log (Grant read log)"
            )
    return text


def render(results: Sequence[ProbeResult]) -> list[str]:
    """Return the lines of a check: one per probe, the warnings, a summary."""
    lines = [result.line() for result in results]
    warnings = [warning for result in results for warning in result.warnings]
    skews = [result.skew for result in results if result.skew is not None]
    if skews:
        # One warning for the clock, not one per endpoint: the largest gap.
        clock = skew_warning(max(skews, key=abs))
        if clock is not None:
            warnings.append(clock)
    lines += [f"warning: {warning}" for warning in dict.fromkeys(warnings)]
    failed = sum(not result.ok for result in results)
    if failed:
        lines.append(f"online: {failed} of {len(results)} checks FAILED")
    else:
        lines.append(f"online: all {len(results)} checks passed")
    return lines


# --------------------------------------------------------------------------
# Probes
# --------------------------------------------------------------------------


@attrs.frozen
class _Prober:
    """What every probe of one check shares: the config, the threads, the bounds."""

    config: Config
    limiter: trio.CapacityLimiter
    clock: Clock
    seconds_each: float
    """How long each probe may take."""

    async def within(
        self, name: str, probe: Callable[[], Awaitable[ProbeResult]]
    ) -> ProbeResult:
        """Run *probe* within ``seconds_each``; a failure, never an exception."""
        with trio.move_on_after(self.seconds_each):
            try:
                return await probe()
            except Exception as exc:  # noqa: BLE001 - one line, not a traceback
                # Every expected failure is a result already; this is a bug,
                # but one probe's bug must not hide the others' results.
                return ProbeResult(name, ok=False, detail=f"unexpected error: {exc!r}")
        return ProbeResult(
            name, ok=False, detail=f"timed out after {self.seconds_each:g} s"
        )

    def client(self, child: Mapping[str, Any] | None = None) -> ThreadedDuoApi:
        """The client of the account, or of one MSP child in the account list."""
        # As trio_dls.daemon.duo_api_for builds it, with the probe's bound as
        # duo_client's socket timeout, so that no abandoned thread lingers.
        account = self.config.account
        hostname = None
        if child is not None and account.msp_api_host is MspApiHost.CHILD:
            listed = child.get("api_hostname")
            if isinstance(listed, str) and listed.strip():
                hostname = listed.strip()
        return ThreadedDuoApi(
            account,
            self.config.dls_settings.proxy,
            limiter=self.limiter,
            child_account_id=None if child is None else child["account_id"],
            api_hostname=hostname,
            call_timeout=self.seconds_each,
            queue_timeout=self.seconds_each,
        )

    def start_endpoints(
        self,
        nursery: trio.Nursery,
        results: dict[int, ProbeResult],
        first: int,
        api: DuoApi,
        child: str = "",
    ) -> None:
        """Probe each mapped endpoint in *nursery*, into slots *first* onwards."""
        for index, endpoint in enumerate(self.config.account.endpoints, start=first):

            async def probe(index: int = index, endpoint: Endpoint = endpoint) -> None:
                results[index] = await self.within(
                    f"duo {endpoint}",
                    lambda: _probe_endpoint(api, endpoint, self.clock, child),
                )

            nursery.start_soon(probe)

    async def msp(self, results: dict[int, ProbeResult]) -> None:
        """Fill slot 0 with the account list, then the next with a child's endpoints."""
        account = self.config.account
        parent = self.client()
        listed: list[dict[str, Any]] = []
        name = "duo account list"

        async def list_children() -> ProbeResult:
            try:
                listed.extend(await parent.list_child_accounts())
            except (TransientApiError, CredentialsRejectedError) as exc:
                detail = explain_duo_failure(exc, listing=True)
                return ProbeResult(name, ok=False, detail=detail)
            kept = [c for c in listed if c["account_id"] not in account.block_list]
            detail = f"{len(listed)} child accounts, {len(kept)} to fetch"
            if len(kept) != len(listed):
                detail += f" ({len(listed) - len(kept)} in block_list)"
            return ProbeResult(name, ok=True, detail=detail)

        results[0] = listing = await self.within(name, list_children)
        children = [c for c in listed if c["account_id"] not in account.block_list]
        if not listing.ok or not children:
            why = (
                "not tried: no child account to fetch for (trio-dls waits for one)"
                if listing.ok
                else "not tried: the account list failed"
            )
            for index, endpoint in enumerate(account.endpoints, start=1):
                results[index] = ProbeResult(
                    f"duo {endpoint}", ok=listing.ok, detail=why
                )
            return
        child = children[0]
        label = child.get("name") or child["account_id"]
        note = f" for child {label!r} ({child['account_id']})"
        async with trio.open_nursery() as nursery:
            self.start_endpoints(nursery, results, 1, self.client(child), note)


async def _probe_endpoint(
    api: DuoApi, endpoint: Endpoint, clock: Clock, child: str
) -> ProbeResult:
    name = f"duo {endpoint}"
    request = probe_request(endpoint, clock())
    sent = clock()
    try:
        answer = await api.get(request.path, request.params_dict())
    except (TransientApiError, CredentialsRejectedError) as exc:
        return ProbeResult(name, ok=False, detail=explain_duo_failure(exc))
    received = clock()
    try:
        apply_response(request, answer.body, duo_now=answer.date)
    except MalformedResponseError as exc:
        detail = f"GET {request.path}: an answer of the wrong shape: {exc}"
        return ProbeResult(name, ok=False, detail=detail)
    detail = f"GET {request.path} answered{child}"
    if answer.date is None:
        return ProbeResult(name, ok=True, detail=f"{detail}; no Date in Duo's answer")
    skew = skew_of(sent, received, answer.date)
    detail = f"{detail}, {describe_skew(skew)}"
    return ProbeResult(name, ok=True, detail=detail, skew=skew)


async def _probe_datagram(server: Server) -> ProbeResult:
    name = f"server {server.id}"
    where = f"udp {server.hostname}:{server.port}"
    try:
        connection = await open_datagram(server)
    except TransportError as exc:
        return ProbeResult(name, ok=False, detail=f"{where}: {exc}")
    connection.close()
    return ProbeResult(
        name,
        ok=True,
        detail=f"{where}: not verifiable (connectionless); "
        f"resolved to {connection.address}",
    )


async def _probe_stream(server: Server, clock: Clock) -> ProbeResult:
    name = f"server {server.id}"
    context = None
    if isinstance(server.transport, TlsSettings):
        where = f"tls {server.hostname}:{server.port}"
        try:
            context = tls_context(server)
        except FatalError as exc:
            return ProbeResult(name, ok=False, detail=str(exc))
    else:
        where = f"tcp {server.hostname}:{server.port}"
    async with trio.open_nursery() as nursery:
        try:
            connection = await open_stream(server, nursery, context)
        except TransportError as exc:
            return ProbeResult(name, ok=False, detail=f"{where}: {exc}")
        certificate = connection.peer_certificate()
        # Closed at once: a TLS close_notify may wait for ever on a server
        # that reads nothing, and nothing was sent that it could lose.
        with trio.CancelScope() as scope:
            scope.cancel()
            await connection.aclose()
    if not certificate:
        return ProbeResult(name, ok=True, detail=f"{where}: connected")
    text, days = describe_certificate(certificate, clock())
    warnings: tuple[str, ...] = ()
    if days < CERTIFICATE_WARNING_DAYS:
        warning = (
            f"{name}: its certificate expires in {days} days; renew it before then,"
            " or trio-dls's connections will be refused"
        )
        warnings = (warning,)
    return ProbeResult(name, ok=True, detail=f"{where}: {text}", warnings=warnings)


async def probe_all(
    config: Config, *, seconds_each: float = PROBE_TIMEOUT, clock: Clock = time.time
) -> list[ProbeResult]:
    """Try every real part of *config* at once; return one result each, in order.

    Duo first (the account list for an MSP parent, then each mapped endpoint),
    then the servers in the config's order.  Each probe may take *seconds_each*;
    an MSP child's endpoints get theirs once the list has come.
    """
    prober = _Prober(
        config,
        trio.CapacityLimiter(config.dls_settings.api.max_calls_in_flight),
        clock,
        seconds_each,
    )
    results: dict[int, ProbeResult] = {}
    account = config.account
    first_server = len(account.endpoints) + (1 if account.is_msp else 0)
    async with trio.open_nursery() as nursery:
        if account.is_msp:
            nursery.start_soon(prober.msp, results)
        else:
            prober.start_endpoints(nursery, results, 0, prober.client())
        for index, server in enumerate(config.servers, start=first_server):

            async def probe(index: int = index, server: Server = server) -> None:
                results[index] = await prober.within(
                    f"server {server.id}",
                    (
                        (lambda: _probe_datagram(server))
                        if isinstance(server.transport, UdpSettings)
                        else (lambda: _probe_stream(server, clock))
                    ),
                )

            nursery.start_soon(probe)
    return [results[index] for index in sorted(results)]


def check_online(
    config: Config, stdout: TextIO, *, seconds_each: float = PROBE_TIMEOUT
) -> bool:
    """Try every real part of *config*, print one line each; True if all work."""
    print(f"online (each check at most {seconds_each:g} s):", file=stdout, flush=True)
    results = trio.run(lambda: probe_all(config, seconds_each=seconds_each))
    for line in render(results):
        print(line, file=stdout)
    return all(result.ok for result in results)
