"""README's table of target options is generated from where each option is declared (its metadata in
``Options``), so that the table, ``help(Options)`` and the validation cannot drift apart."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from torchcontract.conformance import Options
from torchcontract.conformance._core import docs
from torchcontract.conformance._core.options import option_infos

README = Path(__file__).resolve().parents[2] / "README.md"


def test_the_readme_options_table_is_generated_from_the_declarations() -> None:
    text = README.read_text(encoding="utf-8")
    assert docs.with_options_table(text) == text, f"README's options table is out of date: run {docs.COMMAND}"


def test_every_option_is_documented_in_the_table_and_in_help() -> None:
    table = docs.options_table()
    for option, info in option_infos():
        assert f"`{info.shown}`" in table, option.name
        assert info.help.strip(), option.name
        assert info.help in (Options.__doc__ or ""), option.name
    assert len(list(option_infos())) == len(dataclasses.fields(Options))


def test_the_command_rewrites_a_stale_table_and_checks_it(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n\n{docs.START}\n| stale |\n{docs.END}\n\nafter\n", encoding="utf-8")
    command = [sys.executable, "-m", "torchcontract.conformance._core.docs"]
    stale = subprocess.run([*command, "--check", str(readme)], capture_output=True, text=True, check=False)
    assert stale.returncode == 1, stale.stderr
    assert docs.COMMAND in stale.stderr
    subprocess.run([*command, "--write", str(readme)], check=True)
    text = readme.read_text(encoding="utf-8")
    assert text.startswith("intro\n\n")
    assert text.endswith("\n\nafter\n")
    assert docs.options_table() in text
    done = subprocess.run([*command, "--check", str(readme)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr


def test_a_file_without_the_markers_is_a_usage_error(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text("no table here\n", encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-m", "torchcontract.conformance._core.docs", "--check", str(readme)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2
    assert "no options table" in done.stderr


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"max_items": 0}, "max_items must be at least 1"),
        ({"num_workers": 1}, "num_workers must be at least 2"),
        ({"deterministic": "yes"}, "option deterministic='yes' is not valid"),
        ({"shards": 3}, "option shards must be a callable"),
        ({"uneven_shards": True, "max_padding": 2}, "max_padding must be None or 0"),
    ],
)
def test_options_built_directly_are_validated_like_keyword_options(
    options: dict[str, object], error: str
) -> None:
    # Options(...) itself validates: options=Options(max_items=0) was accepted as given.
    with pytest.raises(TypeError, match=error):
        Options(**options)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=error):
        Options.from_kwargs(options)
