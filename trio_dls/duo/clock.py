"""Duo's clock, as this host learns it from the ``Date`` of Duo's answers (pure).

Theory of operation
-------------------
Duo serves a log record only two minutes after its time *by Duo's clock*.  A window
that ends at this host's "now - 2 minutes" therefore reaches past what Duo serves when
this host's clock is fast (a VM before NTP, a bad NTP source), and a window closed over
records Duo did not serve yet loses them for good.  So windows end by the earlier of
the two clocks, and this module keeps the estimate of Duo's.

Every answer of Duo's carries ``Date``: Duo's time when it wrote the answer, in whole
seconds, rounded down.  When it arrives, Duo's clock reads at least that, so
``date + (elapsed since the answer arrived)`` never runs ahead of Duo's clock.  The
elapsed time is measured on a monotonic clock (trio's), so a jump of this host's wall
clock, forwards or back, changes nothing in the estimate.  The estimate is rounded
down to a whole second, as ``Date`` is, so that a window planned with it is never
later than what the next answer's ``Date`` shows as settled.

Nothing here reads a clock or does I/O: times are passed in.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import math

import attrs

__all__ = ["DuoClock", "parse_http_date"]


def parse_http_date(text: str | None) -> float | None:
    """Return the UTC epoch seconds of an HTTP ``Date`` header, or None if unusable."""
    if not text:
        return None
    try:
        moment = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if moment.tzinfo is None:
        # RFC 9110 dates are GMT; email.utils leaves "-0000" naive.
        moment = moment.replace(tzinfo=dt.UTC)
    try:
        return moment.timestamp()
    except (OverflowError, OSError, ValueError):
        return None


@attrs.define
class DuoClock:
    """Duo's clock as last seen, tied to a monotonic clock."""

    _date: float | None = attrs.field(default=None, init=False)
    _seen_at: float = attrs.field(default=0.0, init=False)

    def observe(self, date: float, seen_at: float) -> None:
        """Note an answer dated ``date`` (Duo's epoch seconds), received at ``seen_at``.

        ``seen_at`` is monotonic time.  The latest answer wins, so that Duo's clock
        being set back is followed too.
        """
        self._date = date
        self._seen_at = seen_at

    def now(self, at: float) -> float | None:
        """Return a time Duo's clock has surely reached at monotonic ``at``, or None.

        None until an answer was seen.
        """
        if self._date is None:
            return None
        return float(math.floor(self._date + max(0.0, at - self._seen_at)))
