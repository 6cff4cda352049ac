"""Misbehaviour on demand: rate limits, 5xx answers, delays, drops, bad JSON.

This module owns the description of the faults (``Faults``, a frozen value a
test swaps while the server runs), the limiters behind Duo's 429 (per ikey,
account and endpoint, or shared more widely: ``RateScope``), and the seeded
dice that decide which request misbehaves. It is pure: the time is passed in,
and the randomness comes from a ``random.Random`` seeded from ``Faults.seed``
so a run can be replayed.

Duo publishes neither its limits nor how it counts, so the fake counts in
any of three ways (``RateShape``): a token bucket (a steady rate with a
burst), a sliding window (at most N requests served in the last W seconds)
and a fixed window (at most N in each W seconds aligned on the epoch, so a
client may get 2N across a boundary). Only served requests count: a refused
one spends nothing, which is the kinder reading for a client and the one
that lets a limit be found at all by probing. Every shape answers the same
429 with no ``Retry-After``; each keeps at most N times per key (a window's)
or two numbers (a bucket's), and one entry per key in use.
"""

from __future__ import annotations

import collections
import enum
import math
import random
from typing import TYPE_CHECKING, Protocol

import attrs

from trio_dls.endpoints import Endpoint

if TYPE_CHECKING:
    from collections.abc import Hashable


_HALF = 0.5

__all__ = [
    "DropPoint",
    "FaultDice",
    "Faults",
    "FixedWindowLimiter",
    "Limiter",
    "Outcome",
    "RateLimiter",
    "RateScope",
    "RateShape",
    "SlidingWindowLimiter",
    "make_limiter",
]


class RateScope(enum.Enum):
    """What one rate limit counts: Duo says neither, so the fake can be either."""

    #: The requests of one (ikey, account, endpoint): each child's own.
    ACCOUNT_ENDPOINT = "account_endpoint"
    #: The requests of one (ikey, endpoint), whatever the account: an MSP
    #: parent's children share the limit of each endpoint.
    ENDPOINT = "endpoint"
    #: Every log request of one ikey: all children and endpoints share one.
    INTEGRATION = "integration"

    def key(self, ikey: str, account: str, endpoint: Endpoint) -> Hashable:
        """The bucket a request of (*ikey*, *account*, *endpoint*) counts in."""
        if self is RateScope.ENDPOINT:
            return (ikey, endpoint)
        if self is RateScope.INTEGRATION:
            return (ikey,)
        return (ikey, account, endpoint)


class RateShape(enum.Enum):
    """How one rate limit counts requests over time: Duo does not say."""

    #: A bucket of ``rate_burst`` tokens refilled at ``rate_limit`` a minute.
    TOKEN_BUCKET = "token_bucket"  # noqa: S105 - a name, not a password
    #: At most N served in any ``rate_window`` seconds (the last W, counted).
    SLIDING_WINDOW = "sliding_window"
    #: At most N served in each ``rate_window`` seconds aligned on the epoch.
    FIXED_WINDOW = "fixed_window"


class DropPoint(enum.Enum):
    """Where a dropped connection is cut."""

    #: Before any byte of the answer: duo_client sees ``RemoteDisconnected``.
    BEFORE_RESPONSE = "before_response"
    #: After the head and half the body: duo_client sees ``IncompleteRead``.
    MID_BODY = "mid_body"


def _probability(_: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{attribute.name} must be a probability, not {value!r}")


@attrs.frozen
class Faults:
    """Which misbehaviour the fake shows; all off by default.

    - ``rate_limit``: requests per minute allowed per (ikey, account, log
      endpoint), a token bucket holding ``rate_burst`` tokens (default: the
      rate, at least 1); beyond it Duo's 429 / 42901 with no ``Retry-After``.
      ``rate_scope`` says what one bucket counts instead (``RateScope``).
      ``rate_shape`` counts in windows of ``rate_window`` seconds instead
      (``RateShape``): ``rate_limit * rate_window / 60`` requests each, a
      whole number.
    - ``error_rate``: probability of a 500 (Duo envelope) or a 503 (a bare
      text body, as a load balancer gives), half and half.
    - ``delay``: seconds to wait before answering.
    - ``drop_rate``: probability the connection is cut at ``drop_point``.
    - ``malformed_rate``: probability of a 200 whose JSON is cut short.
    - ``endpoints``: the log endpoints the random faults and the delay apply
      to (None: every request, the account list included).
    - ``seed``: seeds the dice, so a sequence of faults can be replayed.
    """

    rate_limit: float | None = None
    rate_burst: int | None = None
    rate_scope: RateScope = RateScope.ACCOUNT_ENDPOINT
    rate_shape: RateShape = RateShape.TOKEN_BUCKET
    rate_window: float = 60.0
    error_rate: float = attrs.field(default=0.0, validator=_probability)
    delay: float = 0.0
    drop_rate: float = attrs.field(default=0.0, validator=_probability)
    drop_point: DropPoint = DropPoint.MID_BODY
    malformed_rate: float = attrs.field(default=0.0, validator=_probability)
    endpoints: frozenset[Endpoint] | None = None
    seed: int = 0

    def least_time(self, requests: int, start: float) -> float:
        """Seconds from *start* (the fake's epoch) to the last of *requests*, at best.

        What a client that knew the rate limit would take: its first request
        at *start*, every next one as soon as the limit serves it; the
        yardstick of the pacing tests and benchmark.
        """
        if self.rate_limit is None:
            return 0.0
        per_minute = self.rate_limit
        if self.rate_shape is RateShape.TOKEN_BUCKET:
            burst = (
                self.rate_burst
                if self.rate_burst is not None
                else math.ceil(per_minute)
            )
            return max(0, requests - burst) * 60 / per_minute
        allowed = round(per_minute * self.rate_window / 60)
        windows_after_first = math.ceil(requests / allowed) - 1
        if self.rate_shape is RateShape.SLIDING_WINDOW:
            return windows_after_first * self.rate_window
        if windows_after_first == 0:
            return 0.0
        # Aligned windows: the first one ends before a whole window passed.
        first_ends = (math.floor(start / self.rate_window) + 1) * self.rate_window
        return first_ends - start + (windows_after_first - 1) * self.rate_window

    def applies_to(self, endpoint: Endpoint | None) -> bool:
        """Whether the random faults and the delay apply to ``endpoint``."""
        return self.endpoints is None or endpoint in self.endpoints


class Limiter(Protocol):
    """Whether one more request of a key is served now: a limit's shape."""

    def allow(self, key: Hashable, now: float) -> bool:
        """Count a request of ``key`` at time ``now``; False if refused."""
        ...


class RateLimiter:
    """A token bucket per key, refilled continuously at a rate per minute."""

    def __init__(self, per_minute: float, burst: int | None = None) -> None:
        """Allow ``per_minute`` requests a minute, ``burst`` at once."""
        if per_minute <= 0:
            raise ValueError("the rate must be positive")
        self.per_second = per_minute / 60.0
        self.capacity = float(
            burst if burst is not None else max(1, math.ceil(per_minute))
        )
        self._buckets: dict[Hashable, tuple[float, float]] = {}

    def allow(self, key: Hashable, now: float) -> bool:
        """Take a token for ``key`` at time ``now``; False if there is none."""
        tokens, updated = self._buckets.get(key, (self.capacity, now))
        tokens = min(self.capacity, tokens + max(0.0, now - updated) * self.per_second)
        if tokens >= 1.0:
            self._buckets[key] = (tokens - 1.0, now)
            return True
        self._buckets[key] = (tokens, now)
        return False


def _per_window(per_minute: float, window: float) -> int:
    """The requests one window of *window* seconds holds at *per_minute*."""
    if per_minute <= 0 or window <= 0:
        raise ValueError("the rate and the window must be positive")
    allowed = per_minute * window / 60.0
    if allowed < 1 or not math.isclose(allowed, round(allowed)):
        msg = f"{per_minute:g} a minute is not a whole number per {window:g} s"
        raise ValueError(msg)
    return round(allowed)


class SlidingWindowLimiter:
    """At most ``allowed`` requests per key served in the last ``window`` s."""

    def __init__(self, per_minute: float, window: float = 60.0) -> None:
        """Allow ``per_minute * window / 60`` requests in any ``window`` s."""
        self.allowed = _per_window(per_minute, window)
        self.window = window
        # Per key, the times of the requests served within the window: never
        # more than ``allowed`` of them.
        self._served: dict[Hashable, collections.deque[float]] = {}

    def allow(self, key: Hashable, now: float) -> bool:
        """Count a request of ``key`` at ``now``; False if the window is full."""
        served = self._served.setdefault(key, collections.deque())
        while served and served[0] <= now - self.window:
            served.popleft()
        if len(served) >= self.allowed:
            return False
        served.append(now)
        return True


class FixedWindowLimiter:
    """At most ``allowed`` requests per key in each aligned ``window`` s."""

    def __init__(self, per_minute: float, window: float = 60.0) -> None:
        """Allow ``per_minute * window / 60`` requests in each window."""
        self.allowed = _per_window(per_minute, window)
        self.window = window
        self._counts: dict[Hashable, tuple[int, int]] = {}  # (window number, served)

    def allow(self, key: Hashable, now: float) -> bool:
        """Count a request of ``key`` at ``now``; False if its window is full."""
        number = math.floor(now / self.window)
        current, served = self._counts.get(key, (number, 0))
        if current != number:
            served = 0
        if served >= self.allowed:
            self._counts[key] = (number, served)
            return False
        self._counts[key] = (number, served + 1)
        return True


def make_limiter(faults: Faults) -> Limiter | None:
    """The limiter ``faults`` describes, or None when there is no rate limit."""
    if faults.rate_limit is None:
        return None
    match faults.rate_shape:
        case RateShape.TOKEN_BUCKET:
            return RateLimiter(faults.rate_limit, faults.rate_burst)
        case RateShape.SLIDING_WINDOW:
            return SlidingWindowLimiter(faults.rate_limit, faults.rate_window)
        case RateShape.FIXED_WINDOW:
            return FixedWindowLimiter(faults.rate_limit, faults.rate_window)


class Outcome(enum.Enum):
    """What the dice chose for one request."""

    NORMAL = "normal"
    ERROR_500 = "error_500"
    ERROR_503 = "error_503"
    MALFORMED = "malformed"
    DROP = "drop"


class FaultDice:
    """Seeded decisions about which request misbehaves, and how."""

    def __init__(self, faults: Faults) -> None:
        """Roll for ``faults``, seeded from ``faults.seed``."""
        self.faults = faults
        # Replayable dice, not secrets.
        self._rng = random.Random(faults.seed)  # noqa: S311

    def roll(self, endpoint: Endpoint | None) -> Outcome:
        """Decide the fate of one request to ``endpoint``."""
        faults = self.faults
        if not faults.applies_to(endpoint):
            return Outcome.NORMAL
        # Always draw the same number of values so that turning one fault on
        # does not reshuffle the others.
        error, kind, drop, malformed = (self._rng.random() for _ in range(4))
        if error < faults.error_rate:
            return Outcome.ERROR_500 if kind < _HALF else Outcome.ERROR_503
        if drop < faults.drop_rate:
            return Outcome.DROP
        if malformed < faults.malformed_rate:
            return Outcome.MALFORMED
        return Outcome.NORMAL
