"""When to say again that something is still failing (pure).

A failure that persists must stay visible: an endpoint that has not moved for a day
should not have said so only once, a day ago.  Repeating it on every retry floods the
log instead.  So a persisting failure is reported at a falling rate: at its 1st,
10th and 100th occurrence, then once an hour, each time with the count and how long
it has lasted, and once more when it ends.  A different *kind* of failure is a new
one; the message reported is the latest (messages of one kind may vary in detail).

Nothing here logs or reads a clock: times are passed in, and the caller logs what
`FailureReport.failed` and `FailureReport.succeeded` return.  The state is a handful
of numbers, whatever the number of failures.
"""

from __future__ import annotations

from typing import Final

import attrs

__all__ = ["FailureReport", "Streak"]

#: The occurrences reported before reports become hourly.
REPORT_AT: Final = (1, 10, 100)
#: Seconds between reports once past the last of ``REPORT_AT``.
REPORT_EVERY: Final = 3600.0


@attrs.define
class FailureReport:
    """The state of one persisting failure, and whether to report it now."""

    every: float = REPORT_EVERY
    failures: int = attrs.field(default=0, init=False)
    kind: str = attrs.field(default="", init=False)
    since: float = attrs.field(default=0.0, init=False)
    _reported_at: float = attrs.field(default=0.0, init=False)

    def failed(self, kind: str, message: str, now: float) -> str | None:
        """Note a failure of *kind* at *now*; return what to report, or None."""
        if kind != self.kind:
            self.failures, self.kind, self.since = 0, kind, now
        self.failures += 1
        if self.failures in REPORT_AT or (
            self.failures > REPORT_AT[-1] and now - self._reported_at >= self.every
        ):
            self._reported_at = now
            if self.failures == 1:
                return message
            return (
                f"{message} (failed {self.failures} times in a row over "
                f"{_duration(now - self.since)})"
            )
        return None

    def succeeded(self, now: float) -> str | None:
        """Note a success at *now*; return what to report if failures ended."""
        failures, since = self.failures, self.since
        self.failures, self.kind = 0, ""
        if not failures:
            return None
        lasted = _duration(now - since)
        return f"working again after {failures} failure(s) over {lasted}"


def _duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    if seconds < 120:  # noqa: PLR2004 - two minutes read better in seconds
        return f"{seconds} s"
    if seconds < 7200:  # noqa: PLR2004
        return f"{seconds // 60} min"
    return f"{seconds / 3600:.1f} h"


@attrs.define
class Streak:
    """A run of failures of one kind: how many in a row, since when."""

    kind: str = ""
    failures: int = 0
    since: float = 0.0

    def failed(self, kind: str, now: float) -> None:
        """Note a failure of *kind* at *now*."""
        # Another kind of failure is a new run (see trio_dls.observe.reporting).
        if kind != self.kind:
            self.kind, self.failures, self.since = kind, 0, now
        self.failures += 1

    def succeeded(self) -> tuple[int, float]:
        """End the run; return how many failed in it, and since when."""
        ended = self.failures, self.since
        self.kind, self.failures = "", 0
        return ended
