"""Running as a service: systemd's notifications and the status line.

``sdnotify`` speaks systemd's notification protocol over ``$NOTIFY_SOCKET``;
``status`` keeps the one-line status from the pipeline's events;
``systemd`` runs the supervision tree and says READY, STATUS, WATCHDOG and
STOPPING at the right times.  docs/operations.md describes the protocol and
the unit file in ``deploy/``.
"""

from __future__ import annotations

from trio_dls.service.sdnotify import Notifier, NotifySettings
from trio_dls.service.status import ServiceStatus
from trio_dls.service.systemd import serve_notifying

__all__ = ["Notifier", "NotifySettings", "ServiceStatus", "serve_notifying"]
