"""Upgrading: DLS's pre-1.0.0 config layout in, today's layout out, comments kept.

Theory of operation
-------------------
DLS's first config layout (``duoclient``, ``logs``, ``transport``,
``recoverFromCheckpoint``, no ``version``) is converted by the rules of
``RULES``, which follow DLS's own upgrade (see ``docs/config.md``, "Upgrading
a pre-1.0 config").  Each rule reads the old tree, writes its keys into the new
one, says in one line what it did, and says which old keys' comments go to
which new key.

Comments are read from the text, by line, rather than from ruamel.yaml's
comment tokens: ruamel attaches a comment line to the key *before* it (the
comment above ``logs:`` belongs to the last key of ``duoclient``), so moving
nodes would carry comments to the wrong place.  Here the comment lines right
above a key, and the comment at the end of its line, belong to that key; any
other comment line (between list items, say) belongs to the key whose value
it sits in, and the lines after the last key stay at the end.  So no comment
line of the old file is lost, wherever the keys go.

The new optional keys, those the old layout did not have (trio-dls's
extensions among them), are added as commented-out lines with their defaults,
under the section they belong to, ready to be uncommented.

This module does no I/O: text goes in, a ruamel ``CommentedMap`` (dumped by
``dump``) and the notes come out.  The skey is copied, never named in a note
or an error.
"""

from __future__ import annotations

import io
import itertools
from collections.abc import Callable, Mapping
from typing import Any, Final

import attrs
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import CommentMark, MarkedYAMLError, YAMLError
from ruamel.yaml.scalarstring import SingleQuotedScalarString
from ruamel.yaml.tokens import CommentToken

from trio_dls.config.model import (
    DEFAULT_MAX_CALLS_IN_FLIGHT,
    DEFAULT_MAX_PAGES_IN_MEMORY,
    DEFAULT_MSP_REFRESH_SECONDS,
    MspApiHost,
)
from trio_dls.config.problems import KeyPath, format_path
from trio_dls.siem.formats import Facility, SyslogHeader
from trio_dls.siem.framing import DEFAULT_OVERSIZE_POLICY, DEFAULT_UDP_MAX_SIZE, Framing

CURRENT_VERSION: Final = "1.0.0"
# The id DLS's upgrade gives the one server of the old layout.
SERVER_ID: Final = "Server 1"
# The file DLS wrote its own messages to, inside the old ``logDir``.
LOG_FILENAME: Final = "duologsync.log"
OLD_SECTIONS: Final = ("duoclient", "logs", "transport", "recoverFromCheckpoint")

# Every key of the old layout; a mapping value is a section.  A key outside
# this is refused: dropping it would lose what the user wrote, and guessing
# where it goes is not ours to do.
_OLD_LAYOUT: Final[Mapping[str, Any]] = {
    "duoclient": {"ikey": None, "skey": None, "host": None},
    "logs": {
        "logDir": None,
        "endpoints": {"enabled": None},
        "polling": {"duration": None, "daysinpast": None},
        "checkpointDir": None,
    },
    "transport": {
        "protocol": None,
        "host": None,
        "port": None,
        "certFileDir": None,
        "certFileName": None,
    },
    "recoverFromCheckpoint": {"enabled": None},
}

_HEADER: Final = (
    "# Converted from DLS's pre-1.0.0 layout by trio-dls upgrade-config.",
    "# Optional keys that layout did not have are shown commented out, with",
    "# their defaults: uncomment one to use it.",
)


class UpgradeError(Exception):
    """The old file cannot be converted; ``problems`` says why, one line each."""

    def __init__(self, problems: list[str]) -> None:
        """Collect *problems*, each naming its key path where it has one."""
        self.problems = problems
        super().__init__("; ".join(problems))


class AlreadyCurrentError(UpgradeError):
    """The file has ``version: '1.0.0'``: there is nothing to upgrade."""


@attrs.frozen
class Upgrade:
    """The converted tree and what was done, one line per rule applied."""

    tree: CommentedMap
    notes: tuple[str, ...]


def is_pre_1_0(tree: object) -> bool:
    """Whether *tree* (a parsed file) is DLS's pre-1.0.0 layout."""
    return (
        isinstance(tree, Mapping)
        and "version" not in tree
        and any(section in tree for section in OLD_SECTIONS)
    )


def upgrade(text: str) -> Upgrade:
    """Convert the pre-1.0.0 config *text*; raise ``UpgradeError`` if it cannot be."""
    tree = _parse(text)
    _refuse_other_layouts(tree)
    problems = list(_unknown_keys(tree, _OLD_LAYOUT, ()))
    if problems:
        raise UpgradeError(problems)
    draft = _Draft(old=tree)
    for rule in RULES:
        rule(draft)
    if draft.problems:
        raise UpgradeError(draft.problems)
    new = draft.assemble()
    _annotate(new, draft, _harvest(text, tree))
    return Upgrade(new, tuple(draft.notes))


def dump(tree: CommentedMap) -> str:
    """Render *tree* as YAML text, in the indentation of DLS's templates."""
    yaml = YAML(typ="rt")
    yaml.indent(mapping=2, sequence=4, offset=2)
    # Never fold a long value or comment onto a second line.
    yaml.width = 4096
    out = io.StringIO()
    yaml.dump(tree, out)
    return out.getvalue()


# Parsing and refusing.


def _parse(text: str) -> CommentedMap:
    yaml = YAML(typ="rt")
    yaml.preserve_quotes = True
    try:
        tree = yaml.load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}: " if mark else ""
        what = " ".join(filter(None, [exc.context, exc.problem]))
        raise UpgradeError([f"{where}invalid YAML: {what}"]) from None
    except YAMLError as exc:
        raise UpgradeError([f"invalid YAML: {exc}"]) from None
    if tree is None:
        raise UpgradeError(["the file is empty"])
    if not isinstance(tree, CommentedMap):
        raise UpgradeError(["the file must be a mapping of keys to values"])
    return tree


def _refuse_other_layouts(tree: CommentedMap) -> None:
    if "version" in tree:
        version = tree["version"]
        if str(version) == CURRENT_VERSION:
            msg = (
                f"already in the current layout (version: '{CURRENT_VERSION}'); "
                "nothing to upgrade"
            )
            raise AlreadyCurrentError([msg])
        raise UpgradeError(
            [f"version: {version!r} is not a layout trio-dls knows how to upgrade"]
        )
    if not any(section in tree for section in OLD_SECTIONS):
        current = [k for k in ("dls_settings", "servers", "account") if k in tree]
        if current:
            msg = (
                f"not DLS's pre-1.0.0 layout: it has {', '.join(current)} but no "
                f"version; add version: '{CURRENT_VERSION}' instead"
            )
        else:
            msg = "not DLS's pre-1.0.0 layout: it has none of " + ", ".join(
                OLD_SECTIONS
            )
        raise UpgradeError([msg])


def _unknown_keys(node: object, layout: Mapping[str, Any], path: KeyPath) -> Any:  # noqa: ANN401 - a generator of str
    if node is None:
        return
    if not isinstance(node, Mapping):
        yield f"{format_path(path)}: expected a mapping of keys to values"
        return
    for key, value in node.items():
        if key not in layout:
            yield (
                f"{format_path((*path, str(key)))}: not a key of DLS's pre-1.0.0 "
                f"layout (expected one of: {', '.join(layout)}); remove or move "
                "it, then upgrade again"
            )
        elif isinstance(layout[key], Mapping):
            yield from _unknown_keys(value, layout[key], (*path, str(key)))


# The rules.


@attrs.define
class _Draft:
    """The new layout being built, and the record of how."""

    old: CommentedMap
    values: dict[KeyPath, object] = attrs.Factory(dict)
    notes: list[str] = attrs.Factory(list)
    problems: list[str] = attrs.Factory(list)
    # (old key, new key): the old key's comments go to the new key.
    moves: list[tuple[KeyPath, KeyPath]] = attrs.Factory(list)

    def get(self, *path: str) -> object:
        node: object = self.old
        for part in path:
            if not isinstance(node, Mapping) or part not in node:
                return None
            node = node[part]
        return node

    def has(self, *path: str) -> bool:
        parent = self.get(*path[:-1])
        return isinstance(parent, Mapping) and path[-1] in parent

    def put(self, path: KeyPath, value: object) -> None:
        self.values[path] = value

    def move(self, old: KeyPath, new: KeyPath) -> None:
        self.moves.append((old, new))

    def assemble(self) -> CommentedMap:
        """Build the new tree in the order of trio-dls's sample config."""
        root = CommentedMap()
        for path in sorted(self.values, key=_ORDER.index):
            _set(root, path, self.values[path])
        return root


# Where each new key goes, in the order the sample config writes them.
_ORDER: Final[list[KeyPath]] = [
    ("version",),
    ("dls_settings", "log_filepath"),
    ("dls_settings", "log_format"),
    ("dls_settings", "api", "offset"),
    ("dls_settings", "api", "timeout"),
    ("dls_settings", "checkpointing", "enabled"),
    ("dls_settings", "checkpointing", "directory"),
    ("servers", 0, "id"),
    ("servers", 0, "hostname"),
    ("servers", 0, "port"),
    ("servers", 0, "protocol"),
    ("servers", 0, "cert_filepath"),
    ("account", "ikey"),
    ("account", "skey"),
    ("account", "hostname"),
    ("account", "endpoint_server_mappings", 0, "endpoints"),
    ("account", "endpoint_server_mappings", 0, "server"),
]


def _quoted(value: str) -> str:
    # DLS's templates ask for single quotes; new values are written so.
    quoted: str = SingleQuotedScalarString(value)
    return quoted


def _set(root: CommentedMap, path: KeyPath, value: object) -> None:
    node: Any = root
    for part, following in itertools.pairwise(path):
        if isinstance(part, int):
            while len(node) <= part:
                node.append(CommentedMap())
            node = node[part]
            continue
        if part not in node:
            node[part] = (
                CommentedSeq() if isinstance(following, int) else CommentedMap()
            )
        node = node[part]
    node[path[-1]] = value


def _version(draft: _Draft) -> None:
    """Rule: the file gets ``version: '1.0.0'``."""
    draft.put(("version",), _quoted(CURRENT_VERSION))
    draft.notes.append(f"added version: '{CURRENT_VERSION}'")


def _account(draft: _Draft) -> None:
    """Rule: ``duoclient`` becomes ``account``; its ``host`` becomes ``hostname``."""
    if not draft.has("duoclient"):
        return
    draft.move(("duoclient",), ("account",))
    for old, new in (("ikey", "ikey"), ("skey", "skey"), ("host", "hostname")):
        if draft.has("duoclient", old):
            draft.put(("account", new), draft.get("duoclient", old))
            draft.move(("duoclient", old), ("account", new))
    shown = (
        "ikey, skey (copied, not shown)" if draft.has("duoclient", "skey") else "ikey"
    )
    draft.notes.append(f"duoclient -> account ({shown}; host -> hostname)")


def _log_filepath(draft: _Draft) -> None:
    """Rule: ``logs`` becomes ``dls_settings``; ``logDir`` becomes ``log_filepath``."""
    if draft.has("logs"):
        draft.move(("logs",), ("dls_settings",))
    log_dir = draft.get("logs", "logDir")
    if not draft.has("logs", "logDir"):
        return
    if not isinstance(log_dir, str) or not log_dir.strip():
        draft.problems.append(f"logs.logDir: expected a directory, got {log_dir!r}")
        return
    path = _join(log_dir, LOG_FILENAME)
    draft.put(("dls_settings", "log_filepath"), _quoted(path))
    draft.move(("logs", "logDir"), ("dls_settings", "log_filepath"))
    draft.notes.append(f"logs.logDir {log_dir!r} -> dls_settings.log_filepath {path!r}")


def _log_format(draft: _Draft) -> None:
    """Rule: ``dls_settings.log_format: 'JSON'`` is added, the old layout's format."""
    draft.put(("dls_settings", "log_format"), _quoted("JSON"))
    draft.notes.append(
        "added dls_settings.log_format: 'JSON' (the old layout's only format)"
    )


def _api(draft: _Draft) -> None:
    """Rule: ``polling`` becomes ``api``; ``duration`` minutes, ``timeout`` seconds."""
    if not draft.has("logs", "polling"):
        return
    draft.move(("logs", "polling"), ("dls_settings", "api"))
    done = []
    if draft.has("logs", "polling", "daysinpast"):
        draft.put(
            ("dls_settings", "api", "offset"),
            draft.get("logs", "polling", "daysinpast"),
        )
        draft.move(("logs", "polling", "daysinpast"), ("dls_settings", "api", "offset"))
        done.append("daysinpast -> offset")
    if draft.has("logs", "polling", "duration"):
        minutes = draft.get("logs", "polling", "duration")
        seconds = _minutes_to_seconds(minutes)
        if seconds is None:
            draft.problems.append(
                f"logs.polling.duration: expected a number of minutes, got {minutes!r}"
            )
            return
        draft.put(("dls_settings", "api", "timeout"), seconds)
        draft.move(("logs", "polling", "duration"), ("dls_settings", "api", "timeout"))
        done.append(f"duration {minutes} min -> timeout {seconds} s")
    draft.notes.append(
        "logs.polling -> dls_settings.api" + (f" ({'; '.join(done)})" if done else "")
    )


def _checkpointing(draft: _Draft) -> None:
    """Rule: ``recoverFromCheckpoint`` and ``checkpointDir`` make ``checkpointing``."""
    target = ("dls_settings", "checkpointing")
    if draft.has("recoverFromCheckpoint"):
        draft.move(("recoverFromCheckpoint",), target)
    if draft.has("recoverFromCheckpoint", "enabled"):
        enabled = draft.get("recoverFromCheckpoint", "enabled")
        draft.put((*target, "enabled"), enabled)
        draft.move(("recoverFromCheckpoint", "enabled"), (*target, "enabled"))
        draft.notes.append(
            f"recoverFromCheckpoint.enabled {enabled} -> "
            "dls_settings.checkpointing.enabled"
        )
    if draft.has("logs", "checkpointDir"):
        directory = draft.get("logs", "checkpointDir")
        draft.put((*target, "directory"), directory)
        draft.move(("logs", "checkpointDir"), (*target, "directory"))
        draft.notes.append(
            f"logs.checkpointDir {directory!r} -> dls_settings.checkpointing.directory"
        )


def _server(draft: _Draft) -> None:
    """Rule: ``transport`` becomes ``servers[0]``, called ``'Server 1'``."""
    if not draft.has("transport"):
        return
    draft.move(("transport",), ("servers",))
    draft.put(("servers", 0, "id"), _quoted(SERVER_ID))
    for old, new in (("host", "hostname"), ("port", "port"), ("protocol", "protocol")):
        if draft.has("transport", old):
            draft.put(("servers", 0, new), draft.get("transport", old))
            draft.move(("transport", old), ("servers", 0, new))
    cert = _cert_filepath(draft)
    draft.notes.append(
        f"transport -> servers[0] with id '{SERVER_ID}' (host -> hostname"
        + (f"; certFileDir + certFileName -> cert_filepath {cert!r}" if cert else "")
        + ")"
    )


def _cert_filepath(draft: _Draft) -> str:
    parts = []
    for key in ("certFileDir", "certFileName"):
        value = draft.get("transport", key)
        if value is not None and not isinstance(value, str):
            draft.problems.append(f"transport.{key}: expected text, got {value!r}")
            return ""
        if draft.has("transport", key):
            draft.move(("transport", key), ("servers", 0, "cert_filepath"))
        parts.append((value or "").strip())
    if not (
        draft.has("transport", "certFileDir") or draft.has("transport", "certFileName")
    ):
        return ""
    directory, name = parts
    # A directory without a file name names no certificate: left empty, so
    # that ``check`` says a TCPSSL server needs one.
    path = _join(directory, name) if directory and name else name
    draft.put(("servers", 0, "cert_filepath"), _quoted(path))
    return path


def _endpoints(draft: _Draft) -> None:
    """Rule: ``endpoints.enabled`` becomes the one mapping, to ``'Server 1'``."""
    if not draft.has("logs", "endpoints"):
        return
    target = ("account", "endpoint_server_mappings")
    draft.move(("logs", "endpoints"), target)
    if not draft.has("logs", "endpoints", "enabled"):
        return
    enabled = draft.get("logs", "endpoints", "enabled")
    draft.move(("logs", "endpoints", "enabled"), target)
    endpoints: object = enabled
    if isinstance(enabled, list):
        # A block list in the old file is written as a flow list here: its
        # items' comments, if any, went to the mapping's key with the rest.
        endpoints = CommentedSeq(enabled)
        endpoints.fa.set_flow_style()
    draft.put((*target, 0, "endpoints"), endpoints)
    draft.put((*target, 0, "server"), _quoted(SERVER_ID))
    draft.notes.append(
        f"logs.endpoints.enabled -> account.endpoint_server_mappings[0] "
        f"(to server '{SERVER_ID}')"
    )


RULES: Final[tuple[Callable[[_Draft], None], ...]] = (
    _version,
    _account,
    _log_filepath,
    _log_format,
    _api,
    _checkpointing,
    _server,
    _endpoints,
)


def _join(directory: str, name: str) -> str:
    # DLS joins with the separator the directory already uses: a backslash
    # means a Windows path.
    separator = "\\" if "\\" in directory else "/"
    return directory.rstrip(separator) + separator + name if directory else name


def _minutes_to_seconds(minutes: object) -> int | float | None:
    if isinstance(minutes, bool):
        return None
    if isinstance(minutes, str):
        try:
            minutes = float(minutes.strip())
        except ValueError:
            return None
    if not isinstance(minutes, (int, float)):
        return None
    seconds = float(minutes) * 60
    return int(seconds) if seconds.is_integer() else seconds


# Comments: read from the old text by line, written to the new tree.


@attrs.define
class _Comments:
    """The comment lines of the old file, by the key they belong to."""

    before: dict[KeyPath, list[str]] = attrs.Factory(dict)
    eol: dict[KeyPath, str] = attrs.Factory(dict)
    header: list[str] = attrs.Factory(list)
    trailer: list[str] = attrs.Factory(list)


def _key_lines(node: object, path: KeyPath) -> Any:  # noqa: ANN401 - yields (line, col, path)
    if isinstance(node, CommentedMap):
        for key in node:
            line, column = node.lc.key(key)
            yield line, column, (*path, str(key))
            yield from _key_lines(node[key], (*path, str(key)))
    elif isinstance(node, CommentedSeq):
        for index, item in enumerate(node):
            yield from _key_lines(item, (*path, index))


def _is_comment(line: str) -> bool:
    return line.lstrip().startswith("#")


def _eol_comment(line: str) -> str | None:
    """The comment at the end of a content *line*, quotes respected."""
    quote = ""
    index = 0
    while index < len(line):
        char = line[index]
        previous = line[index - 1] if index else " "
        if quote == "'" and char == "'":
            if line[index + 1 : index + 2] == "'":
                index += 1  # '' is a quote inside single quotes
            else:
                quote = ""
        elif quote == '"' and char == "\\":
            index += 1
        elif quote == '"' and char == '"':
            quote = ""
        elif not quote and char in "'\"" and previous in " \t[{,:-":
            quote = char
        elif not quote and char == "#" and previous in " \t":
            return line[index:].rstrip()
        index += 1
    return None


def _tidy(lines: list[str]) -> list[str]:
    """Strip indentation, drop blank lines at the ends, keep one between."""
    kept: list[str] = []
    for line in lines:
        text = line.strip()
        if text or (kept and kept[-1]):
            kept.append(text)
    while kept and not kept[-1]:
        kept.pop()
    return kept


def _harvest(text: str, tree: CommentedMap) -> _Comments:
    lines = text.splitlines()
    keys = sorted(_key_lines(tree, ()))
    comments = _Comments()
    claimed: set[int] = set()
    key_rows = {row for row, _, _ in keys}
    for row, column, path in keys:
        above = row - 1
        while above >= 0 and (not lines[above].strip() or _is_comment(lines[above])):
            above -= 1
        block = list(range(above + 1, row))
        claimed.update(block)
        comments.before[path] = [lines[i] for i in block]
        eol = _eol_comment(lines[row][column:])
        if eol:
            comments.eol[path] = eol
    first_path = keys[0][2]
    own = comments.before[first_path]
    # Above the first key, what a blank line separates is about the file.
    if "" in [line.strip() for line in own]:
        cut = max(i for i, line in enumerate(own) if not line.strip())
        comments.header = _tidy(own[:cut])
        comments.before[first_path] = own[cut:]
    last_content = max(
        (i for i, line in enumerate(lines) if line.strip() and not _is_comment(line)),
        default=-1,
    )
    for row, line in enumerate(lines):
        if row in claimed or row in key_rows:
            continue
        found = line.strip() if _is_comment(line) else _eol_comment(line)
        if not found:
            continue
        if row > last_content:
            comments.trailer.append(found)
            continue
        owner = max((k for k in keys if k[0] <= row), default=keys[0])[2]
        comments.before[owner].append(found)
    for path, found_lines in comments.before.items():
        comments.before[path] = _tidy(found_lines)
    return comments


def _column(path: KeyPath) -> int:
    # The indentation ``dump`` gives: 2 per mapping, 4 into a list item.
    names = sum(1 for part in path if isinstance(part, str))
    items = sum(1 for part in path if isinstance(part, int))
    return 2 * (names - 1) + 2 * items


def _node(tree: CommentedMap, path: KeyPath) -> Any:  # noqa: ANN401 - YAML's any
    node: Any = tree
    for part in path:
        node = node[part]
    return node


def _present(tree: CommentedMap, path: KeyPath) -> bool:
    node: Any = tree
    for part in path:
        if isinstance(part, int):
            if not isinstance(node, list) or part >= len(node):
                return False
        elif not isinstance(node, Mapping) or part not in node:
            return False
        node = node[part]
    return True


@attrs.define
class _Annotations:
    """Comment lines to write into the new tree, by new key path."""

    before: dict[KeyPath, list[str]] = attrs.Factory(dict)
    eol: dict[KeyPath, str] = attrs.Factory(dict)
    # Lines written after a key's value, with their own indentation.
    after: dict[KeyPath, list[str]] = attrs.Factory(dict)

    def add_before(self, path: KeyPath, lines: list[str]) -> None:
        if lines:
            block = self.before.setdefault(path, [])
            if block and block[-1] and lines[0]:
                block.append("")
            block.extend(lines)

    def add_after(self, path: KeyPath, lines: list[str]) -> None:
        self.after.setdefault(path, []).extend(lines)


def _last_scalar(tree: CommentedMap, path: KeyPath) -> KeyPath:
    """The path of the key whose line is the last of the value at *path*."""
    node = _node(tree, path)
    while True:
        if isinstance(node, CommentedMap) and node:
            key = list(node)[-1]
            path, node = (*path, key), node[key]
        elif isinstance(node, CommentedSeq) and node and isinstance(node[-1], Mapping):
            path, node = (*path, len(node) - 1), node[-1]
        else:
            return path


def _annotate(new: CommentedMap, draft: _Draft, old: _Comments) -> None:
    notes = _Annotations()
    notes.add_before(
        ("version",), [*old.header, *([""] if old.header else []), *_HEADER]
    )
    # A blank line between the sections, as in DLS's templates.
    for key in list(new)[1:]:
        notes.add_before((key,), [""])
    for old_path, new_path in draft.moves:
        target = new_path
        while target and not _present(new, target):
            target = target[:-1]
        lines = old.before.pop(old_path, [])
        eol = old.eol.pop(old_path, None)
        if not target:
            old.trailer.extend([*lines, *([eol] if eol else [])])
            continue
        notes.add_before(target, lines)
        if eol and target not in notes.eol:
            notes.eol[target] = eol
        elif eol:
            notes.add_before(target, [eol])
    # A comment of an old key that no rule moved (a section left empty)
    # goes to the end rather than away.
    for path in [p for p in old.before if old.before[p] or p in old.eol]:
        old.trailer.extend(
            [*old.before.pop(path), *filter(None, [old.eol.pop(path, None)])]
        )
    _add_optional_keys(new, notes)
    end = _last_scalar(new, ())
    if old.trailer:
        notes.add_after(end, ["", *old.trailer])
    _write(new, notes)


def _commented(column: int, lines: list[str]) -> list[str]:
    # The "# " goes where the key starts, so that deleting it is all it
    # takes to use the key.
    return [
        " " * (column + len(line) - len(line.lstrip())) + "# " + line.lstrip()
        for line in lines
    ]


def _add_optional_keys(new: CommentedMap, notes: _Annotations) -> None:
    """Add the keys the old layout lacked, commented out, with their defaults."""
    settings = ("dls_settings",)
    extension = "trio-dls extension"
    api_keys = [
        f"max_calls_in_flight: {DEFAULT_MAX_CALLS_IN_FLIGHT}  # {extension}",
        f"max_pages_in_memory: {DEFAULT_MAX_PAGES_IN_MEMORY}  # {extension}",
    ]
    if _present(new, (*settings, "api")):
        notes.add_after(_last_scalar(new, (*settings, "api")), _commented(4, api_keys))
    else:
        block = ["api:", *("  " + line for line in api_keys)]
        notes.add_after(_last_scalar(new, settings), _commented(2, block))
    proxy = ["proxy:", "  proxy_server: ''", "  proxy_port: 0"]
    notes.add_after(_last_scalar(new, settings), _commented(2, proxy))
    if _present(new, ("servers", 0)):
        protocol = str(_node(new, ("servers", 0)).get("protocol", "")).strip().upper()
        server = [f"syslog_header: '{SyslogHeader.NONE}'  # {extension}"]
        server.append(f"syslog_facility: '{Facility.USER.name.lower()}'  # {extension}")
        if protocol in {"TCP", "TCPSSL"}:
            server.insert(0, f"framing: '{Framing.NEWLINE}'  # {extension}")
        if protocol == "UDP":
            server += [
                f"udp_max_size: {DEFAULT_UDP_MAX_SIZE}  # {extension}",
                f"udp_oversize: '{DEFAULT_OVERSIZE_POLICY}'  # {extension}",
            ]
        if protocol == "TCPSSL":
            server += [
                f"client_cert_filepath: ''  # {extension}",
                f"client_key_filepath: ''  # {extension}",
                f"tls_server_name: ''  # {extension}",
                f"tls_verify_hostname: True  # {extension}",
            ]
        notes.add_after(_last_scalar(new, ("servers", 0)), _commented(4, server))
    if _present(new, ("account",)):
        account = [
            "is_msp: False",
            "block_list: []",
            f"msp_refresh_interval: {DEFAULT_MSP_REFRESH_SECONDS:g}  # {extension}",
            f"msp_api_host: '{MspApiHost.PARENT}'  # {extension}",
            # An example, not a default: without it, duo_client's pinned CAs.
            (
                f"ca_certs: '/etc/trio-dls/corporate-ca.pem'  # {extension}; "
                "no default: duo_client's own CAs"
            ),
        ]
        notes.add_after(_last_scalar(new, ("account",)), _commented(2, account))


def _token(text: str) -> CommentToken:
    # The comment machinery ``yaml_set_comment_before_after_key`` uses, with
    # the text given verbatim rather than behind a fresh "# ".
    return CommentToken(text, CommentMark(0))


def _write(new: CommentedMap, notes: _Annotations) -> None:
    for path, lines in notes.before.items():
        parent = _node(new, path[:-1])
        column = _column(path)
        slot = parent.ca.items.setdefault(path[-1], [None, None, None, None])
        slot[1] = [
            CommentToken(
                f"{line}\n" if line else "\n", CommentMark(column if line else 0)
            )
            for line in lines
        ]
    for path in {*notes.eol, *notes.after}:
        parent = _node(new, path[:-1])
        eol = notes.eol.get(path)
        after = notes.after.get(path, [])
        text = (
            (f" {eol}" if eol else "") + "\n" + "".join(f"{line}\n" for line in after)
        )
        if isinstance(parent[path[-1]], (CommentedMap, CommentedSeq)) and not after:
            text = f"{eol}\n"
        slot = parent.ca.items.setdefault(path[-1], [None, None, None, None])
        slot[2] = _token(text)
