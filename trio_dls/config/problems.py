"""Config problems as values: what is wrong, at which key, on which line.

This module owns ``Problem`` (one mistake: its kind, key path, line and, for a
typo, the key it probably meant), the wording of the kinds that have a phrase
of their own, and ``ConfigError``, which carries every problem of a file and
renders them as ``file:line: key.path: message`` lines.  Whoever finds a
problem builds it from structured fields; whoever acts on one (dropping the
echo of a typo, naming a key that is present but empty) reads those fields,
never the rendered text.
"""

from __future__ import annotations

import enum

import attrs

KeyPath = tuple[str | int, ...]


class ProblemKind(enum.StrEnum):
    """What sort of mistake a ``Problem`` is."""

    # The file itself cannot be used: absent, a directory, unreadable, not
    # UTF-8, empty.
    FILE = "file"
    # Not YAML; the problem has the line and column of the parser's complaint.
    SYNTAX = "syntax"
    # A list where a mapping belongs, a mapping where a list belongs...
    SHAPE = "shape"
    # A key the model does not have; ``suggestion`` is the one it resembles.
    UNKNOWN_KEY = "unknown-key"
    # A key that DLS's older documents used; ``suggestion`` is today's name.
    RENAMED_KEY = "renamed-key"
    # A required key that is absent.
    MISSING = "missing"
    # A required key that is present with nothing after it.
    NO_VALUE = "no-value"
    # A value of the wrong type or out of its range.
    INVALID = "invalid"
    # A server key that belongs to the servers of another protocol
    # (``tls_server_name`` on a UDP server).
    WRONG_PROTOCOL = "wrong-protocol"
    # A relation the types cannot express: a reference to an unknown server,
    # a duplicate id, a file that does not exist, an unset variable.
    CROSS_CHECK = "cross-check"


@attrs.frozen
class Problem:
    """One mistake in a config file, and where it is.

    ``detail`` is the finder's own words: the whole message for the kinds that
    have no phrase of their own (``INVALID``, ``SHAPE``, ``WRONG_PROTOCOL``,
    ``CROSS_CHECK``, ``SYNTAX``, ``FILE``), a hint after the phrase for
    ``MISSING``.
    ``expected`` lists the keys that belong there: every key allowed beside an
    ``UNKNOWN_KEY``, or for a ``MISSING`` key reported at its mapping, the
    alternatives one of which is required.
    """

    kind: ProblemKind
    path: KeyPath
    detail: str = attrs.field(default="", kw_only=True)
    suggestion: str | None = attrs.field(default=None, kw_only=True)
    expected: tuple[str, ...] = attrs.field(default=(), kw_only=True)
    line: int | None = attrs.field(default=None, kw_only=True)  # 1-based
    column: int | None = attrs.field(default=None, kw_only=True)  # 1-based

    @property
    def message(self) -> str:
        """The problem in words, without its place."""
        if self.kind is ProblemKind.UNKNOWN_KEY and self.suggestion:
            return f"unknown key (did you mean '{self.suggestion}'?)"
        if self.kind is ProblemKind.UNKNOWN_KEY:
            return f"unknown key; expected one of: {', '.join(self.expected)}"
        if self.kind is ProblemKind.RENAMED_KEY:
            return f"unknown key; this file format calls it '{self.suggestion}'"
        if self.kind is ProblemKind.MISSING:
            text = "required key is missing"
            if self.expected:
                first, *others = self.expected
                text += f": {first}"
                if others:
                    text += f" ({', '.join(f'or {other}' for other in others)})"
            return text + (f" ({self.detail})" if self.detail else "")
        if self.kind is ProblemKind.NO_VALUE:
            return "required key has no value"
        return self.detail

    def render(self, filename: str) -> str:
        """Format as ``file:line: key.path: message`` (one line)."""
        where = filename
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        text = f"{where}: {format_path(self.path)}: " if self.path else f"{where}: "
        return text + self.message.replace("\n", " ")


class ConfigError(Exception):
    """A config file that cannot be used; ``problems`` lists every mistake."""

    def __init__(self, filename: str, problems: list[Problem]) -> None:
        """Collect *problems* found in *filename*."""
        self.filename = filename
        self.problems = sorted(
            problems, key=lambda p: (p.line if p.line is not None else 0, p.path)
        )
        super().__init__(self.render())

    def render(self) -> str:
        """All problems, one per line."""
        return "\n".join(p.render(self.filename) for p in self.problems)


def format_path(path: KeyPath) -> str:
    """Render ``("servers", 0, "port")`` as ``servers[0].port``."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else f".{part}" if text else part
    return text
