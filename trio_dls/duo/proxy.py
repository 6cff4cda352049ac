"""The HTTP proxy in front of the Duo API: what duo_client is told, what failures mean.

Theory of operation: with ``dls_settings.proxy`` set, duo_client opens every
connection to the proxy and asks it for a tunnel (``CONNECT host:443``) to the
API host; TLS and the signed request then travel inside the tunnel, so the
proxy sees only the API host's name and port.  Authentication to the proxy is
HTTP Basic (RFC 7617), sent as ``Proxy-Authorization`` on the CONNECT alone:
duo_client hands ``set_proxy(headers=...)`` to ``http.client``'s
``set_tunnel``, which writes them on the CONNECT request and nowhere else, so
they never reach Duo.

This module is pure: it builds the headers and, when the proxy rather than Duo
is the cause of what ``http.client`` raised, says so in a ``ProxyFailure``,
which ``client`` raises as one of the project's errors.  Which failures those
are follows from the way a tunnel is made:

* The only TCP connection made is to the proxy, so a refused connection or an
  unresolvable name is the proxy's address: a ``TransientApiError`` naming
  the proxy (the fetcher retries with backoff; a proxy restarting is normal).
  A Duo answer (a 401 included) comes inside the tunnel, never as the
  CONNECT's answer, so the two cannot be confused.
* ``http.client`` raises ``OSError("Tunnel connection failed: <status> ...")``
  when the proxy answers the CONNECT with anything but 200.  A 407 (or the
  401 that tinyproxy gives to wrong credentials) is a configuration mistake,
  like Duo rejecting the ikey: ``ProxyCredentialsRejectedError``, a
  ``FatalError``, stops the daemon with one line rather than retrying for ever
  with credentials that cannot start working.  Any other status (403 for a
  port the proxy does not allow, 5xx when the proxy cannot reach Duo) is
  transient, named after the proxy.

Nothing here puts the password, or the header that encodes it, in a message;
``proxy_secrets`` lists both for the log's redacting formatter.
"""

from __future__ import annotations

import base64
import re
import socket
from typing import TYPE_CHECKING, Final

import attrs

from trio_dls.errors import FatalError

if TYPE_CHECKING:
    from trio_dls.config import Proxy as ProxySettings

_TUNNEL_FAILED: Final = re.compile(r"Tunnel connection failed: (\d{3})\s*(.*)")
# 407 is HTTP's answer to missing or wrong proxy credentials; tinyproxy answers
# wrong ones with 401.
_CREDENTIAL_STATUSES: Final = frozenset({401, 407})


class ProxyCredentialsRejectedError(FatalError):
    """The proxy refused the CONNECT for want of (right) credentials."""


@attrs.frozen
class ProxyFailure:
    """What went wrong at the proxy: a message, and whether a retry can help.

    ``fatal`` ones become ``ProxyCredentialsRejectedError``, the others
    ``client.TransientApiError`` (``client`` raises them: it owns that class).
    """

    message: str
    fatal: bool = False


def describe_proxy(proxy: ProxySettings) -> str:
    """Name *proxy* as messages do: ``proxy host:port``."""
    return f"proxy {proxy.proxy_server}:{proxy.proxy_port}"


def _basic_token(proxy: ProxySettings) -> str | None:
    if not proxy.proxy_username or proxy.proxy_password is None:
        return None
    pair = f"{proxy.proxy_username}:{proxy.proxy_password.reveal()}"
    return base64.b64encode(pair.encode()).decode("ascii")


def tunnel_headers(proxy: ProxySettings) -> dict[str, str] | None:
    """The headers of the CONNECT request: ``Proxy-Authorization``, if configured."""
    token = _basic_token(proxy)
    return None if token is None else {"Proxy-Authorization": f"Basic {token}"}


def proxy_secrets(proxy: ProxySettings) -> list[str]:
    """What must never be shown: the password and its Basic encoding."""
    token = _basic_token(proxy)
    if token is None or proxy.proxy_password is None:
        return []
    return [proxy.proxy_password.reveal(), token]


def proxy_failure(
    exc: BaseException, what: str, proxy: ProxySettings
) -> ProxyFailure | None:
    """Say what went wrong if *proxy* caused *exc*, raised during *what*; else None."""
    if not proxy.enabled:
        return None
    name = describe_proxy(proxy)
    if isinstance(exc, ConnectionRefusedError):
        return ProxyFailure(
            f"{what}: cannot connect to the {name}: connection refused "
            "(is dls_settings.proxy right, and the proxy running?)"
        )
    if isinstance(exc, socket.gaierror):
        why = exc.strerror or exc
        return ProxyFailure(f"{what}: cannot resolve the {name} ({why})")
    match = _TUNNEL_FAILED.match(str(exc)) if isinstance(exc, OSError) else None
    if match is None:
        return None
    status, reason = int(match[1]), match[2].strip()
    if status in _CREDENTIAL_STATUSES:
        advice = (
            "check dls_settings.proxy.proxy_username and proxy_password"
            if proxy.proxy_username
            else "it requires authentication: set dls_settings.proxy."
            "proxy_username and proxy_password"
        )
        return ProxyFailure(
            f"{what}: {name} refused the credentials ({status}); {advice}",
            fatal=True,
        )
    answer = f"HTTP {status} {reason}".strip()
    return ProxyFailure(f"{what}: {name} refused the tunnel to Duo ({answer})")
