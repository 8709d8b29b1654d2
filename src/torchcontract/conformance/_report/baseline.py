"""The baseline file: known failures kept in a TOML file instead of the test code.

One table per target name, one ``"check.id" = "reason"`` string per known failure::

    ["my dataset"]
    "map_dataset.negative_index_mirrors_python" = "wraps round on purpose"

This module reads and writes the file; how its entries apply to a target (expected failures, entries
still ``TODO``, stale entries) is :mod:`.plan`'s.

Light: no NumPy, no engine (the pytest plugin reads the file at configuration).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = [
    "TODO",
    "Baseline",
    "BaselineError",
    "dumps",
    "parse_subset",
    "quote",
    "read_baseline",
    "write_baseline",
]

TODO = "TODO"
# target name -> {check id: reason}
Baseline = dict[str, dict[str, str]]


class BaselineError(ValueError):
    """A baseline file that cannot be used; the message names the file (and the line, where known)."""


def read_baseline(path: str | Path) -> Baseline:
    """The entries of the baseline file at ``path``: BaselineError naming the file for bad input."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise BaselineError(f"baseline {path}: cannot be read: {error}") from None
    if sys.version_info >= (3, 11):
        import tomllib

        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as error:
            raise BaselineError(f"baseline {path}: not valid TOML: {error}") from None
        return _validated(data, str(path))
    return parse_subset(text, str(path))  # no tomllib: the subset that baselines use


def _validated(data: Mapping[str, Any], path: str) -> Baseline:
    baseline: Baseline = {}
    for target, table in data.items():
        if not isinstance(table, dict):
            raise BaselineError(
                f"baseline {path}: {target!r} = {table!r} is outside a table; write entries under "
                f'a table named by the target, e.g. ["{target}"] then "check.id" = "reason"'
            )
        entries: dict[str, str] = {}
        for check_id, reason in table.items():
            where = f"baseline {path}: [{quote(target)}] {quote(check_id)}"
            if not isinstance(reason, str):
                raise BaselineError(f"{where}: the reason must be a string, not {reason!r}")
            entries[check_id] = _reason(reason, where)
        baseline[target] = entries
    return baseline


def _reason(reason: str, where: str) -> str:
    if not reason.strip():
        raise BaselineError(f'{where}: the reason is empty; write why it fails (or "{TODO}")')
    return reason


# --------------------------------------------------------------------------------------------------
# The subset of TOML that baselines use, for Python 3.10 (no tomllib there, and tomli is no
# dependency): comments, [table] headers with a bare or quoted name, and key = "string" lines with a
# bare or quoted key. Anything else is an error naming the file and the line.

_BARE = re.compile(r"[A-Za-z0-9_-]+")
_ESCAPES = {"b": "\b", "t": "\t", "n": "\n", "f": "\f", "r": "\r", '"': '"', "\\": "\\"}


class _LineError(Exception):
    pass


def parse_subset(text: str, path: str = "<baseline>") -> Baseline:
    """Parse the subset of TOML a baseline uses; BaselineError naming ``path`` and the line."""
    baseline: Baseline = {}
    table: dict[str, str] | None = None
    table_name = ""
    for lineno, line in enumerate(text.splitlines(), start=1):
        try:
            position = _skip_space(line, 0)
            if position == len(line) or line[position] == "#":
                continue
            if line[position] == "[":
                if line.startswith("[[", position):
                    raise _LineError("arrays of tables ([[...]]) are not part of a baseline")
                table_name, position = _key(line, _skip_space(line, position + 1))
                position = _skip_space(line, position)
                if position < len(line) and line[position] == ".":
                    raise _LineError("nested tables are not part of a baseline: one [target] per table")
                if position == len(line) or line[position] != "]":
                    raise _LineError("expected ] to close the table name")
                _end_of_line(line, position + 1)
                if table_name in baseline:
                    raise _LineError(f"table [{quote(table_name)}] is defined twice")
                table = baseline[table_name] = {}
                continue
            key, position = _key(line, position)
            position = _skip_space(line, position)
            if position < len(line) and line[position] == ".":
                raise _LineError("dotted keys are not part of a baseline; quote the check id")
            if position == len(line) or line[position] != "=":
                raise _LineError(f"expected = after {quote(key)}")
            position = _skip_space(line, position + 1)
            if position == len(line) or line[position] not in "\"'":
                raise _LineError(f"the reason for {quote(key)} must be a string in quotes")
            value, position = _string(line, position)
            _end_of_line(line, position)
            if table is None:
                raise _LineError(
                    f'{quote(key)} is outside a table; put it under the target\'s table, e.g. ["my dataset"]'
                )
            if key in table:
                raise _LineError(f"{quote(key)} is given twice in [{quote(table_name)}]")
            table[key] = _reason(value, f"[{quote(table_name)}] {quote(key)}")
        except (_LineError, BaselineError) as error:
            raise BaselineError(f"baseline {path}, line {lineno}: {error}") from None
    return baseline


def _skip_space(line: str, position: int) -> int:
    while position < len(line) and line[position] in " \t":
        position += 1
    return position


def _end_of_line(line: str, position: int) -> None:
    position = _skip_space(line, position)
    if position < len(line) and line[position] != "#":
        raise _LineError(f"unexpected {line[position:]!r} after the entry")


def _key(line: str, position: int) -> tuple[str, int]:
    if position < len(line) and line[position] in "\"'":
        return _string(line, position)
    match = _BARE.match(line, position)
    if match is None:
        raise _LineError(f"expected a name (bare or in quotes) at {line[position:]!r}")
    return match.group(), match.end()


def _string(line: str, position: int) -> tuple[str, int]:
    quote = line[position]
    if line.startswith(quote * 3, position):
        raise _LineError("multi-line strings are not part of a baseline")
    position += 1
    chars: list[str] = []
    while position < len(line):
        char = line[position]
        if char == quote:
            return "".join(chars), position + 1
        if char == "\\" and quote == '"':
            escape = line[position + 1 : position + 2]
            if escape in _ESCAPES:
                chars.append(_ESCAPES[escape])
                position += 2
                continue
            if escape in ("u", "U"):
                digits = 4 if escape == "u" else 8
                code = line[position + 2 : position + 2 + digits]
                if len(code) != digits or not all(c in "0123456789abcdefABCDEF" for c in code):
                    raise _LineError(f"\\{escape} needs {digits} hex digits")
                value = int(code, 16)
                if value > 0x10FFFF or 0xD800 <= value <= 0xDFFF:
                    raise _LineError(f"\\{escape}{code} is not a Unicode scalar value")
                chars.append(chr(value))
                position += 2 + digits
                continue
            raise _LineError(f"unknown escape \\{escape} in a string")
        if (ord(char) < 0x20 and char != "\t") or char == "\x7f":
            raise _LineError(f"control character {char!r} in a string; escape it")
        chars.append(char)
        position += 1
    raise _LineError("the string is not closed on its line")


def quote(text: str) -> str:
    """``text`` as a TOML basic string."""
    out = ['"']
    for char in text:
        if char in ('"', "\\"):
            out.append("\\" + char)
        elif char in "\b\t\n\f\r":
            out.append({"\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}[char])
        elif ord(char) < 0x20 or char == "\x7f":
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(char)
    out.append('"')
    return "".join(out)


def dumps(baseline: Mapping[str, Mapping[str, str]]) -> str:
    """A baseline file's text (read back by :func:`read_baseline` as the same entries)."""
    lines = [
        "# torchcontract baseline: known failures, one table per target name, each",
        '# "check.id" = "why it fails". An entry whose reason is TODO fails the run until the',
        "# reason is written; an entry whose check passes, or that names no check, fails too.",
    ]
    for target, entries in baseline.items():
        lines.extend(["", f"[{quote(target)}]"])
        lines.extend(f"{quote(check_id)} = {quote(reason)}" for check_id, reason in entries.items())
    return "\n".join(lines) + "\n"


def write_baseline(path: str | Path, baseline: Mapping[str, Mapping[str, str]]) -> None:
    """Write ``baseline`` to ``path`` atomically: a failure raises
    :class:`~torchcontract._files.OutputError` and leaves the old file (the baseline in
    use, with its written reasons) as it was."""
    from torchcontract._files import write_atomically

    write_atomically(path, dumps(baseline))
