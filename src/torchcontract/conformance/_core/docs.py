"""README's table of target options, generated from where each is declared: the options' metadata
(:mod:`.options`) and the target's own arguments (:data:`.target.ARGUMENTS_HELP`).

The table stands between two markers in README.md; ``tests/engine/test_docs.py`` fails when it differs
from what the declarations give. To rewrite it::

    python -m torchcontract.conformance._core.docs --write README.md
    python -m torchcontract.conformance._core.docs --check README.md   # exit status 1 when it differs
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from torchcontract._files import write_atomically
from torchcontract.conformance._core.options import option_infos
from torchcontract.conformance._core.target import ARGUMENTS_HELP

__all__ = ["END", "START", "options_table", "with_options_table"]

COMMAND = "python -m torchcontract.conformance._core.docs --write README.md"
START = f"<!-- options-table:start (generated from the declarations: {COMMAND}) -->"
END = "<!-- options-table:end -->"


def options_table() -> str:
    """The Markdown table of the target's arguments and options, in the order of their declarations."""
    rows = ["| option | meaning |", "|---|---|"]
    rows += [f"| `{name}` | {text} |" for name, text in ARGUMENTS_HELP.items()]
    for _, info in option_infos():
        tag = " (declaration)" if info.declaration else ""
        rows.append(f"| `{info.shown}`{tag} | {info.help} |")
    return "\n".join(rows)


def with_options_table(text: str) -> str:
    """``text`` (README's) with the table between :data:`START` and :data:`END` generated afresh;
    ValueError when the markers are missing or out of order."""
    start, end = text.find(START), text.find(END)
    if start < 0 or end < start:
        raise ValueError(f"no options table between {START!r} and {END!r}")
    return f"{text[: start + len(START)]}\n{options_table()}\n{text[end:]}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m torchcontract.conformance._core.docs",
        description="Write or check README's table of target options, generated from their declarations.",
    )
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--write", action="store_true", help="rewrite the table in FILE")
    mode.add_argument("--check", action="store_true", help="exit with status 1 when the table differs")
    parser.add_argument("file", type=Path, metavar="FILE", help="README.md")
    args = parser.parse_args(argv)
    try:
        text = args.file.read_text(encoding="utf-8")
        generated = with_options_table(text)
    except (OSError, ValueError) as error:
        parser.error(f"{args.file}: {error}")
    if args.check:
        if generated != text:
            print(f"{args.file}: the options table is out of date; run {COMMAND}", file=sys.stderr)
            return 1
        return 0
    if generated != text:
        write_atomically(args.file, generated)
    return 0


if __name__ == "__main__":
    sys.exit(main())
