"""Developer tasks: ``nox`` runs the tests, the linters and the type checker.

The tests run on every Python that ``pyproject.toml``'s classifiers name
(3.11 to 3.13): ``tests-3.11``, ``tests-3.12``, ``tests-3.13``.  An
interpreter that is not installed is skipped with nox's message ("Python
interpreter 3.12 not found"), except in CI (``$CI`` set), where nox fails
the run instead.  Interpreters are found on ``PATH`` and, where pyenv keeps
them without putting them on ``PATH`` (only its global version is), in
``$PYENV_ROOT/versions``.  The type checker runs on the oldest, with mypy
checking for it.  The linters and the benchmarks use the interpreter nox
runs on.  uv builds the environments when it is installed (``pip install
'nox[uv]'``), plain venv + pip otherwise.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import nox

nox.needs_version = ">=2024.10.9"
nox.options.default_venv_backend = "uv|virtualenv"
nox.options.sessions = ["tests", "lint", "typing"]
nox.options.reuse_existing_virtualenvs = True

PYPROJECT = nox.project.load_toml("pyproject.toml")
PYTHONS = nox.project.python_versions(PYPROJECT)  # from the classifiers
# Tests in two worker processes: on a 2-core machine the suite, which waits
# on real daemons and sockets as much as it computes, takes about half as long.
WORKERS = "2"


def _pyenv_interpreters(versions: list[str]) -> None:
    """Put pyenv's installed *versions* on ``PATH``, ahead of its shims.

    pyenv's shims answer for its global version only ("python3.12: command
    not found" otherwise), so nox would not see the others.
    """
    root = Path(os.environ.get("PYENV_ROOT") or Path("~/.pyenv").expanduser())
    found = []
    for version in versions:
        builds = sorted((root / "versions").glob(f"{version}.*/bin"))
        if builds:
            found.append(str(builds[-1]))
    if found:
        os.environ["PATH"] = os.pathsep.join([*found, os.environ.get("PATH", "")])


_pyenv_interpreters(PYTHONS)


def install(session: nox.Session, *groups: str) -> None:
    """Install the package (editable) and the dependency *groups*."""
    requirements = [
        requirement
        for group in groups
        for requirement in nox.project.dependency_groups(PYPROJECT, group)
    ]
    session.install("-e", ".", *requirements)


@nox.session(python=PYTHONS)
def tests(session: nox.Session) -> None:
    """Run the test suite on each Python (pass pytest options after ``--``)."""
    install(session, "tests")
    session.run("pytest", "-n", WORKERS, *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """Check style and formatting with ruff (``nox -s lint -- --fix`` to mend)."""
    session.install(*nox.project.dependency_groups(PYPROJECT, "lint"))
    session.run("ruff", "check", *session.posargs, ".")
    session.run("ruff", "format", "--check", ".")


@nox.session(python=PYTHONS[0])
def typing(session: nox.Session) -> None:
    """Type-check the package, tests, benchmarks and this file with mypy --strict.

    On the oldest Python the package supports, and for it.
    """
    install(session, "typing")
    session.run("mypy", "--python-version", PYTHONS[0], *session.posargs)


@nox.session
def bench(session: nox.Session) -> None:
    """Run the benchmarks (not part of ``nox``'s default sessions).

    The throughput and pacing tables are also written as JSON, to
    ``bench-results/``.
    """
    install(session)
    results = Path("bench-results")
    results.mkdir(exist_ok=True)
    session.run("python", "benchmarks/bench_backpressure.py", *session.posargs)
    session.run("python", "benchmarks/bench_catchup.py")
    session.run(
        "python",
        "benchmarks/bench_throughput.py",
        "--json",
        str(results / "throughput.json"),
    )
    session.run("python", "benchmarks/bench_msp_scale.py")
    session.run(
        "python", "benchmarks/bench_pacing.py", "--json", str(results / "pacing.json")
    )
    # Idle memory before and after c4ed47d, which took the fake Duo API out of
    # the daemon's imports; a copy without that history measures today's alone.
    before = "c4ed47d~1"
    git = shutil.which("git")
    known = (
        git is not None
        and subprocess.run(  # noqa: S603 - a fixed git command, no shell
            [git, "rev-parse", "--verify", "--quiet", f"{before}^{{commit}}"],
            capture_output=True,
            check=False,
        ).returncode
        == 0
    )
    compare = ["--compare-ref", before] if known else []
    session.run("python", "benchmarks/bench_idle_rss.py", *compare)
