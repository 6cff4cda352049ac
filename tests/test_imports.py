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
