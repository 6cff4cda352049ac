"""The daemon's own log: levels, JSON lines, redaction, a file that survives logrotate.

Rules for these tests: ``logsetup.configure`` is pointed at a ``StringIO`` and
a file in ``tmp_path``, as ``trio-dls run`` points it at stderr and
``log_filepath``; what is read back is what an operator or a log pipeline
reads.  Log rotation is done as logrotate does it: rename the file, let the
program write on.  The ``trio_dls`` logger is given back as it was after each
test.  One test runs ``python -m trio_dls --log-format json`` as a process.
"""

from __future__ import annotations

import io
import json
import logging
import re
import signal
from pathlib import Path

import pytest

from tests.test_cli import SKEY, Lines, spawn, write_config
from trio_dls.endpoints import Endpoint
from trio_dls.observe import LogObserver
from trio_dls.observe.events import (
    AccountListFailed,
    ApiFailed,
    ChildRefused,
    ClockSkew,
    ClockState,
    CorruptFile,
    CursorLost,
    CursorRestored,
    CursorSaveFailed,
    DatagramCut,
    DatagramDropped,
    DlsCheckpointIgnored,
    Event,
    NoChildAccount,
    PlanningWarning,
    RecordRepaired,
    ResolveFailed,
    ServerFailed,
    ServerRef,
)
from trio_dls.observe.logsetup import LogFormat, configure
from trio_dls.supervisor import AccountRef

CHILD = AccountRef("Acme Child", "DA0000000000000000001")
SIEM = ServerRef("siem", "127.0.0.1", 9000, "TCP")
AUTH = Endpoint.AUTH
STATE = Path("/var/lib/trio-dls")
WAIT = 60.0  # real seconds, a bound on each wait of the process test
ISO_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


# ``configure`` replaces the ``trio_dls`` logger: each test gives it back.
pytestmark = pytest.mark.usefixtures("daemon_logger")


def json_lines(text: str) -> list[dict[str, object]]:
    """Each line of *text* as the JSON object it must be."""
    return [json.loads(line) for line in text.splitlines()]


def test_a_json_log_line_parses_with_its_fields() -> None:
    """A line about a child's endpoint is one JSON object naming both."""
    stream = io.StringIO()
    configure(stream=stream, log_format=LogFormat.JSON)
    LogObserver()(
        ApiFailed(CHILD, AUTH, "TransientApiError 503", "HTTP 503", 1, 0, 0, 60.0)
    )
    [entry] = json_lines(stream.getvalue())
    assert ISO_UTC.fullmatch(str(entry.pop("ts")))
    assert entry == {
        "level": "WARNING",
        "logger": "trio_dls.fetcher",
        "message": "Acme Child (DA0000000000000000001)/auth: HTTP 503; retrying "
        "(next in 60 s, backing off)",
        "account": "Acme Child",
        "endpoint": "auth",
        "child_account_id": "DA0000000000000000001",
    }


def fail_with(message: str) -> None:
    """Raise an error whose text is *message*."""
    raise ValueError(message)


def test_json_masks_the_skey_in_messages_and_tracebacks() -> None:
    """The skey is masked in JSON too, even where JSON would escape it."""
    # A secret with characters JSON escapes: masking the encoded line alone
    # would miss it.
    secret = 'sk"ey\\with\ttabs-0123456789'
    stream = io.StringIO()
    configure(secrets=[secret], stream=stream, log_format=LogFormat.JSON)
    log = logging.getLogger("trio_dls.test")
    log.warning("the skey is %s", secret)
    try:
        fail_with(secret)
    except ValueError:
        log.exception("failed")
    text = stream.getvalue()
    entries = json_lines(text)
    assert entries[0]["message"] == "the skey is ********"
    assert "ValueError: ********" in str(entries[1]["exception"])
    assert secret not in text
    assert json.dumps(secret)[1:-1] not in text


def test_the_text_log_masks_the_skey_too() -> None:
    """The default text lines keep their look, the skey masked."""
    stream = io.StringIO()
    configure(secrets=[SKEY], stream=stream)
    logging.getLogger("trio_dls.test").warning("skey=%s", SKEY)
    assert stream.getvalue().endswith(" WARNING trio_dls.test: skey=********\n")


def test_the_log_level_leaves_out_lesser_lines() -> None:
    """At --log-level warning, info lines are not written; warnings are."""
    stream = io.StringIO()
    configure(stream=stream, level=logging.WARNING)
    log = logging.getLogger("trio_dls.test")
    log.info("not this")
    log.warning("this")
    assert [line.rpartition(": ")[2] for line in stream.getvalue().splitlines()] == [
        "this"
    ]


def test_the_log_file_is_reopened_when_moved(tmp_path: Path) -> None:
    """After logrotate renames the file, the next line goes to a new file."""
    path = tmp_path / "trio-dls.log"
    assert configure(log_file=path, stream=io.StringIO()) == []
    log = logging.getLogger("trio_dls.test")
    log.warning("before the rotation")
    rotated = path.rename(tmp_path / "trio-dls.log.1")
    log.warning("after the rotation")
    assert "before the rotation" in rotated.read_text()
    assert "after the rotation" not in rotated.read_text()
    assert "after the rotation" in path.read_text()
    assert "before the rotation" not in path.read_text()


def test_the_log_file_is_json_too(tmp_path: Path) -> None:
    """With --log-format json, the file gets the same JSON lines as the stream."""
    path = tmp_path / "trio-dls.log"
    stream = io.StringIO()
    configure(log_file=path, stream=stream, log_format=LogFormat.JSON)
    logging.getLogger("trio_dls.test").info("hello")
    assert [e["message"] for e in json_lines(path.read_text())] == ["hello"]
    assert stream.getvalue() == path.read_text()


def corrupt(path: Path) -> CorruptFile:
    """A cursor file found damaged and moved aside."""
    return CorruptFile(path, "bad JSON", f"{path.name}.corrupt")


# One of each event the log observer warns of, or reports as an error.
WARNED: list[Event] = [
    ApiFailed(CHILD, AUTH, "TransientApiError 503", "HTTP 503", 1, 0, 0, 60.0),
    ChildRefused(CHILD, AUTH, "ApiError 403", "HTTP 403", 1, 0, 0, 3600.0),
    PlanningWarning(
        CHILD,
        AUTH,
        "auth: records from 2026-01-01T00:00:00 to before 2026-01-02T00:00:00 "
        "are older than Duo serves and were not fetched; fetching on from "
        "2026-01-02T00:00:00",
    ),
    ServerFailed(SIEM, "connection refused", 2.0, 1, AUTH, 1000),
    ResolveFailed(SIEM, "", "127.0.0.1"),
    RecordRepaired(SIEM, AUTH, {"txid": "t"}, ("a field was not text",)),
    DatagramCut(SIEM, AUTH, 3000, 2048, 952),
    DatagramDropped(SIEM, AUTH, 3000, 2048, ""),
    CursorRestored(
        AUTH, CHILD.account_id, STATE / "c", corrupt(STATE / "c"), 1.79e9, 60.0
    ),
    CursorRestored(AUTH, None, STATE / "c", None, 1.79e9, 60.0),
    CursorLost(
        AUTH, None, STATE / "c", STATE / "c.prev", corrupt(STATE / "c"), None, 3, None
    ),
    DlsCheckpointIgnored(AUTH, None, STATE / "auth_checkpoint_data.txt", "bad"),
]
# What is about the whole process, named by what it is about instead.
WARNED_GLOBALLY: list[tuple[Event, str]] = [
    (ClockSkew(30.0, ClockState.AHEAD), "this host's clock"),
    (NoChildAccount(2, 2, 3600.0, 1, 0.0, 0.0), "MSP parent"),
    (AccountListFailed("ApiError 500", "HTTP 500", 60.0, 1, 0.0, 0.0), "MSP child"),
    (CursorSaveFailed(STATE, "No space left on device", 1), str(STATE)),
]
# Words that say what trio-dls does next.
NEXT = re.compile(
    r"retry|again|go on|going on|still sending|sent repaired|dropped|truncated|"
    r"starting from|resuming|looking again|delivering on|windows end|fetching on"
)


@pytest.mark.parametrize("event", WARNED, ids=lambda e: type(e).__name__)
def test_each_warning_names_its_subject_and_what_happens_next(
    event: Event, caplog: pytest.LogCaptureFixture
) -> None:
    """A warning or error carries its endpoint or server and says what comes next."""
    caplog.set_level(logging.DEBUG, logger="trio_dls")
    LogObserver()(event)
    [record] = [r for r in caplog.records if r.levelno >= logging.WARNING]
    fields = record.__dict__
    assert fields.get("endpoint") or fields.get("server")
    if fields.get("server"):
        assert f"server {fields['server']!r}" in record.getMessage()
    if fields.get("account"):
        assert f"{fields['account']}" in record.getMessage()
    assert NEXT.search(record.getMessage()), record.getMessage()


@pytest.mark.parametrize(
    ("event", "subject"), WARNED_GLOBALLY, ids=lambda e: type(e).__name__
)
def test_each_process_wide_warning_names_its_subject_and_what_happens_next(
    event: Event, subject: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Warnings about no one fetcher name what they are about instead."""
    caplog.set_level(logging.DEBUG, logger="trio_dls")
    LogObserver()(event)
    [record] = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert subject in record.getMessage()
    assert NEXT.search(record.getMessage()), record.getMessage()


def test_the_daemon_logs_json_lines(tmp_path: Path) -> None:
    """``python -m trio_dls --log-format json``: every line of stderr is JSON."""
    with spawn(write_config(tmp_path), "--log-format", "json") as proc:
        lines = Lines(proc)
        try:
            lines.wait_for("started:", timeout=WAIT)
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=WAIT) == 0
        finally:
            proc.kill()
        output = lines.rest()
    entries = json_lines(output)
    assert any(str(e["message"]).startswith("started:") for e in entries)
    assert {"ts", "level", "logger", "message"} <= set(entries[0])
    assert SKEY not in output
    file_entries = json_lines((tmp_path / "trio-dls.log").read_text())
    assert [e["message"] for e in entries] == [e["message"] for e in file_entries]
