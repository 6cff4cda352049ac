"""``trio-dls check --online``: each real part tried once, one line each.

Rules for these tests: the fake Duo API is a real HTTPS server on loopback (in a
thread), the SIEMs are real listeners on 127.0.0.1 with port 0 (TLS ones with
``trustme`` certificates), and the command runs through ``cli.main`` as an
operator would run it.  duo_client calls run in worker threads, so time is
real here; every wait is bounded (the probe's own deadline), nothing sleeps,
and no assertion is about how long anything took.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import re
import socket
import socketserver
import ssl
import threading
import time
from typing import TYPE_CHECKING

import pytest
import trustme

from trio_dls import cli
from trio_dls.config import load_config
from trio_dls.endpoints import Endpoint
from trio_dls.fakeduo import (
    DatasetSpec,
    FakeDuo,
    FakeDuoConfig,
    Faults,
    RateScope,
    make_children,
    serve_in_thread,
)
from trio_dls.online import (
    ProbeResult as Result,
)
from trio_dls.online import (
    check_online,
    describe_certificate,
    describe_skew,
    probe_request,
    render,
    skew_of,
)

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

ENDPOINTS = tuple(Endpoint)
SPEC = DatasetSpec(
    seed=5, span=3_600.0, admin_burst=0, counts=dict.fromkeys(ENDPOINTS, 20)
)
WRONG_SKEY = "wRoNgSkEyWrOnGsKeYwRoNgSkEyWrOnGsKeY0001"
CHILDREN = make_children(3, seed=4)
DAY = 86_400

# duo_client builds its TLS context with the deprecated ssl.PROTOCOL_TLS.
pytestmark = pytest.mark.filterwarnings(
    "ignore:ssl.PROTOCOL_TLS is deprecated:DeprecationWarning"
)


class Listener(socketserver.ThreadingTCPServer):
    """A loopback TCP (or, with a context, TLS) listener counting its connections.

    Each connection is read until the client closes it; a failed TLS handshake
    only ends that connection.
    """

    daemon_threads = True

    def __init__(self, context: ssl.SSLContext | None = None) -> None:
        """Listen on 127.0.0.1, port 0; serve *context*'s TLS if given."""
        self.context = context
        self.accepted = 0
        self.handshakes = 0
        self.lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _Handler)

    @property
    def port(self) -> int:
        """The bound port."""
        return int(self.server_address[1])


class _Handler(socketserver.BaseRequestHandler):
    server: Listener

    def handle(self) -> None:
        with self.server.lock:
            self.server.accepted += 1
        sock: socket.socket = self.request
        sock.settimeout(10)
        with contextlib.suppress(OSError), contextlib.ExitStack() as stack:
            if self.server.context is not None:
                sock = self.server.context.wrap_socket(sock, server_side=True)
                stack.enter_context(sock)
                with self.server.lock:
                    self.server.handshakes += 1
            while sock.recv(4096):
                pass


@contextlib.contextmanager
def listening(context: ssl.SSLContext | None = None) -> Iterator[Listener]:
    """Run a `Listener` in a thread for the block."""
    listener = Listener(context)
    thread = threading.Thread(target=listener.serve_forever, daemon=True)
    thread.start()
    try:
        yield listener
    finally:
        listener.shutdown()
        listener.server_close()
        thread.join(timeout=10)


def server_context(ca: trustme.CA, *names: str, **options: object) -> ssl.SSLContext:
    """A TLS server context with a certificate *ca* issues for *names*."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(*names, **options).configure_cert(context)  # type: ignore[arg-type]
    return context


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then closed)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def fake() -> Iterator[FakeDuo]:
    """An ordinary account's fake Duo API, serving over HTTPS."""
    with serve_in_thread(FakeDuo(FakeDuoConfig(dataset=SPEC))) as server:
        yield server


@pytest.fixture
def msp_fake() -> Iterator[FakeDuo]:
    """An MSP parent's fake Duo API with three children."""
    config = FakeDuoConfig(dataset=SPEC, children=CHILDREN)
    with serve_in_thread(FakeDuo(config)) as server:
        yield server


@pytest.fixture
def ca(tmp_path: Path) -> tuple[trustme.CA, Path]:
    """A CA for the TLS listeners, and its bundle on disk for cert_filepath."""
    authority = trustme.CA()
    path = tmp_path / "siem-ca.pem"
    authority.cert_pem.write_to_path(str(path))
    return authority, path


def write_config(
    tmp_path: Path,
    fake: FakeDuo,
    servers: list[str],
    *,
    skey: str | None = None,
    account_extra: str = "",
) -> Path:
    """A config for *fake* mapping every endpoint to each of *servers* (YAML items)."""
    ids = [line.split("id: ")[1].split(",")[0] for line in servers]
    mappings = "\n".join(
        f"    - {{endpoints: [{', '.join(ENDPOINTS)}], server: {server_id}}}"
        for server_id in ids
    )
    items = "\n".join(f"  - {{{line}}}" for line in servers)
    path = tmp_path / "config.yml"
    path.write_text(
        f"""\
version: '1.0.0'
dls_settings:
  log_filepath: {tmp_path / "trio-dls.log"}
  checkpointing: {{directory: {tmp_path / "state"}}}
servers:
{items}
account:
  ikey: {fake.ikey}
  skey: {skey or fake.skey}
  hostname: localhost:{fake.port}
  ca_certs: {fake.ca_certs}
{account_extra}  endpoint_server_mappings:
{mappings}
"""
    )
    return path


def run_check(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """Run ``trio-dls check --online PATH``; return its status and its output."""
    status = cli.main(["check", "--online", str(path)])
    captured = capsys.readouterr()
    return status, captured.out + captured.err


def online_lines(output: str) -> dict[str, str]:
    """The probe lines of *output*, by the part each names."""
    lines = output.split("online (each check", 1)[1].splitlines()[1:]
    return {
        line.split(": ", 1)[0]: line.split(": ", 1)[1]
        for line in lines
        if line.startswith(("duo ", "server "))
    }


# --------------------------------------------------------------------------
# Against the fake Duo API and real listeners
# --------------------------------------------------------------------------


def test_a_working_config_passes_every_check(
    tmp_path: Path,
    fake: FakeDuo,
    ca: tuple[trustme.CA, Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Every endpoint is called once, every server connected; all ok, exit 0."""
    authority, bundle = ca
    expires = dt.datetime.now(tz=dt.UTC) + dt.timedelta(days=400, hours=1)
    good = server_context(
        authority, "localhost", "127.0.0.1", common_name="siem1", not_after=expires
    )
    with listening() as tcp, listening(good) as tls:
        path = write_config(
            tmp_path,
            fake,
            [
                f"id: plain, hostname: 127.0.0.1, port: {tcp.port}, protocol: TCP",
                f"id: secure, hostname: 127.0.0.1, port: {tls.port}, "
                f"protocol: TCPSSL, cert_filepath: {bundle}",
                f"id: dgram, hostname: 127.0.0.1, port: {closed_port()}, protocol: UDP",
            ],
        )
        status, output = run_check(path, capsys)
        connections = (tcp.accepted, tls.handshakes)

    lines = online_lines(output)
    assert status == 0, output
    assert [f"duo {e}" for e in ENDPOINTS] + [
        "server plain",
        "server secure",
        "server dgram",
    ] == list(lines)
    assert all(line.startswith("ok, ") for line in lines.values()), output
    assert connections == (1, 1)
    assert {(fake.account_id, e): 1 for e in ENDPOINTS} == fake.stats().requests
    assert "Duo's clock" in lines["duo auth"]
    assert "certificate CN=siem1" in lines["server secure"]
    assert f"expires {expires.date().isoformat()} (400 days)" in lines["server secure"]
    assert (
        "not verifiable (connectionless); resolved to 127.0.0.1"
        in lines["server dgram"]
    )
    assert "online: all 8 checks passed" in output
    assert fake.skey not in output
    assert "warning" not in output.split("online (each check", 1)[1]


def test_rejected_credentials_fail_every_endpoint_without_showing_the_skey(
    tmp_path: Path, fake: FakeDuo, capsys: pytest.CaptureFixture[str]
) -> None:
    """A skey the fake does not know: each endpoint says so, exit 1, no skey shown."""
    with listening() as tcp:
        path = write_config(
            tmp_path,
            fake,
            [f"id: siem, hostname: 127.0.0.1, port: {tcp.port}, protocol: TCP"],
            skey=WRONG_SKEY,
        )
        status, output = run_check(path, capsys)

    lines = online_lines(output)
    assert status == 1
    for endpoint in ENDPOINTS:
        assert lines[f"duo {endpoint}"].startswith("FAILED: GET /admin/")
        assert "rejected the credentials (HTTP 401" in lines[f"duo {endpoint}"]
    assert lines["server siem"].startswith("ok, ")
    assert "online: 5 of 6 checks FAILED" in output
    assert WRONG_SKEY not in output
    assert fake.skey not in output


def test_an_unreachable_server_fails_with_connection_refused(
    tmp_path: Path, fake: FakeDuo, capsys: pytest.CaptureFixture[str]
) -> None:
    """A server whose port is closed: its line says the connection was refused."""
    port = closed_port()
    path = write_config(
        tmp_path,
        fake,
        [f"id: gone, hostname: 127.0.0.1, port: {port}, protocol: TCP"],
    )
    status, output = run_check(path, capsys)

    line = online_lines(output)["server gone"]
    assert status == 1
    assert line.startswith(f"FAILED: tcp 127.0.0.1:{port}: ")
    assert line.endswith("Connection refused")


def test_a_tls_name_mismatch_fails_naming_the_name_checked(
    tmp_path: Path,
    fake: FakeDuo,
    ca: tuple[trustme.CA, Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A certificate for another name: the line names the address it must carry."""
    authority, bundle = ca
    wrong = server_context(authority, "siem.example.org")
    with listening(wrong) as tls:
        path = write_config(
            tmp_path,
            fake,
            [
                f"id: siem, hostname: 127.0.0.1, port: {tls.port}, "
                f"protocol: TCPSSL, cert_filepath: {bundle}"
            ],
        )
        status, output = run_check(path, capsys)

    line = online_lines(output)["server siem"]
    assert status == 1
    assert line.startswith(f"FAILED: tls 127.0.0.1:{tls.port}: ")
    assert "certificate was refused" in line
    assert "mismatch, certificate is not valid for '127.0.0.1'" in line


def test_an_msp_parent_lists_its_children_and_calls_for_the_first_kept(
    tmp_path: Path, msp_fake: FakeDuo, capsys: pytest.CaptureFixture[str]
) -> None:
    """The account list, then each endpoint for the first child not blocked."""
    blocked, chosen, _ = CHILDREN
    with listening() as tcp:
        path = write_config(
            tmp_path,
            msp_fake,
            [f"id: siem, hostname: 127.0.0.1, port: {tcp.port}, protocol: TCP"],
            account_extra=f"  is_msp: true\n  block_list: [{blocked.account_id}]\n",
        )
        status, output = run_check(path, capsys)

    lines = online_lines(output)
    assert status == 0, output
    assert (
        lines["duo account list"]
        == "ok, 3 child accounts, 2 to fetch (1 in block_list)"
    )
    for endpoint in ENDPOINTS:
        assert (
            f" for child {chosen.name!r} ({chosen.account_id})"
            in lines[f"duo {endpoint}"]
        )
    assert {(chosen.account_id, e): 1 for e in ENDPOINTS} == msp_fake.stats().requests
    assert msp_fake.stats().account_list == 1


def test_an_ordinary_integration_configured_as_msp_fails_the_account_list(
    tmp_path: Path, fake: FakeDuo, capsys: pytest.CaptureFixture[str]
) -> None:
    """is_msp with credentials that may not list children: the list fails, 403."""
    path = write_config(
        tmp_path,
        fake,
        [f"id: siem, hostname: 127.0.0.1, port: {closed_port()}, protocol: UDP"],
        account_extra="  is_msp: true\n",
    )
    status, output = run_check(path, capsys)

    lines = online_lines(output)
    assert status == 1
    assert "HTTP 403" in lines["duo account list"]
    assert "Accounts API" in lines["duo account list"]
    assert lines["duo auth"] == "FAILED: not tried: the account list failed"


def test_an_endpoint_without_permission_fails_alone(
    tmp_path: Path, fake: FakeDuo, capsys: pytest.CaptureFixture[str]
) -> None:
    """Duo's 403 on one endpoint fails that line only, pointing at the permission."""
    fake.app.forbid_endpoint(Endpoint.TRUSTMONITOR)
    path = write_config(
        tmp_path,
        fake,
        [f"id: siem, hostname: 127.0.0.1, port: {closed_port()}, protocol: UDP"],
    )
    status, output = run_check(path, capsys)

    lines = online_lines(output)
    assert status == 1
    assert "HTTP 403: 40301 Access forbidden" in lines["duo trustmonitor"]
    assert "Grant read log" in lines["duo trustmonitor"]
    assert [name for name, line in lines.items() if not line.startswith("ok, ")] == [
        "duo trustmonitor"
    ]


def test_a_rate_limited_call_fails_as_unverified(
    tmp_path: Path, fake: FakeDuo, capsys: pytest.CaptureFixture[str]
) -> None:
    """One request a minute for the whole integration: one endpoint passes, four 429."""
    fake.faults = Faults(rate_limit=1, rate_burst=1, rate_scope=RateScope.INTEGRATION)
    path = write_config(
        tmp_path,
        fake,
        [f"id: siem, hostname: 127.0.0.1, port: {closed_port()}, protocol: UDP"],
    )
    status, output = run_check(path, capsys)

    lines = [online_lines(output)[f"duo {e}"] for e in ENDPOINTS]
    limited = [line for line in lines if "HTTP 429" in line]
    assert status == 1
    assert len(limited) == 4
    assert all("credentials and the permission are not verified" in x for x in limited)
    assert sum(line.startswith("ok, ") for line in lines) == 1


def test_a_skewed_clock_passes_with_one_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Duo's clock 30 s behind this host: ok lines, and one warning about the clock."""
    config = FakeDuoConfig(dataset=SPEC)
    with serve_in_thread(FakeDuo(config, clock=lambda: time.time() - 30)) as fake:
        path = write_config(
            tmp_path,
            fake,
            [f"id: siem, hostname: 127.0.0.1, port: {closed_port()}, protocol: UDP"],
        )
        status, output = run_check(path, capsys)

    warnings = [line for line in output.splitlines() if "clock is" in line]
    assert status == 0, output
    assert len(warnings) == 1
    # Duo's Date has whole seconds, read at some instant within one: 30 s of
    # skew reads as 29 or 30.
    assert re.match(
        r"warning: this host's clock is (29|30) s ahead of Duo's", warnings[0]
    )
    assert "s behind this host" in online_lines(output)["duo auth"]


def test_a_certificate_expiring_soon_passes_with_a_warning(
    tmp_path: Path,
    fake: FakeDuo,
    ca: tuple[trustme.CA, Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Ten days left: the server passes, and a warning says to renew."""
    authority, bundle = ca
    soon = dt.datetime.now(tz=dt.UTC) + dt.timedelta(days=10, hours=1)
    context = server_context(authority, "127.0.0.1", not_after=soon)
    with listening(context) as tls:
        path = write_config(
            tmp_path,
            fake,
            [
                f"id: siem, hostname: 127.0.0.1, port: {tls.port}, "
                f"protocol: TCPSSL, cert_filepath: {bundle}"
            ],
        )
        status, output = run_check(path, capsys)

    assert status == 0, output
    assert "certificate without a CN (IP Address:127.0.0.1)" in output
    assert (
        "warning: server siem: its certificate expires in 10 days; renew it before"
        " then, or trio-dls's connections will be refused"
    ) in output.splitlines()


def test_a_server_that_never_answers_times_out(
    tmp_path: Path, fake: FakeDuo, ca: tuple[trustme.CA, Path]
) -> None:
    """A TLS server that accepts but never shakes hands: timed out, not hung."""
    _, bundle = ca
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        path = write_config(
            tmp_path,
            fake,
            [
                f"id: mute, hostname: 127.0.0.1, port: {port}, "
                f"protocol: TCPSSL, cert_filepath: {bundle}"
            ],
        )
        out = io.StringIO()
        ok = check_online(load_config(path), out, seconds_each=0.5)

    assert not ok
    assert (
        online_lines(out.getvalue())["server mute"] == "FAILED: timed out after 0.5 s"
    )


def test_an_invalid_config_exits_2_before_any_network(
    tmp_path: Path, fake: FakeDuo, capsys: pytest.CaptureFixture[str]
) -> None:
    """A config mistake: exit 2 as plain check does, and Duo is never called."""
    path = write_config(
        tmp_path,
        fake,
        ["id: siem, hostname: 127.0.0.1, port: 70000, protocol: TCP"],
    )
    status, output = run_check(path, capsys)

    assert status == 2
    assert "online" not in output
    assert fake.stats().requests == {}


# --------------------------------------------------------------------------
# The pure parts
# --------------------------------------------------------------------------

NOW = 1_800_000_000.25


@pytest.mark.parametrize(
    "endpoint",
    [Endpoint.AUTH, Endpoint.TELEPHONY, Endpoint.ACTIVITY, Endpoint.TRUSTMONITOR],
)
def test_a_window_probe_asks_one_record_of_the_last_settled_minute(
    endpoint: Endpoint,
) -> None:
    """Mintime and maxtime span the minute before Duo's two-minute delay; limit 1."""
    params = dict(probe_request(endpoint, NOW).params)
    horizon = 1_800_000_000_250 - 120_000 - 1

    assert params["limit"] == "1"
    assert horizon == int(params["maxtime"])
    # Both ends are inclusive: 60,000 milliseconds.
    assert int(params["maxtime"]) - int(params["mintime"]) == 60_000 - 1
    assert ("sort" in params) == (endpoint is not Endpoint.TRUSTMONITOR)


def test_the_administrator_log_probe_asks_from_three_minutes_back() -> None:
    """The administrator log takes a mintime alone, in seconds, three minutes back."""
    request = probe_request(Endpoint.ADMINACTION, NOW)

    assert request.path == "/admin/v1/logs/administrator"
    # One second earlier than the boundary until Duo is seen to be inclusive.
    assert (("mintime", str(1_800_000_000 - 180 - 1)),) == request.params


def test_skew_is_the_middle_of_the_round_trip_against_the_middle_of_the_second() -> (
    None
):
    """Sent at 100, back at 101, dated 90 (90.0 to 91.0): the host is 10 s ahead."""
    assert skew_of(100.0, 101.0, 90.0) == 10.0
    assert skew_of(100.0, 101.0, 105.0) == -5.0


def test_a_certificate_is_described_by_its_cn_names_and_expiry() -> None:
    """CN, subjectAltName and the day it expires, with the days left."""
    certificate = {
        "subject": ((("organizationName", "Example"),), (("commonName", "siem1"),)),
        "subjectAltName": (("DNS", "siem1.example.org"), ("IP Address", "10.0.0.5")),
        "notAfter": "Mar  1 12:00:00 2027 GMT",
    }
    now = dt.datetime(2026, 12, 1, 12, 0, 1, tzinfo=dt.UTC).timestamp()

    text, days = describe_certificate(certificate, now)

    assert text == (
        "certificate CN=siem1 (DNS:siem1.example.org, IP Address:10.0.0.5), "
        "expires 2027-03-01 (89 days)"
    )
    assert days == 89


def test_render_warns_once_about_the_clock_with_the_largest_skew() -> None:
    """Two endpoints skewed: one clock warning, for the largest gap; then the tally."""
    results = [
        Result("duo auth", ok=True, detail="a", skew=-12.0),
        Result("duo telephony", ok=True, detail="b", skew=-20.4),
        Result("server s", ok=False, detail="c", warnings=("server s: soon",)),
    ]

    lines = render(results)

    assert lines == [
        "duo auth: ok, a",
        "duo telephony: ok, b",
        "server s: FAILED: c",
        "warning: server s: soon",
        "warning: this host's clock is 20 s behind Duo's; trio-dls ends its "
        "windows by this host's clock, so nothing is lost, but records reach "
        "the SIEM that much later; set the host's time right (NTP)",
        "online: 1 of 3 checks FAILED",
    ]


def test_a_skew_within_ten_seconds_gives_no_warning() -> None:
    """Ten seconds is within what trio-dls calls in step enough: no warning."""
    lines = render([Result("duo auth", ok=True, detail="a", skew=10.0)])

    assert lines == ["duo auth: ok, a", "online: all 1 checks passed"]


def test_a_skew_is_told_to_the_second_and_below_one_as_within() -> None:
    """Whole seconds only: Duo's Date tells no finer; under 1 s is "within 1 s"."""
    assert describe_skew(0.6) == "Duo's clock within 1 s of this host's"
    assert describe_skew(3.4) == "Duo's clock 3 s behind this host"
    assert describe_skew(-41.8) == "Duo's clock 42 s ahead of this host"


def test_a_request_date_duo_refuses_hints_at_this_hosts_clock(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Duo judging this host's Date 20 minutes off: rejected, with a clock hint."""
    config = FakeDuoConfig(dataset=SPEC)
    wall = FakeDuo(config, wall_clock=lambda: time.time() + 1200)
    with serve_in_thread(wall) as fake:
        path = write_config(
            tmp_path,
            fake,
            [f"id: siem, hostname: 127.0.0.1, port: {closed_port()}, protocol: UDP"],
        )
        status, output = run_check(path, capsys)

    line = online_lines(output)["duo auth"]
    assert status == 1
    assert "HTTP 401: 40105" in line
    assert line.endswith("Duo refused the request's date: is this host's clock right?")
