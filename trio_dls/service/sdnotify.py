"""systemd's notification protocol (``sd_notify``), written against the socket.

Theory of operation
-------------------
A service started with ``Type=notify`` finds in ``$NOTIFY_SOCKET`` the
address of a datagram socket of the service manager, and sends it datagrams
of newline-separated ``KEY=VALUE`` assignments: ``READY=1`` once it serves,
``STATUS=...`` a line for ``systemctl status``, ``WATCHDOG=1`` as a keep-alive
when the unit has ``WatchdogSec=`` (the manager then sets ``$WATCHDOG_USEC``,
and ``$WATCHDOG_PID`` when it is meant for one process only), and
``STOPPING=1`` when it begins to stop.  An address starting with ``/`` is a
path; one starting with ``@`` is a Linux abstract socket, whose name is the
rest after a NUL byte.  docs/operations.md says more.

This module parses that environment (``NotifySettings``, pure) and sends the
datagrams (``Notifier``); the trio tasks that decide *when* are in
``trio_dls.service.systemd``.  No ``systemd`` Python package is needed: the
protocol is a datagram of text.

Sending never waits and never fails: the socket is non-blocking, and a
datagram to a local socket is queued at once or refused at once (the
manager's queue is full, it went away).  A refused notification is worth one
warning, not a stop: trio-dls goes on fetching and delivering, and the
manager's watchdog, if any, is the one to act.  The socket is a plain
non-blocking one rather than a trio socket on purpose: ``STOPPING=1`` is sent
from the shutdown trigger and ``READY=1`` the moment the tree runs, and an
``await`` there would only add a scheduling point where nothing can block.
"""

from __future__ import annotations

import logging
import os
import socket
from typing import TYPE_CHECKING, Final

import attrs

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["Notifier", "NotifySettings", "socket_address"]

log = logging.getLogger("trio_dls.service")

# systemd's manager reads this much of a datagram; a longer STATUS would be cut.
MAX_STATUS: Final = 1024


def socket_address(text: str) -> str | None:
    """The ``AF_UNIX`` address ``$NOTIFY_SOCKET`` names, or None if unsupported.

    ``@name`` is the abstract socket *name* (a NUL byte, then *name*); an
    absolute path is itself.  Other forms (systemd's ``vsock:`` for virtual
    machines) are not supported.
    """
    if text.startswith("@") and len(text) > 1:
        return "\0" + text[1:]
    if text.startswith("/"):
        return text
    return None


@attrs.frozen
class NotifySettings:
    """What the service manager asked for, read from the environment."""

    address: str
    """The manager's socket (see ``socket_address``)."""
    watchdog: float | None
    """Seconds between two ``WATCHDOG=1``: half of ``WatchdogSec=``; None: none."""

    @classmethod
    def from_environ(
        cls, environ: Mapping[str, str], pid: int
    ) -> NotifySettings | str | None:
        """Read *environ* for process *pid*: None if not notified, text if wrong.

        The text says what is wrong and what trio-dls does about it.
        """
        text = environ.get("NOTIFY_SOCKET", "")
        if not text:
            return None
        address = socket_address(text)
        if address is None:
            return (
                f"NOTIFY_SOCKET={text!r} is not a socket path or @abstract name; "
                "not notifying the service manager"
            )
        return cls(address=address, watchdog=_watchdog(environ, pid))


def _watchdog(environ: Mapping[str, str], pid: int) -> float | None:
    usec = environ.get("WATCHDOG_USEC", "")
    # $WATCHDOG_PID names the process the watchdog is for: not a child of it.
    for_pid = environ.get("WATCHDOG_PID", "")
    if for_pid and for_pid != str(pid):
        return None
    try:
        microseconds = int(usec)
    except ValueError:
        return None
    if microseconds <= 0:
        return None
    # systemd's advice (sd_watchdog_enabled(3)): ping at half the timeout.
    return microseconds / 1e6 / 2


def encode(**fields: str) -> bytes:
    """One datagram of ``KEY=VALUE`` lines; values are kept to one line."""
    lines = []
    for key, value in fields.items():
        one_line = " ".join(value.split()) if key == "STATUS" else value
        lines.append(f"{key}={one_line[:MAX_STATUS]}")
    return "\n".join(lines).encode()


class Notifier:
    """Sends notifications to the service manager; does nothing if there is none."""

    def __init__(self, settings: NotifySettings | None) -> None:
        """Notify as *settings* say; None: a notifier that sends nothing."""
        self.settings = settings
        self._socket: socket.socket | None = None
        self._warned = False
        if settings is not None:
            self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            self._socket.setblocking(False)  # noqa: FBT003 - socket's own API

    @classmethod
    def from_environ(
        cls, environ: Mapping[str, str] | None = None, pid: int | None = None
    ) -> Notifier:
        """The notifier the environment (by default, this process's) asks for."""
        settings = NotifySettings.from_environ(
            os.environ if environ is None else environ,
            os.getpid() if pid is None else pid,
        )
        if isinstance(settings, str):
            log.warning("%s", settings)
            settings = None
        return cls(settings)

    @property
    def watchdog(self) -> float | None:
        """Seconds between keep-alives, or None when no watchdog is asked for."""
        return None if self.settings is None else self.settings.watchdog

    def send(self, **fields: str) -> None:
        """Send one datagram of *fields*; a failure is warned of once, then ignored."""
        if self._socket is None or self.settings is None:
            return
        try:
            self._socket.sendto(encode(**fields), self.settings.address)
        except OSError as exc:
            if not self._warned:
                self._warned = True
                log.warning(
                    "cannot notify the service manager at NOTIFY_SOCKET: %s; "
                    "going on without (this is said once)",
                    exc.strerror or exc,
                )

    def close(self) -> None:
        """Close the socket; later notifications are not sent."""
        if self._socket is not None:
            self._socket.close()
            self._socket = None
