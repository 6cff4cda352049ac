"""The reference trio-dls is measured against: a minimal synchronous sync loop.

What a careful engineer writes in an afternoon with duo_client and nothing
else: for each endpoint in turn, ask Duo for a page (``json_api_call``:
duo_client signs, sends, and decodes with ``json.loads``), add DLS's
``eventtype`` and ``host``, ``json.dumps`` each record, and ``sendall`` the
page's lines to the SIEM in one call.  No cursor file, no retry, no rate
limit handling, no repair of odd records, no time zone care: it is the cost
floor of moving Duo's records to a socket in Python, not a competitor.

Run by ``benchmarks/bench_throughput.py`` as its own process, with one
argument: a JSON file of its settings (see ``main``).  It exits once every
endpoint is caught up.
"""

from __future__ import annotations

import json
import socket
import ssl
import sys
from pathlib import Path
from typing import Any

import duo_client

# Per endpoint: path, where the records are, the page size, the cursor's
# parameter, and DLS's eventtype (none for trust monitor: DLS adds none).
_V2 = "/admin/v2/logs/"
_ENDPOINTS: dict[str, tuple[str, str, int, str, str | None]] = {
    "auth": (_V2 + "authentication", "authlogs", 1000, "next_offset", "authentication"),
    "telephony": (_V2 + "telephony", "items", 1000, "next_offset", "telephony"),
    "activity": (_V2 + "activity", "items", 1000, "next_offset", "activity"),
    "trustmonitor": ("/admin/v1/trust_monitor/events", "events", 500, "offset", None),
    "adminaction": ("/admin/v1/logs/administrator", "", 1000, "", "administrator"),
}


def lines(records: list[dict[str, Any]], eventtype: str | None, host: str) -> bytes:
    """The page as DLS writes it: ``json.dumps`` of each record, one per line."""
    out = []
    for record in records:
        if eventtype is not None:
            record["eventtype"] = eventtype
            record["host"] = host
        out.append(json.dumps(record).encode() + b"\n")
    return b"".join(out)


def sync_endpoint(
    admin: duo_client.Admin, sock: socket.socket, name: str, settings: dict[str, Any]
) -> int:
    """Send every record of endpoint *name* in the window; return how many."""
    path, under, limit, cursor_param, eventtype = _ENDPOINTS[name]
    host = settings["duo_host"]
    sent = 0
    if name == "adminaction":
        # Seconds; the 1000 earliest at or after mintime, no cursor.
        mintime = settings["mintime_ms"] // 1000
        while True:
            page = admin.json_api_call("GET", path, {"mintime": str(mintime)})
            if not page:
                return sent
            sock.sendall(lines(page, eventtype, host))
            sent += len(page)
            mintime = max(r["timestamp"] for r in page) + 1
    params = {
        "mintime": str(settings["mintime_ms"]),
        "maxtime": str(settings["maxtime_ms"]),
        "limit": str(limit),
        "sort": "ts:asc",
    }
    while True:
        response = admin.json_api_call("GET", path, params)
        records = response[under]
        if records:
            sock.sendall(lines(records, eventtype, host))
            sent += len(records)
        following = response.get("metadata", {}).get("next_offset")
        if not following:
            return sent
        if isinstance(following, list):
            following = ",".join(following)
        params[cursor_param] = following


def connect(settings: dict[str, Any]) -> socket.socket:
    """The connection to the SIEM: TCP, or TLS trusting the given CA."""
    sock = socket.create_connection((settings["siem_host"], settings["siem_port"]))
    ca = settings.get("siem_ca")
    if ca is None:
        return sock
    context = ssl.create_default_context(cafile=ca)
    return context.wrap_socket(sock, server_hostname=settings["siem_host"])


def main(argv: list[str]) -> int:
    """Sync every endpoint of the settings file ``argv[0]`` once, then exit."""
    settings = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
    admin = duo_client.Admin(
        ikey=settings["ikey"],
        skey=settings["skey"],
        host=settings["duo_host"],
        port=settings["duo_port"],
        ca_certs=settings["ca_certs"],
    )
    with connect(settings) as sock:
        for name in settings["endpoints"]:
            sync_endpoint(admin, sock, name, settings)
        # Closing a socket with unread bytes (a TLS 1.3 server's session
        # tickets) sends a reset, and the receiver may drop lines it had not
        # read yet: end the writing side, then read to the receiver's end.
        sock.shutdown(socket.SHUT_WR)
        while sock.recv(65536):
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
