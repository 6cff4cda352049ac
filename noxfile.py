"""Developer tasks: ``nox`` runs the tests, the linters and the type checker.

Sessions use the interpreter nox itself runs on (any Python 3.11+), so a fresh
machine needs nothing but Python and nox.  uv builds the environments when it
is installed (``pip install 'nox[uv]'``), plain venv + pip otherwise.
"""

from __future__ import annotations

import shutil
import subprocess

import nox

nox.needs_version = ">=2024.10.9"
nox.options.default_venv_backend = "uv|virtualenv"
nox.options.sessions = ["tests", "lint", "typing"]
nox.options.reuse_existing_virtualenvs = True

PYPROJECT = nox.project.load_toml("pyproject.toml")


def install(session: nox.Session, *groups: str) -> None:
    """Install the package (editable) and the dependency *groups*."""
    requirements = [
        requirement
        for group in groups
        for requirement in nox.project.dependency_groups(PYPROJECT, group)
    ]
    session.install("-e", ".", *requirements)


@nox.session
def tests(session: nox.Session) -> None:
    """Run the test suite (pass pytest options after ``--``)."""
    install(session, "tests")
    session.run("pytest", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """Check style and formatting with ruff (``nox -s lint -- --fix`` to mend)."""
    session.install(*nox.project.dependency_groups(PYPROJECT, "lint"))
    session.run("ruff", "check", *session.posargs, ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def typing(session: nox.Session) -> None:
    """Type-check the package, the tests and this file with mypy --strict."""
    install(session, "typing")
    session.run("mypy", *session.posargs)


@nox.session
def bench(session: nox.Session) -> None:
    """Run the benchmarks (not part of ``nox``'s default sessions)."""
    install(session)
    session.run("python", "benchmarks/bench_backpressure.py", *session.posargs)
    session.run("python", "benchmarks/bench_catchup.py")
    session.run("python", "benchmarks/bench_msp_scale.py")
    session.run("python", "benchmarks/bench_pacing.py")
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
