r"""The fake Duo account's log records: generated, held and reported.

This module owns the data set: which records each account holds for each log
endpoint, in Duo's order, and how they are generated from a seed. It is pure:
it reads no clock and does no I/O; whoever holds a ``Dataset`` tells it the
time (``advance``) when live mode should add records.

Theory of operation: every (account, endpoint) gets its own ``random.Random``
seeded from the spec's seed, the account id and the endpoint name, so ids and
field values are the same on every run for a given seed; timestamps are the
same too once ``DatasetSpec.end`` is pinned, otherwise they are laid out
relative to the ``end`` the caller passes. Records are kept sorted by
``(ts_ms, key)``, the order in which the paging rules walk them. Live mode
cuts time into buckets and generates a bucket's records, seeded from the
bucket number, once the bucket is complete.

Hard cases are built in on purpose: runs of records sharing one millisecond
and one second, runs straddling the edges of pages of 100, 500 and 1000, an
administrator-log burst of more than 1000 events in one second, and string
values carrying ``|``, ``=``, ``\``, newlines, quotes and non-ASCII text.
"""

from __future__ import annotations

import bisect
import datetime as dt
import hashlib
import json
import random
import string
import uuid
from collections.abc import Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import attrs

from trio_dls.endpoints import Endpoint

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Sequence

__all__ = [
    "ChildAccount",
    "Dataset",
    "DatasetSpec",
    "FakeRecord",
    "account_id_for",
    "generate_live_bucket",
    "generate_records",
    "make_children",
    "record_key",
]

JsonDict = dict[str, Any]

_DAY = 86_400.0
# A run of records sharing a time slot needs at least two.
_MIN_RUN = 2

# Fields duo_client's log helpers, or a log shipper, add to a record after it
# left Duo; they take no part in a record's identity.
_ADDED_FIELDS = frozenset({"eventtype", "host", "child_account_id"})

# Values that break naive CEF/syslog writers and JSON round trips.
TRICKY_STRINGS = (
    "pipe|in|name",
    "equals=sign",
    "back\\slash",
    "new\nline",
    "quote\"d 'both'",
    "Zoë Ångström",
    "東京 ユーザー",
    'mix |=\\\n"é',
    "tab\tand\rreturn",
)

_DEFAULT_COUNTS = MappingProxyType(
    {
        Endpoint.AUTH: 400,
        Endpoint.ADMINACTION: 200,
        Endpoint.TELEPHONY: 150,
        Endpoint.ACTIVITY: 250,
        Endpoint.TRUSTMONITOR: 120,
    }
)


def _freeze_counts(counts: Mapping[Endpoint, int]) -> Mapping[Endpoint, int]:
    return MappingProxyType({Endpoint(k): int(v) for k, v in counts.items()})


def _freeze_account_counts(
    counts: Mapping[str, Mapping[Endpoint, int]],
) -> Mapping[str, Mapping[Endpoint, int]]:
    return MappingProxyType({str(k): _freeze_counts(v) for k, v in counts.items()})


@attrs.frozen
class DatasetSpec:
    """How to generate one account's records.

    ``counts`` gives the number of base records per endpoint (missing ones get
    none), spread over ``span`` seconds ending ``end_before`` seconds before
    the time the server starts, or ending at ``end`` (epoch seconds) when that
    is given. ``admin_burst`` extra administrator-log events share one second.
    ``account_counts`` gives some accounts their own ``counts`` (an MSP
    parent's children are seldom alike: some big, some empty).
    ``live`` adds ``live_per_bucket`` records per endpoint for every complete
    ``live_bucket`` seconds after the base records end.
    """

    seed: int = 0
    counts: Mapping[Endpoint, int] = attrs.field(
        default=_DEFAULT_COUNTS, converter=_freeze_counts, eq=False
    )
    account_counts: Mapping[str, Mapping[Endpoint, int]] = attrs.field(
        factory=dict, converter=_freeze_account_counts, eq=False
    )
    span: float = 2 * _DAY
    end_before: float = 600.0
    end: float | None = None
    hard_cases: bool = True
    admin_burst: int = 1005
    live: bool = False
    live_bucket: float = 60.0
    live_per_bucket: int = 2


@attrs.frozen
class FakeRecord:
    """One held log record: its sort time in ms, its identity and its JSON."""

    ts_ms: int
    key: str
    body: Mapping[str, Any] = attrs.field(eq=False, repr=False)

    @property
    def sort_key(self) -> tuple[int, str]:
        """The position of the record in Duo's ascending order."""
        return (self.ts_ms, self.key)


@attrs.frozen
class ChildAccount:
    """A child account an MSP parent sees in ``/accounts/v1/account/list``."""

    account_id: str
    name: str
    api_hostname: str = "localhost"


def account_id_for(seed: int, label: str) -> str:
    """Return a stable 20-character ``DA…`` account id for ``label``."""
    digest = hashlib.sha256(f"{seed}:{label}".encode()).digest()
    alphabet = string.ascii_uppercase + string.digits
    return "DA" + "".join(alphabet[b % len(alphabet)] for b in digest[:18])


def make_children(
    count: int, seed: int = 0, api_hostname: str = "localhost"
) -> tuple[ChildAccount, ...]:
    """Return ``count`` child accounts with stable ids and names."""
    return tuple(
        ChildAccount(
            account_id=account_id_for(seed, f"child-{i}"),
            name=f"Child {i} | Ltd",
            api_hostname=api_hostname,
        )
        for i in range(count)
    )


def record_key(endpoint: Endpoint, record: Mapping[str, Any]) -> str:
    """Return the identity of a record as the fake reports it.

    The endpoint's own id where Duo has one (``txid``, ``telephony_id``,
    ``activity_id``, ``sekey``); administrator-log events have none, so theirs
    is a digest of the record's JSON without the fields added after delivery
    (``eventtype``, ``host``, ``child_account_id``).
    """
    match endpoint:
        case Endpoint.AUTH:
            return str(record["txid"])
        case Endpoint.TELEPHONY:
            return str(record["telephony_id"])
        case Endpoint.ACTIVITY:
            return str(record["activity_id"])
        case Endpoint.TRUSTMONITOR:
            return str(record["sekey"])
        case Endpoint.ADMINACTION:
            own = {k: v for k, v in record.items() if k not in _ADDED_FIELDS}
            canonical = json.dumps(own, sort_keys=True, separators=(",", ":"))
            return hashlib.sha256(canonical.encode()).hexdigest()[:32]


# ---------------------------------------------------------------------------
# Field values


def _iso(ts_us: int) -> str:
    moment = dt.datetime.fromtimestamp(ts_us / 1_000_000, tz=dt.UTC)
    return moment.isoformat(timespec="microseconds")


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _duo_key(rng: random.Random, prefix: str) -> str:
    alphabet = string.ascii_uppercase + string.digits
    return prefix + "".join(rng.choice(alphabet) for _ in range(20 - len(prefix)))


def _text(rng: random.Random, plain: Sequence[str]) -> str:
    # One value in five is awkward: that is how often a SIEM writer meets one.
    if _chance(rng, 0.2):
        return rng.choice(TRICKY_STRINGS)
    return rng.choice(plain)


_USERS = ("alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi")
_APPS = ("Corporate VPN", "Okta SSO", "Linux SSH", "Windows Logon", "Admin API")
_CITIES = (
    ("Ann Arbor", "Michigan", "United States"),
    ("London", "England", "United Kingdom"),
    ("Berlin", "Berlin", "Germany"),
    ("São Paulo", "São Paulo", "Brazil"),
)
_BROWSERS = (("Chrome", "124.0.6367.91"), ("Firefox", "126.0"), ("Safari", "17.4"))
_OSES = (("Mac OS X", "14.4"), ("Windows", "11"), ("Linux", "6.8"), ("iOS", "17.5"))


def _chance(rng: random.Random, probability: float) -> bool:
    return rng.random() < probability


def _ip(rng: random.Random) -> str:
    return f"203.0.113.{rng.randrange(1, 255)}"


def _location(rng: random.Random) -> JsonDict:
    city, state, country = rng.choice(_CITIES)
    if _chance(rng, 0.1):
        city = rng.choice(TRICKY_STRINGS)
    return {"city": city, "country": country, "state": state}


def _auth(rng: random.Random, ts_us: int, index: int) -> JsonDict:
    browser, browser_version = rng.choice(_BROWSERS)
    os_name, os_version = rng.choice(_OSES)
    result, reason = rng.choice(
        (
            ("success", "user_approved"),
            ("success", "valid_passcode"),
            ("denied", "user_marked_fraud"),
            ("denied", "deny_unenrolled_user"),
            ("fraud", "user_marked_fraud"),
        )
    )
    user = _text(rng, _USERS)
    return {
        "access_device": {
            "browser": browser,
            "browser_version": browser_version,
            "epkey": _duo_key(rng, "EP") if _chance(rng, 0.3) else None,
            "hostname": None,
            "ip": _ip(rng),
            "is_encryption_enabled": "unknown",
            "is_firewall_enabled": "unknown",
            "location": _location(rng),
            "os": os_name,
            "os_version": os_version,
        },
        "alias": "",
        "application": {"key": _duo_key(rng, "DI"), "name": _text(rng, _APPS)},
        "auth_device": {
            "ip": _ip(rng),
            "location": _location(rng),
            "name": f"+1 555-01{index % 100:02d}",
        },
        "email": f"{_USERS[index % len(_USERS)]}@example.com",
        "event_type": rng.choice(("authentication", "enrollment")),
        "factor": rng.choice(("duo_push", "passcode", "phone_call", "sms_passcode")),
        "isotimestamp": _iso(ts_us),
        "ood_software": None,
        "reason": reason,
        "result": result,
        "timestamp": ts_us // 1_000_000,
        "trusted_endpoint_status": rng.choice(("trusted", "not trusted", "unknown")),
        "txid": _uuid(rng),
        "user": {
            "groups": [_text(rng, ("Staff", "Admins", "Contractors"))],
            "key": _duo_key(rng, "DU"),
            "name": user,
        },
    }


def _adminaction(rng: random.Random, ts_us: int, index: int) -> JsonDict:
    seconds = ts_us // 1_000_000
    action = rng.choice(
        ("admin_login", "user_update", "group_create", "integration_update")
    )
    if _chance(rng, 0.5):
        description = json.dumps(
            {"email": f"u{index}@example.com", "realname": _text(rng, _USERS)}
        )
    else:
        description = f"{action} by {_text(rng, _USERS)}"
    return {
        "action": action,
        "description": description,
        "isotimestamp": _iso(seconds * 1_000_000),
        # The object carries the index so that no two events are identical;
        # an administrator-log event has no id of its own.
        "object": f"{_text(rng, _USERS)}#{index}",
        "timestamp": seconds,
        "username": rng.choice(("API", "System", "AD Sync: corp", "Ann Admin")),
    }


def _telephony(rng: random.Random, ts_us: int, index: int) -> JsonDict:
    return {
        "context": rng.choice(
            ("administrator login", "authentication", "enrollment", "verify")
        ),
        "credits": rng.choice((1, 1, 2, 3)),
        "phone": f"+1555010{index % 10_000:04d}",
        "telephony_id": _uuid(rng),
        "ts": _iso(ts_us),
        "txid": _uuid(rng),
        "type": rng.choice(("sms", "phone")),
    }


def _activity(rng: random.Random, ts_us: int, _index: int) -> JsonDict:
    browser, browser_version = rng.choice(_BROWSERS)
    os_name, os_version = rng.choice(_OSES)
    name = rng.choice(("admin_login", "user_update", "phone_create"))
    # Older activity data has a string action, newer an object (DUO_API.md).
    action: str | JsonDict = (
        name if _chance(rng, 0.5) else {"name": name, "details": None}
    )
    actor_name = _text(rng, _USERS)
    target_name = _text(rng, _USERS)
    return {
        "access_device": {
            "browser": browser,
            "browser_version": browser_version,
            "ip": {"address": _ip(rng)},
            "location": _location(rng),
            "os": os_name,
            "os_version": os_version,
        },
        "action": action,
        "activity_id": _uuid(rng),
        "actor": {
            "details": json.dumps({"created": _iso(ts_us), "name": actor_name}),
            "key": _duo_key(rng, "DE"),
            "name": actor_name,
            "type": "admin",
        },
        "akey": _duo_key(rng, "DA"),
        "application": {
            "key": _duo_key(rng, "DI"),
            "name": _text(rng, _APPS),
            "type": "admin_panel",
        },
        "old_target": None,
        "outcome": {"result": rng.choice(("SUCCESS", "FAILURE"))},
        "target": {
            "details": json.dumps({"status": "active", "name": target_name}),
            "key": _duo_key(rng, "DU"),
            "name": target_name,
            "type": "user",
        },
        "ts": _iso(ts_us),
    }


def _trustmonitor(rng: random.Random, ts_us: int, index: int) -> JsonDict:
    kind = rng.choice(("auth", "bypass_status", "device_registration"))
    surfaced_auth = _auth(rng, ts_us - 5_000_000, index)
    return {
        "explanations": [
            {"summary": _text(rng, ("New country", "Unusual time")), "type": "NEW"}
        ],
        "from_common_netblock": _chance(rng, 0.5),
        "from_new_user": _chance(rng, 0.2),
        "low_risk_ip": False,
        "priority_event": _chance(rng, 0.3),
        "priority_reasons": [{"label": "United States", "type": "country"}],
        "sekey": _duo_key(rng, "SE"),
        "state": "new",
        "state_updated_timestamp": None,
        "surfaced_auth": surfaced_auth,
        "surfaced_timestamp": ts_us // 1000,
        "triage_event_uri": f"https://admin-fake.duosecurity.com/trust_monitor/{index}",
        "triaged_as_interesting": False,
        "type": kind,
    }


_BUILDERS: Mapping[Endpoint, Callable[[random.Random, int, int], JsonDict]] = {
    Endpoint.AUTH: _auth,
    Endpoint.ADMINACTION: _adminaction,
    Endpoint.TELEPHONY: _telephony,
    Endpoint.ACTIVITY: _activity,
    Endpoint.TRUSTMONITOR: _trustmonitor,
}


# ---------------------------------------------------------------------------
# Timestamps


def _collapse(times: list[int], start: int, stop: int, unit: int) -> None:
    """Make ``times[start:stop]`` share the ``unit``-sized slot of the first."""
    if start < 0 or stop > len(times) or stop - start < _MIN_RUN:
        return
    slot = times[start] // unit * unit
    for i in range(start, stop):
        times[i] = slot + times[i] % unit
    # Every index of the run now lies in one slot, and only neighbours that
    # were already in that slot can move among them: sorting keeps the run at
    # the same indices.
    times.sort()


def _base_times(
    rng: random.Random, count: int, start_us: int, span_us: int, *, hard: bool
) -> list[int]:
    times = sorted(start_us + int(rng.random() * span_us) for _ in range(count))
    if not hard:
        return times
    ms, second = 1000, 1_000_000
    # Many records in one millisecond, and many in one second.
    _collapse(times, count // 3, count // 3 + max(2, count // 20), ms)
    _collapse(times, count // 2, count // 2 + max(3, count // 10), second)
    # Runs straddling page edges, counted from either end so that both
    # ts:asc and ts:desc readers meet them.
    for page in (100, 500, 1000):
        if count > page + 4:
            _collapse(times, page - 3, page + 3, ms)
            _collapse(times, count - page - 3, count - page + 3, ms)
    return times


def _rng(
    spec: DatasetSpec, account_id: str, endpoint: Endpoint, *extra: object
) -> random.Random:
    # Reproducible test data, not secrets.
    return random.Random(  # noqa: S311
        ":".join(map(str, (spec.seed, account_id, endpoint, *extra)))
    )


def _build(
    rng: random.Random,
    endpoint: Endpoint,
    times_us: Iterable[int],
    first_index: int,
) -> list[FakeRecord]:
    builder = _BUILDERS[endpoint]
    records = []
    for index, ts_us in enumerate(times_us, start=first_index):
        body = builder(rng, ts_us, index)
        if endpoint is Endpoint.ADMINACTION:
            ts_ms = body["timestamp"] * 1000
        else:
            ts_ms = ts_us // 1000
        records.append(FakeRecord(ts_ms, record_key(endpoint, body), body))
    records.sort(key=lambda r: r.sort_key)
    return records


def generate_records(
    spec: DatasetSpec, account_id: str, endpoint: Endpoint, end: float
) -> list[FakeRecord]:
    """Return the base records of one account and endpoint, in Duo's order.

    ``end`` is the epoch second the records end before (ignored when the spec
    pins ``end``).
    """
    end_us = int((spec.end if spec.end is not None else end) * 1_000_000)
    span_us = int(spec.span * 1_000_000)
    rng = _rng(spec, account_id, endpoint)
    count = spec.account_counts.get(account_id, spec.counts).get(endpoint, 0)
    times = _base_times(rng, count, end_us - span_us, span_us, hard=spec.hard_cases)
    if endpoint is Endpoint.ADMINACTION and spec.admin_burst:
        # A burst of more events in one second than one v1 page can carry.
        burst_second = (end_us - span_us * 2 // 5) // 1_000_000 * 1_000_000
        times.extend(
            burst_second + rng.randrange(1_000_000) for _ in range(spec.admin_burst)
        )
    return _build(rng, endpoint, times, first_index=0)


def generate_live_bucket(
    spec: DatasetSpec, account_id: str, endpoint: Endpoint, bucket: int
) -> list[FakeRecord]:
    """Return the records live mode adds for bucket number ``bucket``.

    Bucket ``n`` covers ``[n * live_bucket, (n + 1) * live_bucket)`` seconds.
    """
    rng = _rng(spec, account_id, endpoint, "live", bucket)
    width_us = int(spec.live_bucket * 1_000_000)
    start_us = bucket * width_us
    times = sorted(
        start_us + rng.randrange(width_us) for _ in range(spec.live_per_bucket)
    )
    return _build(rng, endpoint, times, first_index=1_000_000 + bucket * 1000)


# ---------------------------------------------------------------------------
# The held data set


class Dataset:
    """Every record the fake holds, per account and endpoint, kept in order.

    Not thread-safe by itself: the server serialises access.
    """

    def __init__(
        self,
        spec: DatasetSpec,
        account_ids: Iterable[str],
        *,
        start: float,
    ) -> None:
        """Generate the base records of every account, ending before ``start``.

        ``start`` is the time the server starts; the base records end at
        ``start - spec.end_before`` unless the spec pins ``end``.
        """
        self.spec = spec
        end = spec.end if spec.end is not None else start - spec.end_before
        self._records: dict[tuple[str, Endpoint], list[FakeRecord]] = {}
        for account_id in account_ids:
            for endpoint in Endpoint:
                self._records[account_id, endpoint] = generate_records(
                    spec, account_id, endpoint, end
                )
        # Live records begin with the first bucket that starts after both the
        # base records and the server start, so the order stays sorted.
        self._next_bucket = int(max(end, start) // spec.live_bucket) + 1

    @property
    def account_ids(self) -> list[str]:
        """The accounts whose records are held."""
        return sorted({account for account, _ in self._records})

    def advance(self, now: float) -> None:
        """Add the live records of every bucket complete at ``now``."""
        if not self.spec.live:
            return
        last_complete = int(now // self.spec.live_bucket) - 1
        while self._next_bucket <= last_complete:
            for (account_id, endpoint), records in self._records.items():
                records.extend(
                    generate_live_bucket(
                        self.spec, account_id, endpoint, self._next_bucket
                    )
                )
            self._next_bucket += 1

    def records(self, account_id: str, endpoint: Endpoint) -> Sequence[FakeRecord]:
        """Return the held records of one account and endpoint, ascending."""
        return self._records[account_id, endpoint]

    def add(
        self, account_id: str, endpoint: Endpoint, body: Mapping[str, Any], ts_ms: int
    ) -> FakeRecord:
        """Insert one hand-made record in its place (for tests)."""
        record = FakeRecord(ts_ms, record_key(endpoint, body), dict(body))
        records = self._records[account_id, endpoint]
        bisect.insort(records, record, key=lambda r: r.sort_key)
        return record
