"""Observation: what the pipeline tells, and who listens.

Fetchers, senders, the cursor store and account discovery each take an
``Observer`` and call it with plain event values (``events``) as things
happen; they format nothing and count nothing beyond what they need.  The
daemon gives them one ``Fanout`` of the observers it keeps: ``LogObserver``
(``logs``), which writes the daemon's log lines about the pipeline, and
``Counters`` (``counters``), the running totals that metrics, health and status
read; with ``--progress``, ``Progress`` (``progress``), what a task in the tree
says every interval while fetchers catch up.  docs/observing.md lists the
events and what the log says of each.
"""

from __future__ import annotations

from trio_dls.observe.counters import Counters
from trio_dls.observe.events import Event
from trio_dls.observe.logs import LogObserver
from trio_dls.observe.observer import Fanout, Observer

__all__ = ["Counters", "Event", "Fanout", "LogObserver", "Observer"]
