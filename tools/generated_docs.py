"""The blocks of README.md, CHANGELOG.md and docs/ that the code can list, rendered from the code.

A generated block sits between two HTML comments, invisible on GitHub and in the docs site; some
renderers take an argument after their name:

    <!-- generated: clause-counts -->
    ...what the renderer returns...
    <!-- end generated: clause-counts -->

    <!-- generated: example faq-index-past-end -->
    ...
    <!-- end generated: example faq-index-past-end -->

Nobody edits the text between the markers: change the code (or the renderer here) and rewrite them:

    python tools/generated_docs.py                 # check: exit 1, naming each block that differs
    python tools/generated_docs.py --write         # rewrite every block that differs
    python tools/generated_docs.py --write --only conformance-table

A renderer that needs what this environment lacks (torch, torchvision) is left out, saying so: run the
command with a Python that has them. ``tests/docs/test_generated_docs.py`` holds every block to its
renderer wherever the renderer can run (the torch ones in the torch test sessions).

To add a block: write a function here decorated with ``@renderer("name")`` that returns the text, and
put the two markers where it belongs; ``--write`` fills it in.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import importlib.metadata
import importlib.util
import inspect
import itertools
import json
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
COMMAND = "python tools/generated_docs.py --write"

# The documents that may hold generated blocks, relative to the repository's root.
DOCUMENT_GLOBS = ("README.md", "CHANGELOG.md", "CONTRIBUTING.md", "docs/**/*.md", "examples/**/*.md")

START = re.compile(r"^<!-- generated: (?P<key>[^>]*?) -->[ \t]*$", re.MULTILINE)
END = re.compile(r"^<!-- end generated: (?P<key>[^>]*?) -->[ \t]*$", re.MULTILINE)


# ----------------------------------------------------------------------------------------------------
# the registry of renderers


@dataclasses.dataclass(frozen=True)
class Renderer:
    """How to render the blocks called ``name``: ``render(argument, document)`` returns the text (the
    argument is "" for a renderer that takes none; the document is the path, relative to the root, of
    the file the block is in, for links). ``needs`` are the modules it imports; ``slow``: it runs
    torchcontract's whole report (tens of seconds)."""

    name: str
    render: Callable[[str, str], str]
    needs: tuple[str, ...] | Callable[[str], tuple[str, ...]] = ()
    takes_argument: bool = False
    slow: bool = False

    def needs_of(self, argument: str) -> tuple[str, ...]:
        """The modules the block ``name argument`` needs."""
        return self.needs(argument) if callable(self.needs) else self.needs

    def missing(self, argument: str) -> list[str]:
        """What of ``needs_of(argument)`` this environment lacks: a module it cannot import, or the
        release of one (``torch==2.14``, ``python==3.11``) whose own words the block quotes."""
        return [need for need in self.needs_of(argument) if not _satisfied(need)]


def _satisfied(need: str) -> bool:
    """``module`` is importable; ``name==X.Y`` (``python``, or a distribution) is release X.Y.*."""
    name, _, wanted = need.partition("==")
    if name == "python":
        return "{}.{}".format(*sys.version_info[:2]) == wanted
    if importlib.util.find_spec(name) is None:
        return False
    if not wanted:
        return True
    installed = release(importlib.metadata.version(name), wanted.count(".") + 1)
    return installed == wanted


RENDERERS: dict[str, Renderer] = {}


def renderer(
    name: str,
    *,
    needs: tuple[str, ...] | Callable[[str], tuple[str, ...]] = (),
    takes_argument: bool = False,
    slow: bool = False,
) -> Callable[[Callable[..., str]], Callable[..., str]]:
    """Register the decorated function as the renderer of the blocks called ``name``. It is called
    with the block's argument (when ``takes_argument``) and, if it has a ``document`` parameter, the
    path of the file the block is in."""

    def register(function: Callable[..., str]) -> Callable[..., str]:
        if name in RENDERERS:
            raise ValueError(f"two renderers are called {name!r}")
        wants_document = "document" in inspect.signature(function).parameters

        def render(argument: str, document: str) -> str:
            arguments: list[str] = [argument] if takes_argument else []
            if wants_document:
                return str(function(*arguments, document=document))
            return str(function(*arguments))

        RENDERERS[name] = Renderer(name, render, needs, takes_argument, slow)
        return function

    return register


# ----------------------------------------------------------------------------------------------------
# blocks in documents


class BlockError(ValueError):
    """A document's markers are malformed (unterminated, nested, mismatched) or name no renderer."""


class RenderError(RuntimeError):
    """A renderer raised: the message names the block."""


@dataclasses.dataclass(frozen=True)
class Block:
    """One generated block: where it is, what renders it, and the text it holds now."""

    document: str  # relative to REPO_ROOT, with forward slashes
    line: int  # of the start marker, 1-based
    name: str
    argument: str
    start: int  # offset of the first character after the start marker's line
    end: int  # offset of the end marker
    text: str

    @property
    def key(self) -> str:
        return f"{self.name} {self.argument}".strip()

    def where(self) -> str:
        return f"{self.document}:{self.line} ({self.key})"


def documents(root: Path | None = None) -> list[str]:
    """The documents that may hold generated blocks, as paths relative to ``root`` (the repository)."""
    root = REPO_ROOT if root is None else root
    found: set[str] = set()
    for pattern in DOCUMENT_GLOBS:
        found.update(path.relative_to(root).as_posix() for path in root.glob(pattern) if path.is_file())
    return sorted(found)


def find_blocks(document: str, text: str) -> list[Block]:
    """The generated blocks of ``text`` (the contents of ``document``), in order."""
    blocks: list[Block] = []
    position = 0
    while True:
        start = START.search(text, position)
        next_end = END.search(text, position)
        if start is None:
            if next_end is not None:
                raise BlockError(f"{document}:{_line(text, next_end.start())}: an end marker with no start")
            return blocks
        if next_end is not None and next_end.start() < start.start():
            raise BlockError(f"{document}:{_line(text, next_end.start())}: an end marker with no start")
        key = start.group("key").strip()
        line = _line(text, start.start())
        end = END.search(text, start.end())
        if end is None:
            raise BlockError(f"{document}:{line}: block {key!r} has no '<!-- end generated: {key} -->'")
        nested = START.search(text, start.end(), end.start())
        if nested is not None:
            raise BlockError(f"{document}:{_line(text, nested.start())}: a block inside block {key!r}")
        if end.group("key").strip() != key:
            raise BlockError(
                f"{document}:{_line(text, end.start())}: block {key!r} ends with "
                f"'<!-- end generated: {end.group('key').strip()} -->'"
            )
        name, _, argument = key.partition(" ")
        spec = RENDERERS.get(name)
        if spec is None:
            raise BlockError(
                f"{document}:{line}: no renderer is called {name!r} (known: {', '.join(RENDERERS)})"
            )
        if spec.takes_argument != bool(argument.strip()):
            wanted = "takes an argument" if spec.takes_argument else "takes no argument"
            raise BlockError(f"{document}:{line}: block {key!r}: renderer {name!r} {wanted}")
        spec.needs_of(argument.strip())  # an argument the renderer does not know is a BlockError
        content_start = start.end() + 1
        blocks.append(
            Block(
                document=document,
                line=line,
                name=name,
                argument=argument.strip(),
                start=content_start,
                end=end.start(),
                text=text[content_start : end.start()],
            )
        )
        position = end.end()


def _line(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


def all_blocks(root: Path | None = None) -> list[Block]:
    root = REPO_ROOT if root is None else root
    return [
        block
        for document in documents(root)
        for block in find_blocks(document, (root / document).read_text(encoding="utf-8"))
    ]


@functools.cache
def rendered(name: str, argument: str, document: str) -> str:
    """The text block ``name argument`` should hold in ``document``: the renderer's text, ending in
    exactly one newline."""
    text = RENDERERS[name].render(argument, document)
    return text.strip("\n") + "\n"


def rewrite(document: str, text: str, only: Sequence[str] = ()) -> tuple[str, list[Block]]:
    """``text`` with its blocks (those named in ``only``, if given) rendered afresh, and the blocks
    that changed. Blocks whose renderer cannot run here are left as they are."""
    pieces: list[str] = []
    changed: list[Block] = []
    position = 0
    for block in find_blocks(document, text):
        if (only and block.name not in only) or RENDERERS[block.name].missing(block.argument):
            continue
        try:
            new = rendered(block.name, block.argument, document)
        except Exception as error:
            raise RenderError(
                f"{block.where()}: the renderer raised {type(error).__name__}: {error}"
            ) from error
        if new != block.text:
            changed.append(block)
            pieces.append(text[position : block.start])
            pieces.append(new)
            position = block.end
    pieces.append(text[position:])
    return "".join(pieces), changed


def _write_atomically(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.generated-docs.tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python tools/generated_docs.py",
        description="Check (or, with --write, rewrite) the generated blocks of the docs.",
    )
    parser.add_argument("--write", action="store_true", help="rewrite the blocks that differ")
    parser.add_argument("--only", action="append", default=[], metavar="NAME", help="only these renderers")
    parser.add_argument("--list", action="store_true", help="list the blocks and their renderers")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.only) - set(RENDERERS))
    if unknown:
        parser.error(f"no renderer is called {', '.join(unknown)} (known: {', '.join(RENDERERS)})")
    try:
        blocks = all_blocks()
    except BlockError as error:
        print(f"generated_docs: {error}", file=sys.stderr)
        return 2
    if args.list:
        for block in blocks:
            needs = RENDERERS[block.name].needs_of(block.argument)
            print(f"{block.where()}{'  [needs ' + ', '.join(needs) + ']' if needs else ''}")
        return 0
    chosen = [block for block in blocks if not args.only or block.name in args.only]
    for block in chosen:
        missing = RENDERERS[block.name].missing(block.argument)
        if missing:
            print(f"left out: {block.where()}: needs {', '.join(missing)}", file=sys.stderr)
    differing: list[Block] = []
    for document in sorted({block.document for block in chosen}):
        path = REPO_ROOT / document
        old = path.read_text(encoding="utf-8")
        try:
            new, changed = rewrite(document, old, args.only)
        except RenderError as error:
            print(f"generated_docs: {error}", file=sys.stderr)
            return 2
        differing.extend(changed)
        if args.write and changed:
            _write_atomically(path, new)
    for block in differing:
        print(f"{'rewrote' if args.write else 'differs'}: {block.where()}")
    if differing and not args.write:
        print(f"rewrite them with: {COMMAND}", file=sys.stderr)
        return 1
    return 0


# ----------------------------------------------------------------------------------------------------
# helpers for renderers


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    def cell(value: str) -> str:
        return value.replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines.extend("| " + " | ".join(cell(value) for value in row) + " |" for row in rows)
    return "\n".join(lines)


def relative_link(document: str, target: str) -> str:
    """A link from ``document`` to ``target`` (both relative to the root; ``target`` may end in an
    #anchor), as Markdown and mkdocs resolve it."""
    path, _, anchor = target.partition("#")
    link = os.path.relpath(path, os.path.dirname(document) or ".").replace(os.sep, "/")
    return f"{link}#{anchor}" if anchor else link


def _first_paragraph(text: str) -> str:
    return " ".join(inspect.cleandoc(text).split("\n\n", 1)[0].split())


def _checks() -> list[Any]:
    from torchcontract.conformance import CHECKS

    return list(CHECKS.values())


def _protocol_names() -> list[str]:
    from torchcontract.conformance import PROTOCOLS

    return list(PROTOCOLS)


def spec_page(section_title: str) -> str:
    """The docs page of SPEC.md's ``## section_title``, relative to the root (tools/spec_pages.py); a
    clause's anchor there is its check id."""
    from tools import spec_pages

    return "docs/" + spec_pages.page_of_section(section_title)


# ----------------------------------------------------------------------------------------------------
# renderers: the registry of checks


@renderer("clause-counts")
def clause_counts(document: str) -> str:
    """The sentence that counts the clauses (held to README by tests/engine/test_spec_sync.py too)."""
    per_protocol = {name: 0 for name in _protocol_names()}
    for spec in _checks():
        per_protocol[spec.protocol_name] += 1
    spec_link = (
        "SPEC.md" if not document.startswith("docs/") else relative_link(document, "docs/spec/index.md")
    )
    counts = ", ".join(f"`{name}` {count}" for name, count in per_protocol.items())
    return (
        f"Each has {min(per_protocol.values())} to {max(per_protocol.values())} behavioural clauses in "
        f"[SPEC.md]({spec_link}), {sum(per_protocol.values())} in all ({counts})."
    )


def _needs_text(spec: Any) -> str:
    needs = sorted(spec.needs)
    extras = []
    if spec.per_device:
        extras.append("once per device")
    if spec.per_dtype:
        extras.append("once per dtype of `dtypes=`")
    return ", ".join([*needs, *extras])


@renderer("clauses")
def clauses(document: str) -> str:
    """Every check of the registry, by protocol, linked to its clause in the docs' SPEC pages."""
    sections: list[str] = []
    for name in _protocol_names():
        specs = [spec for spec in _checks() if spec.protocol_name == name]
        required = sum(spec.severity == "required" for spec in specs)
        rows = [
            [
                f"[`{spec.check_id}`]({relative_link(document, spec_page(name) + '#' + spec.check_id)})",
                spec.severity,
                _needs_text(spec),
                spec.since,
                _first_paragraph(spec.rule),
            ]
            for spec in specs
        ]
        sections.append(
            f"### {name}\n\n"
            f"{len(specs)} clauses: {required} required, {len(specs) - required} recommended.\n\n"
            + markdown_table(["check id", "severity", "needs", "since", "rule"], rows)
        )
    return "\n\n".join(sections)


AS_IS_NOTE = " (also checked on the module as it is, without a dtype)"


@renderer("per-dtype-clauses")
def per_dtype_clauses() -> str:
    """The clauses that run once per dtype of ``dtypes=``, and which of them are also checked on the
    module as it is (those a clause checked once depends on, directly or through a prerequisite)."""
    specs = {spec.check_id: spec for spec in _checks()}
    per_dtype = [spec for spec in specs.values() if spec.per_dtype]
    also_as_is: set[str] = set()

    def visit(check_id: str) -> None:
        for required in specs[check_id].requires:
            if specs[required].per_dtype:
                also_as_is.add(required)
            visit(required)

    for spec in specs.values():
        if not spec.per_dtype:
            visit(spec.check_id)
    lines = [
        f"- `{spec.check_id}`" + (AS_IS_NOTE if spec.check_id in also_as_is else "") for spec in per_dtype
    ]
    return f"{len(per_dtype)} clauses run once per dtype:\n\n" + "\n".join(lines)


@renderer("clauses-naming", takes_argument=True)
def clauses_naming(text: str, document: str) -> str:
    """The clauses whose text in SPEC.md names ``text`` (a declaration such as ``uneven_shards=True``),
    linked, with their severity."""
    spec = (REPO_ROOT / "SPEC.md").read_text(encoding="utf-8")
    protocol_of = {spec_.check_id: spec_.protocol_name for spec_ in _checks()}
    lines = []
    for heading, body in re.findall(
        r"^#### `([a-z_]+\.[a-z_]+)`[^\n]*\n(.*?)(?=^#{2,4} |\Z)", spec, re.M | re.S
    ):
        if text in body and heading in protocol_of:
            severity = next(s.severity for s in _checks() if s.check_id == heading)
            link = relative_link(document, spec_page(protocol_of[heading]) + "#" + heading)
            lines.append(f"- [`{heading}`]({link}) ({severity})")
    if not lines:
        raise ValueError(f"no clause of SPEC.md names {text!r}")
    return "\n".join(lines)


@renderer("check-id-history")
def check_id_history() -> str:
    """The check ids by the version that added them (``Check.since``), and the renamed ones."""
    from torchcontract.conformance._core.registry import RENAMED

    by_version: dict[str, list[Any]] = {}
    for spec in _checks():
        by_version.setdefault(spec.since, []).append(spec)
    lines: list[str] = []
    for version, specs in by_version.items():
        lines.append(f"- Added in {version} ({len(specs)} checks):")
        for name in _protocol_names():
            ids = [f"`{spec.check_id}`" for spec in specs if spec.protocol_name == name]
            if ids:
                lines.append(f"  - {name}: {', '.join(ids)}")
    if RENAMED:
        for old, (new, version) in RENAMED.items():
            lines.append(
                f"- Renamed in {version}: `{old}` is now `{new}` (the old id still works, with a warning, "
                "for one minor release)"
            )
    else:
        lines.append("- Renamed: none.")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------------
# renderers: the options of Target and check()

# Each option's how-to page, relative to docs/. Every field of Options has one (a test holds it to
# dataclasses.fields(Options)); several options share a page where they are used together.
HOWTO_PAGES: dict[str, str] = {
    "deterministic": "howto/deterministic.md",
    "infinite": "howto/infinite.md",
    "thorough": "howto/sampling.md",
    "max_items": "howto/sampling.md",
    "sample_size": "howto/sampling.md",
    "seed": "howto/sampling.md",
    "data_source_len": "howto/data-source-len.md",
    "replacement": "howto/replacement.md",
    "ordered": "howto/ordered.md",
    "num_workers": "howto/workers.md",
    "world_size": "howto/distributed.md",
    "shards": "howto/distributed.md",
    "isolate": "howto/isolation.md",
    "uneven_shards": "howto/uneven-shards.md",
    "max_padding": "howto/max-padding.md",
    "reshuffles_each_pass": "howto/reshuffles-each-pass.md",
    "transforms_samples": "howto/transforms-samples.md",
    "error_index": "howto/error-index.md",
    "factory": "howto/factory.md",
    "unused_parameters": "howto/unused-parameters.md",
    "eval_only": "howto/eval-only.md",
    "parity_tolerance": "howto/parity-tolerance.md",
    "collate_fn": "howto/padding.md",
    "compile": "howto/compile-export.md",
    "export": "howto/compile-export.md",
    "gradcheck": "howto/gradcheck.md",
    "dtypes": "howto/dtypes.md",
}
# The how-to page of each argument of Target and check() that is not an option (their descriptions are
# the code's: target.ARGUMENTS_HELP).
TARGET_ARGUMENTS: dict[str, str] = {
    "example_inputs": "howto/example-inputs.md",
    "example_kwargs": "howto/example-inputs.md",
    "expected_failures": "howto/baselines.md",
}


def option_descriptions() -> dict[str, str]:
    """Each option's description, as its declaration in ``Options`` gives it (the field's metadata:
    the same text as ``help(Options)`` and the validation's)."""
    from torchcontract.conformance._core.options import option_infos

    return {field.name: info.help for field, info in option_infos()}


def _default_text(field: dataclasses.Field[Any]) -> str:
    if field.default is not dataclasses.MISSING:
        return f"`{field.default!r}`"
    return "required"


@renderer("options-table")
def options_table(document: str) -> str:
    """The options of ``Target`` and ``check()``: from ``dataclasses.fields(Options)`` (names, defaults)
    and each option's description from its declaration (option_descriptions), each linked to its how-to
    page."""
    from torchcontract.conformance import Options

    def page(name: str, path: str) -> str:
        return f"[`{name}`]({relative_link(document, 'docs/' + path)})"

    from torchcontract.conformance._core.target import ARGUMENTS_HELP

    descriptions = option_descriptions()
    rows = [[page(name, path), "—", ARGUMENTS_HELP[name]] for name, path in TARGET_ARGUMENTS.items()]
    rows.extend(
        [page(field.name, HOWTO_PAGES[field.name]), _default_text(field), descriptions[field.name]]
        for field in dataclasses.fields(Options)
    )
    return markdown_table(["option", "default", "meaning"], rows)


# ----------------------------------------------------------------------------------------------------
# renderers: the pytest plugin


class _OptionRecorder:
    """Stands in for pytest's parser: records what the plugin's ``pytest_addoption`` declares."""

    def __init__(self) -> None:
        self.options: list[tuple[str, dict[str, Any]]] = []
        self.ini: dict[str, dict[str, Any]] = {}

    def getgroup(self, name: str, description: str = "") -> _OptionRecorder:
        return self

    def addoption(self, *names: str, **settings: Any) -> None:
        self.options.append((names[0], settings))

    def addini(self, name: str, help: str, **settings: Any) -> None:
        self.ini[name] = {"help": help, **settings}


@renderer("plugin-options")
def plugin_options() -> str:
    """The plugin's command-line options and their ini keys, as its ``pytest_addoption`` declares them."""
    from torchcontract.conformance import plugin

    recorder = _OptionRecorder()
    plugin.pytest_addoption(recorder)  # type: ignore[arg-type]
    rows = []
    for option, settings in recorder.options:
        key = option.lstrip("-").replace("-", "_")
        value = f"`{option}={settings['metavar']}`" if settings.get("metavar") else f"`{option}`"
        ini = f"`{key}`" if key in recorder.ini else "—"
        help_text = re.sub(r" \(ini [a-z_]+\)$", "", str(settings.get("help", "")))
        rows.append([value, ini, help_text])
    return markdown_table(["option", "ini key", "effect"], rows)


# ----------------------------------------------------------------------------------------------------
# renderers: files and runs


@renderer("source", takes_argument=True)
def source(path: str) -> str:
    """A file of the repository (``path`` relative to the root), as a fenced code block."""
    language = {".py": "python", ".toml": "toml", ".yml": "yaml", ".yaml": "yaml", ".md": "markdown"}
    text = (REPO_ROOT / path).read_text(encoding="utf-8")
    fence = "````" if "```" in text else "```"
    return f'{fence}{language.get(Path(path).suffix, "text")} title="{path}"\n{text.rstrip()}\n{fence}'


def _example_needs(name: str) -> tuple[str, ...]:
    from tools import doc_examples

    if name not in doc_examples.EXAMPLES:
        raise BlockError(
            f"tools/doc_examples.py has no example called {name!r} "
            f"(known: {', '.join(doc_examples.EXAMPLES)})"
        )
    return doc_examples.EXAMPLES[name].needs


@renderer("example", takes_argument=True, needs=_example_needs)
def example(name: str) -> str:
    """The real output of the example called ``name`` in tools/doc_examples.py (a failure message, a
    report), in a text block."""
    from tools import doc_examples

    return "```text\n" + doc_examples.EXAMPLES[name].run().rstrip() + "\n```"


@renderer("conformance-table", needs=("torch", "torchvision"), slow=True)
def conformance_table() -> str:
    """``torchcontract report`` (the reference implementation, torch and torchvision) on the CPU: its
    Markdown overview (the table of ``--format markdown`` and ``--conformance-summary-md``, so the docs
    word and count results as both front-ends do), with the versions it ran on."""
    with tempfile.TemporaryDirectory() as folder:
        json_path = Path(folder) / "report.json"
        command = [
            sys.executable, "-m", "torchcontract", "report", "--device", "cpu",
            "--format", "markdown", "--json", str(json_path),
        ]  # fmt: skip
        run = subprocess.run(command, capture_output=True, text=True, check=False, cwd=REPO_ROOT)
        if run.returncode not in (0, 1):
            raise RuntimeError(f"{' '.join(command[1:])} exited {run.returncode}:\n{run.stderr}")
        environment = json.loads(json_path.read_text(encoding="utf-8"))["environment"]
    lines = run.stdout.splitlines()
    first = next(index for index, line in enumerate(lines) if line.startswith("|"))
    table = list(itertools.takewhile(lambda line: line.startswith("|"), lines[first:]))
    return (
        f"`torchcontract report --device cpu` with torch {release(environment['torch'])}, torchvision "
        f"{release(environment['torchvision'])}, NumPy {release(environment['numpy'], 2)}:\n\n"
        + "\n".join(table)
    )


def release(version: str, parts: int = 3) -> str:
    """``2.14.1+cu130`` -> ``2.14.1`` (the local build label does not change the results); ``parts=2``:
    ``2.4.6`` -> ``2.4``."""
    return ".".join(version.split("+")[0].split(".")[:parts])


# The versions a conformance table states: its test compares only in an environment with the same ones.
TABLE_VERSIONS = re.compile(
    r"with torch (?P<torch>\S+), torchvision (?P<torchvision>\S+), NumPy (?P<numpy>[\d.]+):"
)


if __name__ == "__main__":
    sys.path.insert(0, str(REPO_ROOT))
    sys.exit(main())
