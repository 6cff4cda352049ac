"""What the daemon loads: never the fake Duo API, nor what only the fake needs."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

CODE = """\
import importlib, json, sys
importlib.import_module(sys.argv[1])
print(json.dumps(sorted(sys.modules)))
"""


@pytest.mark.parametrize("module", ["trio_dls.cli", "trio_dls.daemon"])
def test_the_daemon_does_not_import_the_fake_duo_api(module: str) -> None:
    """The daemon and ``check`` load neither the fake, trustme nor cryptography.

    Nor ``rich``, which only the live progress table needs, once it is shown.
    """
    done = subprocess.run(
        [sys.executable, "-c", CODE, module],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    loaded = json.loads(done.stdout)
    assert [
        name
        for name in loaded
        if name.startswith("trio_dls.fakeduo")
        or name.split(".")[0] in {"trustme", "cryptography", "rich"}
    ] == []


BLOCKED = """\
import importlib, pkgutil, sys
for name in ("fcntl", "termios", "resource"):
    sys.modules[name] = None  # import raises ImportError, as on Windows
import trio_dls
failed = []
for info in pkgutil.walk_packages(trio_dls.__path__, "trio_dls."):
    if info.name.startswith("trio_dls.fakeduo") or info.name.endswith("__main__"):
        continue
    try:
        importlib.import_module(info.name)
    except ImportError as exc:
        failed.append(f"{info.name}: {exc}")
print("\\n".join(failed))
"""


def test_no_module_needs_a_posix_only_import() -> None:
    """Every module of the daemon imports with fcntl, termios and resource gone."""
    done = subprocess.run(
        [sys.executable, "-c", BLOCKED],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert done.stdout.strip() == ""
    assert "trio_dls" not in done.stderr
