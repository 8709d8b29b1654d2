"""README.md, CHANGELOG.md and docs/ say what the code says: every generated block holds what its renderer
(tools/generated_docs.py) gives for the code as it is, and the mechanism itself finds, rewrites and
refuses blocks as documented.

A block whose renderer needs what this environment lacks (torch, torchvision) is skipped, naming it;
the torch test sessions check those. The conformance table is compared only with the versions it states.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib.metadata
import re
from pathlib import Path

import pytest

from tools import doc_examples
from tools import generated_docs as generated
from torchcontract.conformance import Options

BLOCKS = generated.all_blocks()


def _diff(old: str, new: str) -> str:
    lines = difflib.unified_diff(
        old.splitlines(), new.splitlines(), "in the file", "rendered", lineterm="", n=1
    )
    return "\n".join(list(lines)[:60])


def _installed_release(distribution: str, parts: int = 3) -> str:
    return generated.release(importlib.metadata.version(distribution), parts)


@pytest.mark.parametrize(
    "block",
    [
        pytest.param(block, marks=[pytest.mark.slow] if generated.RENDERERS[block.name].slow else [])
        for block in BLOCKS
    ],
    ids=[f"{block.document}:{block.key}" for block in BLOCKS],
)
def test_block_holds_what_the_code_renders(block: generated.Block) -> None:
    renderer = generated.RENDERERS[block.name]
    missing = renderer.missing(block.argument)
    if missing:
        pytest.skip(f"{block.key} is rendered with {', '.join(missing)}, which this environment lacks")
    if block.name == "conformance-table":
        stated = generated.TABLE_VERSIONS.search(block.text)
        assert stated, f"{block.where()} does not state the versions it was rendered with"
        here = {
            "torch": _installed_release("torch"),
            "torchvision": _installed_release("torchvision"),
            "numpy": _installed_release("numpy", 2),
        }
        if here != stated.groupdict():
            pytest.skip(f"{block.where()} is of {stated.groupdict()}; this environment has {here}")
    expected = generated.rendered(block.name, block.argument, block.document)
    if block.text != expected:
        pytest.fail(
            f"{block.where()} differs from what the code renders; rewrite it with: {generated.COMMAND}\n"
            + _diff(block.text, expected),
            pytrace=False,
        )


def test_every_renderer_and_every_example_is_used() -> None:
    used = {block.name for block in BLOCKS}
    assert sorted(set(generated.RENDERERS) - used) == []
    shown = {block.argument for block in BLOCKS if block.name == "example"}
    assert sorted(set(doc_examples.EXAMPLES) - shown) == []


def test_every_option_has_its_page() -> None:
    """A newcomer answers "how do I declare X" from one page, for every option of Target."""
    fields = {field.name for field in dataclasses.fields(Options)}
    assert set(generated.HOWTO_PAGES) == fields, "add the option to HOWTO_PAGES in tools/generated_docs.py"
    pages = {*generated.HOWTO_PAGES.values(), *generated.TARGET_ARGUMENTS.values()}
    nav = (generated.REPO_ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    for page in sorted(pages):
        assert (generated.REPO_ROOT / "docs" / page).is_file(), f"docs/{page} is missing"
        assert f" {page}" in nav, f"docs/{page} is not in mkdocs.yml's nav"


def test_every_option_is_described() -> None:
    descriptions = generated.option_descriptions()
    for field in dataclasses.fields(Options):
        assert descriptions[field.name].strip(), field.name


# ----------------------------------------------------------------------------------------------------
# the mechanism


@pytest.fixture
def echo(monkeypatch: pytest.MonkeyPatch) -> None:
    """A renderer ``test-echo ARGUMENT`` that renders "ARGUMENT in DOCUMENT"."""
    renderer = generated.Renderer(
        "test-echo", lambda argument, document: f"{argument} in {document}", (), True
    )
    monkeypatch.setitem(generated.RENDERERS, "test-echo", renderer)


@pytest.mark.usefixtures("echo")
def test_rewrite_replaces_only_the_blocks_content() -> None:
    text = (
        "before\n<!-- generated: test-echo hello -->\nstale\n<!-- end generated: test-echo hello -->\n"
        "between\n<!-- generated: test-echo x -->\nx in docs/a.md\n"
        "<!-- end generated: test-echo x -->\nafter\n"
    )
    new, changed = generated.rewrite("docs/a.md", text)
    assert [block.key for block in changed] == ["test-echo hello"]
    assert new == text.replace("stale\n", "hello in docs/a.md\n")
    assert generated.rewrite("docs/a.md", new) == (new, [])


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("<!-- generated: test-echo a -->\nno end\n", r"has no '<!-- end generated: test-echo a -->'"),
        ("text\n<!-- end generated: test-echo a -->\n", "an end marker with no start"),
        (
            (
                "<!-- generated: test-echo a -->\n<!-- generated: test-echo b -->\n"
                "<!-- end generated: test-echo b -->\n<!-- end generated: test-echo a -->\n"
            ),
            "a block inside block 'test-echo a'",
        ),
        (
            "<!-- generated: test-echo a -->\n<!-- end generated: test-echo b -->\n",
            r"block 'test-echo a' ends with '<!-- end generated: test-echo b -->'",
        ),
        ("<!-- generated: nope -->\n<!-- end generated: nope -->\n", "no renderer is called 'nope'"),
        ("<!-- generated: test-echo -->\n<!-- end generated: test-echo -->\n", "takes an argument"),
        ("<!-- generated: clauses x -->\n<!-- end generated: clauses x -->\n", "takes no argument"),
    ],
)
@pytest.mark.usefixtures("echo")
def test_malformed_blocks_are_named(text: str, problem: str) -> None:
    with pytest.raises(
        generated.BlockError, match=r"^docs/a\.md:\d+: .*" + re.escape(problem).replace(r"\\", "")
    ):
        generated.find_blocks("docs/a.md", text)


@pytest.mark.usefixtures("echo")
def test_the_check_command_names_a_stale_block_and_the_write_command_fixes_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    document = tmp_path / "README.md"
    document.write_text("<!-- generated: test-echo a -->\nold\n<!-- end generated: test-echo a -->\n")
    monkeypatch.setattr(generated, "REPO_ROOT", tmp_path)
    assert generated.main([]) == 1
    out, err = capsys.readouterr()
    assert "differs: README.md:1 (test-echo a)" in out
    assert generated.COMMAND in err
    assert generated.main(["--write"]) == 0
    assert (
        document.read_text()
        == "<!-- generated: test-echo a -->\na in README.md\n<!-- end generated: test-echo a -->\n"
    )
    assert generated.main([]) == 0


def test_an_unknown_example_is_named() -> None:
    text = "<!-- generated: example nope -->\n<!-- end generated: example nope -->\n"
    with pytest.raises(generated.BlockError, match="no example called 'nope'"):
        generated.find_blocks("docs/a.md", text)


def test_a_renderer_that_raises_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def broken(argument: str, document: str) -> str:
        raise KeyError("no such clause")

    monkeypatch.setitem(generated.RENDERERS, "test-broken", generated.Renderer("test-broken", broken))
    (tmp_path / "README.md").write_text(
        "<!-- generated: test-broken -->\n<!-- end generated: test-broken -->\n"
    )
    monkeypatch.setattr(generated, "REPO_ROOT", tmp_path)
    assert generated.main([]) == 2
    assert (
        "README.md:1 (test-broken): the renderer raised KeyError: 'no such clause'" in capsys.readouterr().err
    )


def test_relative_links() -> None:
    assert generated.relative_link("README.md", "docs/howto/padding.md") == "docs/howto/padding.md"
    assert generated.relative_link("docs/howto/index.md", "docs/howto/padding.md") == "padding.md"
    assert generated.relative_link("docs/howto/x.md", "docs/spec/loader.md#a.b") == "../spec/loader.md#a.b"
