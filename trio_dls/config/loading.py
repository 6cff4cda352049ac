"""Loading: a config file's bytes in, a resolved ``Config`` or a ``ConfigError`` out.

This module owns the YAML stage and the assembly of the others: it parses the
text (keeping the line of every key), hands the plain data to ``convert`` and
``checks``, places each Problem on its line, says "has no value" instead of
"is missing" where a key is present with nothing after it, masks the skey,
drops the echoes of a typo, and on success hands the Config to
``environment.resolve``.  ``secrets=False`` (for ``status``, which reads only
cursors) skips the skey's file and variable in both the checks and the
resolution: the Config then holds an ``UnloadedSecret``, which cannot sign.
``load_config`` is the only function here that touches the file system itself;
the rest work on strings and an injected ``Environment``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import attrs
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from trio_dls.config.checks import cross_check, value_at
from trio_dls.config.convert import structure
from trio_dls.config.environment import Environment, resolve
from trio_dls.config.model import GUIDANCE_POLL_SECONDS, Config
from trio_dls.config.problems import ConfigError, KeyPath, Problem, ProblemKind
from trio_dls.config.upgrade import is_pre_1_0

if TYPE_CHECKING:
    from pathlib import Path

# The kinds of problem that name a key by what it resembles, and the kinds
# that such a key's absence produces as well.
_MISNAMED: frozenset[ProblemKind] = frozenset(
    {ProblemKind.UNKNOWN_KEY, ProblemKind.RENAMED_KEY}
)
_ABSENT: frozenset[ProblemKind] = frozenset({ProblemKind.MISSING, ProblemKind.NO_VALUE})


def parse_yaml(text: str) -> Any:  # noqa: ANN401 - a YAML document is anything
    """Parse *text* as YAML 1.2, keeping line numbers.

    ruamel.yaml's round-trip mode is used because it remembers the line and
    column of every key and item; the tree is kept only to point at lines.
    Raise ``ConfigError`` with the line and column of a syntax error.
    """
    yaml = YAML(typ="rt")
    try:
        return yaml.load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        what = " ".join(filter(None, [exc.context, exc.problem]))
        problem = Problem(
            ProblemKind.SYNTAX,
            (),
            detail=f"invalid YAML: {what}",
            line=mark.line + 1 if mark else None,
            column=mark.column + 1 if mark else None,
        )
        raise ConfigError("", [problem]) from None
    except YAMLError as exc:
        problem = Problem(ProblemKind.SYNTAX, (), detail=f"invalid YAML: {exc}")
        raise ConfigError("", [problem]) from None


def _plain(node: Any) -> Any:  # noqa: ANN401 - mirrors YAML's any
    """Copy a ruamel tree into plain dicts, lists and scalars.

    Keys whose value is null are left out, so that ``block_list:`` with
    nothing after it takes the default, and a required key with no value is
    reported as missing (see ``_name_empty_key`` for the wording).
    """
    if isinstance(node, Mapping):
        return {str(k): _plain(v) for k, v in node.items() if v is not None}
    if isinstance(node, list):
        return [_plain(v) for v in node]
    if isinstance(node, bool):
        return bool(node)
    if isinstance(node, int):
        return int(node)
    if isinstance(node, float):
        return float(node)
    if isinstance(node, str):
        return str(node)
    return node


def _locate(tree: Any, path: KeyPath) -> int:  # noqa: ANN401
    """Return the 1-based line of *path* in *tree*, or of its nearest parent."""
    line = 1
    node = tree
    for part in path:
        if isinstance(node, CommentedMap) and isinstance(part, str) and part in node:
            row, _ = node.lc.key(part)
        elif (
            isinstance(node, CommentedSeq)
            and isinstance(part, int)
            and 0 <= part < len(node)
        ):
            row, _ = node.lc.item(part)
        else:
            break
        line = row + 1
        node = node[part]
    return line


def warnings_for(config: Config) -> list[str]:
    """Things that work but deserve a word at start-up."""
    found = []
    if config.dls_settings.api.timeout < GUIDANCE_POLL_SECONDS:
        found.append(
            f"dls_settings.api.timeout is {config.dls_settings.api.timeout:g} s: "
            "Duo asks for no more than one poll a minute per endpoint; trio-dls "
            "backs off when Duo answers 429"
        )
    if not config.dls_settings.checkpointing.enabled:
        found.append(
            "checkpointing is disabled: every start replays "
            f"{config.dls_settings.api.offset:g} days of logs"
        )
    return found


def load_config_text(
    text: str, filename: str, env: Environment, *, secrets: bool = True
) -> Config:
    """Load a config from *text*; raise ``ConfigError`` listing every mistake.

    Without *secrets*, the skey is neither checked nor read (see ``resolve``).
    """
    try:
        tree = parse_yaml(text)
    except ConfigError as exc:
        raise ConfigError(filename, exc.problems) from None
    if tree is None:
        empty = Problem(ProblemKind.FILE, (), detail="the file is empty")
        raise ConfigError(filename, [empty])
    if is_pre_1_0(tree):
        # Every key of that layout is unknown here: one line saying what the
        # file is, and how to convert it, says more than a line per key.
        old = Problem(
            ProblemKind.FILE,
            (),
            detail="this is DLS's pre-1.0.0 layout (duoclient, logs, transport; "
            "no version), which trio-dls does not run; convert it with: "
            f"trio-dls upgrade-config {filename} NEW.yml",
            line=1,
        )
        raise ConfigError(filename, [old])
    data = _plain(tree)
    config, problems = structure(data)
    problems += cross_check(data, env, secrets=secrets)
    if problems or config is None:
        hidden = _raw_secrets(data)
        located = []
        for problem in problems:
            placed = attrs.evolve(problem, line=_locate(tree, problem.path))
            located.append(_mask(_name_empty_key(tree, placed), hidden))
        raise ConfigError(filename, _dedupe(_drop_typo_echoes(located)))
    return resolve(config, env, secrets=secrets)


def _name_empty_key(tree: object, problem: Problem) -> Problem:
    """Turn a "missing" key that is present with no value into ``NO_VALUE``.

    A missing key with a hint keeps it: the hint (version's) speaks of files
    without the key, and its message stays the one it has always been.
    """
    if (
        problem.kind is ProblemKind.MISSING
        and not problem.detail
        and _present_but_null(tree, problem.path)
    ):
        return attrs.evolve(problem, kind=ProblemKind.NO_VALUE)
    return problem


def _mask(problem: Problem, secrets: list[str]) -> Problem:
    """Hide the skey (and the proxy password) in *problem*'s words.

    The skey is never echoed on purpose; this also catches it where a user
    pasted it into the wrong key.  Only ``detail`` holds values from the file:
    suggestions and expected keys are the model's own names.
    """
    detail = problem.detail
    for secret in secrets:
        detail = detail.replace(secret, "********")
    return attrs.evolve(problem, detail=detail)


def _drop_typo_echoes(problems: list[Problem]) -> list[Problem]:
    """Drop "missing" reports for keys that an unknown key is the typo of.

    ``hostnme: x`` makes ``hostname`` missing too; one line about the typo,
    with its suggestion, says it all.
    """
    echoes = {
        (*p.path[:-1], p.suggestion)
        for p in problems
        if p.kind in _MISNAMED and p.suggestion is not None
    }
    return [p for p in problems if not (p.kind in _ABSENT and p.path in echoes)]


def _raw_secrets(data: object) -> list[str]:
    found = (
        value_at(data, "account", "skey"),
        value_at(data, "dls_settings", "proxy", "proxy_password"),
    )
    return [s.strip() for s in found if isinstance(s, str) and s.strip()]


def _present_but_null(tree: object, path: KeyPath) -> bool:
    node = tree
    for part in path[:-1]:
        try:
            node = node[part]  # type: ignore[index]
        except (KeyError, IndexError, TypeError):
            return False
    return isinstance(node, Mapping) and path[-1] in node and node[path[-1]] is None


def _dedupe(problems: list[Problem]) -> list[Problem]:
    # Stage 3 repeats some of stage 2's findings in other words (a missing
    # skey); keep one problem per key path.
    seen: set[KeyPath] = set()
    kept = []
    for problem in problems:
        if problem.path not in seen:
            kept.append(problem)
            seen.add(problem.path)
    return kept


def _unusable_file(name: str, detail: str) -> ConfigError:
    return ConfigError(name, [Problem(ProblemKind.FILE, (), detail=detail)])


def load_config(
    path: Path, env: Environment | None = None, *, secrets: bool = True
) -> Config:
    """Read and load the config file at *path*.

    Raise ``ConfigError`` for a missing, unreadable or invalid file.  Without
    *secrets* the skey is not read (nor its file or variable checked): for
    commands that sign nothing.
    """
    name = str(path)
    if path.is_dir():
        raise _unusable_file(name, "is a directory, not a config file")
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise _unusable_file(name, "no such file") from None
    except PermissionError:
        raise _unusable_file(name, "cannot read: permission denied") from None
    except OSError as exc:
        raise _unusable_file(name, f"cannot read: {exc.strerror}") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise _unusable_file(
            name, f"not UTF-8 text (at byte offset {exc.start})"
        ) from None
    return load_config_text(
        text, name, env or Environment.of_process(path), secrets=secrets
    )
