"""``trio-dls status``: each cursor's position, lag and last save, and the exit status.

Rules for these tests: cursor files are written by the real ``CheckpointStore`` (or
by the real fetchers, against the in-process fake Duo API) in ``tmp_path``; a file's
"last saved" is set with ``os.utime`` and status's "now" is fixed by replacing
``status.wall_clock``, so no test sleeps or depends on when it runs; the command
runs through ``cli.main`` as an operator runs it, its output captured.
"""

from __future__ import annotations

import io
import json
import os
import sys
import threading
import time
from typing import TYPE_CHECKING, Any

import pytest
import trio

from tests.test_fetching import BASE, Daemon, config_for, held, make_app
from trio_dls import status
from trio_dls.checkpoints import CheckpointStore, cursor_file_name, dls_file_name
from trio_dls.cli import main
from trio_dls.config import load_config
from trio_dls.duo.cursors import AdminCursor, WindowCursor
from trio_dls.endpoints import Endpoint
from trio_dls.fakeduo import DatasetSpec, make_children

if TYPE_CHECKING:
    from pathlib import Path

    from trio_dls.duo.cursors import Cursor

IKEY = "DIXXXXXXXXXXXXXXXXXX"
SKEY = "sTaTuSsKeYsTaTuSsKeYsTaTuSsKeYsTaTuS0042"
# 2026-09-21T14:13:20Z
NOW = 1_790_000_000.0
CHILD_A = "DA1111111111111111AA"
CHILD_B = "DA2222222222222222BB"
BLOCKED = "DA3333333333333333CC"


def write_config(
    tmp_path: Path,
    endpoints: str = "[auth, adminaction]",
    *,
    account_extra: str = "",
    settings_extra: str = "",
) -> Path:
    """Write a valid config mapping *endpoints*, cursors in tmp_path/state."""
    path = tmp_path / "config.yml"
    path.write_text(
        f"""\
version: '1.0.0'
dls_settings:
  log_filepath: {tmp_path / "trio-dls.log"}
  checkpointing:
    directory: {tmp_path / "state"}
{settings_extra}servers:
  - id: siem
    hostname: 127.0.0.1
    port: 9000
    protocol: TCP
account:
  ikey: {IKEY}
  skey: {SKEY}
  hostname: localhost:9
{account_extra}  endpoint_server_mappings:
    - endpoints: {endpoints}
      server: siem
"""
    )
    return path


def save(
    directory: Path,
    endpoint: Endpoint,
    cursor: Cursor,
    *,
    saved_at: float,
    child: str | None = None,
) -> Path:
    """Save *cursor* with the real store, dated *saved_at*; return its file."""
    trio.run(CheckpointStore(directory).save, endpoint, child, cursor)
    path = directory / cursor_file_name(endpoint, child)
    os.utime(path, (saved_at, saved_at))
    return path


def at(seconds: float) -> WindowCursor:
    """A window cursor whose next record is at *seconds* (UTC epoch)."""
    return WindowCursor(round(seconds * 1000))


@pytest.fixture
def now(monkeypatch: pytest.MonkeyPatch) -> float:
    """Fix status's "now" at NOW."""
    monkeypatch.setattr(status, "wall_clock", lambda: NOW)
    return NOW


def run_cli(*args: str) -> tuple[int, str, str]:
    """Run ``main`` in-process; return (status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    old = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = out, err
    try:
        code = main(list(args))
    except SystemExit as exc:  # argparse's errors and --help
        code = int(exc.code or 0)
    finally:
        sys.stdout, sys.stderr = old
    return code, out.getvalue(), err.getvalue()


def run_json(*args: str) -> tuple[int, dict[str, Any]]:
    """Run ``status --json``; return its status and document."""
    code, out, err = run_cli("status", "--json", *args)
    assert err == ""
    return code, json.loads(out)


def test_fresh_cursors_print_an_aligned_table_and_exit_0(
    tmp_path: Path, now: float
) -> None:
    """Every mapped endpoint saved recently: one line each, a summary, status 0."""
    state = tmp_path / "state"
    save(state, Endpoint.AUTH, at(now - 300), saved_at=now - 30)
    save(state, Endpoint.ADMINACTION, AdminCursor(int(now) - 7200), saved_at=now - 90)
    code, out, err = run_cli("status", str(write_config(tmp_path)))
    assert (code, err) == (0, "")
    assert [
        "ACCOUNT               ENDPOINT     POSITION              LAG    "
        "LAST SAVED            AGE   STATUS",
        f"{IKEY}  auth         2026-09-21T14:08:20Z  5 min  "
        "2026-09-21T14:12:50Z  30 s  ok",
        f"{IKEY}  adminaction  2026-09-21T12:13:20Z  2.0 h  "
        "2026-09-21T14:11:50Z  90 s  ok",
        f"OK: 2 cursors fresh (max age 600 s) in {state}",
    ] == out.splitlines()


def test_json_gives_machine_friendly_fields(tmp_path: Path, now: float) -> None:
    """``--json`` is one document: the entries with epochs and seconds, and ok."""
    state = tmp_path / "state"
    save(state, Endpoint.AUTH, WindowCursor(1_789_999_700_250), saved_at=now - 30.5)
    code, document = run_json(str(write_config(tmp_path, "[auth]")))
    assert code == 0
    assert {
        "ok": True,
        "directory": str(state),
        "now": "2026-09-21T14:13:20.000Z",
        "now_epoch": NOW,
        "max_age_seconds": 600.0,
        "max_lag_seconds": None,
        "entries": [
            {
                "account": IKEY,
                "child_account_id": None,
                "endpoint": "auth",
                "file": "trio-dls_auth.cursor",
                "position": "2026-09-21T14:08:20.250Z",
                "position_epoch": 1_789_999_700.25,
                "lag_seconds": 299.75,
                "saved_at": "2026-09-21T14:12:49.500Z",
                "saved_at_epoch": NOW - 30.5,
                "age_seconds": 30.5,
                "fresh": True,
                "problem": None,
            }
        ],
    } == document


def test_a_cursor_saved_too_long_ago_is_stale(tmp_path: Path, now: float) -> None:
    """A save older than --max-age fails the check, saying why, for that entry."""
    state = tmp_path / "state"
    save(state, Endpoint.AUTH, at(now - 300), saved_at=now - 3600)
    save(state, Endpoint.ADMINACTION, AdminCursor(int(now) - 300), saved_at=now - 60)
    config = str(write_config(tmp_path))
    code, out, _ = run_cli("status", config)
    assert code == 1
    auth, admin = out.splitlines()[1:3]
    assert auth.endswith("STALE: last saved 60 min ago, more than --max-age 600 s")
    assert admin.endswith("  ok")
    assert (
        f"STALE: 1 of 2 cursors stale (max age 600 s) in {state}"
        == (out.splitlines()[-1])
    )
    # The same files pass a looser limit.
    assert run_cli("status", "--max-age", "3601", config)[0] == 0


def test_the_default_max_age_is_three_poll_intervals(
    tmp_path: Path, now: float
) -> None:
    """With api.timeout 300, a save 899 s old is fresh and one 901 s old is not."""
    state = tmp_path / "state"
    config = write_config(
        tmp_path, "[auth]", settings_extra="  api:\n    timeout: 300\n"
    )
    save(state, Endpoint.AUTH, at(now - 400), saved_at=now - 899)
    code, document = run_json(str(config))
    assert (code, document["max_age_seconds"]) == (0, 900.0)
    os.utime(state / "trio-dls_auth.cursor", (now - 901, now - 901))
    assert run_json(str(config))[0] == 1


def test_max_lag_also_fails_a_cursor_far_behind(tmp_path: Path, now: float) -> None:
    """--max-lag fails a freshly saved cursor whose position is further back."""
    state = tmp_path / "state"
    save(state, Endpoint.AUTH, at(now - 7200), saved_at=now - 10)
    config = str(write_config(tmp_path, "[auth]"))
    assert run_json(config)[0] == 0
    code, document = run_json("--max-lag", "3600", config)
    assert code == 1
    assert document["entries"][0]["problem"] == "lag 2.0 h, more than --max-lag 3600 s"


def test_a_mapped_endpoint_without_a_cursor_fails(tmp_path: Path, now: float) -> None:
    """An endpoint that never saved is reported as not started, and is stale."""
    save(tmp_path / "state", Endpoint.AUTH, at(now - 300), saved_at=now - 30)
    code, document = run_json(str(write_config(tmp_path)))
    assert code == 1
    assert [(e["endpoint"], e["fresh"], e["problem"]) for e in document["entries"]] == [
        ("auth", True, None),
        ("adminaction", False, "no cursor (not started)"),
    ]
    assert document["ok"] is False


def test_a_missing_directory_is_reported_and_not_created(
    tmp_path: Path, now: float
) -> None:
    """Before the daemon's first start, every entry fails and nothing is created."""
    del now
    code, document = run_json(str(write_config(tmp_path)))
    assert code == 1
    assert [e["problem"] for e in document["entries"]] == [
        "no cursor (not started)"
    ] * 2
    assert not (tmp_path / "state").exists()


def test_a_dls_checkpoint_to_import_is_mentioned(tmp_path: Path, now: float) -> None:
    """A pair with only DLS's checkpoint says it will be imported at the start."""
    del now
    state = tmp_path / "state"
    state.mkdir()
    (state / dls_file_name(Endpoint.AUTH, None)).write_text("1790000000001")
    code, document = run_json(str(write_config(tmp_path, "[auth]")))
    assert code == 1
    assert document["entries"][0]["problem"] == (
        "no cursor (not started); the DLS checkpoint "
        "auth_checkpoint_data.txt will be imported"
    )


def test_a_corrupt_file_is_reported_and_left_alone(tmp_path: Path, now: float) -> None:
    """A corrupt cursor is one entry's problem; no file is moved or changed."""
    state = tmp_path / "state"
    save(state, Endpoint.ADMINACTION, AdminCursor(int(now) - 300), saved_at=now - 60)
    corrupt = state / cursor_file_name(Endpoint.AUTH, None)
    corrupt.write_bytes(b'{"version": 1, "endpo')
    os.utime(corrupt, (now - 20, now - 20))
    before = {p.name: (p.read_bytes(), p.stat().st_mtime) for p in state.iterdir()}
    code, document = run_json(str(write_config(tmp_path)))
    assert code == 1
    auth, admin = document["entries"]
    assert auth["problem"].startswith("corrupt: not JSON: ")
    assert (auth["position"], auth["age_seconds"]) == (None, 20.0)
    assert admin["fresh"] is True
    after = {p.name: (p.read_bytes(), p.stat().st_mtime) for p in state.iterdir()}
    assert before == after


def test_a_file_from_a_newer_release_is_reported(tmp_path: Path, now: float) -> None:
    """A cursor in a newer format fails the check, naming the release to upgrade to."""
    state = tmp_path / "state"
    path = save(state, Endpoint.AUTH, at(now - 300), saved_at=now - 30)
    document = json.loads(path.read_bytes())
    path.write_text(json.dumps(document | {"version": 2, "written_by": "trio-dls 9"}))
    code, report = run_json(str(write_config(tmp_path, "[auth]")))
    assert code == 1
    problem = report["entries"][0]["problem"]
    assert problem.startswith("this file: written by trio-dls 9 (cursor format 2)")


def test_msp_children_are_found_in_the_directory(tmp_path: Path, now: float) -> None:
    """An MSP parent: every child with a file, times every mapped endpoint."""
    state = tmp_path / "state"
    save(state, Endpoint.AUTH, at(now - 300), saved_at=now - 30, child=CHILD_A)
    save(
        state, Endpoint.ADMINACTION, AdminCursor(int(now)), saved_at=now, child=CHILD_A
    )
    # Only a previous copy: the child is still found, its cursor reported missing.
    save(state, Endpoint.AUTH, at(now - 300), saved_at=now - 30, child=CHILD_B)
    (state / cursor_file_name(Endpoint.AUTH, CHILD_B)).rename(
        state / (cursor_file_name(Endpoint.AUTH, CHILD_B) + ".prev")
    )
    # A blocked child is not fetched: its old cursor must not fail the check.
    save(state, Endpoint.AUTH, at(now - 1e6), saved_at=now - 1e6, child=BLOCKED)
    # Nor is the parent's own account, nor are files that are not cursors.
    save(state, Endpoint.AUTH, at(now - 1e6), saved_at=now - 1e6)
    (state / f".{cursor_file_name(Endpoint.AUTH, 'DA9')}.tmp").write_text("")
    config = write_config(
        tmp_path, account_extra=f"  is_msp: true\n  block_list: [{BLOCKED}]\n"
    )
    code, document = run_json(str(config))
    assert code == 1
    assert [
        (e["child_account_id"], e["endpoint"], e["problem"])
        for e in document["entries"]
    ] == [
        (CHILD_A, "auth", None),
        (CHILD_A, "adminaction", None),
        (
            CHILD_B,
            "auth",
            "no cursor, only its previous copy (the daemon resumes from it)",
        ),
        (CHILD_B, "adminaction", "no cursor (not started)"),
    ]
    assert {IKEY} == {e["account"] for e in document["entries"]}


def test_an_msp_parent_without_child_cursors_fails(tmp_path: Path, now: float) -> None:
    """An MSP parent whose children never saved: one failing line per endpoint."""
    del now
    config = write_config(tmp_path, "[auth]", account_extra="  is_msp: true\n")
    code, out, _ = run_cli("status", str(config))
    assert code == 1
    assert out.splitlines()[1].endswith(
        "STALE: no cursor for any MSP child account (not started)"
    )


def test_a_set_aside_cursor_is_explained(tmp_path: Path, now: float) -> None:
    """A cursor the daemon set aside as corrupt, not saved again yet, is named."""
    state = tmp_path / "state"
    path = save(state, Endpoint.AUTH, at(now - 300), saved_at=now - 30)
    path.rename(path.with_name(f"{path.name}.corrupt-20260921T141300Z"))
    code, document = run_json(str(write_config(tmp_path, "[auth]")))
    assert code == 1
    assert document["entries"][0]["problem"] == (
        "no cursor: the last one was set aside as corrupt "
        "(trio-dls_auth.cursor.corrupt-20260921T141300Z)"
    )


def test_summary_prints_only_the_verdict(tmp_path: Path, now: float) -> None:
    """``--summary`` prints the summary line alone, for Nagios's first line."""
    save(tmp_path / "state", Endpoint.AUTH, at(now - 300), saved_at=now - 30)
    code, out, _ = run_cli("status", "--summary", str(write_config(tmp_path, "[auth]")))
    assert (0, [f"OK: 1 cursor fresh (max age 600 s) in {tmp_path / 'state'}"]) == (
        code,
        out.splitlines(),
    )


def test_output_is_in_utc_whatever_the_time_zone(
    tmp_path: Path, now: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under TZ=America/New_York the output is the same as under UTC."""
    save(tmp_path / "state", Endpoint.AUTH, at(now - 300), saved_at=now - 30)
    config = str(write_config(tmp_path, "[auth]"))
    outputs = []
    for zone in ("UTC", "America/New_York"):
        monkeypatch.setenv("TZ", zone)
        time.tzset()
        outputs.append(run_cli("status", config) + run_cli("status", "--json", config))
    monkeypatch.delenv("TZ")
    time.tzset()
    assert outputs[0] == outputs[1]
    assert "2026-09-21T14:08:20Z" in outputs[1][1]


def test_an_invalid_config_exits_2(tmp_path: Path) -> None:
    """A config mistake is reported with its key path, exit 2, as ``check`` does."""
    path = write_config(tmp_path, "[auth, logins]")
    code, out, err = run_cli("status", str(path))
    assert (code, out) == (2, "")
    assert ":16: account.endpoint_server_mappings[0].endpoints: expected one of" in err
    assert err.endswith(f"trio-dls: 1 problem in {path}; nothing was started\n")
    assert SKEY not in err


def skey_elsewhere(tmp_path: Path, source: str, now: float) -> Path:
    """Write a config with a fresh cursor, its skey line replaced by *source*."""
    path = write_config(tmp_path, "[auth]")
    path.write_text(path.read_text().replace(f"skey: {SKEY}", source))
    state = tmp_path / "state"
    save(state, Endpoint.AUTH, at(now - 300), saved_at=now - 30)
    return path


@pytest.mark.parametrize(
    ("source", "reported"),
    [
        ("skey_file: skey", "account.skey_file: cannot read"),
        ("skey_file: /nonexistent/skey", "account.skey_file: no such file"),
        ("skey_env: TRIO_DLS_TEST_SKEY", "account.skey_env: the environment variable"),
    ],
    ids=["unreadable file", "missing file", "unset variable"],
)
def test_status_needs_no_skey_but_check_and_run_still_do(
    source: str,
    reported: str,
    tmp_path: Path,
    now: float,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An operator who may not read the skey gets the status; check and run refuse.

    The skey file is made unreadable by refusing ``os.access`` for it (these
    tests may run as root, who reads anything) and by making reading it fail.
    """
    monkeypatch.delenv("TRIO_DLS_TEST_SKEY", raising=False)
    secret = tmp_path / "skey"
    secret.write_text(SKEY)
    access, read_text = os.access, type(secret).read_text

    def no_access(path: Any, mode: int, **kwargs: Any) -> bool:
        return str(path) != str(secret) and access(path, mode, **kwargs)

    def no_reading(self: Path, *args: Any, **kwargs: Any) -> str:
        if str(self) == str(secret):
            raise PermissionError(13, "Permission denied", str(self))
        return read_text(self, *args, **kwargs)

    monkeypatch.setattr(os, "access", no_access)
    monkeypatch.setattr(type(secret), "read_text", no_reading)
    path = skey_elsewhere(tmp_path, source, now)

    code, out, err = run_cli("status", str(path))
    assert (code, err) == (0, "")
    assert out.splitlines()[-1].startswith("OK: 1 cursor fresh")
    for command in ("check", "run"):
        code, out, err = run_cli(command, str(path))
        assert (code, out) == (2, ""), command
        assert reported in err, command
        assert SKEY not in err


def test_disabled_checkpointing_exits_2(tmp_path: Path) -> None:
    """With checkpointing disabled there is nothing to check: exit 2, saying why."""
    path = tmp_path / "config.yml"
    write_config(tmp_path)
    path.write_text(
        path.read_text().replace(
            "  checkpointing:\n", "  checkpointing:\n    enabled: false\n"
        )
    )
    code, out, err = run_cli("status", str(path))
    assert (code, out) == (2, "")
    assert "checkpointing.enabled is false" in err


@pytest.mark.parametrize("value", ["x", "-1", "nan", "inf"])
def test_a_bad_max_age_is_a_command_line_error(tmp_path: Path, value: str) -> None:
    """--max-age takes a non-negative number of seconds; anything else exits 2."""
    code, _, err = run_cli("status", f"--max-age={value}", str(write_config(tmp_path)))
    assert code == 2
    assert f"expected a number of seconds, got {value!r}" in err


def test_help_lists_status() -> None:
    """``--help`` names the status command."""
    code, out, _ = run_cli("--help")
    assert code == 0
    assert "trio-dls status CONFIG" in out


def test_status_never_sees_a_torn_file_while_the_store_saves(tmp_path: Path) -> None:
    """Reads racing a writer's atomic saves always find a whole, fresh cursor."""
    state = tmp_path / "state"
    config = write_config(tmp_path, "[auth]")
    base = time.time()
    save(state, Endpoint.AUTH, at(base), saved_at=base)
    stop = threading.Event()
    saves = [0]

    def writer() -> None:
        async def keep_saving() -> None:
            store = CheckpointStore(state)
            while not stop.is_set():
                saves[0] += 1
                await store.save(Endpoint.AUTH, None, at(base + saves[0]))

        trio.run(keep_saving)

    thread = threading.Thread(target=writer)
    thread.start()
    loaded = load_config(config)
    documents: list[dict[str, Any]] = []
    try:
        # Enough reads to overlap many saves, with a bound in case saves stall.
        while (len(documents) < 300 or saves[0] < 50) and len(documents) < 20_000:
            out = io.StringIO()
            status.run_status(loaded, out, io.StringIO(), as_json=True)
            documents.append(json.loads(out.getvalue()))
    finally:
        stop.set()
        thread.join(timeout=30)
    assert not thread.is_alive()
    assert saves[0] >= 50
    problems = [document["entries"][0]["problem"] for document in documents]
    assert problems == [None] * len(documents)
    positions = [document["entries"][0]["position_epoch"] for document in documents]
    assert sorted(positions) == positions


async def test_status_reads_what_the_running_daemon_saved(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """After the real fetchers ran, each child's cursors are found and caught up."""
    del autojump_clock
    children = make_children(3, seed=4)
    app = make_app(
        DatasetSpec(seed=3, span=86_400, end_before=600, admin_burst=0),
        children=children,
    )
    endpoints = [Endpoint.AUTH, Endpoint.TRUSTMONITOR]
    config = config_for(tmp_path, endpoints, msp=True, block=(children[2].account_id,))
    daemon = Daemon(app, config)
    fetched = [c.account_id for c in children[:2]]
    await daemon.run_until_complete(lambda: held(app, endpoints, list(fetched)))
    virtual_now = BASE + trio.current_time()
    out = io.StringIO()
    # The files were written just now on the real clock; the positions are on
    # the fake's (virtual) clock.
    code = status.run_status(config, out, io.StringIO(), as_json=True)
    document = json.loads(out.getvalue())
    assert code == 0
    assert sorted((c, e.value) for c in fetched for e in endpoints) == sorted(
        (e["child_account_id"], e["endpoint"]) for e in document["entries"]
    )
    for entry in document["entries"]:
        # Caught up: the next record to fetch is within Duo's two-minute delay
        # and one poll of the fake's now.
        assert 0 < virtual_now - entry["position_epoch"] <= 120 + 120 + 60
